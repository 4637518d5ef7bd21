/**
 * docs/protocol.md says it is precise enough to write a client in another language. This is the
 * check that it stays so: test/fixtures/postbox_client.py is a Python client written from the
 * document alone (standard library only; python3 is installed by .ci/run). It joins a kernel over
 * the Unix socket and over TCP with a token, and uses every part of the protocol; then it trades
 * messages with the TypeScript client, bodies of every kind the protocol carries.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type Mailbox, type Message, type PostboxProcess } from '../src/client/mod.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';

const CHECK = fileURLToPath(new URL('../../test/fixtures/postbox_client_check.py', import.meta.url));

/** Runs a scenario of the Python client; resolves with its exit code once it has ended. */
function python(args: string[]): { output: ChildOutput; exit: Promise<number | null> } {
  const child = spawn('python3', [CHECK, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const output = new ChildOutput(child);
  const exit = new Promise<number | null>((resolve, reject) => {
    child.once('error', (e) =>
      reject(new Error(`python3 could not be run (apt-get install python3): ${e.message}`)),
    );
    child.once('close', (code) => resolve(code));
  });
  return { output, exit };
}

describe('a client written in Python from docs/protocol.md', () => {
  let kernel: TestKernel;
  before(async () => {
    // A short heartbeat, so the Python client's idle wait over TCP spans several of them.
    kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '250'] });
  });
  after(async () => {
    await kernel.stop();
  });

  test('uses every part of the protocol against a kernel', { timeout: 60_000 }, async () => {
    const { output, exit } = python(['self', kernel.socket, kernel.tcpUrl!, kernel.token]);
    const code = await exit;
    assert.equal(code, 0, output.text);
    for (const step of [
      'handshake over the Unix socket',
      'send and blocking receive',
      'receive nowait',
      'receive with timeout',
      'receive by type',
      'priority order',
      'full mailbox: fail, drop, replace, timeout, wait',
      'rendezvous (capacity 0)',
      'send until received',
      'cancel a waiting receive and a blocked send',
      'stream with credit',
      'recall and return',
      'ping and pong',
      'monitor and clean close',
      'end of stream',
      'tcp with a token and heartbeats',
    ]) {
      assert.ok(output.text.includes(`ok ${step}\n`), `${step}: ${output.text}`);
    }
  });

  test('trades messages with a TypeScript process, bodies of every kind', { timeout: 60_000 }, async () => {
    await using ts = await connect({ socket: kernel.socket, name: 'ts' });
    await using tsIn = await ts.createMailbox('ts-in', { mode: 0o666 });
    await using rendezvous = await ts.createMailbox('ts-rv', { mode: 0o666, capacity: 0 });
    const { output, exit } = python(['peer', kernel.socket]);
    // A failure on the Python side shows here as a receive timing out: say what Python printed.
    await trade(ts, tsIn, rendezvous, output).catch((e: Error) => {
      e.message += `\nthe Python client printed:\n${output.text}`;
      throw e;
    });
    assert.equal(await exit, 0, output.text);
    assert.ok(output.text.includes('ok sent every kind\n'), output.text);
  });
});

/** The TypeScript side of the peer scenario (test/fixtures/postbox_client_check.py, peer()). */
async function trade(
  ts: PostboxProcess,
  tsIn: Mailbox,
  rendezvous: Mailbox,
  output: ChildOutput,
): Promise<void> {
  await output.line('ready');
  await using pyIn = await ts.openMailbox('py-in');
  const limit = (await pyIn.stat()).maxMessageSize;
  const headers = { from: 'typescript', 'x-é': 'ü' };
  const headerBytes = Buffer.byteLength(JSON.stringify(headers));
  const sent: {
    body: unknown;
    codec: 'bytes' | 'string' | 'json' | 'msgpack';
    type: number;
    priority: number;
  }[] = [
    { body: { json: [1, 2.5, 'é', null, true] }, codec: 'json', type: 1, priority: 0 },
    { body: 'naïve 🚀 text', codec: 'string', type: 2, priority: 3 },
    { body: '', codec: 'string', type: 3, priority: 0 },
    { body: Buffer.from(Array.from({ length: 256 }, (_, i) => i)), codec: 'bytes', type: 4, priority: 0 },
    { body: Buffer.alloc(0), codec: 'bytes', type: 5, priority: 0 },
    // msgpack is opaque to the Python client: it must hand the bytes back unchanged.
    {
      body: new Map<unknown, unknown>([
        [1, new Set(['a'])],
        ['d', new Date(0)],
      ]),
      codec: 'msgpack',
      type: 6,
      priority: 0,
    },
    // As large as the kernel takes: headers and body together at maxMessageSize.
    { body: Buffer.alloc(limit - headerBytes, 0xa5), codec: 'bytes', type: 7, priority: 32767 },
  ];
  for (const s of sent)
    await pyIn.send(s.body, { codec: s.codec, type: s.type, priority: s.priority, headers });
  await pyIn.send('stop', { type: 99 });

  const echoes: Message[] = [];
  for (const _ of sent) echoes.push((await tsIn.receive({ timeout: 10_000 }))!);
  echoes.forEach((m, i) => {
    const s = sent[i]!;
    assert.equal(m.codec, s.codec, `echo ${i}`);
    assert.equal(m.type, s.type, `echo ${i}`);
    assert.equal(m.priority, s.priority, `echo ${i}`);
    assert.deepEqual(m.headers, headers, `echo ${i}`);
    if (s.codec === 'bytes') assert.deepEqual(Buffer.from(m.data), s.body, `echo ${i}`);
    else assert.deepEqual(m.body, s.body, `echo ${i}`);
  });

  const fromPython: Message[] = [];
  for (let i = 0; i < 6; i++) fromPython.push((await tsIn.receive({ type: 2, timeout: 10_000 }))!);
  const py = await ts.lookup('py');
  for (const m of fromPython) {
    assert.equal(m.sender, py.id);
    assert.deepEqual(m.headers, { from: 'python' });
  }
  assert.deepEqual(
    fromPython.map((m) => m.codec),
    ['json', 'bytes', 'bytes', 'string', 'string', 'bytes'],
  );
  assert.deepEqual(fromPython[0]!.body, { json: [1, 2.5, 'é', null, true, { nested: [] }] });
  assert.deepEqual(Buffer.from(fromPython[1]!.data), Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
  assert.equal(fromPython[2]!.data.length, 0);
  assert.equal(fromPython[3]!.body, '');
  assert.equal(fromPython[4]!.body, 'naïve 🚀 text');
  assert.equal(fromPython[5]!.data.length + Buffer.byteLength('{"from":"python"}'), limit);
  assert.ok(Buffer.from(fromPython[5]!.data).every((b) => b === 7));

  const direct = (await ts.receive({ type: 3, timeout: 10_000 }))!;
  assert.deepEqual(direct.body, { to: 'inbox' });
  assert.equal(direct.sender, py.id);
  const met = (await rendezvous.receive({ timeout: 10_000 }))!;
  assert.equal(met.body, 'rendezvous from python');
}

/** Every example in examples/ runs with one command against a real kernel and does what it says. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ftok } from '../src/faces/sysv.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
let kernel: TestKernel;

before(async () => {
  kernel = await startTestKernel();
});
after(async () => {
  await kernel.stop();
});

function run(file: string, args: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [file, ...args], {
      cwd: examples,
      env: kernel.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    p.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${file} did not finish in 30 s; stdout:\n${out}\nstderr:\n${err}`));
    }, 30_000);
    p.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

test('producer-consumer: every item produced is consumed, in order', async () => {
  const r = await run('producer-consumer.mjs');
  assert.equal(r.code, 0, r.err);
  const got = r.out.split('\n').filter((l) => l.startsWith('consumer: got'));
  assert.deepEqual(
    got,
    Array.from({ length: 10 }, (_, i) => `consumer: got item ${i + 1}`),
  );
});

test('rendezvous: the send returns only after the late receiver took the message', async () => {
  const r = await run('rendezvous.mjs');
  assert.equal(r.code, 0, r.err);
  // Both processes write to one pipe, in the order things happened.
  const lines = r.out.trim().split('\n');
  const at = (prefix: string): number => lines.findIndex((l) => l.startsWith(prefix));
  assert.ok(
    at('sender: sending') >= 0 && at('receiver: the sender is blocked') > at('sender: sending'),
    r.out,
  );
  // The send returns once the receiver's take reaches the kernel, which is before receive()
  // returns in the receiver: the two processes' next lines may come in either order. What is
  // ordered is the receive itself, asked for only after the receiver's line saying so.
  assert.ok(at("receiver: took 'let us meet'") >= 0, r.out);
  assert.ok(
    at('sender: send returned') > at('receiver: the sender is blocked; now I receive'),
    `the send returned after the receiver came\n${r.out}`,
  );
  assert.match(r.out, /send returned after \d+ ms, received by process \d+/);
});

test('shared mailbox: round robin between P2 and P3, and P1 learns who received', async () => {
  const r = await run('shared-mailbox.mjs');
  assert.equal(r.code, 0, r.err);
  const takers = [...r.out.matchAll(/was received by (P\d)/g)].map((m) => m[1]);
  assert.equal(takers.length, 6);
  assert.ok(
    takers.every((t, i) => i === 0 || t !== takers[i - 1]),
    `turns alternate: ${takers.join(' ')}`,
  );
});

test("POSIX hello world: the child receives 'Hello!' with priority 1", async () => {
  const r = await run('posix-hello.mjs');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /child: received "Hello!" with priority 1/);
});

test('cat | grep through a pipe finds the line', async () => {
  const r = await run('cat-grep.mjs');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(r.out.trimEnd().split('\n'), [
    'long factorial(int n) {',
    '  return n <= 1 ? 1 : n * factorial(n - 1);',
    '  printf("%ld\\n", factorial(10));',
  ]);
  assert.match(r.err, /cat exited 0, grep exited 0/);
});

test('a FIFO between unrelated processes: the reader reads to end of file', async () => {
  const r = await run('fifo.mjs');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /reader: end of file after 3 lines:\nthe first line\nthe second line\nthe last line/);
});

test('System V by type, as in the lecture: ten crew names, type 2 until ENOMSG, then the rest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-sysv-'));
  const file = join(dir, 'myshm');
  try {
    const snd = await run('sysv-msgsnd.mjs', [file]);
    assert.equal(snd.code, 0, snd.err);
    assert.match(snd.out, /number of sent messages = 10, messages in the queue = 10/);
    const two = await run('sysv-msgrcv.mjs', [file, '2']);
    assert.equal(two.code, 0, two.err);
    assert.deepEqual(two.out.trim().split('\n'), [
      'Selected message type = 2',
      '2 Spock',
      '2 Chekov',
      '2 Rand',
      'number of received messages = 3',
      'number of messages remaining = 7',
    ]);
    const rest = await run('sysv-msgrcv.mjs', [file]);
    assert.equal(rest.code, 0, rest.err);
    assert.deepEqual(rest.out.trim().split('\n').slice(1, 8), [
      '1 Kirk',
      '3 McCoy',
      '4 Scott',
      '5 Uhura',
      '6 Sulu',
      '3 Chapel',
      '1 Riley',
    ]);
    assert.match(rest.out, /number of messages remaining = 0/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The `$ node examples/… /tmp/myshm …` commands of docs/sysv.md's transcript, each with what it prints. */
function sysvTranscript(): { file: string; args: string[]; lines: string[] }[] {
  const doc = readFileSync(new URL('../../docs/sysv.md', import.meta.url), 'utf8');
  const block = /## The lecture's example[\s\S]*?```\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(block !== undefined, "docs/sysv.md has a transcript under 'The lecture's example'");
  const runs: { file: string; args: string[]; lines: string[] }[] = [];
  let current: { file: string; args: string[]; lines: string[] } | null = null;
  for (const line of block.trimEnd().split('\n')) {
    if (line.startsWith('$ ')) {
      const m = /^\$ node examples\/(\S+) \/tmp\/myshm ?(.*)$/.exec(line);
      current = m === null ? null : { file: m[1]!, args: m[2] === '' ? [] : m[2]!.split(' '), lines: [] };
      if (current !== null) runs.push(current);
    } else {
      current?.lines.push(line);
    }
  }
  return runs;
}

test("docs/sysv.md's transcript is what the System V examples print, but for the key", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-sysv-doc-'));
  const file = join(dir, 'myshm');
  try {
    const runs = sysvTranscript();
    assert.deepEqual(
      runs.map((r) => r.file),
      ['sysv-msgsnd.mjs', 'sysv-msgrcv.mjs', 'sysv-msgrcv.mjs'],
    );
    for (const { file: example, args, lines } of runs) {
      const r = await run(example, [file, ...args]);
      assert.equal(r.code, 0, r.err);
      const out = r.out.trimEnd().split('\n');
      if (example === 'sysv-msgsnd.mjs') {
        // The key comes from the file's inode and device; it is printed as unsigned hex.
        const key = (await ftok(file, 0x27)) >>> 0;
        assert.equal(out[0], `IPC key = 0x${key.toString(16).padStart(8, '0')}`);
        assert.match(lines[0]!, /^IPC key = 0x[0-9a-f]{8}$/);
        out[0] = lines[0]!;
      }
      assert.deepEqual(out, lines, `${example} ${args.join(' ')}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the README quick start: producer and consumer', async () => {
  const consumer = run('quickstart/consumer.mjs', ['101']);
  // The consumer creates the mailbox too; either may start first.
  const producer = await run('quickstart/producer.mjs');
  assert.equal(producer.code, 0, producer.err);
  assert.match(producer.out, /taken by process \d+/);
  const c = await consumer;
  assert.equal(c.code, 0, c.err);
  assert.equal(c.out.trim().split('\n').length, 101);
});

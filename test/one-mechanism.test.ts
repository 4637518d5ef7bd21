/**
 * One mechanism, many faces: the same kernel mailbox seen through two faces at once (the
 * library, POSIX queues, System V queues, FIFOs and the `postbox` command line), and what each
 * face says about what the other did to it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { dial, listen } from '../src/faces/connection.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import { pipe, pipeFromEnv, spawn } from '../src/faces/pipe.js';
import { O_CREAT, O_RDONLY, O_RDWR, posix } from '../src/faces/posix.js';
import { call, serve, stub } from '../src/faces/rpc.js';
import { IPC_CREAT, IPC_SET, IPC_STAT, sysv } from '../src/faces/sysv.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

let k: TestKernel;
let me: PostboxProcess;

before(async () => {
  k = await startTestKernel();
  me = await connect({ socket: k.socket, name: 'faces' });
});

after(async () => {
  await me?.close().catch(() => {});
  await k?.stop();
});

/**
 * Runs `postbox ARGS` as its own OS process, as a shell would, with `input` on its standard
 * input, and resolves with what it printed.
 */
function postbox(args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...k.env };
  delete env.POSTBOX_URL;
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env, timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin!.end(input);
  });
}

test('postbox stat of a System V queue with msg_qbytes 0 does not call it a rendezvous', async () => {
  const { msgget, msgctl } = sysv(me);
  const id = await msgget(0x51a7, IPC_CREAT | 0o666);
  await msgctl(id, IPC_SET, { msg_qbytes: 0 });
  const stat = await postbox(['stat', `#${id}`]);
  assert.equal(stat.code, 0, stat.stderr);
  const capacity = /capacity +(.*)/.exec(stat.stdout)?.[1];
  // A receiver waiting lets nothing into such a queue (Linux's msg_fits_inqueue): no rendezvous.
  assert.doesNotMatch(capacity ?? '', /rendezvous/);
  assert.match(capacity ?? '', /^0 \(holds nothing/);
  // A mailbox made with capacity 0 is one.
  const meet = await me.createMailbox('faces-meet', { capacity: 0 });
  const rendezvous = await postbox(['stat', 'faces-meet']);
  assert.match(rendezvous.stdout, /capacity +0 \(rendezvous\)/);
  await meet.close();
});

test('mq_getattr reports the capacity another face set, on a descriptor opened before the change', async () => {
  const mq = posix(me);
  const before = await mq.mq_open('/faces-limits', O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 64 });
  assert.equal((await mq.mq_getattr(before)).mq_maxmsg, 4);
  // The owner changes the queue's capacity through the library: its own mailbox, one mechanism.
  const mb = await me.openMailbox('/faces-limits', { role: 'none' });
  await mb.setLimits({ capacity: 7 });
  const after = await mq.mq_open('/faces-limits', O_RDONLY);
  assert.equal((await mq.mq_getattr(after)).mq_maxmsg, 7);
  assert.equal((await mq.mq_getattr(before)).mq_maxmsg, 7, 'both descriptors of one queue agree');
  const stat = await postbox(['stat', '/faces-limits']);
  assert.match(stat.stdout, /capacity +7 messages/);
  await mb.close();
  await mq.mq_close(before);
  await mq.mq_close(after);
  await mq.mq_unlink('/faces-limits');
});

test('text sent by mq_send reaches a library receiver as text, as text sent by msgsnd does', async () => {
  const mq = posix(me);
  const d = await mq.mq_open('/faces-text', O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
  await mq.mq_send(d, 'héllo', 3);
  await mq.mq_send(d, Buffer.from([0, 255]), 1);
  const mb = await me.openMailbox('/faces-text');
  const text = await mb.receive({ nowait: true });
  assert.equal(text?.codec, 'string');
  assert.equal(text?.body, 'héllo');
  assert.equal(text?.priority, 3);
  const bytes = await mb.receive({ nowait: true });
  assert.equal(bytes?.codec, 'bytes');
  assert.deepEqual(Buffer.from(bytes!.data), Buffer.from([0, 255]));
  // The same text through System V, the face that always kept it so.
  const { msgget, msgsnd } = sysv(me);
  const id = await msgget(0x51a8, IPC_CREAT | 0o666);
  await msgsnd(id, 1, 'héllo');
  const q = await me.openMailbox(id);
  assert.equal((await q.receive({ nowait: true }))?.body, 'héllo');
  // mq_receive gives the bytes of either, and the size limit counts UTF-8 bytes.
  await mq.mq_send(d, 'é'.repeat(8), 0);
  assert.equal((await mq.mq_receive(d, 16)).data.toString(), 'é'.repeat(8));
  await assert.rejects(mq.mq_send(d, 'é'.repeat(9), 0), { code: 'EMSGSIZE' });
  await q.close();
  await mb.close();
  await mq.mq_close(d);
  await mq.mq_unlink('/faces-text');
});

/** Everything a FIFO's reader reads until the last writer closes. */
async function readFifo(
  name: string,
  write: () => Promise<{ code: number; stderr: string }>,
): Promise<string> {
  const reader = await openFifo(me, name, 'r');
  const [text, sent] = await Promise.all([
    (async () => {
      let all = '';
      for await (const chunk of reader) all += String(chunk);
      return all;
    })(),
    write(),
  ]);
  assert.equal(sent.code, 0, sent.stderr);
  return text;
}

test('postbox send to a FIFO writes each line with its newline, as fifo write and echo do', async () => {
  await mkfifo(me, 'faces-fifo');
  assert.equal(
    await readFifo('faces-fifo', () => postbox(['send', 'faces-fifo'], 'one\ntwo\n\nlast')),
    'one\ntwo\n\nlast\n',
  );
  assert.equal(await readFifo('faces-fifo', () => postbox(['send', 'faces-fifo', 'hello'])), 'hello\n');
  // And as `postbox fifo write` writes it.
  assert.equal(
    await readFifo('faces-fifo', () => postbox(['fifo', 'write', 'faces-fifo'], 'hello')),
    'hello\n',
  );
  // A mailbox that is not a FIFO gets the line alone.
  const plain = await me.createMailbox('faces-plain');
  assert.equal((await postbox(['send', 'faces-plain', 'hello'])).code, 0);
  assert.equal((await plain.receive({ nowait: true }))?.body, 'hello');
  await plain.close();
});

test('a stray message sent to a service by postbox send is counted by the server that dropped it', async () => {
  const server = await serve(me, 'faces-calc', { add: (a: number, b: number) => a + b });
  const sent = await postbox(['send', 'rpc:faces-calc', 'hello', '--receipt']);
  assert.equal(sent.code, 0, sent.stderr);
  // The receipt says the server took it; its handler has run by then, but polled to be safe.
  await until(
    async () => server.dropped,
    (n) => n === 1,
    10_000,
    'the stray message counted',
  );
  const caller = await connect({ socket: k.socket });
  assert.equal(await stub<{ add(a: number, b: number): number }>(caller, 'faces-calc').add(2, 3), 5);
  assert.equal(server.handled, 1);
  assert.equal(server.dropped, 1);
  await caller.close();
  await server.close();
});

test("stray messages sent to a server process's rpc:ctl mailbox are counted by its servers", async () => {
  const server = await serve(me, 'faces-ctl', { add: (a: number, b: number) => a + b });
  const ctl = `rpc:ctl:${me.id}`;
  const other = await connect({ socket: k.socket });
  const box = await other.openMailbox(ctl, { role: 'write' });
  // A well-formed CANCEL for a call that is not running is a cancel that crossed its answer: not
  // a stray. Sent first, so that once the strays are counted it has been read too.
  await box.send({ id: 12345 }, { type: 1 });
  await box.send('hi', { type: 1 }); // not an object
  await box.send({ to: 3 }, { type: 1 }); // no id
  await box.send({ id: 'x' }, { type: 1 }); // an id that is not a number
  await box.send({ id: 1 }, { type: 2 }); // a START with nowhere to start
  await box.send({ id: 1 }, { type: 9 }); // no such control message
  const sent = await postbox(['send', ctl, 'hello']);
  assert.equal(sent.code, 0, sent.stderr);
  await until(
    async () => server.controlDropped,
    (n) => n === 6,
    10_000,
    'the strays counted',
  );
  // The server still serves, and a second server of the process sees the same mailbox's count.
  assert.equal(await stub<{ add(a: number, b: number): number }>(other, 'faces-ctl').add(2, 3), 5);
  const second = await serve(me, 'faces-ctl-2', {});
  assert.equal(second.controlDropped, 6);
  assert.equal(server.dropped, 0);
  await second.close();
  await box.close();
  await other.close();
  await server.close();
});

test('a stray message sent to a port by postbox send is counted by the accept that dropped it', async () => {
  const port = await listen(me, 'faces-port');
  const sent = await postbox(['send', 'port:faces-port', 'hello']);
  assert.equal(sent.code, 0, sent.stderr);
  const dialer = await connect({ socket: k.socket });
  const [conn, accepted] = await Promise.all([dial(dialer, 'faces-port'), port.accept()]);
  // The stray came first: accept() took it, dropped it and went on to the dialer.
  assert.equal(port.dropped, 1);
  assert.equal(accepted.peer.id, dialer.id);
  conn.destroy();
  accepted.destroy();
  await dialer.close();
  await port.close();
});

test('a process that looked at a service or a FIFO through System V is no end of it', async () => {
  const looker = await connect({ socket: k.socket, name: 'looker' });
  const { msgctl, msgrcv, msgsnd } = sysv(looker);
  // An RPC service with its server gone fails a call at once (NoServerError), not after its timeout.
  const server = await serve(me, 'faces-looked', { add: (a: number, b: number) => a + b });
  const caller = await connect({ socket: k.socket });
  const calc = stub<{ add(a: number, b: number): number }>(caller, 'faces-looked', { timeout: 10_000 });
  assert.equal(await calc.add(1, 1), 2);
  const service = await me.openMailbox('rpc:faces-looked', { role: 'none' });
  assert.equal((await msgctl(service.id, IPC_STAT)).msg_qnum, 0);
  await server.close();
  await assert.rejects(calc.add(1, 2), { name: 'NoServerError' });
  // A FIFO's reader meets end of file when its writer closes.
  await mkfifo(me, 'faces-looked-fifo');
  const fifo = await me.openMailbox('faces-looked-fifo', { role: 'none' });
  const reader = await openFifo(caller, 'faces-looked-fifo', 'r');
  const writer = await openFifo(me, 'faces-looked-fifo', 'w');
  await msgctl(fifo.id, IPC_STAT);
  // Sending and receiving through the face still work on it.
  await msgsnd(fifo.id, 1, 'one\n');
  assert.equal((await msgrcv(fifo.id, 100)).mtext.toString(), 'one\n');
  writer.end('bye\n');
  let text = '';
  for await (const chunk of reader) text += String(chunk);
  assert.equal(text, 'bye\n');
  await fifo.close();
  await service.close();
  await caller.close();
  await looker.close();
});

test('System V calls on a POSIX queue still send and receive as the queue mode allows', async () => {
  const mq = posix(me);
  const d = await mq.mq_open('/faces-both', O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
  const other = await connect({ socket: k.socket });
  const { msgsnd, msgrcv } = sysv(other);
  const queue = await me.openMailbox('/faces-both', { role: 'none' });
  const id = queue.id;
  await msgsnd(id, 2, 'from sysv');
  assert.equal((await mq.mq_receive(d, 16)).data.toString(), 'from sysv');
  await mq.mq_send(d, 'from posix', 5);
  assert.equal((await msgrcv(id, 16)).mtext.toString(), 'from posix');
  await queue.close();
  await other.close();
  await mq.mq_close(d);
  await mq.mq_unlink('/faces-both');
});

test('a waiting msgrcv on a FIFO whose last writer closed says end of file, not no message of its type', async () => {
  await mkfifo(me, 'faces-eof');
  const fifo = await me.openMailbox('faces-eof', { role: 'none' });
  const writer = await me.openMailbox('faces-eof', { role: 'write' });
  await writer.send('last\n');
  await writer.close();
  const { msgrcv } = sysv(me);
  assert.equal((await msgrcv(fifo.id, 100)).mtext.toString(), 'last\n');
  await assert.rejects(msgrcv(fifo.id, 100), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ENOMSG');
    assert.match(err.message, /end of file/);
    return true;
  });
  await fifo.close();
});

test('System V calls on a pipe nobody reads, or a mailbox another process holds, fail as SysvErrors', async () => {
  const other = await connect({ socket: k.socket, name: 'holder' });
  const { msgsnd, msgrcv } = sysv(me);
  // A pipe whose read end has closed: write(2) says EPIPE, and so does msgsnd, in the face's class.
  const p = await pipe(other);
  // Its passkey makes this process one of the pipe's group, as a child handed an end would be.
  const look = await me.openMailbox(p.id, { role: 'none', passkey: p.passkey });
  p.reader.destroy();
  await until(
    () => look.stat(),
    (st) => st.readers === 0,
    10_000,
    'the read end closed',
  );
  await assert.rejects(msgsnd(p.id, 1, 'late'), (err: Error & { code?: string; syscall?: string }) => {
    assert.equal(err.name, 'SysvError');
    assert.equal(err.code, 'EPIPE');
    assert.equal(err.syscall, 'msgsnd');
    assert.match(err.message, new RegExp(`queue ${p.id}`));
    return true;
  });
  // An exclusive mailbox whose receive right the other process holds.
  const held = await other.createMailbox('faces-held', { policy: 'exclusive', mode: 0o666 });
  await held.send('mine');
  assert.equal((await held.receive({ nowait: true }))?.body, 'mine');
  await assert.rejects(msgrcv(held.id, 100), (err: Error & { code?: string; errno?: number }) => {
    assert.equal(err.name, 'SysvError');
    assert.equal(err.code, 'EBUSY');
    assert.equal(err.errno, 16);
    assert.match(err.message, /holder/);
    return true;
  });
  p.writer.destroy();
  await look.close();
  await other.close();
});

test('IPC_SET msg_qbytes 0 is EINVAL on a mailbox that is not a System V queue, and leaves it as it was', async () => {
  const box = await me.createMailbox('faces-qbytes', { capacity: 4 });
  const { msgctl, msgsnd, msgrcv } = sysv(me);
  await assert.rejects(msgctl(box.id, IPC_SET, { msg_qbytes: 0 }), (err: Error & { code?: string }) => {
    assert.equal(err.name, 'SysvError');
    assert.equal(err.code, 'EINVAL');
    assert.match(err.message, /not a System V queue/);
    return true;
  });
  assert.equal((await box.stat()).capacity, 4);
  await msgsnd(box.id, 1, 'still open');
  assert.equal((await msgrcv(box.id, 100)).mtext.toString(), 'still open');
  // Any other size is the queue's limit, as on a System V queue.
  await msgctl(box.id, IPC_SET, { msg_qbytes: 64 });
  assert.equal((await box.stat()).maxBytes, 64);
  await box.delete();
});

test("postbox rm of a nameless pipe whose creator has gone deletes it, having no name to unlink; an anonymous pipe is only its holders' to remove", async () => {
  // Their creator made them and left; another process still holds both ends, so they stay.
  const creator = await connect({ socket: k.socket, name: 'pipe-maker' });
  const holder = await connect({ socket: k.socket, name: 'pipe-holder' });
  try {
    const p = await pipe(creator);
    // A pipe made by hand, as pipe() made them before they had a passkey: anyone may open it.
    const plain = await creator.createMailbox(null, {
      endOnLastWriter: true,
      transient: true,
      system: true,
      mode: 0o666,
      role: 'write',
    });
    await holder.openMailbox(p.id, { role: 'read', passkey: p.passkey });
    await holder.openMailbox(p.id, { role: 'write' });
    const end = await holder.openMailbox(plain.id, { role: 'read' });
    await holder.openMailbox(plain.id, { role: 'write' }); // a writer left: no end of file yet
    // Settled while the command runs: its outcome is kept to look at after.
    const waited = end.receive().then(
      () => null,
      (e: unknown) => e,
    );
    await creator.close();
    // The anonymous pipe, unowned now, is still not the command's: it was never handed it.
    const refused = await postbox(['rm', `#${p.id}`]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /only the processes it was handed to/);
    assert.equal((await me.stat(p.id)).id, p.id);
    const rm = await postbox(['rm', `#${plain.id}`, '--json']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(JSON.parse(rm.stdout)[0].action, 'deleted');
    // Deleted at once, as rm deletes any mailbox: the waiting reader is told, and it is gone.
    assert.equal(((await waited) as { code?: string } | null)?.code, 'EIDRM');
    await assert.rejects(me.stat(plain.id), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
    // Its holder, in its group, may remove the anonymous pipe.
    await (await holder.openMailbox(p.id, { role: 'none' })).delete();
    await assert.rejects(me.stat(p.id), (e: unknown) => (e as { code?: string }).code === 'ENOENT');
  } finally {
    await creator.close().catch(() => {});
    await holder.close().catch(() => {});
  }
});

test('a forged dial request naming a mailbox no answer fits is dropped: accept() goes on to the next dialer', async () => {
  // Any process that may send to a port can write a request by hand. Its mailbox takes messages
  // of 1 byte: the answer's EMSGSIZE failed accept() itself, ending a server's accept loop.
  const port = await listen(me, 'forged-port');
  const forger = await connect({ socket: k.socket });
  const dialer = await connect({ socket: k.socket });
  try {
    const tiny = await forger.createMailbox(null, { maxMessageSize: 1, mode: 0o666 });
    const portBox = await forger.openMailbox('port:forged-port', { role: 'write' });
    await portBox.send(
      { v: 1, mailbox: tiny.id, style: 'stream' },
      { type: 0x7fff_ff01, codec: 'msgpack' }, // T_SYN, as a dialer sends it
    );
    const [conn, accepted] = await Promise.all([
      dial(dialer, 'forged-port'),
      port.accept({ timeout: 10_000 }),
    ]);
    assert.equal(accepted.peer.id, dialer.id);
    assert.equal(port.dropped, 1);
    conn.destroy();
    accepted.destroy();
  } finally {
    await forger.close();
    await dialer.close();
    await port.close();
  }
});

test('every face refuses a first argument that is not a process with EINVAL naming the face, not a TypeError from inside it', async () => {
  // A JavaScript caller who forgets the process, or passes a mailbox, met "Cannot read
  // properties of undefined" or "proc.createMailbox is not a function" from deep in the face.
  const box = await me.createMailbox(null);
  const faces: [string, (p: never) => unknown][] = [
    ['posix()', (p) => posix(p)],
    ['sysv()', (p) => sysv(p)],
    ['stub()', (p) => stub(p, 'svc')],
    ['call()', (p) => call(p, 'svc', 'm')],
    ['serve()', (p) => serve(p, 'svc', {})],
    ['listen()', (p) => listen(p, 'port')],
    ['dial()', (p) => dial(p, 'port')],
    ['mkfifo()', (p) => mkfifo(p, 'f')],
    ['openFifo()', (p) => openFifo(p, 'f', 'r')],
    ['pipe()', (p) => pipe(p)],
    ['spawn()', (p) => spawn(p, 'true', [], 'r')],
    ['pipeFromEnv()', (p) => pipeFromEnv(p, {})],
  ];
  for (const [name, face] of faces) {
    for (const wrong of [undefined, box, {}]) {
      const outcome = await (async () => face(wrong as never))().then(
        () => null,
        (e: unknown) => e,
      );
      const e = outcome as { code?: string; message?: string } | null;
      assert.equal(e?.code, 'EINVAL', `${name} with ${String(wrong)}: ${String(outcome)}`);
      assert.ok(e.message?.startsWith(`${name}: the first argument must be a process`), e.message);
    }
  }
  await box.delete();
});

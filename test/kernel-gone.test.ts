/**
 * What a program sees of each face when its kernel goes away while in use: killed (SIGKILL:
 * ECONNRESET) or stopped (SIGTERM: ESHUTDOWN). Nothing may wait for ever, and nothing may end as
 * if it had finished (docs/api.md, "When the kernel goes away").
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect, type PostboxError } from '../src/client/mod.js';
import { dial, listen } from '../src/faces/connection.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import { pipe } from '../src/faces/pipe.js';
import { O_CREAT, O_RDWR, posix } from '../src/faces/posix.js';
import { type CallContext, serve, stub } from '../src/faces/rpc.js';
import { IPC_CREAT, sysv } from '../src/faces/sysv.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const BOUND_MS = 10_000;

/** `postbox ARGS` with a standard input the test holds open, and its output gathered. */
function command(
  k: TestKernel,
  args: string[],
): { proc: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [CLI, ...args], { env: k.env, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.once('close', (code) => resolve(code)));
  return { proc, stderr: () => stderr, exited };
}

for (const [signal, code, says] of [
  ['SIGKILL', 'ECONNRESET', /the connection to the kernel at .* was lost \(ECONNRESET\)/],
  ['SIGTERM', 'ESHUTDOWN', /the kernel is shutting down \(ESHUTDOWN\)/],
] as const) {
  test(`send and fifo write reading their input end when the kernel goes (${signal}): exit 1, ${code}`, async () => {
    // They waited for their next line of input, however long, before they found out: a
    // `tail -f log | postbox send q` ran on, sending nothing, after its kernel was gone.
    const k = await startTestKernel();
    const commands: ReturnType<typeof command>[] = [];
    try {
      const me = await connect({ socket: k.socket });
      const q = await me.openMailbox<string>('q', { create: { system: true } });
      await mkfifo(me, 'f');
      const reader = openFifo(me, 'f', 'r');
      const send = command(k, ['send', 'q']);
      const write = command(k, ['fifo', 'write', 'f']);
      commands.push(send, write);
      // Each has its first line through, and waits on its input for the next.
      send.proc.stdin!.write('one\n');
      write.proc.stdin!.write('one\n');
      assert.equal((await within(q.receive(), BOUND_MS, 'the line sent'))?.body, 'one');
      const fifo = await reader;
      fifo.on('error', () => {}); // the kernel's going fails it too
      const [chunk] = (await within(once(fifo, 'data'), BOUND_MS, 'the line written')) as [Buffer];
      assert.equal(chunk.toString(), 'one\n');
      k.proc.kill(signal);
      for (const [c, name] of [
        [send, 'send'],
        [write, 'fifo write'],
      ] as const) {
        const exit = await within(c.exited, BOUND_MS, `${name} to exit once the kernel is gone`);
        assert.equal(exit, 1, c.stderr());
        assert.match(c.stderr(), says);
      }
      assert.match(send.stderr(), /^postbox send: line 2: /);
    } finally {
      for (const c of commands) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
      await k.stop();
    }
  });
}

/** The code a promise fails with, within the bound; one that resolves fails the test. */
async function failureOf(what: string, p: Promise<unknown>): Promise<string> {
  try {
    await within(p, BOUND_MS, what);
  } catch (err) {
    const code = (err as PostboxError).code;
    assert.ok(code !== undefined, `${what}: ${String(err)}`);
    return code;
  }
  assert.fail(`${what} succeeded after the kernel went`);
}

/** Resolves with the first 'error' a stream or connection emits. */
function errorOf(emitter: NodeJS.EventEmitter): Promise<never> {
  return new Promise((_, reject) => emitter.once('error', reject));
}

for (const [signal, code] of [
  ['SIGKILL', 'ECONNRESET'],
  ['SIGTERM', 'ESHUTDOWN'],
] as const) {
  test(`every face fails with ${code} when the kernel goes (${signal}), as docs/api.md's table says`, async () => {
    const k = await startTestKernel();
    try {
      const a = await connect({ socket: k.socket, name: 'a' });
      const b = await connect({ socket: k.socket, name: 'b' });
      // Each failure is looked for from the start: they come together when the kernel goes.
      const waits: [string, Promise<string>][] = [];
      const wait = (what: string, p: Promise<unknown>): void => {
        waits.push([what, failureOf(what, p)]);
      };
      const jobs = await a.openMailbox<string>('jobs', { create: { system: true } });
      wait('receive', a.receive());
      wait(
        'for await',
        (async () => {
          for await (const _ of jobs.messages()) assert.fail('no message was sent');
        })(),
      );
      wait('consume', jobs.consume(() => {}).closed);
      const { reader, writer } = await pipe(a);
      wait('pipe reader', errorOf(reader.resume()));
      await mkfifo(a, 'f');
      wait("openFifo 'w' waiting for a reader", openFifo(a, 'f', 'w'));
      const port = await listen(a, 'echo');
      const accepting = port.accept();
      const conn = await dial(b, 'echo');
      const server = await accepting;
      wait('connection receive', conn.receive());
      // Read as a stream, a connection emits the error; read with receive(), receive() rejects.
      wait('accepted connection read as a stream', errorOf(server.resume()));
      wait('accept', port.accept());
      // A connection neither read nor written emits its 'error' and 'close' too, as an idle
      // net.Socket does: it learned nothing until it was used.
      const idlePort = await listen(b, 'idle');
      const idleAccepting = idlePort.accept();
      const idle = await dial(a, 'idle');
      const idleServer = await idleAccepting;
      for (const [what, c] of [
        ['idle dialed connection', idle],
        ['idle accepted connection', idleServer],
      ] as const) {
        wait(what, errorOf(c));
        wait(
          `${what}'s close`,
          once(c, 'close').then(() => Promise.reject(c.errored)),
        );
      }
      let aborted: unknown = null;
      const rpc = await serve(a, 'calc', {
        wait: (ctx: CallContext) =>
          new Promise((_, reject) =>
            ctx.signal.addEventListener('abort', () => {
              aborted = ctx.signal.reason;
              reject(ctx.signal.reason);
            }),
          ),
      });
      const calc = stub<{ wait(): Promise<void> }>(b, 'calc');
      wait('rpc call in flight', calc.wait());
      const pq = posix(b);
      const mqd = await pq.mq_open('/q', O_CREAT | O_RDWR, 0o644, { mq_maxmsg: 1, mq_msgsize: 64 });
      wait('mq_receive', pq.mq_receive(mqd, 64));
      const v = sysv(b);
      const msqid = await v.msgget(0x1234, 0o666 | IPC_CREAT);
      wait('msgrcv', v.msgrcv(msqid, 64));
      // Each is waiting in the kernel (the pipe writer is idle, as most are).
      await until(
        async () => (await a.processes()).reduce((n, p) => n + p.blockedOn.length, 0),
        (n) => n >= 6,
        BOUND_MS,
        'the calls to wait in the kernel',
      );
      const monitor = b.monitor('a');
      const monitorFailure = signal === 'SIGKILL' ? failureOf('monitor', monitor) : null;
      // The kernel answers b in order: once a later call is answered, the monitor is set up. A
      // monitor asked for while the kernel shuts down is refused (ESHUTDOWN), not set up.
      await b.processes();
      k.proc.kill(signal);
      for (const [what, failure] of waits) assert.equal(await failure, code, what);
      assert.equal((await a.closed)?.code, code);
      // An idle writer learns at its next write: its callback may say yes (writes are
      // pipelined), and the failure comes as its 'error'.
      const writerError = failureOf('pipe writer', errorOf(writer));
      writer.write('late');
      assert.equal(await writerError, code);
      assert.equal((await within(rpc.closed, BOUND_MS, "the server's closed"))?.code, code);
      assert.ok(aborted !== null, "the handler's ctx.signal aborted");
      if (monitorFailure !== null) assert.equal(await monitorFailure, 'ECONNRESET');
      else assert.equal((await within(monitor, BOUND_MS, 'monitor')).reason, 'shutdown');
      // Every later call fails with the same error, at once.
      assert.equal(await failureOf('a later send', b.send('a', 'x')), code);
      assert.equal(await failureOf('a later rpc call', calc.wait()), code);
    } finally {
      await k.stop();
    }
  });
}

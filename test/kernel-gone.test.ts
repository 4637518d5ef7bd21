/**
 * What a program sees of each face when its kernel goes away while in use: killed (SIGKILL:
 * ECONNRESET) or stopped (SIGTERM: ESHUTDOWN). Nothing may wait for ever, and nothing may end as
 * if it had finished (docs/api.md, "When the kernel goes away").
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect } from '../src/client/mod.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';

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

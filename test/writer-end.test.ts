/**
 * A pipe's or FIFO's writer has ended (end()'s callback without an error, 'finish') only once the
 * kernel has its end: then the reader gets every byte written, then end of file. A writer whose
 * process the kernel has ended (silent past its heartbeat) or lost ends with that error. It
 * finished quietly after its process had been ended, as if its reader would get it all. Found
 * while explaining a chaos round (test/chaos.test.ts, heartbeat, seed 318) whose FIFO reader got
 * 480 bytes fewer than its writer had logged as written and ended.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type PostboxError, type PostboxProcess } from '../src/client/mod.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import type { PipeReader } from '../src/faces/pipe.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const WRITER = fileURLToPath(new URL('./fixtures/fifo-writer.js', import.meta.url));
const BOUND_MS = 10_000;

/** Every byte the reader gets before its end of file. */
async function readAll(r: PipeReader): Promise<number> {
  let bytes = 0;
  for await (const chunk of r) bytes += (chunk as Buffer).length;
  return bytes;
}

/**
 * Runs test/fixtures/fifo-writer.ts over TCP in `mode`; once it has got to `ready` (what the
 * FIFO shows), stops it until the kernel has ended it for silence, and continues it. Returns
 * what it printed and how many bytes the reader got.
 */
async function writerEndedForSilence(
  mode: 'idle' | 'full',
  ready: (stat: { count: number; bytes: number; waitingSenders: unknown[] }) => boolean,
): Promise<{ printed: string[]; read: number }> {
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '200'] });
  let me: PostboxProcess | null = null;
  const env: NodeJS.ProcessEnv = { ...kernel.env, POSTBOX_URL: kernel.tcpUrl! };
  delete env.POSTBOX_SOCKET;
  const child = spawn(process.execPath, [WRITER, 'f', mode], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    me = await connect({ socket: kernel.socket });
    await mkfifo(me, 'f');
    const r = await openFifo(me, 'f', 'r');
    const out = new ChildOutput(child);
    const exited = once(child, 'close');
    await within(out.line(mode === 'full' ? 'ending' : 'written'), BOUND_MS, 'the writer writing');
    await until(() => me!.stat(r.mailbox.id), ready, BOUND_MS, 'the writes in the FIFO');
    const down = me.monitor('fifo-writer');
    await me.lookup('fifo-writer'); // the monitor is set before it stops
    child.kill('SIGSTOP');
    assert.equal((await within(down, BOUND_MS, 'the writer ended')).reason, 'timeout');
    child.kill('SIGCONT');
    await within(out.line('done'), BOUND_MS, 'the writer ending');
    await exited;
    const read = await within(readAll(r), BOUND_MS, 'the reader reaching end of file');
    return { printed: out.text.trim().split('\n'), read };
  } finally {
    child.kill('SIGKILL');
    await me?.close();
    await kernel.stop();
  }
}

test('a FIFO writer that ends after the kernel has ended its process for silence fails with ETIMEDOUT', {
  timeout: 60_000,
}, async () => {
  // Every write is in the FIFO; the end comes after the kernel has let the process go.
  const { printed, read } = await writerEndedForSilence('idle', (s) => s.bytes === 30_000);
  assert.ok(printed.includes('end ETIMEDOUT'), printed.join(' / '));
  assert.ok(printed.includes('error ETIMEDOUT'), printed.join(' / '));
  assert.ok(!printed.includes('finish'), printed.join(' / '));
  assert.equal(read, 30_000);
});

test('a FIFO writer ending while its last writes wait for room, as the kernel ends its process, fails with ETIMEDOUT and the reader gets a prefix', {
  timeout: 60_000,
}, async () => {
  // What the chaos round saw: the writes still waiting for room went with the process, and
  // end()'s callback said so, with the error its caller must look at.
  const { printed, read } = await writerEndedForSilence('full', (s) => s.waitingSenders.length > 0);
  assert.ok(printed.includes('end ETIMEDOUT'), printed.join(' / '));
  assert.ok(printed.includes('error ETIMEDOUT'), printed.join(' / '));
  assert.ok(!printed.includes('finish'), printed.join(' / '));
  assert.ok(read < 100_000 && read % 10_000 === 0, `the reader got ${read} bytes`);
});

test("a FIFO writer that ends after its kernel has gone fails with the kernel's error", {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel();
  try {
    const me = await connect({ socket: kernel.socket });
    await mkfifo(me, 'f');
    const r = await openFifo(me, 'f', 'r');
    const w = await openFifo(me, 'f', 'w');
    w.write('all of it');
    await until(
      () => me.stat(r.mailbox.id),
      (s) => s.count === 1,
      BOUND_MS,
      'the write in the FIFO',
    );
    kernel.proc.kill('SIGKILL');
    assert.equal((await within(me.closed, BOUND_MS, 'the kernel gone'))?.code, 'ECONNRESET');
    const errored = once(w, 'error');
    const ended = new Promise<PostboxError | null>((resolve) =>
      w.end((e?: Error | null) => resolve((e as PostboxError | undefined) ?? null)),
    );
    assert.equal((await within(ended, BOUND_MS, 'the end'))?.code, 'ECONNRESET');
    assert.equal(((await errored)[0] as PostboxError).code, 'ECONNRESET');
  } finally {
    await kernel.stop();
  }
});

test('a FIFO writer ended and then its process closed finishes: the kernel had all of it', {
  timeout: 60_000,
}, async () => {
  // The process's own close() is no failure of the writer's end: the kernel answers the
  // goodbye after all the writes and the end before it, and closes what the process held open.
  const kernel = await startTestKernel();
  try {
    const me = await connect({ socket: kernel.socket });
    const other = await connect({ socket: kernel.socket });
    await mkfifo(me, 'f');
    const r = await openFifo(other, 'f', 'r');
    const w = await openFifo(me, 'f', 'w');
    for (let i = 0; i < 5; i++) w.write(Buffer.alloc(1000, 'x'));
    w.end();
    await me.close();
    await within(finished(w), BOUND_MS, 'the writer finishing');
    assert.equal(await within(readAll(r), BOUND_MS, 'the reader reaching end of file'), 5000);
    await other.close();
  } finally {
    await kernel.stop();
  }
});

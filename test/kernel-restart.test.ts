/**
 * A kernel killed under load, and started again where its processes knew it: on the same Unix
 * socket, or on the same TCP port. Everything in flight at the kill must settle with ECONNRESET
 * (nothing hangs), and a worker written as docs/api.md says ("When the kernel goes away": join
 * again and set up what it owned) must carry on with the new kernel by itself. Nothing survives
 * the old kernel: durability is a later milestone, so the new kernel's mailbox starts empty.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type ConnectOptions, connect, type PostboxError, type PostboxProcess } from '../src/client/mod.js';
import { freePortBelowEphemeral, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const BOUND_MS = 10_000;

/** Where the processes find the kernel: its Unix socket, or its TCP address and token. */
type KernelAddress = Pick<ConnectOptions, 'socket' | 'url' | 'token'>;

/** What a failure says, as a code: ECONNRESET is what the kill must give everywhere. */
const codeOf = (e: unknown): string => (e as PostboxError).code ?? String(e);

/** Waits until `promise` rejects and gives its code; a promise that resolves fails the test. */
async function failureOf(promise: Promise<unknown>, what: string): Promise<string> {
  try {
    await within(promise, BOUND_MS, what);
  } catch (err) {
    return codeOf(err);
  }
  assert.fail(`${what} succeeded after the kernel was killed`);
}

/**
 * The worker of docs/api.md: joins, opens `jobs`, takes jobs until its kernel goes, and again.
 * `seen` has the jobs of each life (one entry per kernel joined), `lives` how each ended.
 */
function startWorker(address: KernelAddress): {
  seen: string[][];
  lives: (string | null)[];
  /** Throws what ended the worker's loop, if something did: a join or open that failed. */
  check(): void;
  stop(): Promise<void>;
} {
  const state = {
    seen: [] as string[][],
    lives: [] as (string | null)[],
    me: null as PostboxProcess | null,
    stopping: false,
  };
  const done = (async () => {
    while (!state.stopping) {
      const me = await connect({ ...address, name: 'worker', waitForKernel: 20_000 });
      state.me = me;
      const jobs = await me.openMailbox<string>('jobs', { create: {} });
      const seen: string[] = [];
      state.seen.push(seen);
      const work = (async () => {
        for await (const m of jobs.messages()) seen.push(m.body);
      })().catch(() => {});
      const err = await me.closed;
      await work;
      state.lives.push(err === null ? null : err.code);
      if (err === null) break;
    }
  })();
  // A worker that could not join fails the test through check() or stop(), not as an unhandled
  // rejection.
  let failure: unknown = null;
  done.catch((err: unknown) => {
    failure = err;
  });
  return {
    seen: state.seen,
    lives: state.lives,
    check() {
      if (failure !== null) throw failure;
    },
    async stop() {
      state.stopping = true;
      await state.me?.close();
      await done;
    },
  };
}

/** The scenario, over either transport. */
async function killAndRestart(transport: 'unix' | 'tcp'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-restart-'));
  const socket = join(dir, 'k.sock');
  // Over TCP a fixed port, so that the new kernel is where the old one was.
  const tcpPort = transport === 'tcp' ? await freePortBelowEphemeral() : undefined;
  let kernel: TestKernel | null = await startTestKernel({ socket, tcpPort });
  const address: KernelAddress =
    transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket };
  const worker = startWorker(address);
  const others: PostboxProcess[] = [];
  try {
    await until(
      async () => worker.seen.length,
      (n) => n === 1,
      BOUND_MS,
      'the worker joined',
    );

    // Load, and one of each kind of wait, each in a Postbox process (connection) of its own.
    const producer = await connect({ ...address, name: 'producer' });
    const waiter = await connect({ ...address, name: 'waiter' });
    others.push(producer, waiter);
    const jobs = await producer.openMailbox<string>('jobs');
    const full = await waiter.createMailbox('full', { capacity: 1 });
    const empty = await waiter.createMailbox('empty');
    await full.send('fills it');
    const blockedSend = full.send('waits for room');
    const waitingReceive = empty.receive();
    const consumer = empty.consume(() => {});
    const pending = [blockedSend, waitingReceive, consumer.closed];
    for (const p of pending) p.catch(() => {});
    await until(
      () => full.stat(),
      (s) => s.waitingSenders.length === 1,
      BOUND_MS,
      'the send waits for room',
    );

    // The producer keeps up to 256 sends outstanding until one fails.
    let sent = 0;
    const producing = (async () => {
      const window: Promise<unknown>[] = [];
      for (;;) {
        const p = jobs.send(`job ${sent++}`);
        p.catch(() => {}); // all but the one awaited fail unread after the kill
        window.push(p);
        if (window.length >= 256) await window.shift();
      }
    })();
    producing.catch(() => {});
    await until(
      async () => worker.seen[0]!.length,
      (n) => n >= 2000,
      BOUND_MS,
      'the worker took 2,000 jobs',
    );

    kernel.proc.kill('SIGKILL');
    await once(kernel.proc, 'exit');
    await kernel.stop();
    kernel = null;

    assert.equal(await failureOf(producing, 'the producer'), 'ECONNRESET');
    assert.equal(await failureOf(blockedSend, 'the send waiting for room'), 'ECONNRESET');
    assert.equal(await failureOf(waitingReceive, 'the waiting receive'), 'ECONNRESET');
    assert.equal(await failureOf(consumer.closed, "the consumer's closed"), 'ECONNRESET');
    for (const p of [producer, waiter]) {
      const err = await within(p.closed, BOUND_MS, 'closed');
      assert.equal(err?.code, 'ECONNRESET');
      // Later calls fail at once too, instead of waiting for a kernel that is gone.
      assert.equal(await failureOf(p.usage(), 'a call after the loss'), 'ECONNRESET');
    }
    await until(
      async () => worker.lives.length,
      (n) => n === 1,
      BOUND_MS,
      "the worker's first life ended",
    );
    assert.deepEqual(worker.lives, ['ECONNRESET']);
    // What the worker took came in order, each job once, and no more than was sent.
    const first = worker.seen[0]!;
    assert.ok(first.length >= 2000 && first.length <= sent, `${first.length} taken of ${sent} sent`);
    for (const [i, body] of first.entries()) assert.equal(body, `job ${i}`);

    // A new kernel on the same path: the worker joins it by itself, and jobs flow again.
    kernel = await startTestKernel({ socket, tcpPort });
    await until(
      async () => {
        worker.check();
        return worker.seen.length;
      },
      (n) => n === 2,
      BOUND_MS,
      'the worker joined the new kernel',
    );
    const again = await connect({ ...address, name: 'producer' });
    others.push(again);
    const jobs2 = await again.openMailbox<string>('jobs');
    const bodies = Array.from({ length: 500 }, (_, i) => `new job ${i}`);
    await jobs2.sendMany(bodies);
    await until(
      async () => worker.seen[1]!.length,
      (n) => n === 500,
      BOUND_MS,
      'the worker took the new jobs',
    );
    assert.deepEqual(worker.seen[1], bodies);
    const names = (await again.mailboxes()).map((m) => m.name);
    assert.ok(
      !names.includes('full') && !names.includes('empty'),
      `old mailboxes are gone: ${names.join(', ')}`,
    );

    await worker.stop();
    assert.deepEqual(worker.lives, ['ECONNRESET', null]);
  } finally {
    for (const p of others) await p.close().catch(() => {});
    await worker.stop().catch(() => {});
    await kernel?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'a kernel killed under load: everything in flight fails with ECONNRESET, and a worker carries on with a new kernel on the same socket',
  {
    timeout: 60_000,
  },
  () => killAndRestart('unix'),
);

test(
  'the same over TCP: the worker carries on with a new kernel on the same port',
  {
    timeout: 60_000,
  },
  () => killAndRestart('tcp'),
);

/**
 * Postbox inside worker threads (api.md, "Worker threads, child processes and cluster"): the
 * module loads in a worker (the "Module did not self-register" crashes of native IPC addons,
 * USERS.md #13), each worker's connect() is a process of its own, and worker.terminate() is a
 * kill the kernel sees at once, leaving the main thread's process untouched.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { serve } from '../src/faces/rpc.js';
import { kernelForTests } from './helpers/kernel.js';

const WORKER = new URL('./fixtures/thread-worker.js', import.meta.url);

describe('worker threads', { timeout: 60_000 }, () => {
  const k = kernelForTests();

  function start(mode: 'echo' | 'busy'): { worker: Worker; ready: Promise<{ id: number; took?: string }> } {
    const worker = new Worker(WORKER, { workerData: { socket: k.env().POSTBOX_SOCKET, mode } });
    worker.on('error', () => {});
    const ready = new Promise<{ id: number; took?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('exit', (code) => reject(new Error(`the worker exited (${code}) before it was ready`)));
    });
    return { worker, ready };
  }

  test('each worker is a process of its own, and ends with its close()', async () => {
    const me = await k.join({ name: 'threads-main' });
    const workers = [start('echo'), start('echo'), start('echo')];
    const ids = (await Promise.all(workers.map((w) => w.ready))).map((r) => r.id);
    assert.equal(new Set([me.id, ...ids]).size, 4);
    const pids = new Set((await me.processes()).filter((p) => ids.includes(p.id)).map((p) => p.pid));
    assert.deepEqual([...pids], [process.pid], 'one OS process, four kernel processes');
    for (const id of ids) await me.send(id, `to ${id}`);
    const echoes = [];
    for (let i = 0; i < ids.length; i++) {
      const m = await me.receive({ timeout: 10_000 });
      echoes.push([m!.sender, m!.body]);
    }
    assert.deepEqual(
      echoes.sort(([a], [b]) => Number(a) - Number(b)),
      ids.map((id) => [id, `echo to ${id}`]).sort(([a], [b]) => Number(a) - Number(b)),
    );
    const exits = workers.map((w) => once(w.worker, 'exit'));
    for (const id of ids) await me.send(id, 'stop');
    assert.deepEqual(
      (await Promise.all(exits)).map(([code]) => code),
      [0, 0, 0],
    );
    for (const id of ids) await assert.rejects(me.lookup(id), { code: 'ESRCH' });
  });

  test('worker.terminate() in a loop, a waiting send, a receive and an RPC call: the kernel ends it as a kill', async () => {
    const me = await k.join();
    const jobs = await me.createMailbox<string>('jobs', { mode: 0o666 });
    await jobs.sendMany(['job 1', 'job 2', 'job 3']);
    const full = await me.createMailbox<string>('full', { capacity: 1, mode: 0o666 });
    await full.send('already there');
    let called: () => void = () => {};
    const calling = new Promise<void>((resolve) => {
      called = resolve;
    });
    let abortedWith: (reason: unknown) => void = () => {};
    const aborted = new Promise<unknown>((resolve) => {
      abortedWith = resolve;
    });
    const server = await serve(me, 'held', {
      async hang(ctx: { signal: AbortSignal }) {
        called();
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        abortedWith(ctx.signal.reason);
      },
    });
    const { worker, ready } = start('busy');
    const { id, took } = await ready;
    assert.equal(took, 'job 1');
    await calling;
    const down = me.monitor(id);
    // The monitor is in place once the kernel has answered a later call.
    await me.lookup(id);
    await worker.terminate();
    assert.equal((await down).reason, 'crash');
    const stat = await jobs.stat();
    assert.deepEqual(
      [stat.count, stat.inflight],
      [2, 0],
      'the jobs pushed ahead went back; the one taken did not',
    );
    const fullStat = await full.stat();
    assert.deepEqual([fullStat.count, fullStat.waitingSenders], [1, []], 'its waiting send was withdrawn');
    await assert.rejects(me.stat(`own-${id}`), { code: 'ENOENT' });
    // The server's handler of its call is told the caller has gone.
    assert.ok(await aborted);
    // The main thread's process carries on.
    await me.send(me.id, 'still here');
    assert.equal((await me.receive({ timeout: 5000 }))?.body, 'still here');
    assert.equal((await jobs.receive({ nowait: true }))?.body, 'job 2');
    await server.close(); // once its handlers have finished
  });
});

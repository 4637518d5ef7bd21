/**
 * The handles postbox/sysv keeps on queues are bounded: a worker that sends to many queues that
 * another process creates and removes must not hold a handle on each for as long as it lives.
 * Handles are seen from outside, as the kernel counts them: a queue's `opens`, and the kernel's
 * limit of handles per process.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IPC_CREAT, IPC_PRIVATE, IPC_RMID, SysvError, sysv } from '../src/faces/sysv.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

/** The face's bound (MAX_QUEUE_HANDLES in src/faces/sysv.ts). */
const BOUND = 1024;

describe('postbox/sysv handles on queues', { timeout: 120_000 }, () => {
  const k = kernelForTests();

  test('past the bound the least recently used is closed, not one a call is waiting on; reopening is unseen', async () => {
    const owner = await k.join();
    const workerProc = await k.join();
    const o = sysv(owner);
    const w = sysv(workerProc);
    const first = await o.msgget(IPC_PRIVATE, IPC_CREAT | 0o666);
    const busy = await o.msgget(IPC_PRIVATE, IPC_CREAT | 0o666);
    await w.msgsnd(first, 1, 'kept');
    const watch = await owner.openMailbox(first);
    const busyWatch = await owner.openMailbox(busy);
    const opens = (await watch.stat()).opens;
    // A msgrcv waiting on a queue the worker used before all the others.
    const waiting = w.msgrcv(busy, 100, 0);
    await until(
      () => busyWatch.stat(),
      (s) => s.waitingReceivers.includes(workerProc.id),
      10_000,
      'msgrcv waiting',
    );
    const busyOpens = (await busyWatch.stat()).opens;
    for (let i = 0; i < BOUND; i++) {
      const id = await o.msgget(IPC_PRIVATE, IPC_CREAT | 0o666);
      await w.msgsnd(id, 1, 'x');
      await o.msgctl(id, IPC_RMID);
    }
    assert.equal((await watch.stat()).opens, opens - 1, "the worker's handle on the first queue was closed");
    assert.equal((await busyWatch.stat()).opens, busyOpens, 'the handle a msgrcv waits on stays');
    await o.msgsnd(busy, 1, 'late');
    assert.equal((await waiting).mtext.toString(), 'late');
    assert.equal((await w.msgrcv(first, 100, 0)).mtext.toString(), 'kept', 'opened again on use');
    assert.equal((await watch.stat()).opens, opens);
    await watch.close();
    await busyWatch.close();
    await o.msgctl(first, IPC_RMID);
    await o.msgctl(busy, IPC_RMID);
  });
});

describe('postbox/sysv after EIDRM', { timeout: 60_000 }, () => {
  // A few handles per process: one kept on each removed queue would soon be refused. Two parts
  // keep none: the kernel drops every handle on a removed mailbox, and the face forgets its
  // handle on EIDRM. The kernel's part alone passes this test; it fails only if both leak.
  const k = kernelForTests({ args: ['--max-per-process', '8'] });

  test('a call that fails with EIDRM closes its handle on the removed queue', async () => {
    const owner = await k.join();
    const workerProc = await k.join();
    const o = sysv(owner);
    const w = sysv(workerProc);
    for (let i = 0; i < 20; i++) {
      const id = await o.msgget(IPC_PRIVATE, IPC_CREAT | 0o666);
      const watch = await owner.openMailbox(id);
      let settled = false;
      const failed = w.msgrcv(id, 100, 0).then(
        () => assert.fail('msgrcv on a removed queue returned'),
        (err: unknown) => {
          settled = true;
          return err;
        },
      );
      await until(
        () => watch.stat(),
        // Refused at once (no handle left to open) is a failure too: the assertion below says why.
        (s) => s.waitingReceivers.includes(workerProc.id) || settled,
        10_000,
        `msgrcv ${i} waiting`,
      );
      await watch.close();
      await o.msgctl(id, IPC_RMID);
      const err = await failed;
      assert.ok(err instanceof SysvError && err.code === 'EIDRM', `cycle ${i}: ${String(err)}`);
    }
  });
});

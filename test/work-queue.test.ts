/**
 * A mailbox as a work queue, as users of Redis lists, BullMQ or RabbitMQ's competing consumers
 * run one: workers that stop on a signal, and what an operator sees of each worker. Against a
 * real kernel process.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  connect,
  type Mailbox,
  type MailboxStat,
  type MessageIterator,
  type PostboxProcess,
} from '../src/client/mod.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

describe('work queues', { timeout: 60_000 }, () => {
  let kernel: TestKernel;
  let worker: PostboxProcess;
  let producer: PostboxProcess;

  before(async () => {
    kernel = await startTestKernel();
    worker = await connect({ socket: kernel.socket, name: 'worker' });
    producer = await connect({ socket: kernel.socket });
  });
  after(async () => {
    await worker.close();
    await producer.close();
    assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
  });

  // Each way a worker's loop can read: pushed ahead, or one receive at a time (README's advice
  // for fair sharing, priority mailboxes, lowest type first).
  const loops: {
    name: string;
    order: 'fifo' | 'priority';
    open: (box: Mailbox<number>, signal: AbortSignal) => MessageIterator<number>;
  }[] = [
    { name: 'pushed ahead', order: 'fifo', open: (b, signal) => b.messages({ signal }) },
    { name: 'prefetch 0', order: 'fifo', open: (b, signal) => b.messages({ prefetch: 0, signal }) },
    { name: 'a priority mailbox', order: 'priority', open: (b, signal) => b.messages({ signal }) },
    { name: 'type -9', order: 'fifo', open: (b, signal) => b.messages({ type: -9, signal }) },
  ];
  for (const l of loops) {
    test(`graceful shutdown, ${l.name}: the signal ends the loop without an error, after the job in hand, waiting or not; the rest stay queued in order`, async () => {
      const box = await worker.createMailbox<number>(null, { mode: 0o666, order: l.order });
      const out = await producer.openMailbox<number>(box.id);
      await out.sendMany([1, 2, 3, 4]);
      const stop = new AbortController();
      const done: number[] = [];
      // Aborted while the loop body runs (the job in hand finishes, no next job is started).
      for await (const m of l.open(box, stop.signal)) {
        if (m.body === 2) stop.abort();
        done.push(m.body);
      }
      assert.deepEqual(done, [1, 2]);
      // Aborted while the loop waits for the next job: the jobs left come first, in order.
      const idle = new AbortController();
      const later: number[] = [];
      for await (const m of l.open(box, idle.signal)) {
        later.push(m.body);
        if (later.length === 2)
          void until(
            () => box.stat(),
            (s) => s.count === 0 && s.waitingReceivers.includes(worker.id),
          ).then(() => idle.abort());
      }
      assert.deepEqual(later, [3, 4]);
      await box.delete();
    });
  }

  test('an operator sees each worker: ps shows the jobs it holds (in hand, pushed ahead) and shows waiting on receive only one that waits; stat leaves out a worker whose jobs hold its credit', async () => {
    const box = await producer.createMailbox<number>('ops-jobs', { mode: 0o666 });
    const jobs = await worker.openMailbox<number>(box.id);
    const idle = await connect({ socket: kernel.socket, name: 'idle-worker' });
    const idleBox = await idle.openMailbox<number>(box.id);
    const it = jobs.messages({ prefetch: 2, holdCredit: true });
    await box.sendMany([1, 2, 3]);
    const first = await it.next();
    assert.equal(first.value?.body, 1);
    // Its take went out at once, ahead of this call: 1 in hand, 2 pushed ahead, 3 queued.
    const row = async (id: number) => (await worker.processes()).find((p) => p.id === id)!;
    const busy = await row(worker.id);
    assert.deepEqual(busy.holds, ["mailbox 'ops-jobs': 1 in hand, 1 pushed ahead"]);
    assert.deepEqual(busy.blockedOn, [], 'a worker with no credit left waits for nothing');
    assert.deepEqual((await box.stat()).waitingReceivers, []);
    // A worker waiting in a receive (the queue empty) is the one blocked on it.
    assert.equal((await idleBox.receive())?.body, 3);
    const waiting = idleBox.receive();
    await until(
      () => box.stat(),
      (s) => s.waitingReceivers.length > 0,
      10_000,
      'the idle worker to wait',
    );
    assert.deepEqual((await box.stat()).waitingReceivers, [idle.id]);
    const idleRow = await row(idle.id);
    assert.deepEqual(idleRow.blockedOn, ["receive mailbox 'ops-jobs'"]);
    assert.deepEqual(idleRow.holds, []);
    await box.send(4);
    assert.equal((await waiting)?.body, 4);
    // The job done, its credit back: nothing in hand, and the worker has credit to wait with.
    it.returnCredit(1);
    const done = await until(
      () => row(worker.id),
      (r) => r.holds.length === 1 && !r.holds[0]!.includes('in hand'),
      10_000,
      'the credit to come back',
    );
    assert.deepEqual(done.holds, ["mailbox 'ops-jobs': 1 pushed ahead"]);
    assert.deepEqual(done.blockedOn, []);
    assert.equal((await it.next()).value?.body, 2);
    it.returnCredit(1);
    const drained = await until(
      () => row(worker.id),
      (r) => r.holds.length === 0 && r.blockedOn.length === 1,
      10_000,
      'the worker to wait again',
    );
    assert.deepEqual(drained.blockedOn, ["receive mailbox 'ops-jobs'"]);
    await it.return();
    await idle.close();
    await box.delete();
  });

  // What ps's HOLDS says of each kind of worker with jobs under way (their handlers or loop
  // bodies held on a gate), on a fifo and on a priority mailbox, 3 jobs sent: jobs in hand (taken
  // with holdCredit, credit not back), jobs pushed ahead; what a worker without holdCredit took
  // is its own and not shown. A consumer with holdCredit on a priority mailbox, which receives
  // one job at a time, showed nothing: the kernel forgot each receive once it was taken.
  const kinds: {
    name: string;
    /** Starts the worker; `begun` records each job whose handler or loop body has started. */
    start: (box: Mailbox<number>, gate: Promise<void>, begun: number[]) => () => Promise<void>;
    /** Jobs begun, the mailbox's count and the worker's HOLDS once it has settled, by order. */
    want: Record<'fifo' | 'priority', { begun: number; count: number; holds: string[] }>;
  }[] = [
    {
      name: 'consume() with holdCredit',
      start: (box, gate, begun) => {
        const c = box.consume(
          async (m) => {
            begun.push(m.body);
            await gate;
          },
          { prefetch: 2, holdCredit: true },
        );
        return () => c.stop();
      },
      want: {
        fifo: { begun: 2, count: 1, holds: ['2 in hand'] },
        priority: { begun: 2, count: 1, holds: ['2 in hand'] },
      },
    },
    {
      name: 'consume() without holdCredit',
      start: (box, gate, begun) => {
        const c = box.consume(
          async (m) => {
            begun.push(m.body);
            await gate;
          },
          { prefetch: 2 },
        );
        return () => c.stop();
      },
      want: {
        fifo: { begun: 3, count: 0, holds: [] },
        priority: { begun: 3, count: 0, holds: [] },
      },
    },
    {
      name: 'an iterator',
      start: (box, gate, begun) => {
        const loop = (async () => {
          for await (const m of box.messages({ prefetch: 2 })) {
            begun.push(m.body);
            await gate;
            break;
          }
        })();
        return () => loop;
      },
      want: {
        fifo: { begun: 1, count: 2, holds: ['2 pushed ahead'] },
        priority: { begun: 1, count: 2, holds: [] },
      },
    },
    {
      name: 'an iterator with holdCredit',
      start: (box, gate, begun) => {
        // A priority mailbox refuses it (EINVAL): a single receive there, as a worker would.
        if (box.info.order === 'priority') return kinds[4]!.start(box, gate, begun);
        const it = box.messages({ prefetch: 2, holdCredit: true });
        const loop = (async () => {
          const r = await it.next();
          begun.push(r.value!.body);
          await gate;
          await it.return?.();
        })();
        return () => loop;
      },
      want: {
        fifo: { begun: 1, count: 2, holds: ['1 in hand, 1 pushed ahead'] },
        priority: { begun: 1, count: 2, holds: [] },
      },
    },
    {
      name: 'receive()',
      start: (box, gate, begun) => {
        const job = (async () => {
          const m = await box.receive();
          begun.push(m!.body);
          await gate;
        })();
        return () => job;
      },
      want: {
        fifo: { begun: 1, count: 2, holds: [] },
        priority: { begun: 1, count: 2, holds: [] },
      },
    },
  ];
  for (const kind of kinds)
    for (const order of ['fifo', 'priority'] as const)
      test(`ps HOLDS shows what ${kind.name} holds on a ${order} mailbox`, async () => {
        const name = `holds-${kinds.indexOf(kind)}-${order}`;
        const box = await producer.createMailbox<number>(name, { mode: 0o666, order });
        const me = await connect({ socket: kernel.socket });
        let open!: () => void;
        const gate = new Promise<void>((resolve) => {
          open = resolve;
        });
        const begun: number[] = [];
        const stop = kind.start(await me.openMailbox<number>(box.id), gate, begun);
        await box.sendMany([1, 2, 3]);
        const want = kind.want[order];
        const holds = want.holds.map((h) => `mailbox '${name}': ${h}`);
        const settled = (s: MailboxStat, h: string[]): boolean =>
          begun.length === want.begun &&
          s.count === want.count &&
          JSON.stringify(h) === JSON.stringify(holds);
        const [, row] = await until(
          async () =>
            [await box.stat(), (await producer.processes()).find((p) => p.id === me.id)!.holds] as const,
          ([s, h]) => settled(s, h),
          10_000,
          `${want.begun} begun, count ${want.count}, HOLDS ${JSON.stringify(holds)}`,
        );
        assert.deepEqual(row, holds);
        // Once the jobs are done (each handler settled, its credit back), nothing is held.
        open();
        await until(
          async () => (await producer.processes()).find((p) => p.id === me.id)!.holds,
          (h) => h.length === 0,
          10_000,
          'the jobs done',
        );
        await stop();
        await me.close();
        await box.delete();
      });

  test("a loop with jobs pushed ahead and credit left is working, not blocked, yet still among its mailbox's waiting receivers, as cli.md's watch frame shows", async () => {
    const box = await producer.createMailbox<number>('busy-jobs', { mode: 0o666, capacity: 10 });
    const jobs = await worker.openMailbox<number>(box.id);
    const it = jobs.messages(); // the default prefetch, 256: pushing starts now
    await box.sendMany([1, 2, 3, 4, 5]);
    const row = await until(
      async () => (await worker.processes()).find((p) => p.id === worker.id)!,
      (r) => r.holds.length === 1 && r.holds[0]!.endsWith(' 5 pushed ahead'),
      10_000,
      'the five jobs to be pushed ahead',
    );
    assert.deepEqual(row.holds, ["mailbox 'busy-jobs': 5 pushed ahead"]);
    assert.deepEqual(row.blockedOn, [], 'it has jobs at hand: it is working');
    const stat = await box.stat();
    assert.equal(stat.count, 5, 'pushed ahead, they are still the mailbox’s');
    assert.deepEqual(
      stat.waitingReceivers,
      [worker.id],
      'with credit left, the kernel pushes it the next job',
    );
    await it.return();
    await box.delete();
  });
});

/**
 * A send that gives up while its message is pushed ahead to a busy iterator: the kernel recalls
 * the message (RECALL), the receiving process gives it back unread (RETURN), and the send fails
 * when it gave up, not when the loop gets round to the message. Against a real kernel process,
 * over the Unix socket and over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

for (const transport of ['unix', 'tcp'] as const) {
  describe(`a send that gives up gets its message back from an iterator, over ${transport}`, {
    timeout: 60_000,
  }, () => {
    let kernel: TestKernel;
    let sender: PostboxProcess;
    let receiver: PostboxProcess;
    const join = (): Promise<PostboxProcess> =>
      connect(transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket: kernel.socket });

    before(async () => {
      kernel = await startTestKernel({ tcp: transport === 'tcp' });
      sender = await join();
      receiver = await join();
    });
    after(async () => {
      await sender.close();
      await receiver.close();
      assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
    });

    /** An iterator that has taken its first message and then stays busy (asks for no more). */
    async function busyLoop(box: Mailbox<string>, first: Promise<unknown>) {
      const it = box.messages({ prefetch: 8 });
      const step = await it.next();
      assert.equal(step.value?.body, 'first');
      await first;
      return it;
    }

    const cases = [
      { name: 'rendezvous (capacity 0), timeout', capacity: 0, receipt: false, abort: false },
      { name: 'receipt (capacity 5), timeout', capacity: 5, receipt: true, abort: false },
      { name: 'rendezvous (capacity 0), AbortSignal', capacity: 0, receipt: false, abort: true },
      { name: 'receipt (capacity 5), AbortSignal', capacity: 5, receipt: true, abort: true },
    ];
    for (const c of cases) {
      test(`${c.name}: the send fails while the loop is busy, and the loop never sees the message`, async () => {
        const mine = await receiver.createMailbox<string>(null, { capacity: c.capacity, mode: 0o666 });
        const out = await sender.openMailbox<string>(mine.id);
        const first = out.send('first', { receipt: c.receipt });
        const it = await busyLoop(mine, first);
        const controller = new AbortController();
        const gaveUp = out.send('second', {
          receipt: c.receipt,
          ...(c.abort ? { signal: controller.signal } : { timeout: 200 }),
        });
        // It was pushed to the iterator, which holds it unread.
        await until(
          () => mine.stat(),
          (s) => s.inflight === 1,
          10_000,
          'the second message pushed ahead',
        );
        if (c.abort) controller.abort();
        await assert.rejects(gaveUp, { code: c.abort ? 'ECANCELED' : 'ETIMEDOUT' });
        const s = await mine.stat();
        assert.equal(s.inflight, 0, 'given back');
        assert.equal(s.count, 0, 'and dropped: a send that gave up is never delivered');
        // Its bytes went with it: a mailbox counted bytes it no longer held, and its byte limit
        // filled with messages that were not there.
        assert.equal(s.bytes, 0, 'and its bytes are no longer counted');
        // Nor is it counted as the loop's any more: ps showed "1 pushed ahead" for good.
        const row = (await receiver.processes()).find((r) => r.id === receiver.id);
        assert.deepEqual(row?.holds, [], 'the loop holds nothing pushed ahead');
        // The loop goes on with what comes next, never with the message whose send gave up.
        const third = out.send('third', { receipt: c.receipt });
        const step = await it.next();
        assert.equal(step.value?.body, 'third');
        await third;
        await it.return?.();
        await mine.delete();
      });
    }

    test('a message recalled from among others pushed ahead: those after it are yielded in the order they were sent', async () => {
      const mine = await receiver.createMailbox<string>(null, { capacity: 10, mode: 0o666 });
      const out = await sender.openMailbox<string>(mine.id);
      const first = out.send('first', { receipt: true });
      const it = await busyLoop(mine, first);
      const controller = new AbortController();
      const a = out.send('a', { receipt: true });
      const gaveUp = out.send('recalled', { receipt: true, signal: controller.signal });
      const rest = [out.send('b', { receipt: true }), out.send('c', { receipt: true })];
      await until(
        () => mine.stat(),
        (s) => s.inflight === 4,
        10_000,
        'the four messages pushed ahead',
      );
      controller.abort();
      await assert.rejects(gaveUp, { code: 'ECANCELED' });
      const got: string[] = [];
      for (let k = 0; k < 3; k++) got.push((await it.next()).value!.body);
      assert.deepEqual(got, ['a', 'b', 'c'], 'the gap closed with the rest still in order');
      await Promise.all([a, ...rest]);
      await it.return?.();
      await mine.delete();
    });

    test('a message the loop took before the recall reached it: the send completes as received', async () => {
      const mine = await receiver.createMailbox<string>(null, { capacity: 0, mode: 0o666 });
      const out = await sender.openMailbox<string>(mine.id);
      const it = mine.messages({ prefetch: 8 });
      // The loop is waiting, so the message is handed out as it arrives, before the timeout.
      const next = it.next();
      const sent = out.send('quick', { timeout: 60_000 });
      assert.equal((await next).value?.body, 'quick');
      assert.equal((await sent).outcome, 'received');
      await it.return?.();
      await mine.delete();
    });
  });
}

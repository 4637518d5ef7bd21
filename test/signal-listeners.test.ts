/**
 * Iterators and consumers let go of the caller's AbortSignal when they end, however they end:
 * one signal (a program's shutdown signal) outlives many of them, and a listener left on it
 * holds each ended iterator until the signal aborts.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, test } from 'node:test';
import { kernelForTests } from './helpers/kernel.js';

const listeners = (signal: AbortSignal): number => getEventListeners(signal, 'abort').length;

describe('the caller signal of an iterator or a consumer', { timeout: 60_000 }, () => {
  const k = kernelForTests();

  test('messages() and batches() ended by break leave no listener on a shared signal', async () => {
    const me = await k.join();
    const box = await me.createMailbox<number>(null);
    const shutdown = new AbortController();
    for (let i = 0; i < 20; i++) {
      await box.send(i);
      for await (const _ of box.messages({ signal: shutdown.signal })) break;
      await box.send(i);
      for await (const _ of box.batches({ signal: shutdown.signal })) break;
    }
    assert.equal(listeners(shutdown.signal), 0);
    // The process inbox's iterators are the same streams.
    await me.send(me.id, 'to myself');
    for await (const _ of me.messages({ signal: shutdown.signal })) break;
    await me.send(me.id, 'to myself');
    for await (const _ of me.batches({ signal: shutdown.signal })) break;
    assert.equal(listeners(shutdown.signal), 0);
    await box.delete();
  });

  test('a consumer stopped, or whose mailbox went, leaves no listener', async () => {
    const me = await k.join();
    const shutdown = new AbortController();
    for (const order of ['fifo', 'priority'] as const) {
      const box = await me.createMailbox<number>(null, { order });
      for (let i = 0; i < 10; i++) {
        let got: () => void = () => {};
        const one = new Promise<void>((resolve) => {
          got = resolve;
        });
        const c = box.consume(() => got(), { signal: shutdown.signal });
        await box.send(i);
        await one;
        await c.stop();
      }
      assert.equal(listeners(shutdown.signal), 0, `${order}: stop()`);
      const c = box.consume(() => {}, { signal: shutdown.signal });
      assert.equal(listeners(shutdown.signal), 1, 'while it runs, the signal can stop it');
      await box.delete();
      await assert.rejects(c.closed, { code: 'EIDRM' });
      assert.equal(listeners(shutdown.signal), 0, `${order}: the mailbox removed`);
    }
  });

  test('an iterator ended by the kernel (EIDRM, END) or by the signal itself leaves none', async () => {
    const me = await k.join();
    const shutdown = new AbortController();
    const box = await me.createMailbox<number>(null);
    const it = box.messages({ signal: shutdown.signal });
    const waiting = it.next();
    await box.delete();
    await assert.rejects(waiting, { code: 'EIDRM' });
    assert.equal(listeners(shutdown.signal), 0, 'failed by the kernel');

    const writeEnd = await me.createMailbox<number>(null, {
      endOnLastWriter: true,
      system: true,
      mode: 0o666,
      role: 'write',
    });
    const readEnd = await me.openMailbox<number>(writeEnd.id, { role: 'read' });
    const lines = readEnd.messages({ signal: shutdown.signal });
    const first = lines.next();
    await writeEnd.close();
    assert.equal((await first).done, true);
    assert.equal(listeners(shutdown.signal), 0, 'ended by END');
    await readEnd.close();

    const own = new AbortController();
    const again = await me.createMailbox<number>(null);
    const step = again.messages({ signal: own.signal }).next();
    own.abort();
    assert.equal((await step).done, true);
    assert.equal(listeners(own.signal), 0, 'aborted');
    await again.delete();
  });

  test('failed with messages still to yield, it keeps the signal until they are yielded', async () => {
    const me = await k.join();
    const box = await me.createMailbox<string>(null);
    for (const body of ['a', 'b', 'x'.repeat(100)]) await box.send(body);
    const shutdown = new AbortController();
    const it = box.messages({ signal: shutdown.signal, prefetch: 50, maxSize: 10 });
    assert.equal((await it.next()).value?.body, 'a');
    // By the answer to a later call, the kernel's E2BIG (for the third) has come: 'b' is queued.
    await box.stat();
    assert.equal(listeners(shutdown.signal), 1, 'an abort could still give b back');
    assert.equal((await it.next()).value?.body, 'b');
    await assert.rejects(it.next(), { code: 'E2BIG' });
    assert.equal(listeners(shutdown.signal), 0);
    await box.delete();
  });
});

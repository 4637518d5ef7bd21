/**
 * Once a process's connection has ended, by close() or with its kernel, every call fails at once
 * with the connection's error: iterators and consumers opened afterwards too. A pushed-ahead
 * iterator (messages(), batches(), consume()) opened then waited for ever, where a receive(), a
 * send or an iterator over a priority mailbox failed with ENOTCONN: a worker whose kernel went
 * between openMailbox() and its loop hung instead of joining again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Consumer, connect, type PostboxError, type PostboxProcess } from '../src/client/mod.js';
import { kernelForTests, startTestKernel } from './helpers/kernel.js';

/** Every way to open a loop over a mailbox and the inbox, each reduced to its first outcome. */
function firstSteps(me: PostboxProcess, box: Awaited<ReturnType<PostboxProcess['createMailbox']>>) {
  const consumed = (c: Consumer<unknown>): Promise<unknown> => c.closed;
  return {
    'mailbox messages()': () => box.messages().next(),
    'mailbox batches()': () => box.batches().next(),
    'mailbox consume()': () => consumed(box.consume(() => {})),
    'inbox messages()': () => me.messages().next(),
    'inbox batches()': () => me.batches().next(),
    'inbox consume()': () => consumed(me.consume(() => {})),
  };
}

describe('loops opened after the connection ended', () => {
  const { join } = kernelForTests();

  test('after close(): each fails with ENOTCONN', { timeout: 20_000 }, async () => {
    const me = await join();
    const box = await me.createMailbox('closed-loops');
    await me.close();
    for (const [what, first] of Object.entries(firstSteps(me, box))) {
      await assert.rejects(first(), (e: PostboxError) => e.code === 'ENOTCONN', what);
    }
  });

  test('a send or receive made once close() was called fails at once, even while close() waits for a lookup', {
    timeout: 20_000,
  }, async () => {
    // close() waits for a send to a name being looked up, so that it goes out ahead of the
    // goodbye. A send made in that wait went out too, and was delivered; one made after it
    // was written behind the goodbye, only for the kernel to refuse it.
    const [me, peer, other] = [await join(), await join({ name: 'closing-peer' }), await join()];
    const shared = await other.createMailbox('closing-shared', { mode: 0o666 });
    const box = await me.openMailbox('closing-shared');
    const before = me.send('closing-peer', 'before');
    const closing = me.close();
    const after = {
      'send()': box.send('after'),
      'sendMany()': box.sendMany(['after']),
      'send() to the inbox': me.send(peer.id, 'after'),
      'receive()': box.receive({ nowait: true }),
      'inbox receive()': me.receive({ nowait: true }),
    };
    for (const [what, op] of Object.entries(after))
      await assert.rejects(op, (e: PostboxError) => e.code === 'ENOTCONN', what);
    await before;
    await closing;
    assert.equal(
      (await peer.receive({ nowait: true }))?.text(),
      'before',
      'the send made before close() went',
    );
    assert.equal(await peer.receive({ nowait: true }), null, 'and only it');
    assert.equal(await shared.receive({ nowait: true }), null, 'nothing made after close() went');
    await peer.close();
    await other.close();
  });

  test('a loop left with break after close() is still ended cleanly', { timeout: 20_000 }, async () => {
    const me = await join();
    const box = await me.createMailbox('closed-loops-2');
    await me.close();
    const it = box.messages();
    assert.deepEqual(await it.return(), { done: true, value: undefined });
  });
});

test('after the kernel went: each fails with the error that ended the connection', {
  timeout: 30_000,
}, async () => {
  const kernel = await startTestKernel();
  try {
    const me = await connect({ socket: kernel.socket });
    const box = await me.createMailbox('gone-loops');
    await kernel.stop();
    const why = await me.closed;
    assert.ok(why !== null, 'the connection ended with an error');
    for (const [what, first] of Object.entries(firstSteps(me, box))) {
      await assert.rejects(first(), (e: PostboxError) => e.code === why.code, what);
    }
  } finally {
    await kernel.stop();
  }
});

describe('loops running when the process closes itself', () => {
  const { join } = kernelForTests();

  /** Sends `n` numbered messages to `name` from a process of its own. */
  async function fill(name: string, n: number, order: 'fifo' | 'priority' = 'fifo'): Promise<void> {
    const sender = await join();
    const box = await sender.createMailbox(name, { order, mode: 0o666, system: true });
    for (let i = 0; i < n; i++) await box.send(i);
    await sender.close();
  }

  /** What is left in `name` after the loop's process closed: each message the loop did not take. */
  async function left(name: string): Promise<unknown[]> {
    const other = await join();
    const box = await other.openMailbox(name);
    const rest: unknown[] = [];
    for (let m = await box.receive({ nowait: true }); m !== null; m = await box.receive({ nowait: true }))
      rest.push(m.body);
    await other.close();
    return rest;
  }

  test('a for await loop ends as at break, and what was pushed ahead and not taken goes back', {
    timeout: 20_000,
  }, async () => {
    // It threw ENOTCONN ("the process closed its connection to the kernel") out of the loop.
    await fill('own-close-loop', 10);
    const me = await join();
    const box = await me.openMailbox('own-close-loop');
    const got: unknown[] = [];
    let closing: Promise<void> | undefined;
    for await (const m of box.messages()) {
      got.push(m.body);
      if (got.length === 3) closing = me.close();
    }
    await closing;
    assert.deepEqual(got, [0, 1, 2]);
    assert.deepEqual(await left('own-close-loop'), [3, 4, 5, 6, 7, 8, 9]);
  });

  test('a consumer stops: its closed resolves, and nothing rejects unhandled', {
    timeout: 20_000,
  }, async () => {
    // Its closed rejected with ENOTCONN: with nobody awaiting it, Node ended the program (exit 1).
    await fill('own-close-consumer', 10);
    const me = await join();
    const box = await me.openMailbox('own-close-consumer');
    const got: unknown[] = [];
    let closing: Promise<void> | undefined;
    const consumer = box.consume((m) => {
      got.push(m.body);
      if (got.length === 3) closing = me.close();
    });
    await consumer.closed;
    await closing;
    assert.deepEqual(got, [0, 1, 2]);
    assert.deepEqual(await left('own-close-consumer'), [3, 4, 5, 6, 7, 8, 9]);
  });

  test('loops waiting on an empty mailbox, the inbox or a priority mailbox end; a receive() still fails', {
    timeout: 20_000,
  }, async () => {
    const me = await join();
    const box = await me.createMailbox('own-close-empty');
    const prio = await me.createMailbox('own-close-prio', { order: 'priority' });
    const steps = {
      'messages()': box.messages().next(),
      'batches()': box.batches().next(),
      'priority messages()': prio.messages().next(),
      'inbox messages()': me.messages().next(),
      'inbox batches()': me.batches().next(),
      'inbox from a process': me.messages({ from: me.id }).next(),
    };
    const consumers = [box.consume(() => {}), me.consume(() => {}), prio.consume(() => {})];
    const single = assert.rejects(box.receive(), (e: PostboxError) => e.code === 'ENOTCONN');
    // Every loop has asked the kernel before the close: a list call is answered after them.
    await me.mailboxes();
    await me.close();
    for (const [what, step] of Object.entries(steps))
      assert.deepEqual(await step, { done: true, value: undefined }, what);
    for (const c of consumers) assert.equal(await c.closed, undefined);
    await single;
  });
});

describe('a handle closed while it is waited on', () => {
  const { join } = kernelForTests();

  test('its waiting receive fails with ENOTCONN and its loop ends; what comes later is left for others', {
    timeout: 20_000,
  }, async () => {
    const [me, other] = [await join(), await join()];
    const box = await me.createMailbox('handle-closed-waiting', { mode: 0o666 });
    const waiting = box.receive();
    const step = box.messages().next();
    // Both have reached the kernel before the close: a list call is answered after them.
    await me.mailboxes();
    await box.close();
    await assert.rejects(waiting, (e: PostboxError) => e.code === 'ENOTCONN');
    assert.deepEqual(await step, { done: true, value: undefined });
    await (await other.openMailbox('handle-closed-waiting')).send('later');
    const again = await me.openMailbox('handle-closed-waiting');
    assert.equal(
      (await again.receive({ nowait: true }))?.body,
      'later',
      'nothing of the closed handle took it',
    );
    await me.close();
    await other.close();
  });
});

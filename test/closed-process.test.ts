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

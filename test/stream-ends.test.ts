/**
 * A prefetching stream the kernel ends with an error (the receiver lost its right, or a message
 * is over its size) while it holds messages pushed ahead: each message is still received exactly
 * once. BRIEF, Prefetching: a pushed message stays the mailbox's until the application takes it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Mailbox, MailboxStat, PostboxError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const BOUND_MS = 10_000;

/** Every message left in the mailbox, received one at a time. */
async function drain(box: Mailbox): Promise<unknown[]> {
  const left: unknown[] = [];
  for (;;) {
    const m = await box.receive({ nowait: true });
    if (m === null) return left;
    left.push(m.body);
  }
}

describe('a stream ended by the kernel', () => {
  const { join } = kernelForTests();

  for (const how of ['revoke', 'chmod'] as const) {
    test(`the right taken away (${how}): what was pushed and not taken goes back, and is yielded by nobody else twice`, async () => {
      const owner = await join();
      const reader = await join();
      const name = `ends-${how}`;
      const box = await owner.createMailbox(name, how === 'chmod' ? { system: true, mode: 0o666 } : {});
      if (how === 'revoke') await box.grant(reader.id);
      for (let i = 0; i < 6; i++) await box.send(`m${i}`);
      const theirs = await reader.openMailbox(name);
      const stream = theirs.messages({ prefetch: 50 });
      const first = await within(stream.next(), BOUND_MS, 'the first message');
      assert.equal(first.value?.body, 'm0');
      await until(
        () => box.stat(),
        (s: MailboxStat) => s.inflight === 5,
        BOUND_MS,
        'the other five pushed ahead',
      );
      if (how === 'revoke') await box.revoke(reader.id);
      else await box.chmod(0o600);
      // The kernel told the reader in the same turn; a call of the reader's own is answered after
      // that, so by its answer the reader knows. (A step taken before it knew would take a
      // pushed message as its own, once: never one that also goes back.)
      await reader.usage();
      await assert.rejects(
        within(stream.next(), BOUND_MS, 'the stream to end'),
        (e: PostboxError) => e.code === 'EACCES',
      );
      const left = await within(
        (async () => {
          await until(
            () => box.stat(),
            (s: MailboxStat) => s.inflight === 0,
            BOUND_MS,
            'the pushed messages to come back',
          );
          return drain(box);
        })(),
        BOUND_MS,
        'the rest',
      );
      assert.deepEqual(left, ['m1', 'm2', 'm3', 'm4', 'm5'], 'each once, in order, none lost');
      await box.delete();
    });
  }

  test('a message over its size (E2BIG): what came before it is yielded once, and it stays queued', async () => {
    const owner = await join();
    const box = await owner.createMailbox('ends-e2big');
    await box.send('a');
    await box.send('b');
    await box.send('x'.repeat(100));
    await box.send('c');
    const got: unknown[] = [];
    await assert.rejects(
      within(
        (async () => {
          for await (const m of box.messages({ prefetch: 50, maxSize: 10 })) got.push(m.body);
        })(),
        BOUND_MS,
        'the stream',
      ),
      (e: PostboxError) => e.code === 'E2BIG',
    );
    assert.deepEqual(got, ['a', 'b']);
    await until(
      () => box.stat(),
      (s: MailboxStat) => s.inflight === 0,
      BOUND_MS,
      'nothing left in flight',
    );
    assert.deepEqual(
      await drain(box),
      ['x'.repeat(100), 'c'],
      'a and b were not given back to be received again',
    );
    await box.delete();
  });
});

describe('a pipe whose last writer has closed', () => {
  const { join } = kernelForTests();

  test('a reader does not see the end while data is pushed ahead to another reader: given back, it is read, then the end', async () => {
    const [owner, writer, a, b] = [await join(), await join(), await join(), await join()];
    const name = 'ends-pipe-held';
    await owner.createMailbox(name, { mode: 0o666, endOnLastWriter: true, role: 'none' });
    const out = await writer.openMailbox(name, { role: 'write' });
    const held = (await a.openMailbox(name, { role: 'read' })).messages({ prefetch: 4 });
    const theirs = await b.openMailbox(name, { role: 'read' });
    await out.send('data');
    await until(
      () => theirs.stat(),
      (s: MailboxStat) => s.inflight === 1,
      BOUND_MS,
      'the data pushed ahead to the first reader',
    );
    const got = theirs.receive();
    await until(
      () => theirs.stat(),
      (s: MailboxStat) => s.waitingReceivers.includes(b.id),
      BOUND_MS,
      'the second reader waiting',
    );
    // The last writer goes: before, the waiting reader got the end (null) at once, and the data
    // given back after it sat in the pipe behind an end of file.
    await out.close();
    await held.return?.();
    assert.equal((await within(got, BOUND_MS, 'the data'))?.body, 'data');
    assert.equal(await within(theirs.receive(), BOUND_MS, 'the end'), null);
  });
});

/**
 * `close()` flushes: every send made before it reaches the kernel ahead of it, awaited or not
 * (api.md, `close()`). A direct send to a process name not yet looked up is written only when the
 * lookup answers; close() used to write its BYE first, so such a send failed with ENOTCONN and the
 * message was lost: the "emit, then disconnect" loss users of node-ipc report (USERS.md #2, #9).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { kernelForTests } from './helpers/kernel.js';

describe('close() after sends to names not yet looked up', () => {
  const { join } = kernelForTests();

  test('the sends are delivered, and resolve, before the process closes', async () => {
    const receiver = await join({ name: 'close-flush-receiver' });
    const sender = await join();
    // Neither awaited: the name is unknown to the sender, so each waits for a lookup.
    const sent = Promise.all([
      sender.send('close-flush-receiver', 'one'),
      sender.sendMany('close-flush-receiver', ['two', 'three']),
    ]);
    await sender.close();
    const [first, second] = await sent;
    assert.equal(first.outcome, 'queued');
    assert.deepEqual(second, { sent: 2 });
    const got: unknown[] = [];
    for (let i = 0; i < 3; i++) got.push((await receiver.receive({ nowait: true }))?.body);
    assert.deepEqual(got.sort(), ['one', 'three', 'two']);
  });

  test('a lookup that fails still fails the send with its own error, and close() completes', async () => {
    const sender = await join();
    const lost = assert.rejects(
      sender.send('close-flush-nobody', 'x'),
      (e: { code?: string }) => e.code === 'ESRCH',
    );
    await sender.close();
    await lost;
  });
});

/**
 * The kernel's memory limit (`--max-total-bytes`) covers every message it holds: queued, and
 * waiting to enter a full mailbox. A sender that pipelines far past a bounded mailbox's
 * capacity meets ENOMEM, as one filling an unbounded mailbox does, instead of growing the
 * kernel without bound; and the count goes back to zero once everything is settled.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernelForTests } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const LIMIT = 1024 * 1024;
const BOUND_MS = 20_000;

const { join } = kernelForTests({ args: ['--max-total-bytes', String(LIMIT)] });

const body = 'z'.repeat(1000);

test('sends waiting on a full mailbox count against the memory limit', async () => {
  const me = await join();
  const box = await me.createMailbox('limit-waiting', { capacity: 10 });
  const outcomes: string[] = [];
  const sends = Array.from({ length: 3000 }, () =>
    box.send(body).then(
      () => outcomes.push('ok'),
      (e: { code: string }) => outcomes.push(e.code),
    ),
  );
  // Requests are answered in order: by this answer, the kernel has seen all 3,000 sends.
  const usage = await me.usage();
  await new Promise((r) => setImmediate(r));
  assert.ok(usage.totalBytes <= LIMIT, `${usage.totalBytes} bytes held, limit ${LIMIT}`);
  const waiting = (await box.stat()).waitingSendersCount;
  const refused = outcomes.filter((o) => o === 'ENOMEM').length;
  assert.equal(outcomes.filter((o) => o === 'ok').length, 10, 'the mailbox took its capacity');
  assert.ok(waiting > 100, `${waiting} senders wait`);
  assert.ok(refused > 1000, `${refused} refused`);
  assert.equal(10 + waiting + refused, 3000, 'each send queued, waiting, or refused');
  await box.delete();
  await within(Promise.all(sends), BOUND_MS, 'the waiting sends to fail with the mailbox');
  assert.equal(outcomes.filter((o) => o === 'EIDRM').length, waiting);
  assert.equal((await me.usage()).totalBytes, 0);
});

test('a refused send says ENOMEM; everything settled leaves the count at zero', async () => {
  const me = await join();
  const box = await me.createMailbox('limit-settle', { capacity: 10 });
  const sends = Array.from({ length: 3000 }, () =>
    box.send(body).then(
      () => 'ok',
      (e: { code: string }) => e.code,
    ),
  );
  const received: unknown[] = [];
  const reader = (async () => {
    for (;;) {
      const m = await box.receive();
      if (m?.body === 'end') return;
      received.push(m?.body);
    }
  })();
  const outcomes = await within(Promise.all(sends), BOUND_MS, 'every send answered');
  await box.send('end');
  await within(reader, BOUND_MS, 'the reader to finish');
  const ok = outcomes.filter((o) => o === 'ok').length;
  const refused = outcomes.filter((o) => o === 'ENOMEM').length;
  assert.equal(ok + refused, 3000, `only ok or ENOMEM: ${[...new Set(outcomes)].join(', ')}`);
  assert.ok(refused > 0, 'some sends were over the limit');
  assert.equal(received.length, ok, 'every accepted send was received once');
  await box.delete();
  await until(
    () => me.usage(),
    (u) => u.totalBytes === 0,
    BOUND_MS,
    'the count back at zero',
  );
});

test('waiting sends of a process that ends are withdrawn and uncounted', async () => {
  const me = await join();
  const sender = await join();
  const box = await me.createMailbox('limit-leaver', { capacity: 1, mode: 0o666 });
  const theirs = await sender.openMailbox('limit-leaver');
  for (let i = 0; i < 200; i++) void theirs.send(body).catch(() => {});
  await until(
    () => box.stat(),
    (s) => s.waitingSendersCount === 199,
    BOUND_MS,
    'the sends to wait',
  );
  assert.ok((await me.usage()).totalBytes > 199 * 1000);
  await sender.close();
  await until(
    () => box.stat(),
    (s) => s.waitingSenders.length === 0,
    BOUND_MS,
    'the waiting sends withdrawn',
  );
  const m = await box.receive({ nowait: true });
  assert.equal(m?.body, body);
  await box.delete();
  assert.equal((await me.usage()).totalBytes, 0);
});

test('a send that brings the held bytes to exactly the limit is taken; past it, only a drop-new send is not ENOMEM', async () => {
  const me = await join();
  const box = await me.createMailbox('limit-exact', { capacity: 1 });
  assert.equal((await me.usage()).totalBytes, 0);
  assert.equal((await box.send(new Uint8Array(LIMIT))).outcome, 'queued');
  assert.equal((await me.usage()).totalBytes, LIMIT);
  await assert.rejects(box.send(new Uint8Array(1)), { code: 'ENOMEM' });
  // The mailbox is full too: a drop-new send is dropped, as the sender asked, rather than refused.
  assert.equal((await box.send(new Uint8Array(1), { onFull: 'drop' })).outcome, 'dropped');
  // One with room in its mailbox is dropped too: queued, it would take the kernel past its limit.
  const roomy = await me.createMailbox('limit-exact-roomy');
  assert.equal((await roomy.send(new Uint8Array(1), { onFull: 'drop' })).outcome, 'dropped');
  assert.equal((await me.usage()).totalBytes, LIMIT);
  assert.equal((await roomy.stat()).count, 0);
  await roomy.delete();
  await box.delete();
  assert.equal((await me.usage()).totalBytes, 0);
});

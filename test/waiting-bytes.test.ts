/**
 * One process's waiting sends hold at most `--max-waiting-bytes`: a producer that never awaits
 * its sends to a full mailbox meets ENOMEM at its own share, and other processes still send,
 * instead of it taking the kernel's whole memory limit and every process's sends failing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernelLimits } from '../src/kernel/limits.js';
import { kernelForTests } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const SHARE = 64 * 1024;
const BOUND_MS = 20_000;

const { join } = kernelForTests({ args: ['--max-waiting-bytes', '64K'] });

const body = 'w'.repeat(1000);

/** Each send's outcome: 'ok' or its error's code. */
function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: { code: string }) => e.code,
  );
}

test("past its share, a process's sends that would wait fail ENOMEM; another process's still wait", async () => {
  const greedy = await join({ name: 'greedy' });
  const other = await join();
  assert.equal(greedy.limits.maxWaitingBytes, SHARE);
  const box = await greedy.createMailbox('waiting-share', { capacity: 1, mode: 0o666 });
  const errors: Error[] = [];
  const sends = Array.from({ length: 200 }, () =>
    box.send(body).catch((e: Error & { code: string }) => {
      errors.push(e);
      throw e;
    }),
  );
  const outcomes = Array.from(sends, outcome);
  // Answers come in order: by this one, the kernel has seen all 200.
  const usage = await greedy.usage();
  assert.ok(usage.mostWaitingBytes! <= SHARE, `${usage.mostWaitingBytes} bytes held, share ${SHARE}`);
  const waiting = (await box.stat()).waitingSendersCount;
  assert.ok(waiting > 10 && waiting < 199, `${waiting} wait`);
  assert.ok(errors.length > 0, 'some were refused');
  assert.equal(errors[0]!.message.includes('--max-waiting-bytes'), true, errors[0]!.message);
  assert.match(errors[0]!.message, /greedy/);
  assert.match(errors[0]!.message, /waiting-share/);

  // Another process waits in the same line: the greedy one has not taken its room.
  const theirs = await other.openMailbox('waiting-share');
  const otherSend = outcome(theirs.send('other'));
  await until(
    () => box.stat(),
    (s) => s.waitingSendersCount === waiting + 1,
    BOUND_MS,
    "the other process's send waiting",
  );

  // Drained, every accepted send is received once, and the share is free again.
  const received: unknown[] = [];
  for (let i = 0; i < 1 + waiting + 1; i++) received.push((await box.receive({ timeout: BOUND_MS }))?.body);
  const settled = await within(Promise.all(outcomes), BOUND_MS, 'every send answered');
  assert.equal(await otherSend, 'ok');
  assert.equal(settled.filter((o) => o === 'ok').length, 1 + waiting);
  assert.equal(settled.filter((o) => o === 'ENOMEM').length, 200 - 1 - waiting);
  assert.equal(received.length, 2 + waiting);
  assert.equal((await greedy.usage()).mostWaitingBytes, 0);
  assert.equal(await outcome(box.send(body, { timeout: 1 })), 'ok', 'room: in at once');
  await box.delete();
});

test('sends waiting for their receipt or a rendezvous count, and a process that ends gives its share back', async () => {
  const producer = await join();
  const watcher = await join();
  const unbounded = await producer.createMailbox('waiting-receipts');
  const rendezvous = await producer.createMailbox('waiting-rendezvous', { capacity: 0 });
  // Until received: each message is in and its send waits for a receiver, holding a copy.
  const receipts = Array.from({ length: 100 }, () => outcome(unbounded.send(body, { receipt: true })));
  const meetings = Array.from({ length: 100 }, () => outcome(rendezvous.send(body)));
  await producer.usage();
  const usage = await watcher.usage();
  assert.ok(
    usage.mostWaitingBytes! > SHARE / 2 && usage.mostWaitingBytes! <= SHARE,
    `${usage.mostWaitingBytes} held`,
  );
  const queued = (await unbounded.stat()).waitingReceiptsCount;
  const met = (await rendezvous.stat()).waitingSendersCount;
  assert.ok(queued + met < 200, `${queued} + ${met} of 200 waiting`);
  // Its process ends: what it held is withdrawn and counted no more.
  await producer.close();
  const all = await within(Promise.all([...receipts, ...meetings]), BOUND_MS, 'every send answered');
  assert.ok(all.includes('ENOMEM'), 'some were over the share');
  assert.ok(!all.includes('ok'), `nobody received: ${[...new Set(all)].join(', ')}`);
  await until(
    () => watcher.usage(),
    (u) => u.mostWaitingBytes === 0,
    BOUND_MS,
    'the share given back',
  );
});

test('the share follows --max-total-bytes unless it is given', () => {
  // Fixed at 1 GiB, it let one greedy process fill a kernel given 1 GiB or less.
  const GiB = 1024 * 1024 * 1024;
  assert.equal(kernelLimits().maxWaitingBytes, GiB, 'a quarter of the default 4 GiB');
  assert.equal(kernelLimits({ maxTotalBytes: 256 * 1024 * 1024 }).maxWaitingBytes, 64 * 1024 * 1024);
  assert.equal(kernelLimits({ maxTotalBytes: 16 * GiB }).maxWaitingBytes, 4 * GiB);
  assert.equal(
    kernelLimits({ maxTotalBytes: 3 }).maxWaitingBytes,
    1,
    'never 0, which would refuse every wait',
  );
  assert.equal(
    kernelLimits({ maxTotalBytes: GiB, maxWaitingBytes: GiB }).maxWaitingBytes,
    GiB,
    'given, it is kept',
  );
});

// Pins Mailbox.overWaitingBytes's `<= limit` (MUTANTS.md M40): a send that brings a process's
// waiting bytes to exactly its share still waits; one byte more is refused.
test('a send that brings the waiting bytes to exactly the share waits; one byte more is refused ENOMEM', async () => {
  const p = await join();
  const box = await p.createMailbox('exact-share', { capacity: 1 });
  await box.send('filler');
  const first = outcome(box.send(Buffer.alloc(1000)));
  const held = await until(
    () => p.usage(),
    (u) => u.mostWaitingBytes! > 0,
    BOUND_MS,
    'the first send waiting',
  );
  // What a waiting send holds beyond its body: its frame's head and the waiter.
  const over = held.mostWaitingBytes! - 1000;
  const exact = SHARE - held.mostWaitingBytes! - over;
  assert.equal(await outcome(box.send(Buffer.alloc(exact + 1))), 'ENOMEM', 'one byte past the share');
  const second = outcome(box.send(Buffer.alloc(exact)));
  // Answers come in order: by this one, the kernel has taken the send in, or refused it.
  assert.equal((await p.usage()).mostWaitingBytes, SHARE, 'the share held exactly');
  assert.equal((await box.stat()).waitingSendersCount, 2);
  for (let i = 0; i < 3; i++) await box.receive();
  assert.deepEqual([await first, await second], ['ok', 'ok']);
});

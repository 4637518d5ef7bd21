// Senders waiting on a mailbox (a rendezvous, or a full one) and what a receiver, or a change of
// limits, does with them: a selective receive meets the sender it selects even when another waits
// ahead of it; a nowait receive meets a waiting sender; raising a rendezvous's capacity admits the
// waiting senders as queued sends; lowering the byte limit under a waiting message fails that send
// rather than holding up the line behind it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Mailbox, PostboxError, SendResult } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

// Each test is bounded: before the fixes, the waits below never ended.
const { join } = kernelForTests();

/** How a send settles: its outcome, or its error's code. */
const outcomeOf = (p: Promise<SendResult>): Promise<string> =>
  p.then(
    (r) => r.outcome,
    (e: PostboxError) => e.code,
  );

/** How a receive settles: 'received', or its error's code. */
const receivedOf = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'received',
    (e: PostboxError) => e.code,
  );

/** Whether p has settled by the time the kernel's answers read so far have been handled. */
async function hasSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

/** Until `n` senders wait on box. */
const waiting = (box: Mailbox, n: number): Promise<unknown> =>
  until(
    () => box.stat(),
    (st) => st.waitingSenders.length === n,
    5000,
    `${n} senders waiting`,
  );

/** Until one receiver waits on box. */
const receiverWaiting = (box: Mailbox): Promise<unknown> =>
  until(
    () => box.stat(),
    (st) => st.waitingReceivers.length === 1,
    5000,
    'a receiver waiting',
  );

test('a rendezvous: a receive from B meets B waiting behind A; a receive of type 2 meets the type-2 sender', {
  timeout: 20_000,
}, async () => {
  const [me, a, b] = [await join(), await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const fromA = outcomeOf((await a.openMailbox(box.id)).send('from a', { type: 1 }));
  await waiting(box, 1);
  const fromB = outcomeOf((await b.openMailbox(box.id)).send('from b', { type: 2 }));
  await waiting(box, 2);
  // Before, both waited for as long as A did.
  assert.equal((await box.receive({ from: b.id, timeout: 10_000 }))?.body, 'from b');
  assert.equal(await fromB, 'received');
  assert.equal(await hasSettled(fromA), false, 'A still waits: its message was not taken');
  const again = outcomeOf((await b.openMailbox(box.id)).send('b again', { type: 2 }));
  await waiting(box, 2);
  assert.equal((await box.receive({ type: 2, timeout: 10_000 }))?.body, 'b again');
  assert.equal((await box.receive({ timeout: 10_000 }))?.body, 'from a');
  assert.deepEqual([await again, await fromA], ['received', 'received']);
});

test('a rendezvous takes from its waiting senders as from a queue: highest priority first, lowest type under type < 0', {
  timeout: 20_000,
}, async () => {
  const [me, s] = [await join(), await join()];
  // Each line of waiting senders, in arrival order; a receive must pick as mq_receive and
  // msgrcv pick from a queue holding those messages, not the first in line that it selects.
  const line = async (box: Mailbox, sends: [string, { priority?: number; type?: number }][]) => {
    const handle = await s.openMailbox(box.id);
    const outcomes: Promise<string>[] = [];
    for (const [body, opts] of sends) {
      outcomes.push(outcomeOf(handle.send(body, opts)));
      await waiting(box, outcomes.length);
    }
    return outcomes;
  };
  const prio = await me.createMailbox(null, { capacity: 0, order: 'priority', mode: 0o666 });
  const prioSends = await line(prio, [
    ['p1', { priority: 1 }],
    ['p9-a', { priority: 9 }],
    ['p5', { priority: 5 }],
    ['p9-b', { priority: 9 }],
  ]);
  const byPriority: unknown[] = [];
  for (let i = 0; i < 4; i++) byPriority.push((await prio.receive({ timeout: 10_000 }))?.body);
  assert.deepEqual(byPriority, ['p9-a', 'p9-b', 'p5', 'p1']);
  assert.deepEqual(await Promise.all(prioSends), ['received', 'received', 'received', 'received']);

  const typed = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const typedSends = await line(typed, [
    ['t3', { type: 3 }],
    ['t1-a', { type: 1 }],
    ['t2', { type: 2 }],
    ['t1-b', { type: 1 }],
  ]);
  assert.equal((await typed.receive({ type: -5, timeout: 10_000 }))?.body, 't1-a');
  assert.equal((await typed.receive({ type: -2, timeout: 10_000 }))?.body, 't1-b');
  assert.equal((await typed.receive({ type: -5, timeout: 10_000 }))?.body, 't2');
  assert.equal((await typed.receive({ timeout: 10_000 }))?.body, 't3');
  assert.deepEqual(await Promise.all(typedSends), ['received', 'received', 'received', 'received']);
});

test('a priority rendezvous: a selective receive meets the highest priority it selects, first in line within it, past one that gave up', {
  timeout: 30_000,
}, async () => {
  const [me, a, b] = [await join(), await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, order: 'priority', mode: 0o666 });
  const [toA, toB] = [await a.openMailbox(box.id), await b.openMailbox(box.id)];
  const gaveUp = new AbortController();
  const sends: Promise<string>[] = [];
  const line: [Mailbox, string, { priority: number; type: number; signal?: AbortSignal }][] = [
    [toA, 'a-p3-t1', { priority: 3, type: 1 }],
    [toA, 'a-p7-t2', { priority: 7, type: 2 }],
    [toB, 'b-p7-t1', { priority: 7, type: 1, signal: gaveUp.signal }],
    [toB, 'b-p5-t1', { priority: 5, type: 1 }],
    [toA, 'a-p7-t1', { priority: 7, type: 1 }],
    [toB, 'b-p7-t2', { priority: 7, type: 2 }],
    [toA, 'a-p5-t3', { priority: 5, type: 3 }],
  ];
  for (const [to, body, opts] of line) {
    sends.push(outcomeOf(to.send(body, opts)));
    await waiting(box, sends.length);
  }
  gaveUp.abort();
  await waiting(box, line.length - 1);
  const take = async (opts: { type?: number; from?: number }): Promise<unknown> =>
    (await box.receive({ ...opts, timeout: 10_000 }))?.body;
  assert.equal(await take({ type: 1 }), 'a-p7-t1', 'priority 7 first; the one before it gave up');
  assert.equal(await take({ from: b.id }), 'b-p7-t2');
  const late = outcomeOf(toB.send('b-p7-late', { priority: 7, type: 2 }));
  await waiting(box, line.length - 2);
  assert.equal(await take({ type: 2 }), 'a-p7-t2', 'ahead of the one of its priority that came since');
  assert.equal(await take({ type: -3 }), 'b-p5-t1', 'type 1 before 3, then the highest priority');
  assert.equal(await take({}), 'b-p7-late');
  assert.equal(await box.receive({ type: 1, from: b.id, nowait: true }), null, 'none of type 1 from B');
  assert.equal(await take({}), 'a-p5-t3');
  assert.equal(await take({}), 'a-p3-t1');
  assert.deepEqual(await Promise.all([...sends, late]), [
    'received',
    'received',
    'ECANCELED',
    'received',
    'received',
    'received',
    'received',
    'received',
  ]);
});

test('a fifo rendezvous does not order by the priorities its senders gave: under type < 0, the first of the lowest type', {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const to = await a.openMailbox(box.id);
  const sends: Promise<string>[] = [];
  for (const [body, priority] of [
    ['low', 1],
    ['high', 9],
  ] as const) {
    sends.push(outcomeOf(to.send(body, { priority, type: 2 })));
    await waiting(box, sends.length);
  }
  assert.equal((await box.receive({ type: -2, timeout: 10_000 }))?.body, 'low');
  assert.equal((await box.receive({ timeout: 10_000 }))?.body, 'high');
  assert.deepEqual(await Promise.all(sends), ['received', 'received']);
});

test('a rendezvous: a nowait receive meets a sender already waiting, and is null when none is', {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  assert.equal(await box.receive({ nowait: true }), null);
  const sent = (await a.openMailbox(box.id)).send('hello');
  await waiting(box, 1);
  assert.equal(await box.receive({ nowait: true, type: 7 }), null, 'it selects nothing there');
  assert.equal((await box.receive({ nowait: true }))?.body, 'hello');
  assert.equal((await sent).outcome, 'received');
  assert.equal(await box.receive({ nowait: true }), null);
});

test("raising a rendezvous's capacity admits its waiting senders as queued sends", {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  const x = outcomeOf(out.send('x'));
  const y = outcomeOf(out.send('y'));
  const receipt = outcomeOf(out.send('with a receipt', { receipt: true }));
  await waiting(box, 3);
  await box.setLimits({ capacity: 5 });
  // They waited until a receiver took them, and then said 'received'.
  assert.deepEqual([await x, await y], ['queued', 'queued']);
  assert.equal(await hasSettled(receipt), false, 'the one with a receipt waits to be taken');
  assert.deepEqual(
    [(await box.receive())?.body, (await box.receive())?.body, (await box.receive())?.body],
    ['x', 'y', 'with a receipt'],
  );
  assert.equal(await receipt, 'received');
});

test('a byte limit left at its default follows a new capacity; one that was given stays', {
  timeout: 20_000,
}, async () => {
  // Made unbounded, a mailbox created with capacity 1 kept a bounded one's 64 MiB, so its
  // senders waited (or failed with EAGAIN) where an unbounded mailbox never makes them.
  const me = await join();
  const unbounded = (await me.createMailbox(null, {})).stat();
  const bounded = (await me.createMailbox(null, { capacity: 5 })).stat();
  const [none, some] = [(await unbounded).maxBytes, (await bounded).maxBytes];
  assert.ok(
    none > some,
    `an unbounded mailbox's limit (${none}) is the kernel's, over a bounded one's (${some})`,
  );
  const box = await me.createMailbox(null, { capacity: 1 });
  assert.equal((await box.setLimits({ capacity: 'unbounded' })).maxBytes, none);
  const body = Buffer.alloc(1 << 20);
  for (let i = 0; i < Math.ceil(some / body.length) + 1; i++) await box.send(body, { nowait: true });
  assert.equal((await box.setLimits({ capacity: 5 })).maxBytes, some);
  assert.equal((await box.setLimits({ capacity: 0 })).maxBytes, some);
  const given = await me.createMailbox(null, { capacity: 1, maxBytes: 1000 });
  assert.equal((await given.setLimits({ capacity: 'unbounded' })).maxBytes, 1000);
  assert.equal((await given.setLimits({ capacity: 3, maxBytes: 'unbounded' })).maxBytes, none);
});

test('lowering maxBytes under a waiting message fails that send (EMSGSIZE); the line behind it moves', {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 1, maxBytes: 1000, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  await out.send('fills it');
  const big = outcomeOf(out.send(Buffer.alloc(300)));
  const small = outcomeOf(out.send(Buffer.alloc(10)));
  await waiting(box, 2);
  await box.setLimits({ maxBytes: 200 });
  assert.equal(await big, 'EMSGSIZE');
  assert.equal((await box.receive())?.body, 'fills it');
  assert.equal(await small, 'queued');
  assert.equal((await box.receive())?.size, 10);
});

test("lowering maxBytes to exactly a waiting message's size keeps that send waiting, to go in", {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 1, maxBytes: 1000, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  await out.send('fills it');
  const big = outcomeOf(out.send(Buffer.alloc(300)));
  await waiting(box, 1);
  await box.setLimits({ maxBytes: 300 });
  assert.equal((await box.receive())?.body, 'fills it');
  assert.equal(await big, 'queued');
  assert.equal((await box.receive())?.size, 300);
});

test('waiting senders go in in arrival order: a small message behind a big one that does not fit yet waits for it', {
  timeout: 20_000,
}, async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 100, maxBytes: 10, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  await out.send(Buffer.alloc(5, 'a'));
  await out.send(Buffer.alloc(5, 'b'));
  const big = outcomeOf(out.send(Buffer.alloc(8)));
  const small = outcomeOf(out.send(Buffer.alloc(2)));
  await waiting(box, 2);
  // 5 bytes free: the small one would fit, but the big one is ahead of it in line.
  assert.equal((await box.receive())?.size, 5);
  const st = await box.stat();
  assert.deepEqual([st.queued, st.waitingSenders.length], [1, 2]);
  assert.equal((await box.receive())?.size, 5);
  assert.deepEqual([await big, await small], ['queued', 'queued']);
  assert.equal((await box.receive())?.size, 8);
  assert.equal((await box.receive())?.size, 2);
});

test('a rendezvous iterator that ends gives its pushed messages back to their senders in line order', {
  timeout: 20_000,
}, async () => {
  const [me, a, b, c] = [await join(), await join(), await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const sends: Promise<string>[] = [];
  for (const [i, p] of [a, b, c].entries()) {
    sends.push(outcomeOf((await p.openMailbox(box.id)).send(`s${i + 1}`)));
    await waiting(box, i + 1);
  }
  // The iterator is pushed all three; ending it before taking any gives them back. Before, each
  // went back to the head of the line in turn, so the line came back reversed (s3, s2, s1).
  const it = box.messages({ prefetch: 8 });
  await until(
    () => box.stat(),
    (st) => st.inflight === 3,
    5000,
    'three messages pushed',
  );
  await it.return?.();
  await waiting(box, 3);
  assert.deepEqual(
    [(await box.receive())?.body, (await box.receive())?.body, (await box.receive())?.body],
    ['s1', 's2', 's3'],
  );
  assert.deepEqual(await Promise.all(sends), ['received', 'received', 'received']);
});

test('a right taken away fails the receives and sends already waiting on it (EACCES), as msgrcv re-checks', {
  timeout: 20_000,
}, async () => {
  const [owner, grantee, other] = [await join(), await join(), await join()];
  const box = await owner.createMailbox(null, { capacity: 1, mode: 0o642 });
  await box.grant(grantee.id);
  const asGrantee = await grantee.openMailbox(box.id);
  const asOther = await other.openMailbox(box.id);
  const granteeWaits = receivedOf(asGrantee.receive());
  await receiverWaiting(box);
  await box.revoke(grantee.id);
  assert.equal(await granteeWaits, 'EACCES');
  // Others may send (mode 0642): fill it, so the next send waits; then take that right away.
  await asOther.send('fills it');
  const otherSend = outcomeOf(asOther.send('waits for room'));
  await waiting(box, 1);
  await box.chmod(0o640);
  assert.equal(await otherSend, 'EACCES');
  assert.equal((await box.stat()).count, 1, 'only the message sent while it had the right');
});

test('a grant can take a right away too: the group bits replace the others bits, and what waits without the right fails (EACCES)', {
  timeout: 20_000,
}, async () => {
  const [owner, reader, writer] = [await join(), await join(), await join()];
  // Others may send and receive; the group may do neither.
  const box = await owner.createMailbox(null, { capacity: 1, mode: 0o606 });
  const asReader = await reader.openMailbox(box.id);
  const asWriter = await writer.openMailbox(box.id);
  const readerWaits = receivedOf(asReader.receive());
  await receiverWaiting(box);
  await box.grant(reader.id);
  assert.equal(await readerWaits, 'EACCES');
  await asWriter.send('fills it');
  const writerWaits = outcomeOf(asWriter.send('waits for room'));
  await waiting(box, 1);
  await box.grant(writer.id);
  assert.equal(await writerWaits, 'EACCES');
  assert.equal((await box.stat()).count, 1, 'only the message sent while it had the right');
});

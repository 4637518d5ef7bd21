/**
 * `busiestMailboxes(n)` (the kernel's `busiest` CALL): the n mailboxes holding the most messages
 * and waiters, busiest first and, among equals, lowest id first, chosen by the kernel so that a
 * view of a screenful (`postbox watch` on a terminal) need not list every mailbox. Checked
 * against the same ranking done here over the whole list.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MailboxStat } from '../src/client/mod.js';
import { Op } from '../src/protocol/frame.js';
import { kernelForTests } from './helpers/kernel.js';
import { callFrame, framePayload, RawPeer } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const k = kernelForTests();

const busyness = (s: MailboxStat): number =>
  s.count + s.waitingSendersCount + s.waitingReceiptsCount + s.waitingReceiversCount;

/** The ranking done by hand over every mailbox: the ids the kernel must answer with. */
const ranked = (all: MailboxStat[], n: number): number[] =>
  [...all]
    .sort((a, b) => busyness(b) - busyness(a) || a.id - b.id)
    .slice(0, n)
    .map((s) => s.id);

test('the busiest mailboxes, counted by messages and every kind of waiter, ties by id', async () => {
  const me = await k.join({ name: 'owner' });
  const other = await k.join({ name: 'other' });
  const boxes = [];
  for (let i = 0; i < 40; i++) boxes.push(await me.createMailbox<string>(`b-${i}`, { mode: 0o666 }));
  // Messages in some, by a fixed pseudo-random pattern; ties among them on purpose.
  for (let i = 0; i < 40; i++) for (let j = 0; j < (i * 7) % 5; j++) await boxes[i]!.send(`m${j}`);
  // Waiters of each kind: a receiver on an empty one, a sender blocked on a full one (capacity
  // 1), and a sender waiting for its receipt.
  const theirs = await other.openMailbox<string>('b-0');
  const receiving = theirs.receive();
  const full = await me.createMailbox<string>('full', { capacity: 1, mode: 0o666 });
  await full.send('first');
  const toFull = await other.openMailbox<string>('full');
  const blocked = toFull.send('second');
  await me.createMailbox<string>('receipted', { mode: 0o666 });
  const toReceipted = await other.openMailbox<string>('receipted');
  const awaiting = toReceipted.send('wants a receipt', { receipt: true });
  await until(
    () => me.mailboxes(),
    (all) =>
      all.find((s) => s.name === 'b-0')!.waitingReceiversCount === 1 &&
      all.find((s) => s.name === 'full')!.waitingSendersCount === 1 &&
      all.find((s) => s.name === 'receipted')!.waitingReceiptsCount === 1,
    10_000,
    'the three waiters',
  );
  const all = await me.mailboxes();
  // Inboxes are not mailboxes here, as list leaves them out.
  for (const n of [1, 3, 10, 25, 43, 100]) {
    const { total, mailboxes } = await me.busiestMailboxes(n);
    assert.equal(total, all.length, 'total counts every mailbox but the inboxes');
    assert.deepEqual(
      mailboxes.map((s) => s.id),
      ranked(all, n),
      `the ${n} busiest`,
    );
    // Whole stats, as list's.
    for (const s of mailboxes)
      assert.deepEqual(
        s,
        all.find((a) => a.id === s.id),
      );
  }
  // Each kind of waiter counts: with one message each (and b-0 with none), they come first.
  assert.deepEqual(
    (await me.busiestMailboxes(40)).mailboxes.filter((s) => ['b-0', 'full', 'receipted'].includes(s.name!))
      .length,
    3,
  );
  assert.equal(busyness(all.find((s) => s.name === 'full')!), 2);
  // Settled, the waiters no longer count.
  await full.receive();
  await blocked;
  await (await me.openMailbox<string>('receipted')).receive();
  await awaiting;
  await boxes[0]!.send('for the receiver');
  await receiving;
  const after = await me.mailboxes();
  assert.deepEqual(
    (await me.busiestMailboxes(10)).mailboxes.map((s) => s.id),
    ranked(after, 10),
  );
});

test('a mailbox removed is not among them, and none is an empty answer', async () => {
  const me = await k.join();
  const before = await me.busiestMailboxes(1000);
  const gone = await me.createMailbox<string>(null);
  for (let i = 0; i < 50; i++) await gone.send('x');
  const { mailboxes, total } = await me.busiestMailboxes(1);
  assert.equal(mailboxes[0]!.id, gone.id);
  assert.equal(total, before.total + 1);
  await gone.delete();
  const now = await me.busiestMailboxes(1000);
  assert.equal(now.total, before.total);
  assert.ok(!now.mailboxes.some((s) => s.id === gone.id));
});

test('a count that is not a whole number from 1 to 1,000 is refused with EINVAL, by the client and by the kernel', async () => {
  const me = await k.join();
  const other = await k.join();
  const kept = await other.createMailbox<string>(null);
  await kept.send('before');
  for (const bad of [0, -1, 1.5, 1001, Number.NaN])
    await assert.rejects(me.busiestMailboxes(bad), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EINVAL', String(bad));
      assert.match(err.message, /busiestMailboxes\(\) takes a count from 1 to 1,000/);
      return true;
    });
  // A client of its own (another language) is refused by the kernel, and so is a bad slice.
  const raw = await RawPeer.open(k.env().POSTBOX_SOCKET!);
  try {
    await raw.hello();
    const bads = [
      { limit: 0 },
      { limit: 1001 },
      { limit: 'x' },
      { limit: 5, after: -1 },
      { limit: 5, above: 1.5 },
    ];
    for (const [i, args] of bads.entries()) {
      raw.write(callFrame(i + 1, { op: 'busiest', ...args }));
      const answer = await raw.waitFor((f) => f.request === i + 1, 10_000, `busiest ${i + 1}`);
      assert.equal(answer.op, Op.ERROR, JSON.stringify(args));
      assert.match(
        String((framePayload(answer) as { message: string }).message),
        /(limit|after|above) must be/,
      );
    }
  } finally {
    await raw.destroy();
  }
  // The kernel still runs, and another process's message is as it was.
  const after = await me.busiestMailboxes(1000);
  assert.ok(after.mailboxes.some((s) => s.id === kept.id && s.count === 1));
  assert.equal((await kept.receive({ nowait: true }))?.body, 'before');
});

test('the kernel looks at 10,000 mailboxes a CALL, and the client gathers the slices', async () => {
  // One pass over a million mailboxes held the kernel 100 ms; a slice is about a millisecond,
  // and other processes are served between slices.
  const SLICE = 10_000;
  const me = await k.join();
  const early = await me.createMailbox<string>('slice-early');
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < SLICE + 50; i++) {
    inFlight.push(me.createMailbox(null).then((m) => m.close()));
    if (inFlight.length === 500) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
  const late = await me.createMailbox<string>('slice-late');
  for (let i = 0; i < 3; i++) await early.send('e');
  for (let i = 0; i < 900; i++) await late.send('l');
  const all = await me.mailboxes();
  const { total, mailboxes } = await me.busiestMailboxes(2);
  assert.equal(total, all.length);
  assert.deepEqual(
    mailboxes.map((s) => s.id),
    ranked(all, 2),
  );
  assert.equal(mailboxes[0]!.id, late.id);

  const raw = await RawPeer.open(k.env().POSTBOX_SOCKET!);
  try {
    await raw.hello();
    const slice = async (request: number, after: number) => {
      raw.write(callFrame(request, { op: 'busiest', limit: 1, after }));
      return framePayload(await raw.waitFor((f) => f.request === request, 10_000, `busiest ${request}`)) as {
        scanned: number;
        next: number | null;
        mailboxes: MailboxStat[];
      };
    };
    const slices = [];
    for (let after = 0, request = 1; request < 100; request++) {
      const got = await slice(request, after);
      slices.push(got);
      if (got.next === null) break;
      after = got.next;
    }
    assert.ok(slices.length >= 2, `${slices.length} slices`);
    for (const s of slices.slice(0, -1)) assert.equal(s.scanned, SLICE);
    assert.equal(
      slices.reduce((n, s) => n + s.scanned, 0),
      all.length,
    );
    assert.equal(slices.at(-1)!.mailboxes[0]!.id, late.id, 'the last slice has the busiest');
    // `above`: only those busier than what the asker holds already are worth their stats.
    const lastAfter = slices.length > 1 ? slices.at(-2)!.next! : 0;
    raw.write(callFrame(500, { op: 'busiest', limit: 5, after: lastAfter, above: 899 }));
    const busier = framePayload(await raw.waitFor((f) => f.request === 500, 10_000, 'above 899')) as {
      mailboxes: MailboxStat[];
    };
    assert.deepEqual(
      busier.mailboxes.map((s) => s.id),
      [late.id],
    );
    raw.write(callFrame(501, { op: 'busiest', limit: 5, after: lastAfter, above: 900 }));
    const none = framePayload(await raw.waitFor((f) => f.request === 501, 10_000, 'above 900')) as {
      mailboxes: MailboxStat[];
    };
    assert.deepEqual(none.mailboxes, []);
  } finally {
    await raw.destroy();
  }
});

/**
 * Which of the receives waiting on a mailbox gets a message that several of them select: the
 * first in line (first come), or the first from the turn (round robin), whatever each selects —
 * one type (System V msgrcv with type > 0), one sender, any, type < 0, except — and whether it
 * waits as a single receive or as a stream out of credit. Real kernel, real client processes;
 * checked by hand and against a model of the rule over long random lines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Mailbox, Message, PostboxError, PostboxProcess, ReceiveOptions } from '../src/client/mod.js';
import { Op, ReceiveFlag } from '../src/protocol/frame.js';
import { kernelForTests } from './helpers/kernel.js';
import { prng } from './helpers/prng.js';
import { framePayload, RawPeer, receiveFrame, within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const { join, env } = kernelForTests();

type Selector = ReceiveOptions & { from?: number };

/** Until `n` receives wait on box (streams with credit, single receives). */
const receiversWaiting = (box: Mailbox<string>, n: number): Promise<unknown> =>
  until(
    () => box.stat(),
    (st) => st.waitingReceiversCount === n,
    10_000,
    `${n} receives waiting`,
  );

/** A mailbox `owner` made, opened by each of `others`. */
async function shared(owner: PostboxProcess, ...others: PostboxProcess[]): Promise<Mailbox<string>[]> {
  const box = await owner.createMailbox<string>(null, { mode: 0o666 });
  return [box, ...(await Promise.all(others.map((p) => p.openMailbox<string>(box.id))))];
}

test('of receives of every kind waiting, the first in line that selects a message gets it', async () => {
  const [q, a, b] = [await join(), await join(), await join()];
  const [box, fromA, fromB] = await shared(q, a, b);
  const line: Selector[] = [
    { type: 5, from: a.id },
    { type: 5 },
    {},
    { type: 5 },
    { type: -10 },
    { type: 7, except: true },
    { type: 9 },
  ];
  const got = line.map((sel) => box.receive({ ...sel, timeout: 20_000 }));
  await receiversWaiting(box, line.length);
  const sends: [Mailbox<string>, number][] = [
    [fromB, 5], // not the receive from A: the next of type 5
    [fromA, 5], // the receive from A, first in line
    [fromB, 5], // the receive of any type, ahead of the last of type 5
    [fromA, 5],
    [fromA, 9], // type ≤ 10, ahead of except 7 and of type 9
    [fromA, 9], // except 7, ahead of type 9
    [fromA, 9],
  ];
  for (const [i, [from, type]] of sends.entries()) await from.send(`m${i}`, { type });
  const bodies = await within(Promise.all(got), 10_000, 'every receive answered');
  assert.deepEqual(
    bodies.map((m) => m?.body),
    ['m1', 'm0', 'm2', 'm3', 'm4', 'm5', 'm6'],
  );
});

test('a receive of a type that leaves the line, or is too small for the message, passes it to the next of that type', async () => {
  const [q, a] = [await join(), await join()];
  const [box, into] = await shared(q, a);
  /** What a receive settles with: the body it got, or its error's code. */
  const outcome = (p: Promise<Message<string> | null>): Promise<string | undefined> =>
    p.then(
      (m) => m?.body,
      (e: PostboxError) => e.code,
    );
  const abort = new AbortController();
  const first = outcome(box.receive({ type: 5, timeout: 20_000 }));
  const aborted = outcome(box.receive({ type: 5, signal: abort.signal }));
  const small = outcome(box.receive({ type: 5, maxSize: 2 }));
  const last = outcome(box.receive({ type: 5, timeout: 20_000 }));
  await receiversWaiting(box, 4);
  abort.abort();
  assert.equal(await aborted, 'ECANCELED');
  await receiversWaiting(box, 3);
  await into.send('one', { type: 5 });
  await into.send('three', { type: 5 });
  assert.deepEqual(
    await Promise.all([first, small, last]),
    ['one', 'E2BIG', 'three'],
    'the next of type 5 after the one too small gets it',
  );
  assert.equal((await box.stat()).queued, 0);
});

test('a stream of a type out of credit is passed over, and keeps its place in line for when its credit comes back', async () => {
  const [q, a] = [await join(), await join()];
  const [box, into] = await shared(q, a);
  const stream = box.messages({ type: 5, prefetch: 1, holdCredit: true });
  const m1 = stream.next();
  await receiversWaiting(box, 1);
  const single = box.receive({ type: 5, timeout: 20_000 });
  const later = box.receive({ type: 5, timeout: 20_000 });
  await receiversWaiting(box, 3);
  await into.send('m1', { type: 5 });
  assert.equal((await m1).value?.body, 'm1', 'the stream, first in line');
  // Its credit is held: the next goes to the single receive behind it.
  await into.send('m2', { type: 5 });
  assert.equal((await single)?.body, 'm2');
  stream.returnCredit();
  await until(
    () => box.stat(),
    (st) => st.waitingReceiversCount === 2,
    10_000,
    'the stream has credit again',
  );
  // Ahead of the receive that came after it, though it was passed over meanwhile.
  await into.send('m3', { type: 5 });
  assert.equal((await within(stream.next(), 10_000, 'the stream again')).value?.body, 'm3');
  await into.send('m4', { type: 5 });
  assert.equal((await later)?.body, 'm4');
  await stream.return();
});

test('a long line of random selections: each message goes where the rule says', async () => {
  const [q, a, b] = [await join(), await join(), await join()];
  const [box, fromA, fromB] = await shared(q, a, b);
  const rand = prng(42);
  const pick = (n: number): number => Math.floor(rand() * n);
  const TYPES = 40;
  const WAITING = 3_000;
  const SENDS = 2_000;
  const line: Selector[] = Array.from({ length: WAITING }, () => {
    const r = rand();
    if (r < 0.6) return { type: 1 + pick(TYPES) };
    if (r < 0.7) return {};
    if (r < 0.8) return { type: -(1 + pick(TYPES)) };
    if (r < 0.9) return { type: 1 + pick(TYPES), except: true };
    const from = rand() < 0.5 ? a.id : b.id;
    return rand() < 0.5 ? { from } : { type: 1 + pick(TYPES), from };
  });
  const got = line.map((sel) => {
    const p = box.receive(sel);
    p.catch(() => {}); // those no message was for end with the process
    return p;
  });
  await receiversWaiting(box, WAITING);

  // The rule: the first still waiting, in arrival order, that selects the message.
  const selects = (sel: Selector, type: number, sender: number): boolean => {
    if (sel.from !== undefined && sel.from !== sender) return false;
    const t = sel.type ?? 0;
    if (t === 0) return true;
    if (t > 0) return sel.except === true ? type !== t : type === t;
    return type <= -t;
  };
  const waiting = line.map(() => true);
  const expected = new Map<number, string>();
  for (let i = 0; i < SENDS; i++) {
    const type = 1 + pick(TYPES + 5);
    const [mailbox, sender] = rand() < 0.5 ? [fromA!, a.id] : [fromB!, b.id];
    await mailbox.send(`m${i}`, { type });
    const taker = line.findIndex((sel, k) => waiting[k] && selects(sel, type, sender));
    if (taker === -1) continue; // queued: no receive waiting selects it
    waiting[taker] = false;
    expected.set(taker, `m${i}`);
  }
  const served = [...expected.keys()];
  const bodies = await within(
    Promise.all(served.map((k) => got[k]!)),
    20_000,
    `the ${served.length} receives the rule serves`,
  );
  const wrong = served.filter((k, i) => (bodies[i] as Message<string> | null)?.body !== expected.get(k));
  assert.deepEqual(wrong, [], 'receives that got another message than the rule gives them');
  assert.equal((await box.stat()).waitingReceiversCount, WAITING - served.length);
  assert.ok(served.length > SENDS / 2, `most messages found a receive (${served.length})`);
});

/**
 * The rule, as the kernel applied it before receives were found by type and sender: a line with
 * a turn (round robin's; first come's stays at the front), a receive that asks again joins it just
 * before the turn, a message goes to the first from the turn that selects it, and under round
 * robin the turn then passes to the first after the taker of another process.
 */
class RuleLine {
  readonly items: { id: number; proc: number; sel: Selector }[] = [];
  private turn = 0;
  constructor(private readonly roundRobin: boolean) {}

  join(id: number, proc: number, sel: Selector): void {
    if (!this.roundRobin || this.items.length === 0) {
      this.items.push({ id, proc, sel });
      return;
    }
    this.items.splice(this.turn, 0, { id, proc, sel });
    this.turn++;
  }

  /** The id of the receive that takes a message of this type and sender, which leaves the line; or -1. */
  take(type: number, sender: number): number {
    const n = this.items.length;
    for (let k = 0; k < n; k++) {
      const i = (this.turn + k) % n;
      const w = this.items[i]!;
      if (!selectsMessage(w.sel, type, sender)) continue;
      if (this.roundRobin) {
        this.turn = (i + 1) % n;
        for (let j = 1; j < n; j++) {
          const other = (i + j) % n;
          if (this.items[other]!.proc !== w.proc) {
            this.turn = other;
            break;
          }
        }
      }
      this.items.splice(i, 1);
      if (this.turn > i) this.turn--;
      if (this.turn >= this.items.length) this.turn = 0;
      return w.id;
    }
    return -1;
  }
}

function selectsMessage(sel: Selector, type: number, sender: number): boolean {
  if (sel.from !== undefined && sel.from !== sender) return false;
  const t = sel.type ?? 0;
  if (t === 0) return true;
  if (t > 0) return sel.except === true ? type !== t : type === t;
  return type <= -t;
}

for (const policy of ['first', 'round-robin'] as const) {
  test(`${policy}: receives of three processes, of one type, from one sender or any, join as messages come; each message goes where the rule says`, async () => {
    const owner = await join();
    const receivers = [owner, await join(), await join()];
    const senders = [await join(), await join()];
    const box = await owner.createMailbox<string>(null, { mode: 0o666, policy });
    const recvBoxes = [
      box,
      ...(await Promise.all(receivers.slice(1).map((p) => p.openMailbox<string>(box.id)))),
    ];
    const sendBoxes = await Promise.all(senders.map((p) => p.openMailbox<string>(box.id)));
    const rand = prng(policy === 'first' ? 11 : 12);
    const pick = (n: number): number => Math.floor(rand() * n);
    const TYPES = 12;
    const selection = (): Selector => {
      const r = rand();
      const from = rand() < 0.35 ? senders[pick(2)]!.id : undefined;
      if (r < 0.45) return { type: 1 + pick(TYPES), from };
      if (r < 0.65) return { from };
      if (r < 0.8) return { type: -(1 + pick(TYPES)), from };
      return { type: 1 + pick(TYPES), except: true, from };
    };
    const line = new RuleLine(policy === 'round-robin');
    const got: Promise<Message<string> | null>[] = [];
    /** Each receive's process and selection, by its index in `got`. */
    const asked: { proc: number; sel: Selector }[] = [];
    const ask = (proc: number, sel: Selector): void => {
      const p = recvBoxes[proc]!.receive(sel);
      p.catch(() => {}); // those no message was for end with the process
      line.join(got.length, proc, sel);
      got.push(p);
      asked.push({ proc, sel });
    };
    // Blocks of one process's receives, each in the kernel before the next: runs of a process, and
    // processes taking turns one by one.
    while (line.items.length < 240) {
      const proc = pick(3);
      const block = rand() < 0.3 ? 30 + pick(30) : 1 + pick(3);
      for (let i = 0; i < block; i++) ask(proc, selection());
      await receiversWaiting(box, line.items.length);
    }
    const expected = new Map<number, string>();
    for (let i = 0; i < 300 && line.items.length > 0; i++) {
      // A message some receive waiting takes: made for one of them at random.
      const { sel } = line.items[pick(line.items.length)]!;
      const s = sel.from !== undefined ? senders.findIndex((p) => p.id === sel.from) : pick(2);
      const t = sel.type ?? 0;
      let type = 1 + pick(TYPES);
      if (t > 0 && sel.except !== true) type = t;
      else if (t > 0 && type === t) type = (t % TYPES) + 1;
      else if (t < 0) type = 1 + pick(-t);
      await sendBoxes[s]!.send(`m${i}`, { type });
      const taker = line.take(type, senders[s]!.id);
      assert.notEqual(taker, -1, `m${i} has a taker`);
      expected.set(taker, `m${i}`);
      if (rand() < 0.5) {
        // The taker's process, or another, asks again: it joins just before the turn.
        ask(rand() < 0.7 ? asked[taker]!.proc : pick(3), selection());
        await receiversWaiting(box, line.items.length);
      }
    }
    const served = [...expected.keys()];
    const bodies = await within(
      Promise.all(served.map((k) => got[k]!)),
      20_000,
      `the ${served.length} receives the rule serves`,
    );
    const wrong = served.filter((k, i) => bodies[i]?.body !== expected.get(k));
    assert.deepEqual(wrong, [], 'receives that got another message than the rule gives them');
    assert.equal((await box.stat()).waitingReceiversCount, line.items.length);
  });
}

test('a receive of one type whose process stopped reading is passed over for the next of that type, as a receive of any type is', async () => {
  const [q, fast] = [await join(), await join()];
  const [box, fastBox] = await shared(q, fast);
  const slow = await RawPeer.open(env().POSTBOX_SOCKET!);
  try {
    const welcome = await slow.hello({ pid: process.pid, name: 'slow-typed' });
    assert.equal(welcome.op, Op.WELCOME, slow.describe());
    const slowId = (framePayload(welcome) as { process: { id: number } }).process.id;
    // First in line, of type 5, with credit for 4,096: it would take every message sent here.
    slow.write(
      receiveFrame({ request: 1, target: box.id, flags: ReceiveFlag.STREAM, credit: 4096, type: 5 }),
    );
    await until(
      () => box.stat(),
      (s) => s.waitingReceivers.includes(slowId),
      10_000,
      'the slow receive waiting',
    );
    slow.pause();
    let taken = false;
    const got = fastBox.receive({ type: 5, timeout: 60_000 }).then((m) => {
      taken = true;
      return m;
    });
    await receiversWaiting(box, 2);
    // 64 KiB each: the slow process's socket fills after a few MiB, the kernel stops handing it
    // messages, and the next receive of type 5 takes one. Fed to the end of its credit, it would
    // hold all 1,000 (64 MiB) in the kernel's memory and its socket.
    const body = 'x'.repeat(64 * 1024);
    let sent = 0;
    while (!taken && sent < 1_000) {
      await box.send(`${sent++}`.padEnd(body.length, 'x'), { type: 5 });
    }
    assert.ok(taken, `the receive of type 5 behind a process not reading got none of ${sent}`);
    assert.equal((await got)?.type, 5);
  } finally {
    slow.destroy();
  }
});

/**
 * Lines up two receives of A's side by side, then B's, and ends the holder of m1 to m3: A takes
 * one, then the turn passes A's other receive for B's, as a message sent then would go.
 */
async function assertTakenByTurns(
  box: Mailbox<string>,
  fromA: Mailbox<string>,
  fromB: Mailbox<string>,
  holder: RawPeer,
  what: string,
): Promise<void> {
  const a1 = fromA.receive({ timeout: 20_000 });
  await receiversWaiting(box, 1);
  const a2 = fromA.receive({ timeout: 20_000 });
  await receiversWaiting(box, 2);
  const b1 = fromB.receive({ timeout: 20_000 });
  await receiversWaiting(box, 3);
  holder.destroy();
  const got = await within(Promise.all([a1, a2, b1]), 10_000, what);
  assert.deepEqual(
    got.map((m) => m?.body),
    ['m1', 'm3', 'm2'],
  );
}

test('round-robin: messages given back when their receiver ends go out by turns, each to a process other than the last one’s', async () => {
  const [owner, a, b] = [await join(), await join(), await join()];
  const box = await owner.createMailbox<string>(null, { mode: 0o666, policy: 'round-robin' });
  const [fromA, fromB] = await Promise.all([a.openMailbox<string>(box.id), b.openMailbox<string>(box.id)]);
  const holder = await RawPeer.open(env().POSTBOX_SOCKET!);
  try {
    const welcome = await holder.hello({ pid: process.pid, name: 'holder' });
    assert.equal(welcome.op, Op.WELCOME, holder.describe());
    // It takes three and never says so: they are given back when it ends.
    holder.write(receiveFrame({ request: 1, target: box.id, flags: ReceiveFlag.STREAM, credit: 3 }));
    await receiversWaiting(box, 1);
    for (const body of ['m1', 'm2', 'm3']) await box.send(body);
    await until(
      () => box.stat(),
      (s) => s.inflight === 3,
      10_000,
      'three in the holder’s hands',
    );
    await assertTakenByTurns(box, fromA, fromB, holder, 'the three given back, received');
  } finally {
    holder.destroy();
  }
});

test('round-robin rendezvous: senders whose receiver ended meet the receives waiting by turns, each a process other than the last one’s', async () => {
  const [owner, a, b] = [await join(), await join(), await join()];
  const box = await owner.createMailbox<string>(null, { mode: 0o666, policy: 'round-robin', capacity: 0 });
  const [fromA, fromB] = await Promise.all([a.openMailbox<string>(box.id), b.openMailbox<string>(box.id)]);
  const holder = await RawPeer.open(env().POSTBOX_SOCKET!);
  try {
    const welcome = await holder.hello({ pid: process.pid, name: 'holder' });
    assert.equal(welcome.op, Op.WELCOME, holder.describe());
    // It takes three and never says so: they are given back when it ends.
    holder.write(receiveFrame({ request: 1, target: box.id, flags: ReceiveFlag.STREAM, credit: 3 }));
    await receiversWaiting(box, 1);
    // Each send waits until its message is taken: met, not taken, they wait again when it ends.
    const sends = ['m1', 'm2', 'm3'].map((body) => box.send(body, { timeout: 20_000 }));
    await until(
      () => box.stat(),
      (s) => s.inflight === 3 || s.waitingReceipts.length === 3,
      10_000,
      'three in the holder’s hands',
    );
    await assertTakenByTurns(box, fromA, fromB, holder, 'the three met again, received');
    await within(Promise.all(sends), 10_000, 'the sends settled');
  } finally {
    holder.destroy();
  }
});

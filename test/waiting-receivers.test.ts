/**
 * Which of the receives waiting on a mailbox gets a message that several of them select: the
 * first in line (first come), whatever each selects — one type (System V msgrcv with type > 0,
 * found by that type: src/kernel/receiver-line.ts), any, type < 0, except, a sender — and
 * whether it waits as a single receive or as a stream out of credit. Real kernel, real client
 * processes; checked by hand and against a model of the rule over a long random line.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Mailbox, Message, PostboxError, PostboxProcess, ReceiveOptions } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { prng } from './helpers/prng.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const { join } = kernelForTests();

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

// The batch face of the client: sendMany() (one promise for many sends) and batches() (every
// message that has arrived, at each step). Each message of a batch must behave exactly as its own
// send or receive would: order, codecs, waiting, would-block, abort, giving back on early exit.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Message, type PostboxError, SendManyError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const { join } = kernelForTests();

let seq = 0;
const boxName = (): string => `many-${++seq}`;

/** Collects `n` messages through batches(), and the size of each batch. */
async function collect(
  it: AsyncIterableIterator<Message[]>,
  n: number,
): Promise<{ got: Message[]; sizes: number[] }> {
  const got: Message[] = [];
  const sizes: number[] = [];
  for await (const batch of it) {
    assert.ok(batch.length > 0, 'a batch is never empty');
    sizes.push(batch.length);
    got.push(...batch);
    if (got.length >= n) break;
  }
  return { got, sizes };
}

test('10,000 bodies of every kind arrive in order, each with its codec, in batches', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const inbox = await b.createMailbox(name, { mode: 0o666 });
  const out = await a.openMailbox(name);
  const bodies: unknown[] = [];
  for (let i = 0; i < 10_000; i++)
    bodies.push(i % 3 === 0 ? Buffer.from(`b${i}`) : i % 3 === 1 ? `s${i}` : { i, tag: 'object' });
  // A generator, not an array: any iterable is taken.
  const result = await out.sendMany(
    (function* () {
      yield* bodies;
    })(),
  );
  assert.deepEqual(result, { sent: 10_000 });
  const { got, sizes } = await collect(inbox.batches(), 10_000);
  assert.equal(got.length, 10_000);
  assert.ok(
    sizes.some((s) => s > 1),
    `every batch held one message (${sizes.length} batches): nothing was batched`,
  );
  got.forEach((m, i) => {
    if (i % 3 === 0) assert.deepEqual(m.body, Buffer.from(`b${i}`));
    else if (i % 3 === 1) assert.equal(m.body, `s${i}`);
    else assert.deepEqual(m.body, { i, tag: 'object' });
    assert.equal(m.sender, a.id);
  });
  const st = await inbox.stat();
  assert.equal(st.count, 0);
  assert.equal(st.received, 10_000);
});

test('every field of the head arrives as sent, by send() and by sendMany(): type, priority, headers', async () => {
  // The heads are written a word at a time: a field written over its neighbour, or a 64-bit type
  // split wrongly at 2^32, shows here.
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const inbox = await b.createMailbox(name, { mode: 0o666 });
  const out = await a.openMailbox(name);
  const types = [1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER];
  const headers = { trace: 'ab-12', 'x-long': 'z'.repeat(300) };
  for (const type of types) {
    await out.send(Buffer.from(`one ${type}`), { type, priority: 32_767, headers });
    await out.sendMany([`many ${type}`, Buffer.from([type % 251])], { type, priority: 300, headers });
  }
  await out.send('plain');
  const { got } = await collect(inbox.batches(), 1 + types.length * 3);
  const expected = types.flatMap((type) => [
    { body: Buffer.from(`one ${type}`), type, priority: 32_767 },
    { body: `many ${type}`, type, priority: 300 },
    { body: Buffer.from([type % 251]), type, priority: 300 },
  ]);
  expected.push({ body: 'plain', type: 1, priority: 0 });
  assert.equal(got.length, expected.length);
  got.forEach((m, i) => {
    const want = expected[i]!;
    assert.deepEqual(
      { body: m.body, type: m.type, priority: m.priority, sender: m.sender },
      { ...want, sender: a.id },
      `message ${i}`,
    );
    assert.deepEqual(m.headers, i === got.length - 1 ? {} : headers, `headers of message ${i}`);
    // The headers travel between the head and the body: size and data are the body's alone.
    const bytes = Buffer.from(want.body as string | Buffer);
    assert.deepEqual(
      { size: m.size, data: m.data },
      { size: bytes.length, data: bytes },
      `size of message ${i}`,
    );
  });
});

test('a message reads as documented: body decoded once, text() as UTF-8, a structured body cut short is EPROTO', async () => {
  const a = await join();
  const box = await a.createMailbox(boxName());
  await box.send({ job: 'résumé ✓' });
  await box.send({ job: 'x'.repeat(40) });
  const m = (await box.receive())!;
  // One value, decoded on the first read: a change made to it is there at the next.
  const body = m.body as { job: string; done?: boolean };
  body.done = true;
  assert.equal(m.body, body);
  assert.deepEqual(m.body, { job: 'résumé ✓', done: true });
  assert.match(m.text(), /résumé ✓/);
  const cut = (await box.receive({ maxSize: 10, truncate: true }))!;
  assert.equal(cut.size, 10);
  assert.throws(
    () => cut.body,
    (e: PostboxError) => e.code === 'EPROTO' && /the 10-byte body is not valid msgpack/.test(e.message),
  );
  assert.equal(cut.data.length, 10);
});

test("a body over the mailbox's own size limit sends none of the batch", async () => {
  // The kernel refused only that message, after the ones before it had gone in.
  const [a] = [await join()];
  const box = await a.createMailbox(boxName(), { maxMessageSize: 100 });
  await assert.rejects(box.sendMany(['small', 'x'.repeat(200)]), (e: PostboxError) => {
    assert.equal(e.code, 'EMSGSIZE');
    assert.match(e.message, /message 1: a 200-byte message is over the 100-byte limit of mailbox/);
    return true;
  });
  const ring = await a.createMailbox(boxName(), { capacity: 4, messageSize: 8 });
  await assert.rejects(ring.sendMany(['8 bytes!', 'nine byte']), /takes messages of exactly 8 bytes/);
  assert.deepEqual([(await box.stat()).count, (await ring.stat()).count], [0, 0]);
  assert.deepEqual(await ring.sendMany(['8 bytes!', '8 bytes?']), { sent: 2 });
});

test('bad input sends nothing: an oversized body, a body its codec cannot take, a receipt, a bad option', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666, maxMessageSize: 100 });
  const out = await a.openMailbox(name);
  const limit = a.limits.maxMessageSize;
  await assert.rejects(
    out.sendMany(['ok', 'fine', Buffer.alloc(limit + 1)]),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EMSGSIZE');
      assert.match(e.message, /^message 2: /);
      return true;
    },
  );
  await assert.rejects(out.sendMany(['ok', 'text'], { codec: 'bytes' }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'EINVAL');
    assert.match(e.message, /^message 0: .*codec 'bytes'/);
    return true;
  });
  await assert.rejects(out.sendMany(['x'], { receipt: true }), { code: 'EINVAL' });
  await assert.rejects(out.sendMany(null as unknown as string[]), { code: 'EINVAL' });
  await assert.rejects(out.sendMany(7 as unknown as string[]), { code: 'EINVAL' });
  await assert.rejects(out.sendMany(['x'], { priority: -1 }), { code: 'EINVAL' });
  assert.equal((await box.stat()).sent, 0, 'nothing reached the mailbox');
  // The mailbox's own limit is checked up front too: none of the batch goes in (the kernel
  // would have refused only the big one, after 'small' went in).
  await assert.rejects(out.sendMany(['small', 'x'.repeat(200), 'small too']), (e: unknown) => {
    assert.ok(!(e instanceof SendManyError));
    assert.equal((e as PostboxError).code, 'EMSGSIZE');
    assert.match((e as Error).message, /^message 1: /);
    return true;
  });
  assert.equal(await box.receive({ nowait: true }), null, 'nothing was sent');
  await assert.rejects(async () => box.batches({ max: 0 }), { code: 'EINVAL' });
  assert.deepEqual(await out.sendMany([]), { sent: 0 });
});

test('nowait into a full mailbox: the ones that fit go in, the error names the others', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666, capacity: 3 });
  const out = await a.openMailbox(name);
  await assert.rejects(out.sendMany(['m0', 'm1', 'm2', 'm3', 'm4'], { nowait: true }), (e: unknown) => {
    assert.ok(e instanceof SendManyError);
    assert.equal(e.code, 'EAGAIN');
    assert.deepEqual(
      e.failures.map((f) => f.index),
      [3, 4],
    );
    assert.match(e.message, /2 of 5 messages to mailbox 'many-\d+' were not sent; message 3: /);
    return true;
  });
  const st = await box.stat();
  assert.equal(st.count, 3);
  const { got } = await collect(box.batches(), 3);
  assert.deepEqual(
    got.map((m) => m.body),
    ['m0', 'm1', 'm2'],
  );
});

test('a batch into a bounded mailbox waits as each send would, and completes as a reader drains it', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666, capacity: 2 });
  const out = await a.openMailbox(name);
  const bodies = Array.from({ length: 50 }, (_, i) => `w${i}`);
  const sending = out.sendMany(bodies);
  let settled = false;
  void sending.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await until(
    () => box.stat(),
    (st) => st.count === 2 && st.waitingSenders.length > 0,
    10_000,
    'the batch blocked on the full mailbox',
  );
  assert.equal(settled, false, 'a batch is not done while its messages wait');
  const { got } = await collect(box.batches({ prefetch: 2 }), 50);
  assert.deepEqual(
    got.map((m) => m.body),
    bodies,
  );
  assert.deepEqual(await sending, { sent: 50 });
});

test('an abort withdraws the messages still waiting, and only those', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666, capacity: 1 });
  const out = await a.openMailbox(name);
  const ac = new AbortController();
  const sending = out.sendMany(['a0', 'a1', 'a2', 'a3'], { signal: ac.signal });
  await until(
    () => box.stat(),
    (st) => st.count === 1 && st.waitingSenders.length > 0,
    10_000,
    'the batch blocked',
  );
  ac.abort();
  await assert.rejects(sending, (e: unknown) => {
    assert.ok(e instanceof SendManyError);
    assert.equal(e.code, 'ECANCELED');
    assert.deepEqual(
      e.failures.map((f) => f.index),
      [1, 2, 3],
    );
    return true;
  });
  const st = await box.stat();
  assert.equal(st.count, 1);
  assert.deepEqual(st.waitingSenders, []);
  assert.equal((await box.receive({ nowait: true }))?.body, 'a0');
  await assert.rejects(out.sendMany(['late'], { signal: ac.signal }), { code: 'ECANCELED' });
});

test('leaving a batch loop early gives back what was not yielded, in order', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666 });
  const out = await a.openMailbox(name);
  await out.sendMany(Array.from({ length: 100 }, (_, i) => i));
  await until(
    () => box.stat(),
    (st) => st.count === 100,
  );
  let first: Message[] = [];
  for await (const batch of box.batches({ max: 10 })) {
    first = batch;
    break;
  }
  assert.deepEqual(
    first.map((m) => m.body),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  const st = await until(
    () => box.stat(),
    (s) => s.inflight === 0,
  );
  assert.equal(st.count, 90);
  assert.equal((await box.receive({ nowait: true }))?.body, 10);
});

test('a batch reader waiting on a mailbox that is deleted fails with EIDRM', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666 });
  const reader = (await a.openMailbox(name)).batches();
  // Handled from the start: the EIDRM may arrive before the delete's own answer does.
  const waiting = assert.rejects(reader.next(), { code: 'EIDRM' });
  await until(
    () => box.stat(),
    (st) => st.waitingReceivers.length === 1,
  );
  await box.delete();
  await waiting;
});

test('priority mailboxes yield one message per batch, highest priority first; inboxes batch too', async () => {
  const [a, b] = [await join(), await join()];
  const name = boxName();
  const box = await b.createMailbox(name, { mode: 0o666, order: 'priority' });
  const out = await a.openMailbox(name);
  await out.sendMany(['low'], { priority: 1 });
  await out.sendMany(['high', 'high too'], { priority: 9 });
  const { got, sizes } = await collect(box.batches(), 3);
  assert.deepEqual(
    got.map((m) => m.body),
    ['high', 'high too', 'low'],
  );
  assert.deepEqual(sizes, [1, 1, 1]);

  assert.deepEqual(await a.sendMany(b.id, ['i0', 'i1', 'i2'], { type: 7 }), { sent: 3 });
  const inbox = await collect(b.batches(), 3);
  assert.deepEqual(
    inbox.got.map((m) => [m.body, m.type, m.sender]),
    [
      ['i0', 7, a.id],
      ['i1', 7, a.id],
      ['i2', 7, a.id],
    ],
  );
});

// USERS.md #2, silent loss: sendMany resolved `{ sent: n }` when onFull 'drop' had dropped some
// of them, so the sender was told every message went in; a send() alone says 'dropped'.
test("onFull 'drop' and 'replace-oldest': the result counts what was dropped and what replaced", async () => {
  const a = await join();
  const box = await a.createMailbox(boxName(), { capacity: 2 });
  assert.deepEqual(await box.sendMany(['1', '2', '3', '4', '5'], { onFull: 'drop' }), {
    sent: 2,
    dropped: 3,
  });
  assert.equal((await box.stat()).dropped, 3);
  assert.deepEqual(await box.sendMany(['6', '7', '8'], { onFull: 'replace-oldest' }), {
    sent: 3,
    replaced: 3,
  });
  const left = [(await box.receive({ nowait: true }))?.body, (await box.receive({ nowait: true }))?.body];
  assert.deepEqual(left, ['7', '8']);
  // Room for all: nothing dropped or replaced, and the result is as before.
  assert.deepEqual(await box.sendMany(['9'], { onFull: 'drop' }), { sent: 1 });
  await box.delete();
});

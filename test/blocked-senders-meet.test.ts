// Senders waiting on a mailbox (a rendezvous, or a full one) and what a receiver, or a change of
// limits, does with them: a selective receive meets the sender it selects even when another waits
// ahead of it; a nowait receive meets a waiting sender; raising a rendezvous's capacity admits the
// waiting senders as queued sends; lowering the byte limit under a waiting message fails that send
// rather than holding up the line behind it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PostboxError, SendResult } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const { join } = kernelForTests();

/** Records how each send settled, by label. */
function settled(): {
  note: (label: string, p: Promise<SendResult>) => void;
  outcomes: Record<string, string>;
} {
  const outcomes: Record<string, string> = {};
  return {
    outcomes,
    note(label, p) {
      p.then(
        (r) => {
          outcomes[label] = r.outcome;
        },
        (e: PostboxError) => {
          outcomes[label] = e.code;
        },
      );
    },
  };
}

test('a rendezvous: a receive from B meets B waiting behind A; a receive of type 2 meets the type-2 sender', async () => {
  const [me, a, b] = [await join(), await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const s = settled();
  s.note('a', (await a.openMailbox(box.id)).send('from a', { type: 1 }));
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 1,
    5000,
    'a waiting',
  );
  s.note('b', (await b.openMailbox(box.id)).send('from b', { type: 2 }));
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 2,
    5000,
    'b waiting',
  );
  // Before, both waited for as long as A did.
  assert.equal((await box.receive({ from: b.id, timeout: 10_000 }))?.body, 'from b');
  await until(
    () => Promise.resolve(s.outcomes),
    (o) => o.b !== undefined,
    5000,
    "b's send to settle",
  );
  assert.deepEqual({ ...s.outcomes }, { b: 'received' });
  s.note('b2', (await b.openMailbox(box.id)).send('b again', { type: 2 }));
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 2,
    5000,
    'b waiting again',
  );
  assert.equal((await box.receive({ type: 2, timeout: 10_000 }))?.body, 'b again');
  assert.equal((await box.receive({ timeout: 10_000 }))?.body, 'from a');
});

test('a rendezvous: a nowait receive meets a sender already waiting, and is null when none is', async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  assert.equal(await box.receive({ nowait: true }), null);
  const sent = (await a.openMailbox(box.id)).send('hello');
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 1,
    5000,
    'a waiting',
  );
  assert.equal(await box.receive({ nowait: true, type: 7 }), null, 'it selects nothing there');
  assert.equal((await box.receive({ nowait: true }))?.body, 'hello');
  assert.equal((await sent).outcome, 'received');
  assert.equal(await box.receive({ nowait: true }), null);
});

test("raising a rendezvous's capacity admits its waiting senders as queued sends", async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 0, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  const s = settled();
  s.note('x', out.send('x'));
  s.note('y', out.send('y'));
  s.note('r', out.send('with a receipt', { receipt: true }));
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 3,
    5000,
    'three waiting',
  );
  await box.setLimits({ capacity: 5 });
  // They waited until a receiver took them, and then said 'received'.
  await until(
    () => Promise.resolve(s.outcomes),
    (o) => o.x !== undefined && o.y !== undefined,
    5000,
    'x and y',
  );
  assert.deepEqual(
    { ...s.outcomes },
    { x: 'queued', y: 'queued' },
    'the one with a receipt waits to be taken',
  );
  assert.deepEqual(
    [(await box.receive())?.body, (await box.receive())?.body, (await box.receive())?.body],
    ['x', 'y', 'with a receipt'],
  );
  await until(
    () => Promise.resolve(s.outcomes),
    (o) => o.r !== undefined,
    5000,
    'the receipt',
  );
  assert.equal(s.outcomes.r, 'received');
});

test('lowering maxBytes under a waiting message fails that send (EMSGSIZE); the line behind it moves', async () => {
  const [me, a] = [await join(), await join()];
  const box = await me.createMailbox(null, { capacity: 1, maxBytes: 1000, mode: 0o666 });
  const out = await a.openMailbox(box.id);
  await out.send('fills it');
  const s = settled();
  s.note('big', out.send(Buffer.alloc(300)));
  s.note('small', out.send(Buffer.alloc(10)));
  await until(
    () => box.stat(),
    (st) => st.waitingSenders.length === 2,
    5000,
    'two waiting',
  );
  await box.setLimits({ maxBytes: 200 });
  await until(
    () => Promise.resolve(s.outcomes),
    (o) => o.big !== undefined,
    5000,
    'the big one refused',
  );
  assert.equal(s.outcomes.big, 'EMSGSIZE');
  assert.equal((await box.receive())?.body, 'fills it');
  await until(
    () => Promise.resolve(s.outcomes),
    (o) => o.small !== undefined,
    5000,
    'the small one in',
  );
  assert.equal(s.outcomes.small, 'queued');
  assert.equal((await box.receive())?.size, 10);
});

/**
 * The client's queue of sends awaiting the kernel's cumulative ACK: pure, so checked directly,
 * including against a plain array model over random operations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckQueue } from '../src/client/ack-queue.js';

type Outcome = { id: number; how: 'ok' | 'err'; value: string };

function queue(size?: number): { q: AckQueue<string, string>; log: Outcome[]; add(id: number): void } {
  const q = new AckQueue<string, string>(size);
  const log: Outcome[] = [];
  return {
    q,
    log,
    add(id: number) {
      q.push(
        id,
        (value) => log.push({ id, how: 'ok', value }),
        (value, failed) => {
          // A settler shared by many sends (sendMany) learns which one failed from this id.
          assert.equal(failed, id, 'a rejection names its send');
          log.push({ id, how: 'err', value });
        },
      );
    },
  };
}

test('an ACK settles every send up to its id, oldest first, once', () => {
  const { q, log, add } = queue(4);
  for (const id of [2, 3, 5, 8, 9, 12]) add(id); // grows past 4; ids need not be contiguous
  q.ackThrough(8, 'queued');
  assert.deepEqual(
    log.map((o) => o.id),
    [2, 3, 5, 8],
  );
  q.ackThrough(8, 'again');
  assert.equal(log.length, 4, 'an ACK repeated settles nothing twice');
  assert.equal(q.length, 2);
  q.ackThrough(100, 'queued');
  assert.deepEqual(
    log.map((o) => o.id),
    [2, 3, 5, 8, 9, 12],
  );
  assert.equal(q.length, 0);
});

test('a send taken out of line is skipped by the ACK; the front is freed at once', () => {
  const { q, log, add } = queue(2);
  for (let id = 1; id <= 6; id++) add(id);
  const four = q.take(4);
  assert.ok(four !== null);
  four.reject('EAGAIN', 4);
  assert.equal(q.take(4), null, 'taken once only');
  assert.equal(q.take(7), null, 'never pushed');
  // Blocked sends (answered one by one, never ACKed) must not pile up in the ring.
  for (const id of [1, 2, 3]) q.take(id)!.resolve('received');
  assert.equal(q.length, 2, 'the front slots went with their takes (5 and 6 remain)');
  q.ackThrough(6, 'queued');
  assert.deepEqual(
    log.map((o) => `${o.id}:${o.how}:${o.value}`),
    ['4:err:EAGAIN', '1:ok:received', '2:ok:received', '3:ok:received', '5:ok:queued', '6:ok:queued'],
  );
});

test('failAll rejects every waiting send and leaves the queue usable', () => {
  const { q, log, add } = queue();
  for (let id = 1; id <= 3; id++) add(id);
  q.take(2)!.resolve('individual');
  q.failAll('ENOTCONN');
  assert.deepEqual(
    log.map((o) => `${o.id}:${o.how}`),
    ['2:ok', '1:err', '3:err'],
  );
  assert.equal(q.length, 0);
  add(4);
  q.ackThrough(4, 'queued');
  assert.equal(log.at(-1)!.id, 4);
});

test('random pushes, ACKs and takes settle exactly as a plain list would', () => {
  for (let seed = 1; seed <= 200; seed++) {
    let x = seed;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x % n;
    };
    const { q, log, add } = queue(1 + rand(8));
    const model: number[] = [];
    const expected: string[] = [];
    let next = 1;
    for (let step = 0; step < 300; step++) {
      const op = rand(10);
      if (op < 5) {
        add(next);
        model.push(next);
        next += 1 + rand(3);
      } else if (op < 8) {
        const through = next - 1 - rand(6);
        while (model.length > 0 && model[0]! <= through) expected.push(`${model.shift()}:ok`);
        q.ackThrough(through, 'queued');
      } else {
        const id = next - 1 - rand(8);
        const i = model.indexOf(id);
        const got = q.take(id);
        assert.equal(got !== null, i >= 0, `seed ${seed}: take(${id})`);
        if (got !== null) {
          model.splice(i, 1);
          got.reject('E', id);
          expected.push(`${id}:err`);
        }
      }
      assert.ok(q.length >= model.length, `seed ${seed}: length ${q.length} < ${model.length}`);
    }
    assert.deepEqual(
      log.map((o) => `${o.id}:${o.how}`),
      expected,
      `seed ${seed}`,
    );
  }
});

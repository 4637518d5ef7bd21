/**
 * The client's queue of sends awaiting the kernel's cumulative ACK: pure, so checked directly,
 * including against a plain array model over random operations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckQueue } from '../src/client/ack-queue.js';

type Outcome = { id: number; how: 'ok' | 'err'; value: string };

interface Taken {
  resolve(value: string): void;
  reject(value: string): void;
}

function queue(size?: number): {
  q: AckQueue<string, string>;
  log: Outcome[];
  add(id: number): void;
  addRange(from: number, to: number): void;
  take(id: number): Taken | null;
} {
  const q = new AckQueue<string, string>(size);
  const log: Outcome[] = [];
  // Ids of each range not yet settled or taken out of line, in order.
  const ranges: number[][] = [];
  // The id a range's shared settler is resolving out of line (it is told only a count).
  let outOfLine: number | null = null;
  return {
    q,
    log,
    add(id: number) {
      q.push(id, {
        resolve(value, count) {
          assert.equal(count, 1, 'a lone send settles one');
          log.push({ id, how: 'ok', value });
        },
        reject(value, failed) {
          // A settler shared by many sends (sendMany) learns which one failed from this id.
          assert.equal(failed, id, 'a rejection names its send');
          log.push({ id, how: 'err', value });
        },
      });
    },
    // A range shares one settler (as sendMany does): an ACK tells it how many it settles, and
    // those are the oldest of its sends still waiting.
    addRange(from: number, to: number) {
      const open: number[] = [];
      for (let id = from; id <= to; id++) open.push(id);
      ranges.push(open);
      q.pushRange(from, to, {
        resolve(value, count) {
          if (outOfLine !== null) {
            assert.equal(count, 1, 'a send taken out of line settles one');
            log.push({ id: outOfLine, how: 'ok', value });
            return;
          }
          assert.ok(count >= 1 && count <= open.length, `a range settles 1…${open.length}, not ${count}`);
          for (let k = 0; k < count; k++) log.push({ id: open.shift()!, how: 'ok', value });
        },
        reject(value, failed) {
          assert.ok(failed >= from && failed <= to, `a rejection names a send of the range, not ${failed}`);
          log.push({ id: failed, how: 'err', value });
        },
      });
    },
    take(id: number): Taken | null {
      const got = q.take(id);
      if (got === null) return null;
      for (const open of ranges) {
        const i = open.indexOf(id);
        if (i >= 0) open.splice(i, 1);
      }
      return {
        resolve(value: string) {
          outOfLine = id;
          try {
            got.resolve(value, 1);
          } finally {
            outOfLine = null;
          }
        },
        reject(value: string) {
          got.reject(value, id);
        },
      };
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
  const { q, log, add, take } = queue(2);
  for (let id = 1; id <= 6; id++) add(id);
  const four = take(4);
  assert.ok(four !== null);
  four.reject('EAGAIN');
  assert.equal(take(4), null, 'taken once only');
  assert.equal(take(7), null, 'never pushed');
  // Blocked sends (answered one by one, never ACKed) must not pile up in the ring.
  for (const id of [1, 2, 3]) take(id)!.resolve('received');
  assert.equal(q.length, 2, 'the front slots went with their takes (5 and 6 remain)');
  q.ackThrough(6, 'queued');
  assert.deepEqual(
    log.map((o) => `${o.id}:${o.how}:${o.value}`),
    ['4:err:EAGAIN', '1:ok:received', '2:ok:received', '3:ok:received', '5:ok:queued', '6:ok:queued'],
  );
});

test('failAll rejects every waiting send and leaves the queue usable', () => {
  const { q, log, add, take } = queue();
  for (let id = 1; id <= 3; id++) add(id);
  take(2)!.resolve('individual');
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
    const { q, log, add, addRange, take } = queue(1 + rand(8));
    const model: number[] = [];
    const expected: string[] = [];
    let next = 1;
    for (let step = 0; step < 300; step++) {
      const op = rand(10);
      if (op < 4) {
        add(next);
        model.push(next);
        next += 1 + rand(3);
      } else if (op < 5) {
        const n = 1 + rand(6);
        addRange(next, next + n - 1);
        for (let id = next; id < next + n; id++) model.push(id);
        next += n + rand(2);
      } else if (op < 8) {
        const through = next - 1 - rand(6);
        while (model.length > 0 && model[0]! <= through) expected.push(`${model.shift()}:ok`);
        q.ackThrough(through, 'queued');
      } else {
        const id = next - 1 - rand(8);
        const i = model.indexOf(id);
        const got = take(id);
        assert.equal(got !== null, i >= 0, `seed ${seed}: take(${id})`);
        if (got !== null) {
          model.splice(i, 1);
          // Refused at once, or blocked and later taken by a receiver: both settle it alone.
          if (rand(2) === 0) {
            got.reject('E');
            expected.push(`${id}:err`);
          } else {
            got.resolve('received');
            expected.push(`${id}:ok`);
          }
        }
      }
      assert.ok(q.length <= model.length + 64, `seed ${seed}: ${q.length} entries for ${model.length} sends`);
    }
    assert.deepEqual(
      log.map((o) => `${o.id}:${o.how}`),
      expected,
      `seed ${seed}`,
    );
  }
});

test('a range (one sendMany) settles by count, partly by an ACK inside it, around sends taken out of line', () => {
  const { q, log, add, addRange, take } = queue(2);
  add(1);
  addRange(2, 9);
  add(10);
  take(4)!.reject('EAGAIN'); // refused at once
  const six = take(6)!; // blocked: answered later on its own
  assert.equal(take(6), null, 'taken once only, inside a range too');
  q.ackThrough(7, 'queued');
  assert.deepEqual(
    log.map((o) => `${o.id}:${o.how}`),
    ['4:err', '1:ok', '2:ok', '3:ok', '5:ok', '7:ok'],
  );
  assert.equal(take(5), null, 'an acknowledged send is no longer waiting');
  six.resolve('received');
  q.ackThrough(10, 'queued');
  assert.deepEqual(
    log.slice(6).map((o) => `${o.id}:${o.how}:${o.value}`),
    ['6:ok:received', '8:ok:queued', '9:ok:queued', '10:ok:queued'],
  );
  assert.equal(q.length, 0);
  addRange(11, 14);
  take(12)!.resolve('received');
  q.failAll('ENOTCONN');
  assert.deepEqual(
    log.slice(10).map((o) => `${o.id}:${o.how}`),
    ['12:ok', '11:err', '13:err', '14:err'],
  );
  assert.equal(take(13), null, 'failAll leaves nothing waiting');
});

/**
 * The line of senders blocked on a mailbox (src/kernel/blocked-senders.ts), and a priority
 * mailbox's, which finds them by priority too (src/kernel/blocked-by-priority.ts): pure, so
 * checked directly, and against a plain array over random operations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PriorityBlockedSenders } from '../src/kernel/blocked-by-priority.js';
import { BlockedSenders } from '../src/kernel/blocked-senders.js';
import { prng } from './helpers/prng.js';

class Sender {
  blockedAt = -1;
  constructor(readonly id: number) {}
}

const ids = (line: BlockedSenders<Sender>): number[] => line.toArray().map((s) => s.id);

test('first in, first out; anyone may leave from where they stand', () => {
  const line = new BlockedSenders<Sender>(2);
  const s = Array.from({ length: 6 }, (_, i) => new Sender(i));
  for (const x of s) line.push(x); // grows past 2
  assert.equal(line.length, 6);
  assert.equal(line.first(), s[0]);
  assert.ok(line.remove(s[3]!));
  assert.ok(!line.remove(s[3]!), 'not twice');
  assert.ok(line.remove(s[0]!));
  assert.equal(line.first(), s[1], 'the next in line is first');
  assert.deepEqual(ids(line), [1, 2, 4, 5]);
  line.unshift(s[0]!);
  assert.deepEqual(ids(line), [0, 1, 2, 4, 5]);
  assert.deepEqual(
    line.drain().map((x) => x.id),
    [0, 1, 2, 4, 5],
  );
  assert.equal(line.length, 0);
  assert.equal(line.first(), null);
  assert.ok(
    s.every((x) => x.blockedAt === -1),
    'nobody thinks they are still in line',
  );
});

test('leaving while the line is walked skips nobody', () => {
  const line = new BlockedSenders<Sender>(4);
  for (let i = 0; i < 10; i++) line.push(new Sender(i));
  const seen: number[] = [];
  for (const x of line) {
    seen.push(x.id);
    if (x.id % 2 === 0) line.remove(x); // as System V admission takes those that fit
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(ids(line), [1, 3, 5, 7, 9]);
});

test('a full ring of holes is closed up, not grown', () => {
  const line = new BlockedSenders<Sender>(8);
  const s = Array.from({ length: 8 }, (_, i) => new Sender(i));
  for (const x of s) line.push(x);
  for (const i of [1, 2, 3, 5, 6]) line.remove(s[i]!);
  for (let i = 8; i < 13; i++) line.push(new Sender(i));
  assert.deepEqual(ids(line), [0, 4, 7, 8, 9, 10, 11, 12]);
  for (const x of line.toArray()) assert.ok(line.remove(x), `${x.id} knows where it stands`);
  assert.equal(line.length, 0);
});

test('against an array, over random pushes, unshifts, removals and walks', () => {
  const rand = prng(7);
  for (let round = 0; round < 50; round++) {
    const line = new BlockedSenders<Sender>(1 + Math.floor(rand() * 4));
    const model: Sender[] = [];
    let next = 0;
    for (let step = 0; step < 400; step++) {
      const r = rand();
      if (r < 0.45) {
        const x = new Sender(next++);
        line.push(x);
        model.push(x);
      } else if (r < 0.5) {
        const x = new Sender(next++);
        line.unshift(x);
        model.unshift(x);
      } else if (r < 0.75 && model.length > 0) {
        const x = model.splice(Math.floor(rand() * model.length), 1)[0]!;
        assert.ok(line.remove(x));
      } else if (r < 0.9 && model.length > 0) {
        assert.equal(line.first(), model[0]);
        line.remove(model.shift()!);
      } else {
        for (const x of line) {
          if (rand() < 0.3) {
            line.remove(x);
            model.splice(model.indexOf(x), 1);
          }
        }
      }
      assert.equal(line.length, model.length);
      assert.equal(line.first(), model[0] ?? null);
    }
    assert.deepEqual(
      ids(line),
      model.map((x) => x.id),
    );
  }
});

class Prioritised {
  blockedAt = -1;
  prevAtPriority: Prioritised | null = null;
  nextAtPriority: Prioritised | null = null;
  constructor(
    readonly id: number,
    readonly priority: number,
  ) {}
}

/** The line walked by priority, highest first, each priority in its order. */
function byPriority(line: PriorityBlockedSenders<Prioritised>): number[] {
  const out: number[] = [];
  for (let p = line.highestPriority(); p !== -1; p = line.priorityBelow(p))
    for (let x = line.firstAt(p); x !== null; x = x.nextAtPriority) out.push(x.id);
  return out;
}

test('by priority: highest first, the line’s order within a priority, over random pushes, unshifts and removals', () => {
  const rand = prng(11);
  for (let round = 0; round < 40; round++) {
    const line = new PriorityBlockedSenders<Prioritised>(1 + Math.floor(rand() * 4));
    const model: Prioritised[] = [];
    // Indexed from the start, or only once asked, after senders came and went.
    const askFrom = round % 2 === 0 ? 0 : 100;
    let next = 0;
    for (let step = 0; step < 300; step++) {
      const r = rand();
      // A few priorities, so that several share one; and a wide one now and then.
      const priority = rand() < 0.9 ? Math.floor(rand() * 4) : Math.floor(rand() * 32_768);
      if (r < 0.45) {
        const x = new Prioritised(next++, priority);
        line.push(x);
        model.push(x);
      } else if (r < 0.55) {
        // A rendezvous message given back: its sender first in line again.
        const x = new Prioritised(next++, priority);
        line.unshift(x);
        model.unshift(x);
      } else if (r < 0.97 && model.length > 0) {
        const x = model.splice(Math.floor(rand() * model.length), 1)[0]!;
        assert.ok(line.remove(x));
        assert.ok(!line.remove(x), 'not twice');
      } else if (r >= 0.97) {
        const drained = line.drain();
        assert.deepEqual(
          drained.map((x) => x.id),
          model.map((x) => x.id),
        );
        assert.ok(drained.every((x) => x.prevAtPriority === null && x.nextAtPriority === null));
        model.length = 0;
      }
      if (step < askFrom) continue;
      const expected = [...model].sort((a, b) => b.priority - a.priority).map((x) => x.id);
      assert.deepEqual(byPriority(line), expected, `round ${round}, step ${step}`);
      assert.deepEqual(
        line.toArray().map((x) => x.id),
        model.map((x) => x.id),
      );
    }
  }
});

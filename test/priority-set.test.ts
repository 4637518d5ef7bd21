/**
 * The priorities a priority mailbox orders by: the set's highest and next-below answers against
 * a sorted array of the same priorities, over the whole range, through many adds and deletes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_PRIORITY } from '../src/kernel/limits.js';
import { PrioritySet } from '../src/kernel/priority-set.js';

test('highest and below walk the priorities present, highest first, as a sorted list does', () => {
  const set = new PrioritySet();
  const present = new Set<number>();
  let seed = 7;
  const random = (n: number): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed % n;
  };
  // Clustered and scattered: the ends of the range, one word's neighbours, and anywhere.
  const pick = (): number => {
    const k = random(4);
    if (k === 0) return random(64);
    if (k === 1) return MAX_PRIORITY - random(64);
    if (k === 2) return 1024 * random(32) + random(40);
    return random(MAX_PRIORITY + 1);
  };
  for (let round = 0; round < 400; round++) {
    for (let i = 0; i < 60; i++) {
      const p = pick();
      if (random(3) === 0) {
        set.delete(p);
        present.delete(p);
      } else {
        set.add(p);
        present.add(p);
      }
    }
    const expected = [...present].sort((a, b) => b - a);
    const walked: number[] = [];
    for (let p = set.highest(); p !== -1; p = set.below(p)) walked.push(p);
    assert.deepEqual(walked, expected, `round ${round}`);
  }
  for (const p of present) set.delete(p);
  assert.equal(set.highest(), -1);
  set.add(0);
  set.add(MAX_PRIORITY);
  assert.deepEqual([set.highest(), set.below(MAX_PRIORITY), set.below(0)], [MAX_PRIORITY, 0, -1]);
});

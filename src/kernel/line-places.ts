/** A list linked through its members, each with a number for its place in it. */
export interface Placed<T> {
  prevInLine: T | null;
  nextInLine: T | null;
  /** Greater for those further along; kept by the functions here. */
  place: number;
}

/**
 * Places run below this: whole numbers a double holds exactly, with room to spare for the
 * difference of two of them.
 */
export const PLACE_LIMIT = 2 ** 52;
/** What a member joining at the end is given beyond the last's place: room for those that join between. */
const STEP = 2 ** 24;
/**
 * How sparse a range of places must be, for each doubling of its size, to be spread over again: a
 * range of 2^k places is spread over once it holds at most 2^k / 1.5^k members (list labelling, as
 * in Bender et al., "Two simplified algorithms for maintaining order in a list", 2002), so that each
 * join moves O(log n) places on average, however the joins fall.
 */
const SPARSER = 1.5;

/**
 * The place for a member joining after `last` (null: an empty list), at the end. May spread the
 * list over afresh (its places, not its order) when the end of the places is reached.
 */
export function placeAtEnd<T extends Placed<T>>(last: T | null, first: T | null): number {
  if (last === null) return 0;
  if (last.place + STEP >= PLACE_LIMIT) spreadAll(first!);
  return last.place + STEP;
}

/**
 * The place for a member joining between `before` and `after`, neighbours in the list. Where
 * they have none between them, the places around `before` are spread over first.
 */
export function placeBetween<T extends Placed<T>>(before: T, after: T): number {
  if (after.place - before.place < 2) makeRoom(before);
  return before.place + Math.floor((after.place - before.place) / 2);
}

/**
 * Spreads evenly the members of the smallest range of places around `at`'s, aligned to its size,
 * that is sparse enough for it, so that `at` and the next have room between them.
 */
function makeRoom<T extends Placed<T>>(at: T): void {
  let lo = at;
  let hi = at;
  let members = 1;
  let sparse = 1;
  for (let size = 2; size <= PLACE_LIMIT; size *= 2) {
    sparse *= SPARSER;
    const start = Math.floor(at.place / size) * size;
    const end = start + size;
    for (let p = lo.prevInLine; p !== null && p.place >= start; p = p.prevInLine) {
      lo = p;
      members++;
    }
    for (let n = hi.nextInLine; n !== null && n.place < end; n = n.nextInLine) {
      hi = n;
      members++;
    }
    // Room for one more at the density allowed, and at least two places each.
    if ((members + 1) * Math.max(2, sparse) <= size) {
      spread(lo, members, start, size);
      return;
    }
  }
  spreadAll(lo);
}

/** Gives `members` members from `from` on places evenly over [start, start + size). */
function spread<T extends Placed<T>>(from: T, members: number, start: number, size: number): void {
  const gap = size / members;
  let m: T | null = from;
  for (let i = 0; i < members && m !== null; i++, m = m.nextInLine) m.place = start + Math.floor(i * gap);
}

/** Gives the whole list, from any member of it, places evenly spread from 0. */
function spreadAll<T extends Placed<T>>(member: T): void {
  let first = member;
  let count = 1;
  while (first.prevInLine !== null) first = first.prevInLine;
  for (let m = first.nextInLine; m !== null; m = m.nextInLine) count++;
  const gap = Math.min(STEP, Math.floor(PLACE_LIMIT / (count + 1)));
  let place = 0;
  for (let m: T | null = first; m !== null; m = m.nextInLine, place += gap) m.place = place;
}

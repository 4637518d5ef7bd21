/** What the line holds: anything that remembers where it stands in it. */
export interface InLine {
  /** Its index in the line's ring, or -1 when not in a line. Kept by the line. */
  blockedAt: number;
}

const NO_SENDERS: readonly never[] = Object.freeze([]);

/**
 * The senders blocked on one mailbox, in arrival order: a ring with holes. The pump's common case
 * is thousands of blocked sends admitted one by one from the front as receivers take, so taking
 * the first is O(1) (an array's splice moved every other entry, and paid a write barrier for each
 * move: 15 % of a kernel's time with 4,096 senders blocked). One that gives up (timeout, abort,
 * its process ends) leaves a hole where it stood, also O(1): each entry knows its index.
 *
 * @example
 * ```ts
 * const line = new BlockedSenders<SendWaiter>();
 * line.push(sw);
 * const first = line.first(); // sw
 * line.remove(sw);            // wherever it stands
 * ```
 */
export class BlockedSenders<T extends InLine> {
  private ring: (T | null)[];
  /** Index of the first entry (or hole) and how many slots from there are in use. */
  private head = 0;
  private span = 0;
  private live = 0;

  /**
   * The ring is made when the first sender blocks, of `capacity` slots (a power of two): most
   * mailboxes never have one, and each has a line.
   */
  constructor(private readonly capacity = 8) {
    // Shared and frozen: a write to it (there is none before relayout) would throw, not spread.
    this.ring = NO_SENDERS as unknown as (T | null)[];
  }

  /** Senders in the line. */
  get length(): number {
    return this.live;
  }

  /** Joins the end of the line. */
  push(item: T): void {
    if (this.span === this.ring.length) this.relayout();
    const i = (this.head + this.span) & (this.ring.length - 1);
    this.ring[i] = item;
    item.blockedAt = i;
    this.span++;
    this.live++;
  }

  /** Goes back to the front of the line (a rendezvous message its receiver gave back). */
  unshift(item: T): void {
    if (this.span === this.ring.length) this.relayout();
    const i = (this.head - 1) & (this.ring.length - 1);
    this.ring[i] = item;
    item.blockedAt = i;
    this.head = i;
    this.span++;
    this.live++;
  }

  /** The first in line, or null. */
  first(): T | null {
    return this.live === 0 ? null : this.ring[this.head]!;
  }

  /** Leaves the line from wherever it stands; false if it was not in it. */
  remove(item: T): boolean {
    const i = item.blockedAt;
    if (i < 0 || this.ring[i] !== item) return false;
    this.ring[i] = null;
    item.blockedAt = -1;
    this.live--;
    this.trim();
    return true;
  }

  /** Everyone in line, in order, leaving it empty. */
  drain(): readonly T[] {
    if (this.live === 0) {
      // The common case at a mailbox's removal: nothing to allocate.
      this.head = this.span = 0;
      return NO_SENDERS;
    }
    const out = this.toArray();
    for (const item of out) item.blockedAt = -1;
    this.ring.fill(null);
    this.head = this.span = this.live = 0;
    return out;
  }

  /** Everyone in line, in order. */
  toArray(): T[] {
    const out: T[] = [];
    for (const item of this) out.push(item);
    return out;
  }

  /**
   * In order. Removing the entry just yielded (or any other) while iterating is safe: it leaves a
   * hole and moves nobody.
   */
  *[Symbol.iterator](): IterableIterator<T> {
    // The slots as they are now: a removal only empties a slot (and may move the head past it),
    // so walking them from the old head still meets everyone after, once.
    const ring = this.ring;
    const mask = ring.length - 1;
    let i = this.head;
    for (let left = this.span; left > 0; left--) {
      const item = ring[i];
      i = (i + 1) & mask;
      if (item !== null && item !== undefined) yield item;
    }
  }

  /** Drops holes from both ends, so the first slot always holds the first in line. */
  private trim(): void {
    const mask = this.ring.length - 1;
    while (this.span > 0 && this.ring[this.head] === null) {
      this.head = (this.head + 1) & mask;
      this.span--;
    }
    while (this.span > 0 && this.ring[(this.head + this.span - 1) & mask] === null) this.span--;
    if (this.span === 0) this.head = 0;
  }

  /** Full: close up the holes, and double the ring if there were few. */
  private relayout(): void {
    const old = this.ring;
    const mask = old.length - 1;
    let size = this.live > old.length >> 1 ? old.length * 2 : old.length;
    if (size === 0) for (size = 1; size < this.capacity; ) size *= 2;
    const ring = new Array<T | null>(size).fill(null);
    let n = 0;
    for (let k = 0; k < this.span; k++) {
      const item = old[(this.head + k) & mask]!;
      if (item === null) continue;
      ring[n] = item;
      item.blockedAt = n;
      n++;
    }
    this.ring = ring;
    this.head = 0;
    this.span = n;
  }
}

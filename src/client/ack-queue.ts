/**
 * Settles the sends of one entry: a lone send (its promise) or a range (one `sendMany`).
 */
export interface AckSettler<R, E> {
  /**
   * `count` is how many sends of a range this call settles (1 for a lone send): a range's
   * settler counts its messages down with it, and a lone send's ignores it.
   */
  resolve(value: R, count: number): void;
  /** Rejects one send, named by its request id. */
  reject(err: E, id: number): void;
}

/**
 * Sends awaiting the kernel's cumulative ACK, in request order. A ring of parallel arrays: an
 * entry is one send, or a range of consecutive sends that share their settler (one `sendMany`),
 * so a burst of sends costs a few stores and no object, and an ACK settles a run of them in one
 * pass; the ring keeps its size between bursts instead of growing from empty each time.
 *
 * A send answered on its own (a SENT, BLOCKED or ERROR) is taken out of line: a lone send's
 * settler is cleared where it lies; a send inside a range is noted as taken, and the ACK
 * that passes it later leaves it out of the range's count.
 */
export class AckQueue<R, E> {
  // Entry k covers the sends first[k] … last[k].
  private first: Float64Array;
  private last: Float64Array;
  private settlers: (AckSettler<R, E> | null)[];
  private head = 0;
  private count = 0;
  /** Ids taken out of line from inside a range, until an ACK or failAll passes them. */
  private readonly takenFromRanges = new Set<number>();

  /** @param capacity entries to start with, rounded up to a power of two (the ring masks indexes). */
  constructor(capacity = 1024) {
    let size = 1;
    while (size < capacity) size *= 2;
    this.first = new Float64Array(size);
    this.last = new Float64Array(size);
    this.settlers = new Array<AckSettler<R, E> | null>(size).fill(null);
  }

  /** Entries waiting, including any taken out of line whose slot the ACK has not passed yet. */
  get length(): number {
    return this.count;
  }

  /** Queues one send. */
  push(id: number, settler: AckSettler<R, E>): void {
    this.pushRange(id, id, settler);
  }

  /** Queues the sends `from` … `to` (consecutive request ids) with a shared settler. */
  pushRange(from: number, to: number, settler: AckSettler<R, E>): void {
    if (this.count === this.first.length) this.grow();
    const i = (this.head + this.count) & (this.first.length - 1);
    this.first[i] = from;
    this.last[i] = to;
    this.settlers[i] = settler;
    this.count++;
  }

  /** Resolves every send with an id up to `through`, oldest first, with `value`. */
  ackThrough(through: number, value: R): void {
    const mask = this.first.length - 1;
    let i = this.head;
    let n = this.count;
    while (n > 0 && this.first[i]! <= through) {
      const s = this.settlers[i]!;
      const from = this.first[i]!;
      const to = this.last[i]!;
      if (to > through) {
        // The ACK ends inside this range: settle its front, keep the rest at the head.
        this.first[i] = through + 1;
        if (s !== null) {
          const settled = this.uncounted(from, through);
          if (settled > 0) s.resolve(value, settled);
        }
        break;
      }
      if (s !== null) {
        this.settlers[i] = null;
        const settled = this.uncounted(from, to);
        if (settled > 0) s.resolve(value, settled);
      }
      i = (i + 1) & mask;
      n--;
    }
    this.head = i;
    this.count = n;
  }

  /**
   * Takes the send with this id out of line; returns its settler, or null if it is not waiting
   * here. Ids are in order, so its entry is found by binary search.
   */
  take(id: number): AckSettler<R, E> | null {
    const mask = this.first.length - 1;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const i = (this.head + mid) & mask;
      if (this.last[i]! < id) {
        lo = mid + 1;
        continue;
      }
      if (this.first[i]! > id) {
        hi = mid - 1;
        continue;
      }
      const settler = this.settlers[i]!;
      if (settler === null) return null;
      if (this.takenFromRanges.size > 0 && this.takenFromRanges.has(id)) return null;
      if (this.first[i] !== this.last[i]) {
        // Inside a range: the entry stays for the others; this one is left out of its count.
        this.takenFromRanges.add(id);
        return settler;
      }
      this.settlers[i] = null;
      // Sends answered one by one (blocked, rendezvous) may never be passed by an ACK: the
      // cleared slots at the front go now, so the ring does not grow with them.
      while (this.count > 0 && this.settlers[this.head] === null) {
        this.head = (this.head + 1) & mask;
        this.count--;
      }
      return settler;
    }
    return null;
  }

  /** Rejects every waiting send with `err` and empties the queue. */
  failAll(err: E): void {
    const mask = this.first.length - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      const s = this.settlers[i]!;
      this.settlers[i] = null;
      if (s === null) continue;
      for (let id = this.first[i]!; id <= this.last[i]!; id++) {
        if (this.takenFromRanges.size > 0 && this.takenFromRanges.delete(id)) continue;
        s.reject(err, id);
      }
    }
    this.takenFromRanges.clear();
    this.head = 0;
    this.count = 0;
  }

  /** How many of the sends from … to were not taken out of line (forgetting those that were). */
  private uncounted(from: number, to: number): number {
    let n = to - from + 1;
    if (this.takenFromRanges.size === 0) return n;
    for (const id of this.takenFromRanges) {
      if (id >= from && id <= to) {
        this.takenFromRanges.delete(id);
        n--;
      }
    }
    return n;
  }

  private grow(): void {
    const n = this.first.length;
    const first = new Float64Array(n * 2);
    const last = new Float64Array(n * 2);
    const settlers = new Array<AckSettler<R, E> | null>(n * 2).fill(null);
    for (let k = 0; k < n; k++) {
      const i = (this.head + k) & (n - 1);
      first[k] = this.first[i]!;
      last[k] = this.last[i]!;
      settlers[k] = this.settlers[i]!;
    }
    this.first = first;
    this.last = last;
    this.settlers = settlers;
    this.head = 0;
  }
}

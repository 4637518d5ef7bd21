/**
 * Sends awaiting the kernel's cumulative ACK, in request order. A ring of parallel arrays: a send
 * costs three stores and no object, an ACK settles a run of sends in one pass, and the ring keeps
 * its size between bursts instead of growing from empty each time.
 *
 * A send answered on its own (a SENT, BLOCKED or ERROR) is taken out of line: its settlers are
 * cleared where they lie, and the ACK that passes the slot later skips it.
 */
export class AckQueue<R, E> {
  private ids: Float64Array;
  private res: (((value: R) => void) | null)[];
  private rej: (((err: E, id: number) => void) | null)[];
  private head = 0;
  private count = 0;

  /** @param capacity slots to start with, rounded up to a power of two (the ring masks indexes). */
  constructor(capacity = 1024) {
    let size = 1;
    while (size < capacity) size *= 2;
    this.ids = new Float64Array(size);
    this.res = new Array<((value: R) => void) | null>(size).fill(null);
    this.rej = new Array<((err: E, id: number) => void) | null>(size).fill(null);
  }

  /** Sends waiting, including any taken out of line whose slot the ACK has not passed yet. */
  get length(): number {
    return this.count;
  }

  push(id: number, res: (value: R) => void, rej: (err: E, id: number) => void): void {
    if (this.count === this.ids.length) this.grow();
    const i = (this.head + this.count) & (this.ids.length - 1);
    this.ids[i] = id;
    this.res[i] = res;
    this.rej[i] = rej;
    this.count++;
  }

  /** Resolves every send with an id up to `through`, oldest first, with `value`. */
  ackThrough(through: number, value: R): void {
    const mask = this.ids.length - 1;
    let i = this.head;
    let n = this.count;
    while (n > 0 && this.ids[i]! <= through) {
      const res = this.res[i]!;
      if (res !== null) {
        this.res[i] = null;
        this.rej[i] = null;
        res(value);
      }
      i = (i + 1) & mask;
      n--;
    }
    this.head = i;
    this.count = n;
  }

  /**
   * Takes the send with this id out of line; returns its settlers, or null if it is not waiting
   * here. Ids are in order, so it is found by binary search.
   */
  take(id: number): { resolve: (value: R) => void; reject: (err: E, id: number) => void } | null {
    const mask = this.ids.length - 1;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const i = (this.head + mid) & mask;
      const v = this.ids[i]!;
      if (v === id) {
        const resolve = this.res[i]!;
        const reject = this.rej[i]!;
        if (resolve === null || reject === null) return null;
        this.res[i] = null;
        this.rej[i] = null;
        // Sends answered one by one (blocked, rendezvous) may never be passed by an ACK: the
        // cleared slots at the front go now, so the ring does not grow with them.
        while (this.count > 0 && this.res[this.head] === null) {
          this.head = (this.head + 1) & mask;
          this.count--;
        }
        return { resolve, reject };
      }
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return null;
  }

  /** Rejects every waiting send with `err` and empties the queue. */
  failAll(err: E): void {
    const mask = this.ids.length - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      const rej = this.rej[i];
      this.res[i] = null;
      this.rej[i] = null;
      rej?.(err, this.ids[i]!);
    }
    this.head = 0;
    this.count = 0;
  }

  private grow(): void {
    const n = this.ids.length;
    const ids = new Float64Array(n * 2);
    const res = new Array<((value: R) => void) | null>(n * 2).fill(null);
    const rej = new Array<((err: E, id: number) => void) | null>(n * 2).fill(null);
    for (let k = 0; k < n; k++) {
      const i = (this.head + k) & (n - 1);
      ids[k] = this.ids[i]!;
      res[k] = this.res[i]!;
      rej[k] = this.rej[i]!;
    }
    this.ids = ids;
    this.res = res;
    this.rej = rej;
    this.head = 0;
  }
}

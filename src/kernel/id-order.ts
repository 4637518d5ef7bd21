/**
 * Ids in ascending order, so that a page of `list` starts where the one before it ended without
 * walking every mailbox before it: the table by id is a Map, which can only be walked from its
 * start, and a page of 50,000 mailboxes' last thousand passed over the 49,000 before them.
 *
 * Ids only grow, so adding one is a push. A removed id stays where it was, a hole that pages pass
 * over, until the holes are as many as the ids still there: then the array is rebuilt without
 * them, which costs each removal O(1) over time, where taking each out at once moved every id
 * after it (a process ending with 50,000 mailboxes would have moved them 50,000 times).
 *
 * @example
 * ```ts
 * const live = new Set<number>();
 * const order = new IdOrder((id) => live.has(id));
 * for (const id of [3, 5, 8]) { live.add(id); order.add(id); }
 * live.delete(5); order.removed();
 * [...order.after(3)]; // [8]
 * ```
 */
export class IdOrder {
  private ids: number[] = [];
  /** Ids in the array that are no longer live. */
  private holes = 0;

  /** `live` says whether an id in the array is still there (not removed). */
  constructor(private readonly live: (id: number) => boolean) {}

  /** Adds an id, greater than every id added before. */
  add(id: number): void {
    this.ids.push(id);
  }

  /** One of the ids added is no longer live: it is passed over, and in time dropped. */
  removed(): void {
    this.holes++;
    if (this.holes * 2 > this.ids.length) {
      this.ids = this.ids.filter(this.live);
      this.holes = 0;
    }
  }

  /** The live ids greater than `after`, ascending. Nothing may be added or removed meanwhile. */
  *after(after: number): IterableIterator<number> {
    const ids = this.ids;
    for (let i = this.indexAfter(after); i < ids.length; i++) if (this.live(ids[i]!)) yield ids[i]!;
  }

  /**
   * For a walk without a generator (a pass over many): the ids, live or not, from
   * {@link indexAfter} on. Valid until the next add or removal.
   */
  get all(): readonly number[] {
    return this.ids;
  }

  /** Where in {@link all} the ids greater than `after` begin. */
  indexAfter(after: number): number {
    const ids = this.ids;
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ids[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** What the line holds: anything that carries its own links in it, and says whose it is. */
export interface InReceiverLine<T> {
  /** The process it belongs to: round robin takes turns by process. */
  readonly peer: object;
  /**
   * The one message type it takes (a receive of type t > 0, not `except`), else 0: an indexed
   * line keeps those waiting for each type in a list of their own.
   */
  readonly exactType: number;
  /** Its neighbours in the line, or null at either end (and when not in a line). Kept by the line. */
  prevInLine: T | null;
  nextInLine: T | null;
  /**
   * In an indexed line, its neighbours among those of its kind: waiting for the same type, or,
   * with an `exactType` of 0, among the others. Kept by the line.
   */
  prevOfKind: T | null;
  nextOfKind: T | null;
  /** In an indexed line, its place in arrival order, to compare receivers of different kinds. */
  arrival: number;
}

/** A list of receivers of one kind, linked through their `prevOfKind` and `nextOfKind`. */
interface Kind<T> {
  head: T | null;
  tail: T | null;
}

const NO_RECEIVERS: readonly never[] = Object.freeze([]);

/**
 * The receivers waiting on one mailbox, in arrival order, with round robin's cursor: a list linked
 * through the receivers themselves. A receiver leaves from wherever it stands in O(1), as each
 * single receive does when it gets its message: an array's indexOf and splice cost every
 * delivery the length of the line (with 30,000 receives waiting, 90 µs a message), and a process
 * ending with 30,000 receives waiting held the kernel for two seconds.
 *
 * An indexed line (every policy but round robin, whose receivers join behind the cursor and so
 * out of arrival order) also keeps, for each type, the receivers waiting for exactly that type,
 * and in one more list the others, each in arrival order: a message of type t looks at the first
 * of type t's, and at the others only as far as that one's place in line
 * ({@link waitingFor}, {@link others}). A receiver stays where it stands in its lists while it
 * waits, with credit or without, so the order in which they take is the line's.
 *
 * @example
 * ```ts
 * const line = new ReceiverLine<ReceiveWaiter>();
 * line.push(w);               // arrival order
 * line.insertBeforeTurn(w2);  // round robin: the last to have a turn
 * line.remove(w);             // wherever it stands
 * const typed = new ReceiverLine<ReceiveWaiter>(true);
 * typed.push(w3);             // w3.exactType 7: typed.waitingFor(7) === w3
 * ```
 */
export class ReceiverLine<T extends InReceiverLine<T>> {
  private head: T | null = null;
  private tail: T | null = null;
  /** Round robin: the receiver whose turn is next; null when the line is empty. */
  private cursor: T | null = null;
  private size = 0;
  /**
   * How many of the line each process has; made when the first receiver waits (a map costs about
   * 180 bytes even empty, and most mailboxes never have a receiver wait).
   */
  private perProcess: Map<object, number> | null = null;
  /** Indexed: receivers by the one type they take; made with the first of them. */
  private byType: Map<number, Kind<T>> | null = null;
  /** Indexed: the receivers that take more than one type (or any), in arrival order. */
  private readonly rest: Kind<T> = { head: null, tail: null };
  /** Indexed: how many receivers are in {@link byType}'s lists. */
  private typedCount = 0;
  private arrivals = 0;

  /**
   * `indexed`: keep the receivers by the type they take too. Only {@link push} may add to an
   * indexed line: its lists are in arrival order.
   */
  constructor(private readonly indexed = false) {}

  /** Receivers in the line. */
  get length(): number {
    return this.size;
  }

  /** Indexed: how many in line take one type only ({@link waitingFor}); 0 in a line not indexed. */
  get typed(): number {
    return this.typedCount;
  }

  /** Indexed: the first in line of those that take `type` only; the next is its `nextOfKind`. */
  waitingFor(type: number): T | null {
    return this.byType?.get(type)?.head ?? null;
  }

  /** Indexed: the first in line of those that do not take one type only; the next is its `nextOfKind`. */
  others(): T | null {
    return this.rest.head;
  }

  /** The first in arrival order, or null. */
  first(): T | null {
    return this.head;
  }

  /** Round robin: the receiver whose turn is next (the first, until a turn was taken), or null. */
  turn(): T | null {
    return this.cursor ?? this.head;
  }

  /** Round robin: makes `w`, which is in the line, the one whose turn is next. */
  setTurn(w: T): void {
    this.cursor = w;
  }

  /** Whether every receiver in the line is one process's. */
  oneProcess(): boolean {
    return this.perProcess === null || this.perProcess.size <= 1;
  }

  /** The one after `w` in the line, going round from the last to the first. */
  after(w: T): T {
    return w.nextInLine ?? this.head!;
  }

  /** Joins the end of the line. */
  push(w: T): void {
    w.prevInLine = this.tail;
    w.nextInLine = null;
    if (this.tail === null) this.head = w;
    else this.tail.nextInLine = w;
    this.tail = w;
    this.size++;
    this.count(w.peer, 1);
    if (this.indexed) this.joinKind(w);
  }

  private joinKind(w: T): void {
    w.arrival = ++this.arrivals;
    let kind = this.rest;
    if (w.exactType !== 0) {
      this.byType ??= new Map();
      const found = this.byType.get(w.exactType);
      if (found === undefined) {
        kind = { head: null, tail: null };
        this.byType.set(w.exactType, kind);
      } else kind = found;
      this.typedCount++;
    }
    w.prevOfKind = kind.tail;
    w.nextOfKind = null;
    if (kind.tail === null) kind.head = w;
    else kind.tail.nextOfKind = w;
    kind.tail = w;
  }

  private leaveKind(w: T): void {
    const kind = w.exactType === 0 ? this.rest : this.byType!.get(w.exactType)!;
    const p = w.prevOfKind;
    const n = w.nextOfKind;
    if (p === null) kind.head = n;
    else p.nextOfKind = n;
    if (n === null) kind.tail = p;
    else n.prevOfKind = p;
    w.prevOfKind = w.nextOfKind = null;
    if (w.exactType === 0) return;
    this.typedCount--;
    // Types come and go (System V's clients wait each for its own pid): an empty list goes.
    if (kind.head === null) this.byType!.delete(w.exactType);
  }

  /**
   * Joins just behind the cursor, going round: the last to have a turn, after everyone the
   * cursor has not reached again. Round robin's; not for an indexed line.
   */
  insertBeforeTurn(w: T): void {
    const at = this.cursor;
    if (at === null || at === this.head) {
      // Before the first is, going round, after the last: the same place.
      this.push(w);
      if (at === null) this.cursor = this.head;
      return;
    }
    const before = at.prevInLine!;
    w.prevInLine = before;
    w.nextInLine = at;
    before.nextInLine = w;
    at.prevInLine = w;
    this.size++;
    this.count(w.peer, 1);
  }

  /** Leaves the line from wherever it stands. A receiver whose turn was next passes it on. */
  remove(w: T): void {
    if (this.cursor === w) this.cursor = this.size === 1 ? null : this.after(w);
    const p = w.prevInLine;
    const n = w.nextInLine;
    if (p === null) this.head = n;
    else p.nextInLine = n;
    if (n === null) this.tail = p;
    else n.prevInLine = p;
    w.prevInLine = w.nextInLine = null;
    this.size--;
    this.count(w.peer, -1);
    if (this.indexed) this.leaveKind(w);
  }

  private count(peer: object, by: number): void {
    this.perProcess ??= new Map();
    const counts = this.perProcess;
    const n = (counts.get(peer) ?? 0) + by;
    if (n === 0) counts.delete(peer);
    else counts.set(peer, n);
  }

  /** Everyone in line, in order, leaving it empty. */
  clear(): readonly T[] {
    // A process ending removes every mailbox it owned in one turn, most with no one waiting:
    // nothing allocated for those (the spread, and a new table for the map).
    if (this.size === 0) return NO_RECEIVERS;
    const out = [...this];
    for (const w of out) w.prevInLine = w.nextInLine = w.prevOfKind = w.nextOfKind = null;
    this.head = this.tail = this.cursor = null;
    this.size = 0;
    this.perProcess?.clear();
    this.byType = null;
    this.rest.head = this.rest.tail = null;
    this.typedCount = 0;
    return out;
  }

  /** In arrival order. Removing the receiver just yielded is safe: its next was read before. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let w = this.head; w !== null; ) {
      const next: T | null = w.nextInLine;
      yield w;
      w = next;
    }
  }
}

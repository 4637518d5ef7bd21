import { PLACE_LIMIT, type Placed, placeAtEnd, placeBetween } from './line-places.js';

/** What the line holds: anything that carries its own links in it, and says whose it is. */
export interface InReceiverLine<T> extends Placed<T> {
  /** The process it belongs to: round robin takes turns by process. */
  readonly peer: object;
  /** The one message type it takes (a receive of type t > 0, not `except`), else 0. */
  readonly exactType: number;
  /** The one process it takes messages from, else 0. */
  readonly exactSender: number;
  /** Its neighbours in the line, or null at either end (and when not in a line). Kept by the line. */
  prevInLine: T | null;
  nextInLine: T | null;
  /**
   * The receivers of its kind: those waiting for messages from the same one sender; else for the
   * same one type; else the others. Kept by the line, as are its neighbours among them.
   */
  kind: ReceiverKind<T> | null;
  prevOfKind: T | null;
  nextOfKind: T | null;
  /**
   * Round robin: on the first of a run of one process's receivers side by side in the line, the
   * last of it; on the last, the first; else null. Kept by the line.
   */
  runLast: T | null;
  runFirst: T | null;
}

/** Receivers of one kind, in the line's order, linked through their `prevOfKind` and `nextOfKind`. */
export interface ReceiverKind<T> {
  head: T | null;
  tail: T | null;
  /**
   * Round robin: the one first from the turn when last asked, to look from again: the turn only
   * moves on, so the first does too.
   */
  finger: T | null;
}

/** How far round a line's places go: more than any two of them differ by. */
const ROUND = 2 * PLACE_LIMIT;

const NO_RECEIVERS: readonly never[] = Object.freeze([]);

/**
 * The receivers waiting on one mailbox, in line, with round robin's turn: a list linked through
 * the receivers themselves. A receiver leaves from wherever it stands in O(1), as each single
 * receive does when it gets its message: an array's indexOf and splice cost every delivery the
 * length of the line (with 30,000 receives waiting, 90 µs a message), and a process ending with
 * 30,000 receives waiting held the kernel for two seconds.
 *
 * First come joins at the end; round robin just before the turn, the last to have a turn. Each
 * receiver has a number for its place, greater further along (line-places.ts: round robin's come
 * between two, now and then spread over afresh), so that where two stand from the turn is two
 * subtractions apart ({@link rank}).
 *
 * The line keeps too, for each sender, the receivers waiting for messages from that sender only;
 * for each type, the others waiting for that type only; and in one more list the rest, each in
 * the line's order ({@link ofSender}, {@link ofType}, {@link others}): a message from s of type t
 * looks at the first from the turn of s's and of t's that can take it, and at the rest only as far
 * as the sooner of those two ({@link firstOf}, {@link kindAfter}). A receiver stays where it stands
 * while it waits, with credit or without, so the order in which they take is the line's.
 *
 * Round robin's turn passes, after a receiver takes, to the first after it of another process
 * ({@link nextTurnAfter}): the line knows where each run of one process's receivers side by side
 * ends, so a process with many receives waiting is passed in one step.
 *
 * @example
 * ```ts
 * const line = new ReceiverLine<ReceiveWaiter>(false);
 * line.join(w);                          // at the end: first come
 * line.ofType(7)?.head;                  // the first waiting for type 7 only
 * line.remove(w);                        // wherever it stands
 * const rr = new ReceiverLine<ReceiveWaiter>(true);
 * rr.join(w2);                           // just before the turn
 * rr.setTurn(rr.nextTurnAfter(w2));      // w2 took: the turn passes to another process
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
  /** Receivers by the one sender they take from; made with the first of them. */
  private bySender: Map<number, ReceiverKind<T>> | null = null;
  /** Receivers by the one type they take, of those that name no sender; made with the first of them. */
  private byType: Map<number, ReceiverKind<T>> | null = null;
  /** The receivers that name no sender and take more than one type (or any). */
  private readonly rest: ReceiverKind<T> = { head: null, tail: null, finger: null };
  /** How many receivers are in {@link bySender}'s and {@link byType}'s lists. */
  private keyedCount = 0;

  /** `roundRobin`: receivers join just before the turn, and the turn passes by process. */
  constructor(private readonly roundRobin: boolean) {}

  /** Receivers in the line. */
  get length(): number {
    return this.size;
  }

  /** How many in line take from one sender only or take one type only ({@link ofSender}, {@link ofType}). */
  get keyed(): number {
    return this.keyedCount;
  }

  /** The receivers waiting for messages from `sender` only, if any. */
  ofSender(sender: number): ReceiverKind<T> | null {
    return this.bySender?.get(sender) ?? null;
  }

  /** The receivers, naming no sender, waiting for `type` only, if any. */
  ofType(type: number): ReceiverKind<T> | null {
    return this.byType?.get(type) ?? null;
  }

  /** The receivers that name no sender and take more than one type. */
  others(): ReceiverKind<T> {
    return this.rest;
  }

  /** The first in line, or null. */
  first(): T | null {
    return this.head;
  }

  /** Whose turn is next: round robin's (the first, until a turn was taken); first come's is the first. */
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

  /** Where `w`, in the line, stands from the turn: the smaller, the sooner. */
  rank(w: T): number {
    if (!this.roundRobin) return w.place;
    const d = w.place - this.turn()!.place;
    return d < 0 ? d + ROUND : d;
  }

  /** The first of `kind` (not empty) from the turn: the first of it, but for round robin's turn. */
  firstOf(kind: ReceiverKind<T>): T {
    const head = kind.head!;
    if (!this.roundRobin || head === kind.tail) return head;
    // From where it was last, along the kind until one whose neighbour before it comes after it
    // from the turn; and meanwhile from the turn along the line until one of the kind: whichever
    // gets there first (a kind that the turn passed many of at once, or the turn just ahead).
    let f = kind.finger ?? head;
    let g = this.turn()!;
    while (g.kind !== kind && this.rank(f) > this.rank(f.prevOfKind ?? kind.tail!)) {
      f = f.nextOfKind ?? head;
      g = this.after(g);
    }
    if (g.kind === kind) f = g;
    kind.finger = f;
    return f;
  }

  /** The one after `w` among those of its kind, going round from the last to the first. */
  kindAfter(w: T): T {
    return w.nextOfKind ?? w.kind!.head!;
  }

  /**
   * Joins the line at its back. For first come that is the end (arrival order). For round robin it
   * is just before the turn, the last to have one: at the end it would come ahead of receivers at
   * the front that the turn has not reached again, and a receiver passed over (it selects a type
   * that did not come) would lose its turn to each taker that asks again, for as long as they do.
   */
  join(w: T): void {
    const at = this.roundRobin ? this.cursor : null;
    if (at === null || at === this.head) {
      // Before the first is, going round, after the last: the same place.
      w.place = placeAtEnd(this.tail, this.head);
      w.prevInLine = this.tail;
      w.nextInLine = null;
      if (this.tail === null) this.head = w;
      else this.tail.nextInLine = w;
      this.tail = w;
      if (this.roundRobin && at === null) this.cursor = this.head;
    } else {
      const before = at.prevInLine!;
      w.place = placeBetween(before, at);
      w.prevInLine = before;
      w.nextInLine = at;
      before.nextInLine = w;
      at.prevInLine = w;
    }
    this.size++;
    this.count(w.peer, 1);
    this.joinKind(w);
    if (this.roundRobin) this.joinRun(w);
  }

  /** Leaves the line from wherever it stands. A receiver whose turn was next passes it on. */
  remove(w: T): void {
    if (this.cursor === w) this.cursor = this.size === 1 ? null : this.after(w);
    if (this.roundRobin) this.leaveRun(w);
    const p = w.prevInLine;
    const n = w.nextInLine;
    if (p === null) this.head = n;
    else p.nextInLine = n;
    if (n === null) this.tail = p;
    else n.prevInLine = p;
    w.prevInLine = w.nextInLine = null;
    this.size--;
    this.count(w.peer, -1);
    this.leaveKind(w);
  }

  /**
   * Round robin: whose turn it is after `w` took one: the first after it, going round, of another
   * process; the one after it when all are one process's.
   */
  nextTurnAfter(w: T): T {
    if (this.oneProcess()) return this.after(w);
    const peer = w.peer;
    // The last of w's run: at hand from its first, as w usually is (the turn is at a first).
    let last = w.runLast ?? w;
    while (last.runFirst === null) last = last.nextInLine!;
    for (;;) {
      const next = last.nextInLine;
      if (next === null) {
        // Runs stop at the end of the line; going round, the first's may be w's process's too.
        const head = this.head!;
        if (head.peer !== peer) return head;
        last = head.runLast!;
      } else if (next.peer !== peer) {
        return next;
      } else {
        last = this.joinRuns(last, next);
      }
    }
  }

  private kindFor(w: T): ReceiverKind<T> {
    let map: Map<number, ReceiverKind<T>>;
    let key: number;
    if (w.exactSender !== 0) {
      this.bySender ??= new Map();
      map = this.bySender;
      key = w.exactSender;
    } else if (w.exactType !== 0) {
      this.byType ??= new Map();
      map = this.byType;
      key = w.exactType;
    } else return this.rest;
    let kind = map.get(key);
    if (kind === undefined) {
      kind = { head: null, tail: null, finger: null };
      map.set(key, kind);
    }
    return kind;
  }

  /** w, just in line, joins its kind where it stands: just before the first of it from the turn. */
  private joinKind(w: T): void {
    const kind = this.kindFor(w);
    if (kind !== this.rest) this.keyedCount++;
    if (kind.head === null) {
      w.prevOfKind = w.nextOfKind = null;
      kind.head = kind.tail = w;
    } else {
      const f = this.firstOf(kind);
      const tail = kind.tail!;
      if (f === kind.head && w.place > tail.place) {
        // Going round, after the last of the kind is before its first.
        w.prevOfKind = tail;
        w.nextOfKind = null;
        tail.nextOfKind = w;
        kind.tail = w;
      } else {
        const p = f.prevOfKind;
        w.prevOfKind = p;
        w.nextOfKind = f;
        f.prevOfKind = w;
        if (p === null) kind.head = w;
        else p.nextOfKind = w;
      }
    }
    w.kind = kind;
  }

  private leaveKind(w: T): void {
    const kind = w.kind!;
    const p = w.prevOfKind;
    const n = w.nextOfKind;
    if (p === null) kind.head = n;
    else p.nextOfKind = n;
    if (n === null) kind.tail = p;
    else n.prevOfKind = p;
    if (kind.finger === w) kind.finger = n ?? kind.head;
    w.prevOfKind = w.nextOfKind = null;
    w.kind = null;
    if (kind === this.rest) return;
    this.keyedCount--;
    // Senders and types come and go (System V's clients wait each for its own pid): an empty list goes.
    if (kind.head !== null) return;
    if (w.exactSender !== 0) this.bySender!.delete(w.exactSender);
    else this.byType!.delete(w.exactType);
  }

  /** Round robin: w, just in line, joins the run of its process beside it, or makes one. */
  private joinRun(w: T): void {
    const p = w.prevInLine;
    const n = w.nextInLine;
    if (p !== null && n !== null && p.runFirst === null) {
      // Into the middle of a run.
      if (p.peer === w.peer) return;
      this.splitRun(p, n);
    }
    if (p !== null && p.peer === w.peer) {
      const first = p.runFirst!;
      p.runFirst = null;
      first.runLast = w;
      w.runFirst = first;
    } else if (n !== null && n.peer === w.peer) {
      const last = n.runLast!;
      n.runLast = null;
      last.runFirst = w;
      w.runLast = last;
    } else {
      w.runFirst = w.runLast = w;
    }
  }

  /**
   * Cuts a run between p and n, side by side in it. Its ends are looked for from both at once,
   * and the one found first names the other: the cost is the shorter way to an end.
   */
  private splitRun(p: T, n: T): void {
    let first: T;
    let last: T;
    for (let back = p, on = n; ; back = back.prevInLine!, on = on.nextInLine!) {
      if (back.runLast !== null) {
        first = back;
        last = back.runLast;
        break;
      }
      if (on.runFirst !== null) {
        last = on;
        first = on.runFirst;
        break;
      }
    }
    first.runLast = p;
    p.runFirst = first;
    n.runLast = last;
    last.runFirst = n;
  }

  /** Round robin: w leaves its run. Runs left side by side are joined when a turn passes them. */
  private leaveRun(w: T): void {
    const first = w.runFirst;
    const last = w.runLast;
    w.runFirst = w.runLast = null;
    if (first === w) return; // a run of one
    if (last !== null) {
      const n = w.nextInLine!;
      n.runLast = last;
      last.runFirst = n;
    } else if (first !== null) {
      const p = w.prevInLine!;
      p.runFirst = first;
      first.runLast = p;
    }
  }

  /** Joins the run ending at `last` and the one of the same process starting at `next`, just after it. */
  private joinRuns(last: T, next: T): T {
    const first = last.runFirst!;
    const end = next.runLast!;
    last.runFirst = null;
    next.runLast = null;
    first.runLast = end;
    end.runFirst = first;
    return end;
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
    for (const w of out) {
      w.prevInLine = w.nextInLine = w.prevOfKind = w.nextOfKind = w.runFirst = w.runLast = null;
      w.kind = null;
    }
    this.head = this.tail = this.cursor = null;
    this.size = 0;
    this.perProcess?.clear();
    this.bySender = this.byType = null;
    this.rest.head = this.rest.tail = this.rest.finger = null;
    this.keyedCount = 0;
    return out;
  }

  /** In order. Removing the receiver just yielded is safe: its next was read before. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let w = this.head; w !== null; ) {
      const next: T | null = w.nextInLine;
      yield w;
      w = next;
    }
  }
}

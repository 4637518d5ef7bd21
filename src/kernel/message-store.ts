import { Off, readInt64 } from '../protocol/frame.js';
import { PrioritySet } from './priority-set.js';

/**
 * The queue of one mailbox: the messages it holds, indexed so that no receive scans the queue.
 *
 * A message is its whole frame (header and body) kept in a slab buffer; the store keeps only
 * where it lies and its links, in typed arrays indexed by slot number, so a million queued
 * messages are a million slots, not a million objects.
 *
 * ```
 *  buckets (by priority, highest first; one bucket in a fifo mailbox)
 *   └─ bucket ── order list:  s3 ⇄ s7 ⇄ s1 ⇄ …        (delivery order within the priority)
 *                type lists:  t=1: s3 ⇄ s1   t=2: s7  (same order, one list per type)
 *                sender lists: p=4: s3 ⇄ s7  p=9: s1
 * ```
 *
 * Within a bucket every list is in sequence order, so "the first message of type t" is the head
 * of one list, and System V's negative types take the lowest key of a sorted array of the types
 * present.
 */

const NIL = -1;
/**
 * The type and sender lists' links of a store not indexed: none. A queue only ever taken in
 * order then holds 24 bytes a message in typed arrays, not 40, and growing it copies less
 * (a store growing past 512 K messages held the kernel for 23 ms with them).
 */
const UNINDEXED = new Int32Array(0);
/**
 * A store's slots before its first message: none. Most mailboxes sit empty, and the first slots'
 * five typed arrays cost about a kilobyte each (1,000,000 idle mailboxes took 3.6 GB of a heap
 * whose limit is 4.3).
 */
const NO_SLOTS = new Int32Array(0);
const NO_TYPES = new Float64Array(0);
/** Slots a store grows to first, unless told how many (a fixed-size mailbox has all of its own). */
const FIRST_SLOTS = 8;
/**
 * A store emptied with more slots than this (about 2 MB) may give them back (MessageStore.emptied):
 * below it, a queue whose depth wanders gives back and grows nothing (a one-way run of a million
 * messages fills its queue to a few hundred, a few thousand, now and then 35,000).
 */
const SHRINK_ABOVE = 65_536;
/** The fills a store remembers, to know the sizes it needed lately. */
const FILLS = 8;

/** Whoever keeps slot numbers of a store: told when its messages move to other slots. */
export interface SlotHolder {
  /** Each message held in slot s is now in slot `to[s]`. */
  slotsMoved(to: Int32Array): void;
}

interface List {
  head: number;
  tail: number;
  count: number;
  /** The message last given back into the list, while it is in it (else -1): see {@link link}. */
  back: number;
}

interface Bucket extends List {
  priority: number;
  types: Map<number, List>;
  /** Types with at least one message, ascending; for negative-type selection. */
  typeKeys: number[];
  senders: Map<number, List>;
}

/** How a receiver selects: System V msgrcv type rules plus the sender, for direct links. */
export interface Selection {
  /** 0 any; > 0 that type (or, with except, any other); < 0 the lowest type ≤ |type|. */
  type: number;
  except: boolean;
  /** Sender process id, 0 for anyone. */
  from: number;
}

export const ANY: Readonly<Selection> = Object.freeze({ type: 0, except: false, from: 0 });

/** Whether a message of this type and sender is one the selection takes. */
export function selects(sel: Selection, type: number, sender: number): boolean {
  if (sel.from !== 0 && sel.from !== sender) return false;
  const t = sel.type;
  if (t === 0) return true;
  if (t > 0) return sel.except ? type !== t : type === t;
  return type <= -t;
}

export class MessageStore {
  private next!: Int32Array;
  private prev!: Int32Array;
  private tnext: Int32Array;
  private tprev: Int32Array;
  private snext: Int32Array;
  private sprev: Int32Array;
  private typeOf!: Float64Array;
  private offOf!: Int32Array;
  private lenOf!: Int32Array;
  private bufOf!: (Buffer | undefined)[];
  private free = NIL;
  private used = 0;
  /** A fifo store's one bucket, once it has held a message. */
  private fifo: Bucket | null = null;
  /**
   * A priority store's buckets by priority, each while it holds messages, and the priorities
   * they are of, ordered (see PrioritySet): a send finds its bucket at once, a receive the
   * highest in a few looks; kept in a sorted array, each new priority and each one emptied moved
   * the others, O(distinct priorities queued), up to 32,768.
   */
  private readonly bucketOf: Map<number, Bucket> | null;
  private readonly priorities: PrioritySet | null;
  readonly byPriority: boolean;
  /** Messages held. */
  count = 0;
  /** Bytes of bodies and user headers held (not the fixed frame heads). */
  bytes = 0;
  /** Whether the type and sender lists are kept (built on the first selective receive). */
  private indexed = false;
  /** Highest sequence number ever inserted. */
  private newestSeq = -1;
  /** Made with its slots for a fixed-size mailbox's ring, whose slot numbers are its frames' places. */
  private readonly fixed: boolean;
  /**
   * What its last fills took at their fullest, oldest first; kept once its slots have grown past
   * SHRINK_ABOVE (see {@link emptied}).
   */
  private fills: number[] | null = null;
  /**
   * Past SHRINK_ABOVE slots, messages put in since it last held an eighth of them or more, and the
   * most it held meanwhile (see {@link watchSparse}).
   */
  private sparseFor = 0;
  private sparseMost = 0;

  /**
   * `slots`: made now, for a fixed-size mailbox's ring; else none until the first message.
   * `holder`: told when messages move to other slots.
   */
  constructor(
    byPriority: boolean,
    slots = 0,
    private readonly holder: SlotHolder | null = null,
  ) {
    this.byPriority = byPriority;
    this.priorities = byPriority ? new PrioritySet() : null;
    this.bucketOf = byPriority ? new Map() : null;
    this.tnext = this.tprev = this.snext = this.sprev = UNINDEXED;
    this.fixed = slots > 0;
    this.makeSlots(slots);
  }

  /** Slot arrays of `slots` places, empty (none made) for 0; what they held is the caller's to keep. */
  private makeSlots(slots: number): void {
    if (slots === 0) {
      this.next = this.prev = this.offOf = this.lenOf = NO_SLOTS;
      this.typeOf = NO_TYPES;
      this.bufOf = [];
      return;
    }
    this.next = new Int32Array(slots);
    this.prev = new Int32Array(slots);
    this.typeOf = new Float64Array(slots);
    this.offOf = new Int32Array(slots);
    this.lenOf = new Int32Array(slots);
    this.bufOf = new Array<Buffer | undefined>(slots);
  }

  /**
   * Whether it holds nothing a new store would not: no message, no slots, no type and sender
   * lists. Such a store, replaced, would free nothing.
   */
  get asNew(): boolean {
    return this.count === 0 && this.next.length === 0 && this.tnext === UNINDEXED;
  }

  /** The frame of a slot: its buffer; see {@link offset} and {@link length}. */
  buffer(slot: number): Buffer {
    return this.bufOf[slot]!;
  }
  offset(slot: number): number {
    return this.offOf[slot]!;
  }
  length(slot: number): number {
    return this.lenOf[slot]!;
  }
  type(slot: number): number {
    return this.typeOf[slot]!;
  }
  seq(slot: number): number {
    // Read from the frame itself: an array of its own would cost 8 bytes a message.
    return readInt64(this.bufOf[slot]!, this.offOf[slot]! + Off.SEQ);
  }

  /**
   * Adds a message whose complete frame lies at buf[off, off+len). The frame's sender, sequence
   * number and priority fields must be filled in. A message older than the newest (one given
   * back by a receiver) goes back to its place by sequence number. The fields are read from
   * `fields` at `fieldsOff` (the same frame where it came from, when its copy at buf is deferred).
   */
  insert(buf: Buffer, off: number, len: number, bodyBytes: number, fields = buf, fieldsOff = off): number {
    return this.insertAt(this.allocate(), buf, off, len, bodyBytes, fields, fieldsOff);
  }

  /**
   * Adds a message to a fifo store (not by priority), newer than every one held, with its fields
   * given (its bytes at buf may be a copy not yet made): {@link insert} for a run of sends, with
   * nothing read from the frame.
   */
  append(
    buf: Buffer,
    off: number,
    len: number,
    bodyBytes: number,
    type: number,
    seq: number,
    sender: number,
  ): void {
    const slot = this.allocate();
    this.bufOf[slot] = buf;
    this.offOf[slot] = off;
    this.lenOf[slot] = len;
    this.typeOf[slot] = type;
    this.newestSeq = seq;
    const bucket = this.fifo ?? this.bucketFor(0);
    const tail = bucket.tail;
    this.prev[slot] = tail;
    this.next[slot] = NIL;
    if (tail === NIL) bucket.head = slot;
    else this.next[tail] = slot;
    bucket.tail = slot;
    bucket.count++;
    if (this.indexed) this.index(bucket, slot, type, sender, seq, true);
    this.count++;
    this.bytes += bodyBytes;
  }

  /**
   * Links a message into a slot already reserved with {@link reserveSlot} or kept by
   * `remove(slot, bytes, true)`: how a fixed-size mailbox puts messages in its own ring.
   */
  insertAt(
    slot: number,
    buf: Buffer,
    off: number,
    len: number,
    bodyBytes: number,
    fields = buf,
    fieldsOff = off,
  ): number {
    const type = readInt64(fields, fieldsOff + Off.TYPE);
    const seq = readInt64(fields, fieldsOff + Off.SEQ);
    this.bufOf[slot] = buf;
    this.offOf[slot] = off;
    this.lenOf[slot] = len;
    this.typeOf[slot] = type;
    const bucket = this.bucketFor(this.byPriority ? fields.readUInt16LE(fieldsOff + Off.PRIORITY) : 0);
    // Newer than everything held (the usual case): appended to every list without comparing.
    const newest = seq > this.newestSeq;
    if (newest) this.newestSeq = seq;
    this.link(this.next, this.prev, bucket, slot, seq, newest);
    if (this.indexed)
      this.index(bucket, slot, type, fields.readUInt32LE(fieldsOff + Off.SENDER), seq, newest);
    this.count++;
    this.bytes += bodyBytes;
    return slot;
  }

  /** Links a slot into its type and sender lists. */
  private index(
    bucket: Bucket,
    slot: number,
    type: number,
    sender: number,
    seq: number,
    newest: boolean,
  ): void {
    let tlist = bucket.types.get(type);
    if (tlist === undefined) {
      tlist = { head: NIL, tail: NIL, count: 0, back: NIL };
      bucket.types.set(type, tlist);
    }
    if (tlist.count === 0) insertSorted(bucket.typeKeys, type);
    let slist = bucket.senders.get(sender);
    if (slist === undefined) {
      slist = { head: NIL, tail: NIL, count: 0, back: NIL };
      bucket.senders.set(sender, slist);
    }
    this.link(this.tnext, this.tprev, tlist, slot, seq, newest);
    this.link(this.snext, this.sprev, slist, slot, seq, newest);
  }

  /**
   * Builds the type and sender lists, on the first receive that selects. A queue only ever
   * taken in order never pays for them; each message is indexed at most once per build, and a
   * build happens only after the store was empty (or its messages moved, {@link compact}), so the
   * cost stays linear.
   */
  private buildIndex(): void {
    this.indexed = true;
    const slots = this.next.length;
    if (this.tnext.length !== slots) {
      // Made for the first build, and dropped when the store grows unindexed: the lists are
      // built afresh every time, so nothing in them needs keeping.
      this.tnext = new Int32Array(slots);
      this.tprev = new Int32Array(slots);
      this.snext = new Int32Array(slots);
      this.sprev = new Int32Array(slots);
    }
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      for (let s = bucket.head; s !== NIL; s = this.next[s]!)
        this.index(bucket, s, this.typeOf[s]!, this.senderOf(s), 0, true);
    }
  }

  /** Reserves a free slot without linking anything into it. */
  reserveSlot(): number {
    return this.allocate();
  }

  /** Frees a slot kept by `remove(slot, bytes, true)`. */
  releaseSlot(slot: number): void {
    this.bufOf[slot] = undefined;
    this.next[slot] = this.free;
    this.free = slot;
  }

  /**
   * Removes a message; its frame stays readable until the buffer is dropped. With `keep`, the
   * slot stays reserved (a fixed-size mailbox keeps a delivered message's place in its ring
   * until the receiver takes it).
   */
  remove(slot: number, bodyBytes: number, keep = false): void {
    const buf = this.bufOf[slot]!;
    const off = this.offOf[slot]!;
    const bucket = this.bucketFor(this.byPriority ? buf.readUInt16LE(off + Off.PRIORITY) : 0);
    this.unlink(this.next, this.prev, bucket, slot);
    if (this.indexed) {
      const type = this.typeOf[slot]!;
      const sender = buf.readUInt32LE(off + Off.SENDER);
      const tlist = bucket.types.get(type)!;
      const slist = bucket.senders.get(sender)!;
      this.unlink(this.tnext, this.tprev, tlist, slot);
      this.unlink(this.snext, this.sprev, slist, slot);
      if (tlist.count === 0) {
        bucket.types.delete(type);
        removeSorted(bucket.typeKeys, type);
      }
      if (slist.count === 0) bucket.senders.delete(sender);
    }
    if (bucket.count === 0 && this.byPriority) {
      this.bucketOf!.delete(bucket.priority);
      this.priorities!.delete(bucket.priority);
    }
    if (!keep) this.releaseSlot(slot);
    this.count--;
    this.bytes -= bodyBytes;
    if (this.count !== 0) return;
    // Empty: the next selective receive builds the lists again, for what is queued then.
    this.dropIndex();
    if (!keep) this.emptied();
  }

  /** Forgets the type and sender lists; the next selective receive builds them again. */
  private dropIndex(): void {
    if (!this.indexed) return;
    this.indexed = false;
    for (let b = this.firstBucket(); b !== null; b = this.nextBucket(b)) {
      b.types.clear();
      b.typeKeys.length = 0;
      b.senders.clear();
    }
  }

  /**
   * Removes the oldest message of a fifo store (not by priority), given as `slot`, and returns
   * the next oldest, or -1: the pump's run taking a queue in order, without the general
   * {@link remove}'s look for the bucket and lists.
   */
  removeHead(slot: number, bodyBytes: number): number {
    if (this.indexed) {
      this.remove(slot, bodyBytes);
      return this.count === 0 ? NIL : this.fifo!.head;
    }
    const bucket = this.fifo!;
    const next = this.next[slot]!;
    if (bucket.back === slot) bucket.back = NIL;
    bucket.head = next;
    if (next === NIL) bucket.tail = NIL;
    else this.prev[next] = NIL;
    bucket.count--;
    this.releaseSlot(slot);
    this.count--;
    this.bytes -= bodyBytes;
    if (this.count === 0) this.emptied();
    return next;
  }

  /**
   * The store has just been emptied: every slot is free (a store of its own slots keeps none for
   * a receiver, as a fixed-size ring does). The next fill takes slots from the first again, so
   * `used` says how many that fill took at its fullest.
   *
   * A store with more than SHRINK_ABOVE slots gives back those beyond twice what it needed twice
   * in its last eight fills (the second most any took), if that is under an eighth of them: a
   * burst of 1,000,000 messages, drained, left its mailbox holding 32 MB of slots for as long as
   * it lived. Twice, so that a burst is given back at once, unless one as large came lately: a
   * mailbox filled to about one size each time, or to a large size every few fills, keeps its
   * slots instead of growing them again each time (a copy at each doubling, 40 ms past a million).
   */
  private emptied(): void {
    if (this.fixed) return;
    const took = this.used;
    this.used = 0;
    this.free = NIL;
    const size = this.next.length;
    let fills = this.fills;
    if (fills === null) {
      if (size <= SHRINK_ABOVE) return;
      fills = this.fills = [];
    }
    fills.push(took);
    if (fills.length > FILLS) fills.shift();
    if (size <= SHRINK_ABOVE) return;
    let most = 0;
    let need = 0;
    for (const n of fills) {
      if (n > most) {
        need = most;
        most = n;
      } else if (n > need) need = n;
    }
    if (need * 8 > size) return;
    // Built afresh, at the size of the slots then, by the next selective receive.
    this.tnext = this.tprev = this.snext = this.sprev = UNINDEXED;
    let slots = need === 0 ? 0 : FIRST_SLOTS;
    while (slots !== 0 && slots < need * 2) slots *= 2;
    this.makeSlots(slots);
  }

  /** The first message a receiver with this selection would take, or -1. Never scans the queue
   * except when a sender and a type are combined, where it walks the shorter of the two lists. */
  first(sel: Selection): number {
    if (this.count === 0) return NIL;
    const t = sel.type;
    if (t === 0 && sel.from === 0) return this.firstBucket()!.head;
    if (!this.indexed) this.buildIndex();
    if (t < 0) return this.firstAtMost(-t, sel.from);
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      let slot: number;
      if (t === 0) {
        slot = sel.from === 0 ? bucket.head : (bucket.senders.get(sel.from)?.head ?? NIL);
      } else if (!sel.except) {
        const tlist = bucket.types.get(t);
        if (tlist === undefined) continue;
        slot = sel.from === 0 ? tlist.head : this.firstOfBoth(bucket, tlist, sel.from, t);
      } else {
        slot = this.firstExcept(bucket, t, sel.from);
      }
      if (slot !== NIL) return slot;
    }
    return NIL;
  }

  /** The message that has waited longest (lowest sequence number), or -1. */
  oldest(): number {
    let best = NIL;
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      if (bucket.head !== NIL && (best === NIL || this.seq(bucket.head) < this.seq(best))) best = bucket.head;
    }
    return best;
  }

  /** Calls fn for every message in delivery order (for draining a removed mailbox). */
  forEach(fn: (slot: number) => void): void {
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      for (let s = bucket.head; s !== NIL; s = this.next[s]!) fn(s);
    }
  }

  /** Slots taken at once at most since the store was last empty. */
  get slots(): number {
    return this.used;
  }

  /** Slots its arrays have room for before they grow. */
  get slotRoom(): number {
    return this.next.length;
  }

  private firstAtMost(limit: number, from: number): number {
    // Lowest type present ≤ limit, across buckets; then its first message in delivery order.
    let lowest = Number.POSITIVE_INFINITY;
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      for (const key of bucket.typeKeys) {
        if (key > limit || key >= lowest) break;
        if (from === 0 || this.firstOfBoth(bucket, bucket.types.get(key)!, from, key) !== NIL) {
          lowest = key;
          break;
        }
      }
    }
    if (lowest === Number.POSITIVE_INFINITY) return NIL;
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      const tlist = bucket.types.get(lowest);
      if (tlist === undefined) continue;
      const slot = from === 0 ? tlist.head : this.firstOfBoth(bucket, tlist, from, lowest);
      if (slot !== NIL) return slot;
    }
    return NIL;
  }

  private firstOfBoth(bucket: Bucket, tlist: List, from: number, type: number): number {
    const slist = bucket.senders.get(from);
    if (slist === undefined) return NIL;
    if (slist.count <= tlist.count) {
      for (let s = slist.head; s !== NIL; s = this.snext[s]!) if (this.typeOf[s] === type) return s;
    } else {
      for (let s = tlist.head; s !== NIL; s = this.tnext[s]!) if (this.senderOf(s) === from) return s;
    }
    return NIL;
  }

  private firstExcept(bucket: Bucket, type: number, from: number): number {
    if (from !== 0) {
      const slist = bucket.senders.get(from);
      if (slist === undefined) return NIL;
      for (let s = slist.head; s !== NIL; s = this.snext[s]!) if (this.typeOf[s] !== type) return s;
      return NIL;
    }
    // The earliest head among the other types' lists: one look per distinct type.
    let best = NIL;
    for (const [key, tlist] of bucket.types) {
      if (key === type) continue;
      if (best === NIL || this.seq(tlist.head) < this.seq(best)) best = tlist.head;
    }
    return best;
  }

  private senderOf(slot: number): number {
    return this.bufOf[slot]!.readUInt32LE(this.offOf[slot]! + Off.SENDER);
  }

  /** The bucket delivered from first (the highest priority's), or null when there is none. */
  private firstBucket(): Bucket | null {
    if (this.priorities === null) return this.fifo;
    const p = this.priorities.highest();
    return p === -1 ? null : this.bucketOf!.get(p)!;
  }

  /** The bucket after `bucket` in delivery order (the next priority below), or null. */
  private nextBucket(bucket: Bucket): Bucket | null {
    if (this.priorities === null) return null;
    const p = this.priorities.below(bucket.priority);
    return p === -1 ? null : this.bucketOf!.get(p)!;
  }

  private bucketFor(priority: number): Bucket {
    if (this.fifo !== null) return this.fifo;
    const found = this.bucketOf?.get(priority);
    if (found !== undefined) return found;
    const bucket: Bucket = {
      priority,
      head: NIL,
      tail: NIL,
      count: 0,
      back: NIL,
      types: new Map(),
      typeKeys: [],
      senders: new Map(),
    };
    if (this.priorities === null) this.fifo = bucket;
    else {
      this.bucketOf!.set(priority, bucket);
      this.priorities.add(priority);
    }
    return bucket;
  }

  private link(
    next: Int32Array,
    prev: Int32Array,
    list: List,
    slot: number,
    seq: number,
    newest: boolean,
  ): void {
    // Append, unless the message is older than the tail (given back). A receiver gives back
    // what it held oldest first, so each after the first goes just behind the one given back
    // before it: looked for there first (walked from the tail, 2,000 given back to a queue of
    // 100,000 held the kernel for 3 s), then at the head, then from both ends at once.
    let after = list.tail;
    if (!newest && after !== NIL && this.seq(after) > seq) {
      const back = list.back;
      if (back !== NIL && this.seq(back) < seq && this.seq(next[back]!) > seq) after = back;
      else after = this.placeAfter(next, prev, list, seq);
      list.back = slot;
    }
    const before = after === NIL ? list.head : next[after]!;
    prev[slot] = after;
    next[slot] = before;
    if (after === NIL) list.head = slot;
    else next[after] = slot;
    if (before === NIL) list.tail = slot;
    else prev[before] = slot;
    list.count++;
  }

  /**
   * Where a message older than the list's tail goes: after the last one older than it (-1: at the
   * head). Walks from the head and the tail in turn, so it costs the shorter of the two ways.
   */
  private placeAfter(next: Int32Array, prev: Int32Array, list: List, seq: number): number {
    let fwd = list.head;
    if (this.seq(fwd) > seq) return NIL;
    let back = prev[list.tail]!;
    for (;;) {
      const n = next[fwd]!;
      if (this.seq(n) > seq) return fwd;
      fwd = n;
      if (this.seq(back) < seq) return back;
      back = prev[back]!;
    }
  }

  private unlink(next: Int32Array, prev: Int32Array, list: List, slot: number): void {
    if (list.back === slot) list.back = NIL;
    const p = prev[slot]!;
    const n = next[slot]!;
    if (p === NIL) list.head = n;
    else next[p] = n;
    if (n === NIL) list.tail = p;
    else prev[n] = p;
    list.count--;
  }

  private allocate(): number {
    if (this.next.length > SHRINK_ABOVE && !this.fixed) this.watchSparse();
    if (this.free !== NIL) {
      const slot = this.free;
      this.free = this.next[slot]!;
      return slot;
    }
    if (this.used === this.next.length) this.grow();
    return this.used++;
  }

  /**
   * Gives back slots while messages are held: a store holding under an eighth of its slots while as
   * many messages as it has slots were put in moves them into slots for twice the most it held
   * meanwhile. Emptied, a store gives back its slots at once ({@link emptied}); a queue drained by
   * a receiver that never quite catches up never empties, and a burst of 1,000,000 left 32 MB of
   * slots behind 10,000 messages. The move costs what is held, an eighth of the slots at most,
   * after as many puts as slots: a queue that often fills again keeps them.
   */
  private watchSparse(): void {
    const size = this.next.length;
    if (this.count * 8 >= size) {
      this.sparseFor = this.sparseMost = 0;
      return;
    }
    if (this.count > this.sparseMost) this.sparseMost = this.count;
    if (++this.sparseFor >= size) this.compact();
  }

  /**
   * Moves every message held to the first slots of smaller arrays, in order; the type and sender
   * lists are built afresh by the next selective receive. The holder is told where each went.
   */
  private compact(): void {
    const next = this.next;
    const bufs = this.bufOf;
    const offs = this.offOf;
    const lens = this.lenOf;
    const types = this.typeOf;
    // Old slot → new, written over the old `prev` links, which go with the old arrays.
    const to = this.prev;
    let slots = FIRST_SLOTS;
    while (slots < this.sparseMost * 2) slots *= 2;
    this.makeSlots(slots);
    let slot = 0;
    for (let bucket = this.firstBucket(); bucket !== null; bucket = this.nextBucket(bucket)) {
      let last = NIL;
      for (let s = bucket.head; s !== NIL; s = next[s]!, slot++) {
        to[s] = slot;
        this.bufOf[slot] = bufs[s];
        this.offOf[slot] = offs[s]!;
        this.lenOf[slot] = lens[s]!;
        this.typeOf[slot] = types[s]!;
        this.prev[slot] = last;
        this.next[slot] = NIL;
        if (last === NIL) bucket.head = slot;
        else this.next[last] = slot;
        last = slot;
      }
      bucket.tail = last;
      bucket.back = NIL;
    }
    this.used = slot;
    this.free = NIL;
    this.sparseFor = this.sparseMost = 0;
    this.dropIndex();
    this.tnext = this.tprev = this.snext = this.sprev = UNINDEXED;
    this.holder?.slotsMoved(to);
  }

  private grow(): void {
    const size = Math.max(this.next.length * 2, FIRST_SLOTS);
    const grown = <T extends Int32Array | Float64Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(size);
      b.set(a);
      return b;
    };
    this.next = grown(this.next);
    this.prev = grown(this.prev);
    if (this.indexed) {
      this.tnext = grown(this.tnext);
      this.tprev = grown(this.tprev);
      this.snext = grown(this.snext);
      this.sprev = grown(this.sprev);
    } else this.tnext = this.tprev = this.snext = this.sprev = UNINDEXED;
    this.typeOf = grown(this.typeOf);
    this.offOf = grown(this.offOf);
    this.lenOf = grown(this.lenOf);
    this.bufOf.length = size;
  }
}

function insertSorted(keys: number[], key: number): void {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  keys.splice(lo, 0, key);
}

function removeSorted(keys: number[], key: number): void {
  const i = keys.indexOf(key);
  if (i >= 0) keys.splice(i, 1);
}

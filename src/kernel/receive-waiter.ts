import { getU32, LENGTH_BYTES, ReceiveFlag } from '../protocol/frame.js';
import { type Mailbox, type Peer, readSeq } from './mailbox.js';
import type { Selection } from './message-store.js';
import type { ReceiverKind } from './receiver-line.js';
import type { SendWaiter } from './send-waiter.js';

/**
 * A receive that is waiting, or whose delivered messages are not yet taken. A single receive
 * has a credit of one; a prefetching iterator has more. Messages pushed ahead stay the
 * mailbox's (they count toward its capacity) until the receiver's TAKE says the application
 * has them; until then they go back if the receiver cancels or dies.
 */
export class ReceiveWaiter {
  credit: number;
  /** In the mailbox's list of waiting receivers. */
  waiting = false;
  /** Its neighbours in that list, and its place in it (kept by ReceiverLine). */
  prevInLine: ReceiveWaiter | null = null;
  nextInLine: ReceiveWaiter | null = null;
  place = 0;
  /**
   * Those waiting for the same one sender, or else the same one type, or for more than one, and
   * its neighbours among them (kept by ReceiverLine).
   */
  kind: ReceiverKind<ReceiveWaiter> | null = null;
  prevOfKind: ReceiveWaiter | null = null;
  nextOfKind: ReceiveWaiter | null = null;
  /** Round robin: the other end of its run of its process's receivers, at either end (kept by ReceiverLine). */
  runFirst: ReceiveWaiter | null = null;
  runLast: ReceiveWaiter | null = null;
  /** The one message type it takes (type > 0, not `except`), else 0: how its line indexes it. */
  readonly exactType: number;
  /** The one process it takes messages from (`sel.from`), else 0: how its line indexes it first. */
  readonly exactSender: number;
  /** Told END while still holding untaken messages. */
  ended = false;
  /**
   * Messages it took whose credit has not come back (a `holdCredit` stream: jobs in its
   * workers' hands), for `postbox ps`; a stream that returns credit with each take holds none.
   */
  held = 0;
  /**
   * The process this receive names (`sel.from`) has terminated, or never was: nothing more can
   * come from it, so once nothing of its is left queued the receive ends with ESRCH.
   */
  senderGone = false;
  timer: NodeJS.Timeout | null = null;
  // Delivered, not yet taken, in delivery order: a ring of parallel arrays, no object per
  // message and no shifting. An entry is a run: messages lying back to back in one buffer,
  // delivered one after another (a burst forwarded from one input chunk, or read off one slab),
  // so a burst costs one entry and a TAKE of many a step or two. Runs never carry a receipt.
  private rBuf: (Buffer | null)[];
  private rOff: Uint32Array;
  /** Bytes of the entry's frames. */
  private rLen: Uint32Array;
  /** Messages in the entry. */
  private rMsgs: Uint32Array;
  /**
   * The frame length of every message in the entry when they are all the same length (the usual
   * stream), else 0: then a TAKE of part of a run needs no look at the frames themselves, which
   * were written out long ago and are no longer in the cache.
   */
  private rEach: Uint32Array;
  private rReceipt: (SendWaiter | null)[];
  /**
   * The sender of every message in the entry, counted in its mailbox's {@link Mailbox.inflightFrom};
   * 0 for a receipt's entry, which is not counted. A run has one sender.
   */
  private rFrom: Uint32Array;
  private rHead = 0;
  /** Entries held. */
  private rCount = 0;
  /** Messages held, over all entries. */
  private msgs = 0;
  /** Of those, the ones counted in the mailbox's {@link Mailbox.inflightFrom} (no receipt). */
  counted = 0;

  constructor(
    readonly peer: Peer,
    readonly request: number,
    readonly mailbox: Mailbox,
    readonly sel: Selection,
    readonly flags: number,
    readonly maxSize: number,
    credit: number,
  ) {
    this.credit = credit;
    this.exactType = sel.type > 0 && !sel.except ? sel.type : 0;
    this.exactSender = sel.from;
    const size = ringSize(credit);
    this.rBuf = new Array<Buffer | null>(size).fill(null);
    this.rOff = new Uint32Array(size);
    this.rLen = new Uint32Array(size);
    this.rMsgs = new Uint32Array(size);
    this.rEach = new Uint32Array(size);
    this.rReceipt = new Array<SendWaiter | null>(size).fill(null);
    this.rFrom = new Uint32Array(size);
  }

  get stream(): boolean {
    return (this.flags & ReceiveFlag.STREAM) !== 0;
  }
  /** Messages delivered and not yet taken. */
  get inflight(): number {
    return this.msgs;
  }

  /**
   * Records n delivered messages of process `from` lying back to back at buf[off, off+len), each
   * `each` bytes long (0: not all the same). Ones that may join a run (no receipt, bytes sent once
   * from where they lie) and lie right after the newest entry's last frame, from the same sender,
   * extend that entry.
   */
  pushInflight(
    buf: Buffer,
    off: number,
    len: number,
    from: number,
    receipt: SendWaiter | null,
    joins: boolean,
    n = 1,
    each = len,
  ): void {
    this.msgs += n;
    if (receipt !== null) {
      receipt.holder = this;
      from = 0;
    } else {
      this.counted += n;
      this.mailbox.inflightFrom.add(from, n);
    }
    if (joins && this.rCount > 0) {
      const last = (this.rHead + this.rCount - 1) & (this.rBuf.length - 1);
      if (
        this.rBuf[last] === buf &&
        this.rOff[last]! + this.rLen[last]! === off &&
        this.rReceipt[last] === null &&
        this.rFrom[last] === from
      ) {
        this.rLen[last] += len;
        this.rMsgs[last] += n;
        if (this.rEach[last] !== each) this.rEach[last] = 0;
        return;
      }
    }
    if (this.rCount === this.rBuf.length) this.growInflight();
    const i = (this.rHead + this.rCount) & (this.rBuf.length - 1);
    this.rBuf[i] = buf;
    this.rOff[i] = off;
    this.rLen[i] = len;
    this.rMsgs[i] = n;
    this.rEach[i] = each;
    this.rReceipt[i] = receipt;
    this.rFrom[i] = from;
    this.rCount++;
  }

  /** Credit was raised past the ring: double it, oldest first again. */
  private growInflight(): void {
    const n = this.rBuf.length;
    const buf = new Array<Buffer | null>(n * 2).fill(null);
    const off = new Uint32Array(n * 2);
    const len = new Uint32Array(n * 2);
    const msgs = new Uint32Array(n * 2);
    const each = new Uint32Array(n * 2);
    const receipt = new Array<SendWaiter | null>(n * 2).fill(null);
    const from = new Uint32Array(n * 2);
    for (let k = 0; k < n; k++) {
      const i = (this.rHead + k) & (n - 1);
      buf[k] = this.rBuf[i]!;
      off[k] = this.rOff[i]!;
      len[k] = this.rLen[i]!;
      msgs[k] = this.rMsgs[i]!;
      each[k] = this.rEach[i]!;
      receipt[k] = this.rReceipt[i]!;
      from[k] = this.rFrom[i]!;
    }
    this.rBuf = buf;
    this.rOff = off;
    this.rLen = len;
    this.rMsgs = msgs;
    this.rEach = each;
    this.rReceipt = receipt;
    this.rFrom = from;
    this.rHead = 0;
  }

  headBuffer(): Buffer {
    return this.rBuf[this.rHead]!;
  }
  headOffset(): number {
    return this.rOff[this.rHead]!;
  }
  /** Bytes of the oldest entry's frames. */
  headLength(): number {
    return this.rLen[this.rHead]!;
  }
  /** Messages in the oldest entry. */
  headCount(): number {
    return this.rMsgs[this.rHead]!;
  }
  /** The length of each frame in the oldest entry if they are all the same, else 0. */
  headEach(): number {
    return this.rEach[this.rHead]!;
  }
  headReceipt(): SendWaiter | null {
    return this.rReceipt[this.rHead]!;
  }

  /** Forgets the oldest entry, every message in it (taken, or given back). */
  dropHead(): void {
    const i = this.rHead;
    this.msgs -= this.rMsgs[i]!;
    this.uncount(this.rFrom[i]!, this.rMsgs[i]!);
    // Let go of the input chunk or slab the messages lie in.
    this.rBuf[i] = null;
    this.rReceipt[i] = null;
    this.rHead = (i + 1) & (this.rBuf.length - 1);
    this.rCount--;
  }

  /** Forgets the first n messages of the oldest entry, which hold `bytes` bytes; n is fewer than it has. */
  dropFromHead(n: number, bytes: number): void {
    const i = this.rHead;
    this.rOff[i] += bytes;
    this.rLen[i] -= bytes;
    this.rMsgs[i] -= n;
    this.msgs -= n;
    this.uncount(this.rFrom[i]!, n);
  }

  /** n messages of `from` left its hands (0: a receipt's, never counted). */
  private uncount(from: number, n: number): void {
    if (from === 0) return;
    this.counted -= n;
    this.mailbox.inflightFrom.remove(from, n);
  }

  /** Takes the oldest in-flight message; calls fn with it. Returns false if none. */
  shiftInflight(fn: (buf: Buffer, off: number, len: number, receipt: SendWaiter | null) => void): boolean {
    if (this.rCount === 0) return false;
    const buf = this.headBuffer();
    const off = this.headOffset();
    if (this.headCount() > 1) {
      const len = this.headEach() || getU32(buf, off) + LENGTH_BYTES;
      this.dropFromHead(1, len);
      fn(buf, off, len, null);
      return true;
    }
    const len = this.headLength();
    const receipt = this.headReceipt();
    this.dropHead();
    fn(buf, off, len, receipt);
    return true;
  }

  /** Where `receipt`'s message is among the entries (a receipt's entry is one message), or -1. */
  private entryOf(receipt: SendWaiter): number {
    const mask = this.rBuf.length - 1;
    for (let k = 0; k < this.rCount; k++) if (this.rReceipt[(this.rHead + k) & mask] === receipt) return k;
    return -1;
  }

  /** The sequence number of `receipt`'s message, if this receive holds it. */
  seqOf(receipt: SendWaiter): number | null {
    const k = this.entryOf(receipt);
    if (k < 0) return null;
    const i = (this.rHead + k) & (this.rBuf.length - 1);
    return readSeq(this.rBuf[i]!, this.rOff[i]!);
  }

  /** The send whose message, held here, has sequence number `seq`, if any. */
  receiptWithSeq(seq: number): SendWaiter | null {
    const mask = this.rBuf.length - 1;
    for (let k = 0; k < this.rCount; k++) {
      const i = (this.rHead + k) & mask;
      const receipt = this.rReceipt[i]!;
      if (receipt !== null && readSeq(this.rBuf[i]!, this.rOff[i]!) === seq) return receipt;
    }
    return null;
  }

  /**
   * Takes `receipt`'s message out of the entries, wherever it is (the receiver gave it back
   * unread: those before and after it stay, in order), and calls fn with it.
   */
  removeReceipt(receipt: SendWaiter, fn: (buf: Buffer, off: number, len: number) => void): boolean {
    const k = this.entryOf(receipt);
    if (k < 0) return false;
    const mask = this.rBuf.length - 1;
    const at = (this.rHead + k) & mask;
    const buf = this.rBuf[at]!;
    const off = this.rOff[at]!;
    const len = this.rLen[at]!;
    // Close the gap: the entries after it move up one.
    for (let j = k; j < this.rCount - 1; j++) {
      const a = (this.rHead + j) & mask;
      const b = (a + 1) & mask;
      this.rBuf[a] = this.rBuf[b]!;
      this.rOff[a] = this.rOff[b]!;
      this.rLen[a] = this.rLen[b]!;
      this.rMsgs[a] = this.rMsgs[b]!;
      this.rEach[a] = this.rEach[b]!;
      this.rReceipt[a] = this.rReceipt[b]!;
      this.rFrom[a] = this.rFrom[b]!;
    }
    const last = (this.rHead + this.rCount - 1) & mask;
    this.rBuf[last] = null;
    this.rReceipt[last] = null;
    this.rCount--;
    this.msgs--;
    receipt.holder = null;
    fn(buf, off, len);
    return true;
  }
}

/** The in-flight ring's first size: the credit rounded up to a power of two, within reason. */
function ringSize(credit: number): number {
  let n = 1;
  while (n < credit && n < 4096) n *= 2;
  return n;
}

import type { ErrorCode, MeasuredSize } from '../protocol/errors.js';
import {
  getU32,
  LENGTH_BYTES,
  MESSAGE_HEAD_BYTES,
  Off,
  OnFull,
  Op,
  Outcome,
  putU32,
  ReceiveFlag,
  readInt64,
  relabelAsDeliver,
  writeInt64,
} from '../protocol/frame.js';
import type { FrameWriter } from '../transport/frame-writer.js';
import { PriorityBlockedSenders } from './blocked-by-priority.js';
import { BlockedSenders } from './blocked-senders.js';
import type { MailboxAttributes, MailboxOrder, ReceiverPolicy } from './limits.js';
import { MessageStore, type Selection, type SlotHolder, selects } from './message-store.js';
import type { ReceiveWaiter } from './receive-waiter.js';
import { type ReceiverKind, ReceiverLine } from './receiver-line.js';
import { SEND_WAITER_BYTES, SendWaiter } from './send-waiter.js';
import { SenderCounts } from './sender-counts.js';
import type { Slab } from './slab.js';

/**
 * What an ERROR says besides its message and mailbox, where the kernel knows it: the process it
 * is about (by name if it has one, else its id), an EMSGSIZE's size and limit, and every process
 * holding what an EBUSY wanted (a pair has two, and `process` holds one).
 */
export interface ErrorDetail {
  process?: string;
  measured?: MeasuredSize;
  holders?: string[];
}

/**
 * What a mailbox needs from the kernel around it: the processes' output, the clock, memory
 * accounting. Kept narrow so the mailbox's rules can be read on their own.
 */
export interface MailboxHost {
  readonly slab: Slab;
  /** The kernel's clock for this turn (ms since epoch). */
  readonly now: number;
  /** The same as the little-endian words of a float64, to stamp without converting per message. */
  readonly nowLo: number;
  readonly nowHi: number;
  /** Bytes queued in all mailboxes; the global memory limit applies to it. */
  totalBytes: number;
  /** What one process's unfinished sends may hold together (`--max-waiting-bytes`). */
  readonly maxWaitingBytes: number;
  /** Called when a process has output to flush. */
  markDirty(proc: Peer): void;
  /** Sends an error reply. */
  replyError(
    proc: Peer,
    request: number,
    code: ErrorCode,
    message: string,
    mailbox?: Mailbox,
    detail?: ErrorDetail,
  ): void;
  /** Sends a SENT reply. */
  replySent(proc: Peer, request: number, outcome: number, receiver: number, seq: number): void;
  /** Sends a BLOCKED notice. */
  replyBlocked(proc: Peer, request: number): void;
  /** Sends an END (end of stream) answer. */
  replyEnd(proc: Peer, request: number): void;
  /** Sends an EVENT to a process. */
  event(proc: Peer, id: number, payload: Record<string, unknown>): void;
  /** Asks a stream's process to give back, if it has not handed it out, the message `seq`. */
  recall(w: ReceiveWaiter, seq: number): void;
}

/** The kernel's view of a connected process, as far as a mailbox cares. */
export interface Peer {
  readonly id: number;
  /** Said in its HELLO that it answers RECALL (gives back a pushed message it has not handed out). */
  readonly recalls: boolean;
  readonly name: string | null;
  readonly writer: FrameWriter;
  /** Output is backed up: deliver nothing more until it drains. */
  congested: boolean;
  terminated: boolean;
  /**
   * It said goodbye: its client fails whatever it still waits for (ENOTCONN) as the goodbye is
   * answered, so the kernel tells it nothing more about its sends.
   */
  saidBye: boolean;
  readonly receives: Map<number, ReceiveWaiter>;
  readonly sends: Map<number, SendWaiter>;
  /** Bytes its unfinished sends hold (their frames and waiters): bounded by `maxWaitingBytes`. */
  waitingBytes: number;
  /** Mailboxes where it waits for a reader to open (awaitReader), with its waits' ids; null until it first does. */
  awaitingReader: Map<Mailbox, Set<number>> | null;
  /** How many waits `awaitingReader` holds in all. */
  readerWaitCount: number;
  /** Mailboxes it owns; null until it first owns one. */
  owned: Set<Mailbox> | null;
  readonly label: string;
  readonly osPid: number;
}

/** Counters like System V's msqid_ds, plus what Postbox adds. */
export interface MailboxTimes {
  lastSendTime: number;
  lastSendProcess: number;
  /** OS pid of the last sender (System V msg_lspid). */
  lastSendPid: number;
  lastReceiveTime: number;
  lastReceiveProcess: number;
  /** OS pid of the last receiver (System V msg_lrpid). */
  lastReceivePid: number;
  changeTime: number;
  createTime: number;
}

/**
 * A mailbox: its attributes, its queue, and who waits on it. Every rule of the contract about
 * capacity, blocking, rendezvous, receipts, overflow and sharing is applied here.
 */
export class Mailbox implements SlotHolder {
  store: MessageStore;
  /** Fixed message size, or 0 (variable). */
  readonly messageSize: number;
  /** A fixed-size mailbox's preallocated frames: slot i lies at i × frameBytes. */
  private ring: Buffer | null = null;
  private readonly frameBytes: number = 0;
  capacity: number;
  maxMessageSize: number;
  maxBytes: number;
  readonly order: MailboxOrder;
  readonly policy: ReceiverPolicy;
  mode: number;
  owner: Peer | null;
  readonly systemOwned: boolean;
  /**
   * Processes the owner granted rights to: the mode's "group"; made with the first grant. (What
   * every mailbox has and few use is made when first used: an empty set or map costs 150–180
   * bytes, and a kernel may hold a million mailboxes, most of them idle.)
   */
  group: Set<number> | null = null;
  /**
   * A secret that gives whoever opens the mailbox with it the group's rights, as a descriptor
   * passed to a child does: how a pipe's end reaches a process whose id nobody knows yet.
   * Null for most mailboxes.
   */
  passkey: string | null = null;
  /** Counts changes of mode, group or owner: a send right checked before a change is checked again. */
  rightsChanged = 0;
  /** The process holding the receive right of an exclusive mailbox, or the two ends of a pair. */
  readonly holders: number[] = [];
  /** Processes with a handle on it (the kernel drops their handles when it is removed). */
  readonly openers = new Set<Peer>();
  /** Messages delivered to receivers and not yet taken: they still count toward capacity. */
  inflight = 0;
  inflightBytes = 0;
  /** Of those, each sender's that would come back to the queue if given back. */
  readonly inflightFrom = new SenderCounts();
  /**
   * Receives naming a sender that has terminated, waiting only because some of its messages are
   * in other receivers' hands: each is looked at again when messages leave those hands.
   */
  private goneWaits: Set<ReceiveWaiter> | null = null;
  /** Senders waiting for room (or, at capacity 0, for a receiver), in arrival order. */
  readonly blocked: BlockedSenders<SendWaiter>;
  /** The same line in a priority mailbox, which also finds them by priority (for a rendezvous). */
  private readonly blockedByPriority: PriorityBlockedSenders<SendWaiter> | null;
  /**
   * No more than the smallest message of a blocked sender: set as each joins, afresh when the
   * line was empty. Under admission 'fits', once not even that much fits, none does.
   */
  private smallestBlocked = 0;
  /** Receivers waiting, in line (first come's arrival order, or round robin's with its turn). */
  readonly receivers: ReceiverLine<ReceiveWaiter>;
  /** Messages queued with a receipt pending, by store slot; made with the first. */
  private receiptBySlot: Map<number, SendWaiter> | null = null;
  /**
   * Sends whose message is in (queued, or pushed to a receiver) and whose live process waits
   * until it is taken: a receipt, or a rendezvous met. Kept by {@link SendWaiter.state}; made
   * with the first.
   */
  receiptWaits: Set<SendWaiter> | null = null;
  private seq = 0;
  private pumping = false;
  removed = false;
  /** System V key (0: none, IPC_PRIVATE). */
  key = 0;
  /** Handles open on it, by role: pipes and FIFOs end when the last writer closes. */
  opens = 0;
  readers = 0;
  writers = 0;
  private hadWriter = false;
  private hadReader = false;
  /** End of stream when the last writer closes (pipes, FIFOs). */
  readonly endOnLastWriter: boolean;
  /** Sends fail while nobody reads (services). */
  readonly requireReader: boolean;
  /** How blocked senders are admitted: in arrival order, or any that fits (System V). */
  readonly admission: 'in-order' | 'fits';
  /** Rights are held by open handles, checked once at open (POSIX queues). */
  readonly rightsAtOpen: boolean;
  /** Removed when its last handle closes: unlinked (POSIX mq_unlink, FIFO rm) or anonymous (pipes). */
  unlinked: boolean;
  /** Process registered for a notice when a message arrives in the empty mailbox (mq_notify). */
  notify: { peer: Peer; id: number } | null = null;
  /** Processes waiting for a reader to open it (a FIFO's writer): event id → process. */
  readerWaits: Map<number, Peer> | null = null;
  readonly times: MailboxTimes;
  replaced = 0;
  dropped = 0;
  sent = 0;
  received = 0;
  /** The request id of the last send {@link sendRun} took (its frame is relabelled since). */
  runRequest = 0;

  constructor(
    private readonly host: MailboxHost,
    readonly id: number,
    public name: string | null,
    attrs: MailboxAttributes,
    owner: Peer | null,
    systemOwned: boolean,
    readonly inboxOf: number = 0,
  ) {
    this.messageSize = attrs.messageSize;
    this.endOnLastWriter = attrs.endOnLastWriter;
    this.requireReader = attrs.requireReader;
    this.admission = attrs.admission;
    this.rightsAtOpen = attrs.rightsAtOpen;
    this.unlinked = attrs.transient;
    if (attrs.messageSize > 0) {
      // The lecture's fixed-size trade-off: memory known up front, nothing allocated per message.
      this.frameBytes = (MESSAGE_HEAD_BYTES + attrs.messageSize + 7) & ~7;
      this.ring = Buffer.allocUnsafeSlow(attrs.capacity * this.frameBytes);
      this.store = new MessageStore(attrs.order === 'priority', attrs.capacity);
    } else {
      this.store = new MessageStore(attrs.order === 'priority', 0, this);
    }
    this.capacity = attrs.capacity;
    this.maxMessageSize = attrs.maxMessageSize;
    this.maxBytes = attrs.maxBytes;
    this.order = attrs.order;
    this.policy = attrs.policy;
    this.blockedByPriority = attrs.order === 'priority' ? new PriorityBlockedSenders() : null;
    this.blocked = this.blockedByPriority ?? new BlockedSenders();
    this.receivers = new ReceiverLine(attrs.policy === 'round-robin');
    this.mode = attrs.mode;
    this.owner = owner;
    this.systemOwned = systemOwned;
    const now = host.now;
    this.times = {
      lastSendTime: 0,
      lastSendProcess: 0,
      lastSendPid: 0,
      lastReceiveTime: 0,
      lastReceiveProcess: 0,
      lastReceivePid: 0,
      changeTime: now,
      createTime: now,
    };
  }

  /** How the mailbox names itself in error messages. */
  get label(): string {
    if (this.inboxOf !== 0) return `inbox of process ${this.inboxOf}`;
    return this.name === null ? `mailbox #${this.id}` : `mailbox '${this.name}'`;
  }

  /**
   * Capacity 0 is a rendezvous: a message passes only to a waiting receiver. Under System V
   * admission it is a queue that nothing fits in, as a Linux queue whose msg_qbytes is 0.
   */
  get rendezvous(): boolean {
    return this.capacity === 0 && this.admission === 'in-order';
  }

  /** Messages held: queued plus delivered-not-taken. */
  get count(): number {
    return this.store.count + this.inflight;
  }
  get bytes(): number {
    return this.store.bytes + this.inflightBytes;
  }

  private hasRoom(bodyBytes: number): boolean {
    return this.count < this.capacity && this.bytes + bodyBytes <= this.maxBytes;
  }

  // ── send ────────────────────────────────────────────────────────────────────────────────────

  /**
   * A SEND frame at buf[start, end) from `peer`, already validated. Returns 'done' when the send
   * completed at once and is covered by the cumulative ACK; anything else has been answered or
   * will be answered individually.
   */
  send(
    peer: Peer,
    buf: Buffer,
    start: number,
    end: number,
    request: number,
    receipt: boolean,
    onFull: number,
    timeoutMs: number,
  ): 'done' | 'individual' {
    const host = this.host;
    const bodyBytes = end - start - MESSAGE_HEAD_BYTES;
    putU32(buf, start + Off.SENDER, peer.id);

    if (this.rendezvous) {
      // Rendezvous: the message passes only to a receiver waiting now.
      const w = this.findReceiver(buf, start, bodyBytes);
      if (w === null) {
        if (onFull !== OnFull.WAIT) {
          host.replyError(
            peer,
            request,
            'EAGAIN',
            `${this.label} has capacity 0 and no receiver is waiting`,
            this,
          );
          return 'individual';
        }
        if (this.block(peer, buf, start, end, request, bodyBytes, receipt, onFull, timeoutMs) && !receipt)
          host.replyBlocked(peer, request);
        return 'individual';
      }
      if (this.overWaitingBytes(peer, request, end - start)) return 'individual';
      const sw = new SendWaiter(
        peer,
        request,
        this,
        Buffer.from(buf.subarray(start, end)),
        bodyBytes,
        receipt,
        onFull,
      );
      host.totalBytes += sw.heldBytes;
      peer.waitingBytes += sw.heldBytes;
      this.accept(sw.frame!, 0, sw.peer);
      sw.state = 'inflight';
      peer.sends.set(request, sw);
      this.armTimeout(sw, timeoutMs);
      this.deliver(w, sw.frame!, 0, sw.frame!.length, sw);
      if (!receipt) host.replyBlocked(peer, request);
      return 'individual';
    }

    // In order, a newcomer queues behind blocked senders even if it would fit; by 'fits'
    // (System V), it goes in if it fits.
    if (!this.hasRoom(bodyBytes) || (this.blocked.length > 0 && this.admission === 'in-order')) {
      switch (onFull) {
        case OnFull.FAIL:
          host.replyError(
            peer,
            request,
            'EAGAIN',
            `${this.label} is full (${this.count} message${this.count === 1 ? '' : 's'}, ${this.bytes} byte${this.bytes === 1 ? '' : 's'})`,
            this,
          );
          return 'individual';
        case OnFull.DROP_NEW:
          this.dropped++;
          host.replySent(peer, request, Outcome.DROPPED, 0, 0);
          return 'individual';
        case OnFull.REPLACE_OLDEST: {
          // Replacing reads queued frames: their deferred copies must be made.
          host.slab.settle();
          if (this.replaceOldest(bodyBytes)) break;
          host.replyError(
            peer,
            request,
            'EAGAIN',
            `${this.label} is full and has no queued message to replace`,
            this,
          );
          return 'individual';
        }
        default:
          if (this.block(peer, buf, start, end, request, bodyBytes, receipt, onFull, timeoutMs) && !receipt)
            host.replyBlocked(peer, request);
          return 'individual';
      }
      return this.admit(
        peer,
        buf,
        start,
        end,
        request,
        bodyBytes,
        receipt,
        timeoutMs,
        Outcome.REPLACED_OLDEST,
      );
    }
    if (receipt)
      return this.admit(peer, buf, start, end, request, bodyBytes, true, timeoutMs, Outcome.QUEUED);
    // The common case, by the shortest road (admit and place, unrolled): accepted, then straight
    // to a waiting receiver where the bytes lie, or into the store; covered by the ACK.
    this.accept(buf, start, peer);
    const w = this.findReceiver(buf, start, bodyBytes);
    if (w !== null) this.deliver(w, buf, start, end - start, null, buf !== this.ring);
    else this.enqueue(buf, start, end, bodyBytes, null);
    return 'done';
  }

  /**
   * Plain sends lying back to back at buf[pos, end), each already validated, none asking for a
   * receipt: the common case of {@link send} for a whole run, as one step. Messages go straight
   * to a waiting receiver while it has credit, relabelled in place and written as one slice,
   * recorded in flight as one entry; the rest are queued. Stops at the first message that is not
   * the common case (no room, memory limit, a receiver that selects or is too small) and returns
   * where it stopped: the caller handles that one on its own. Every message consumed is covered
   * by the cumulative ACK, through {@link runRequest}.
   */
  sendRun(peer: Peer, buf: Buffer, pos: number, end: number, maxTotalBytes: number): number {
    if (this.rendezvous || (this.blocked.length > 0 && this.admission === 'in-order')) return pos;
    const host = this.host;
    const from = peer.id;
    const start = pos;
    while (pos < end) {
      const len = getU32(buf, pos) + LENGTH_BYTES;
      const body = len - MESSAGE_HEAD_BYTES;
      if (!this.hasRoom(body)) break;
      putU32(buf, pos + Off.SENDER, from);
      const w = this.findReceiver(buf, pos, body);
      if (w === null) {
        if (!this.anyCredit()) {
          // No receiver can take anything before this run ends (credit comes only with a TAKE
          // or RECEIVE, which are not in it): the rest is queued in one loop.
          pos = this.queueRun(peer, buf, pos, end, maxTotalBytes);
          break;
        }
        if (host.totalBytes + body > maxTotalBytes) break;
        this.queueOne(buf, pos, len, body);
        pos += len;
        continue;
      }
      if (body > w.maxSize) break; // truncation, on its own
      // One at a time, a send is refused while queued bytes are at the kernel's limit, even one
      // that would go straight to a receiver: so is a run (queued bytes do not change in it).
      const memoryRoom = maxTotalBytes - host.totalBytes;
      if (body > memoryRoom) break;
      // As many as w takes, by the shortest road: stamped and relabelled where they lie.
      const runStart = pos;
      const room = Math.min(w.credit, this.capacity - this.count);
      const byteRoom = this.maxBytes - this.bytes;
      // More than one in a row only to a receiver that would get each of them one at a time.
      const anyone = w.sel.type === 0 && w.sel.from === 0 && this.leads(w);
      let n = 0;
      let bodies = 0;
      let each = getU32(buf, pos) + LENGTH_BYTES;
      for (;;) {
        const l = getU32(buf, pos) + LENGTH_BYTES;
        if (l !== each) each = 0;
        const b = l - MESSAGE_HEAD_BYTES;
        if (b > w.maxSize || bodies + b > byteRoom || b > memoryRoom) break;
        putU32(buf, pos + Off.SENDER, from);
        this.stamp(buf, pos);
        this.runRequest = getU32(buf, pos + Off.REQUEST);
        relabelAsDeliver(buf, pos, w.request, this.id);
        pos += l;
        bodies += b;
        n++;
        if (n >= room || pos >= end || !anyone) break;
      }
      w.peer.writer.appendRef(buf, runStart, pos);
      host.markDirty(w.peer);
      w.pushInflight(buf, runStart, pos - runStart, from, null, true, n, each);
      this.inflight += n;
      this.inflightBytes += bodies;
      w.credit -= n;
      if (w.credit === 0 && w.waiting && !w.stream) this.stopWaiting(w);
    }
    if (pos !== start) {
      this.times.lastSendTime = host.now;
      this.times.lastSendProcess = from;
      this.times.lastSendPid = peer.osPid;
    }
    return pos;
  }

  /**
   * Whether, by the policy, w gets every message that comes now while it has credit: the first
   * policy, and no receiver ahead of it in line that could take one (a receiver that selects may
   * want the next message even though it did not want this one).
   */
  private leads(w: ReceiveWaiter): boolean {
    if (this.policy === 'round-robin') return false;
    for (const r of this.receivers) {
      if (r === w) return true;
      if (r.credit > 0 && !r.peer.congested) return false;
    }
    return false;
  }

  /** Queues one message of a run by the message-at-a-time road (its sender is stamped). */
  private queueOne(buf: Buffer, pos: number, len: number, body: number): void {
    this.stamp(buf, pos);
    this.enqueue(buf, pos, pos + len, body, null);
    this.runRequest = getU32(buf, pos + Off.REQUEST);
  }

  /** Whether any receiver could take a message now. */
  private anyCredit(): boolean {
    for (const w of this.receivers) if (w.credit > 0 && !w.peer.congested) return true;
    return false;
  }

  /**
   * Queues plain sends at buf[pos, end) while they fit: {@link sendRun}'s loop when no receiver
   * can take them. Returns where it stopped.
   */
  private queueRun(peer: Peer, buf: Buffer, pos: number, end: number, maxTotalBytes: number): number {
    const host = this.host;
    const slab = host.slab;
    const store = this.store;
    const from = peer.id;
    if (this.ring !== null || this.notify !== null || store.byPriority) {
      // The rarer mailboxes keep to the message-at-a-time road.
      while (pos < end) {
        const len = getU32(buf, pos) + LENGTH_BYTES;
        const body = len - MESSAGE_HEAD_BYTES;
        if (!this.hasRoom(body) || host.totalBytes + body > maxTotalBytes) break;
        putU32(buf, pos + Off.SENDER, from);
        this.queueOne(buf, pos, len, body);
        pos += len;
      }
      return pos;
    }
    let count = this.count;
    let bytes = this.bytes;
    let total = host.totalBytes;
    let seq = this.seq;
    const lo = host.nowLo;
    const hi = host.nowHi;
    while (pos < end) {
      const len = getU32(buf, pos) + LENGTH_BYTES;
      const body = len - MESSAGE_HEAD_BYTES;
      if (count >= this.capacity || bytes + body > this.maxBytes || total + body > maxTotalBytes) break;
      putU32(buf, pos + Off.SENDER, from);
      seq++;
      if (seq < 0x100000000) {
        putU32(buf, pos + Off.SEQ, seq);
        putU32(buf, pos + Off.SEQ + 4, 0);
      } else writeInt64(buf, seq, pos + Off.SEQ);
      putU32(buf, pos + Off.TIME, lo);
      putU32(buf, pos + Off.TIME + 4, hi);
      const off = slab.copy(buf, pos, pos + len);
      store.append(slab.lastBuffer, off, len, body, readInt64(buf, pos + Off.TYPE), seq, from);
      this.runRequest = getU32(buf, pos + Off.REQUEST);
      count++;
      bytes += body;
      total += body;
      pos += len;
    }
    this.sent += seq - this.seq;
    this.seq = seq;
    host.totalBytes = total;
    return pos;
  }

  /** Stamps the next sequence number and the time on a frame (the run's times are set once). */
  private stamp(buf: Buffer, pos: number): void {
    this.seq++;
    this.sent++;
    writeInt64(buf, this.seq, pos + Off.SEQ);
    putU32(buf, pos + Off.TIME, this.host.nowLo);
    putU32(buf, pos + Off.TIME + 4, this.host.nowHi);
  }

  private admit(
    peer: Peer,
    buf: Buffer,
    start: number,
    end: number,
    request: number,
    bodyBytes: number,
    receipt: boolean,
    timeoutMs: number,
    outcome: number,
  ): 'done' | 'individual' {
    if (receipt && this.overWaitingBytes(peer, request, end - start)) return 'individual';
    this.accept(buf, start, peer);
    if (receipt) {
      const sw = new SendWaiter(
        peer,
        request,
        this,
        Buffer.from(buf.subarray(start, end)),
        bodyBytes,
        true,
        OnFull.WAIT,
      );
      this.host.totalBytes += sw.heldBytes;
      peer.waitingBytes += sw.heldBytes;
      peer.sends.set(request, sw);
      this.armTimeout(sw, timeoutMs);
      this.place(sw.frame!, 0, sw.frame!.length, bodyBytes, sw, true);
      return 'individual';
    }
    this.place(buf, start, end, bodyBytes, null, true);
    if (outcome === Outcome.QUEUED) return 'done';
    this.host.replySent(peer, request, outcome, 0, readSeq(buf, start));
    return 'individual';
  }

  /** Stamps sequence number and time: the message is now the mailbox's. */
  private accept(buf: Buffer, start: number, from: Peer): void {
    this.stamp(buf, start);
    this.times.lastSendTime = this.host.now;
    this.times.lastSendProcess = from.id;
    this.times.lastSendPid = from.osPid;
  }

  /**
   * Gives an accepted message to a waiting receiver, or queues it. `notifies`: false for a
   * blocked sender's message let in (see {@link enqueue}).
   */
  private place(
    buf: Buffer,
    start: number,
    end: number,
    bodyBytes: number,
    sw: SendWaiter | null,
    direct = false,
    notifies = true,
  ): void {
    const w = this.findReceiver(buf, start, bodyBytes);
    if (w !== null) {
      if (sw !== null) sw.state = 'inflight';
      this.deliver(w, buf, start, end - start, sw, direct && this.sendsOnce(buf, sw));
      return;
    }
    this.enqueue(buf, start, end, bodyBytes, sw, notifies);
  }

  /**
   * Queues a message. `notifies` is false for a blocked sender's message let in by a receive: as
   * Linux's pipelined_receive, the queue never shows empty to mq_notify, so a receive of the one
   * message of a full queue whose sender then refills it is no arrival, and the registration stays.
   */
  private enqueue(
    buf: Buffer,
    start: number,
    end: number,
    bodyBytes: number,
    sw: SendWaiter | null,
    notifies = true,
  ): void {
    if (notifies && this.notify !== null && this.store.count === 0) {
      // mq_notify: a message arrived in the empty queue and nobody was waiting for it. One-shot.
      const { peer, id } = this.notify;
      this.notify = null;
      if (!peer.terminated) this.host.event(peer, id, { event: 'message', mailbox: this.id });
    }
    let slot: number;
    if (this.ring !== null) {
      slot = this.store.reserveSlot();
      const off = slot * this.frameBytes;
      buf.copy(this.ring, off, start, end);
      this.store.insertAt(slot, this.ring, off, end - start, bodyBytes);
    } else {
      const slab = this.host.slab;
      const off = slab.copy(buf, start, end);
      // The copy may not be made yet: the store reads the fields from the frame as it came.
      slot = this.store.insert(slab.lastBuffer, off, end - start, bodyBytes, buf, start);
    }
    this.host.totalBytes += bodyBytes;
    if (sw !== null) {
      sw.state = 'queued';
      sw.slot = slot;
      this.receiptBySlot ??= new Map();
      this.receiptBySlot.set(slot, sw);
    }
  }

  /** Queues a send to wait for room (or, in a rendezvous, for a receiver); false if refused. */
  private block(
    peer: Peer,
    buf: Buffer,
    start: number,
    end: number,
    request: number,
    bodyBytes: number,
    receipt: boolean,
    onFull: number,
    timeoutMs: number,
  ): boolean {
    if (this.overWaitingBytes(peer, request, end - start)) return false;
    const sw = new SendWaiter(
      peer,
      request,
      this,
      Buffer.from(buf.subarray(start, end)),
      bodyBytes,
      receipt,
      onFull,
    );
    this.host.totalBytes += sw.heldBytes;
    peer.waitingBytes += sw.heldBytes;
    if (this.blocked.length === 0 || bodyBytes < this.smallestBlocked) this.smallestBlocked = bodyBytes;
    this.blocked.push(sw);
    peer.sends.set(request, sw);
    this.armTimeout(sw, timeoutMs);
    return true;
  }

  /**
   * Refuses (ENOMEM) a send that would wait when its process's waiting sends already hold their
   * share: a producer that never awaits its sends to a full mailbox would otherwise take the
   * kernel's whole memory limit, and every other process's sends would fail. Failing the send,
   * not reading the process more slowly, keeps a process that also receives from deadlocking.
   */
  private overWaitingBytes(peer: Peer, request: number, frameBytes: number): boolean {
    const limit = this.host.maxWaitingBytes;
    if (peer.waitingBytes + frameBytes + SEND_WAITER_BYTES <= limit) return false;
    this.host.replyError(
      peer,
      request,
      'ENOMEM',
      `${peer.label}'s sends that wait hold ${peer.waitingBytes} bytes; a ${frameBytes}-byte send to ${this.label} would pass the ${limit}-byte limit for one process (postbox kernel --max-waiting-bytes)`,
      this,
    );
    return true;
  }

  private armTimeout(sw: SendWaiter, timeoutMs: number): void {
    if (timeoutMs > 0) sw.timer = later(sendTimedOut, timeoutMs, sw);
  }

  private replaceOldest(bodyBytes: number): boolean {
    // Drop queued messages, oldest first, until the new one fits; in-flight ones are the
    // receivers' already and are not touched. If dropping them all would not make room (the
    // room is held by messages pushed to receivers, or the message is over the byte limit),
    // the send fails and nothing is dropped: a send that did not happen replaces nothing.
    if (this.inflight >= this.capacity || this.inflightBytes + bodyBytes > this.maxBytes) return false;
    while (!this.hasRoom(bodyBytes)) {
      const slot = this.store.oldest();
      if (slot === -1) return false;
      this.discardSlot(slot, 'EAGAIN');
      this.replaced++;
    }
    return true;
  }

  /** The store moved its messages to other slots: the receipts of those queued follow them. */
  slotsMoved(to: Int32Array): void {
    const bySlot = this.receiptBySlot;
    if (bySlot === null || bySlot.size === 0) return;
    this.receiptBySlot = new Map();
    for (const sw of bySlot.values()) {
      sw.slot = to[sw.slot]!;
      this.receiptBySlot.set(sw.slot, sw);
    }
  }

  private discardSlot(slot: number, code: ErrorCode): void {
    const body = this.store.length(slot) - MESSAGE_HEAD_BYTES;
    const sw = this.receiptBySlot?.get(slot);
    if (sw !== undefined) {
      this.receiptBySlot!.delete(slot);
      this.settleSender(sw, code, `the message was replaced in ${this.label} before anyone received it`);
    }
    this.store.remove(slot, body);
    this.host.totalBytes -= body;
  }

  /**
   * Admits blocked senders while there is room: in arrival order, stopping at the first that
   * does not fit; or, with admission 'fits' (System V), every one that fits, in arrival order,
   * passing over those that do not (Linux's ss_wakeup: all wake, each retries).
   */
  admitBlocked(): void {
    const blocked = this.blocked;
    if (blocked.length === 0) return;
    if (this.rendezvous) {
      this.meetBlocked();
      return;
    }
    if (this.admission === 'in-order') {
      for (let sw = blocked.first(); sw !== null && this.hasRoom(sw.bodyBytes); sw = blocked.first())
        this.admit1(sw);
      return;
    }
    // Every receive would look at every sender blocked, as Linux wakes them all; stopping where
    // not even the smallest fits, 32,000 senders waiting on a full System V queue took 12 s of
    // the kernel's time to drain, not 1.
    for (const sw of blocked) {
      if (!this.hasRoom(this.smallestBlocked)) break;
      if (this.hasRoom(sw.bodyBytes)) this.admit1(sw);
    }
  }

  /**
   * A rendezvous: each receiver that can take a message now, in the policy's order, meets the
   * waiting sender whose message it would take were they all queued ({@link blockedFor}). One
   * that no receiver selects is passed over, not a wall: a receive from B, or of type 2, must
   * meet B's message waiting behind A's.
   */
  private meetBlocked(): void {
    const blocked = this.blocked;
    const receivers = this.receivers;
    const roundRobin = this.policy === 'round-robin';
    for (let met = true; met && blocked.length > 0; ) {
      met = false;
      const n = receivers.length;
      let next = roundRobin ? receivers.turn() : receivers.first();
      for (let k = 0; k < n && next !== null; k++) {
        const w = next;
        next = roundRobin ? receivers.after(w) : w.nextInLine;
        if (w.credit === 0 || w.peer.congested) continue;
        const sw = this.blockedFor(w.sel);
        if (sw === null) continue;
        // Either way the line of receivers changes: look at it again from the start.
        met = true;
        if (sw.bodyBytes > w.maxSize && (w.flags & ReceiveFlag.TRUNCATE) === 0) {
          // As msgrcv without MSG_NOERROR: the receive fails, the message stays (its sender waits).
          this.endReceive(
            w,
            'E2BIG',
            `the first matching message in ${this.label} is ${sw.bodyBytes} bytes, over the receiver's ${w.maxSize}`,
          );
          break;
        }
        if (roundRobin) receivers.setTurn(receivers.nextTurnAfter(w));
        blocked.remove(sw);
        this.accept(sw.frame!, 0, sw.peer);
        sw.state = 'inflight';
        this.deliver(w, sw.frame!, 0, sw.frame!.length, sw);
        break;
      }
    }
  }

  /**
   * The waiting sender whose message a receive with this selection takes, as if the line were
   * the queue: the first in line it selects, but in a priority mailbox the highest priority
   * first, and under type < 0 the lowest type first (msgrcv), arrival order breaking ties.
   */
  private blockedFor(sel: Selection): SendWaiter | null {
    const lowestType = sel.type < 0;
    const byPriority = this.blockedByPriority;
    if (byPriority !== null && !lowestType) {
      // The highest priority first, arrival order within it: a look at each priority's first
      // sender it selects, not at the whole line.
      for (let p = byPriority.highestPriority(); p !== -1; p = byPriority.priorityBelow(p)) {
        for (let sw = byPriority.firstAt(p); sw !== null; sw = sw.nextAtPriority) {
          if (selects(sel, readInt64(sw.frame!, Off.TYPE), getU32(sw.frame!, Off.SENDER))) return sw;
        }
      }
      return null;
    }
    let best: SendWaiter | null = null;
    let bestType = 0;
    let bestPriority = 0;
    for (const sw of this.blocked) {
      const f = sw.frame!;
      const type = readInt64(f, Off.TYPE);
      if (!selects(sel, type, getU32(f, Off.SENDER))) continue;
      if (!lowestType) return sw;
      // A fifo mailbox does not order by the priority its senders may have given.
      const priority = byPriority !== null ? sw.priority : 0;
      const better = best === null || type < bestType || (type === bestType && priority > bestPriority);
      if (!better) continue;
      best = sw;
      bestType = type;
      bestPriority = priority;
    }
    return best;
  }

  /**
   * After the byte limit was lowered: a blocked sender whose message is now over it could never
   * get in, and in an in-order mailbox it would hold up every sender behind it, so it fails as
   * a new send of it would (EMSGSIZE). System V admission passes over it instead, as Linux does.
   */
  refuseBlockedOverLimit(): void {
    if (this.admission !== 'in-order') return;
    for (const sw of this.blocked) {
      if (sw.bodyBytes <= this.maxBytes) continue;
      this.blocked.remove(sw);
      this.settleSender(
        sw,
        'EMSGSIZE',
        `a ${sw.bodyBytes}-byte message is over the ${this.maxBytes}-byte limit of ${this.label} (lowered while it waited)`,
        { measured: { size: sw.bodyBytes, limit: this.maxBytes } },
      );
    }
  }

  /** A blocked sender that now fits leaves the line and goes in. */
  private admit1(sw: SendWaiter): void {
    this.blocked.remove(sw);
    const frame = sw.frame!;
    this.accept(frame, 0, sw.peer);
    if (sw.receipt) {
      this.place(frame, 0, frame.length, sw.bodyBytes, sw, true, false);
    } else {
      this.place(frame, 0, frame.length, sw.bodyBytes, null, true, false);
      this.completeSend(sw, Outcome.QUEUED, 0, readSeq(frame, 0));
    }
  }

  // ── receive ─────────────────────────────────────────────────────────────────────────────────

  /**
   * A new receive. Delivers what it can now; returns true if the receiver now waits (or, for a
   * stream, stays open).
   */
  receive(w: ReceiveWaiter, timeoutMs: number): void {
    const host = this.host;
    const got = this.fill(w);
    if (got === 'error') return;
    if (got > 0 && !w.stream) return;
    if (got === 0 && this.ended()) {
      w.peer.receives.delete(w.request);
      host.replyEnd(w.peer, w.request);
      return;
    }
    if (got === 0 && w.senderGone && !this.othersHold(w)) {
      w.peer.receives.delete(w.request);
      host.replyError(w.peer, w.request, 'ESRCH', this.senderGoneMessage(w), this, senderGone(w));
      return;
    }
    if (got === 0 && (w.flags & ReceiveFlag.NOWAIT) !== 0) {
      if (this.rendezvous && this.blocked.length > 0) {
        // A sender waiting in a rendezvous is a message there now: meet it if it matches.
        w.waiting = true;
        this.receivers.join(w);
        this.admitBlocked();
        if (w.inflight > 0) return;
        this.stopWaiting(w);
      }
      w.peer.receives.delete(w.request);
      const b = w.peer.writer;
      const o = b.copyIn(EMPTY_TEMPLATE, 0, EMPTY_TEMPLATE.length);
      b.buf.writeUInt32LE(w.request, o + Off.REQUEST);
      host.markDirty(w.peer);
      return;
    }
    w.waiting = true;
    this.receivers.join(w);
    if (got === 0 && w.senderGone) this.waitForGone(w);
    if (timeoutMs > 0 && !w.stream) w.timer = later(receiveTimedOut, timeoutMs, w);
    if (this.rendezvous) this.admitBlocked();
  }

  /** Delivers queued messages to w within its credit. Returns how many, or 'error' if it ended. */
  private fill(w: ReceiveWaiter): number | 'error' {
    this.host.slab.settle();
    let n = 0;
    while (w.credit > 0 && !w.peer.congested) {
      const slot = this.store.first(w.sel);
      if (slot === -1) break;
      if (this.tooBig(w, slot)) {
        if (n > 0 && w.stream) break;
        this.refuseTooBig(w, slot);
        return 'error';
      }
      this.deliverQueued(w, slot);
      n++;
    }
    return n;
  }

  /**
   * Pushes queued messages to every waiting receiver with credit, taking turns by policy.
   * Afterwards no receiver with credit has a matching message left queued: the invariant that
   * lets a new message go straight to a waiting receiver without breaking order.
   */
  pump(): void {
    // Queued frames are read from here on: their deferred copies must be made (see Slab).
    this.host.slab.settle();
    if (this.receivers.length === 0 || this.pumping) return;
    this.pumping = true;
    try {
      this.pumpLoop();
    } finally {
      this.pumping = false;
    }
  }

  private pumpLoop(): void {
    let progress = true;
    while (progress && this.store.count > 0) {
      progress = false;
      const receivers = this.receivers;
      const roundRobin = this.policy === 'round-robin';
      const n = receivers.length;
      let next = roundRobin ? receivers.turn() : receivers.first();
      for (let k = 0; k < n && next !== null && this.store.count > 0; k++) {
        const w = next;
        // Read before w is served: a delivery may take w out of the line.
        next = roundRobin ? receivers.after(w) : w.nextInLine;
        if (w.credit === 0 || w.peer.congested) continue;
        const slot = this.store.first(w.sel);
        if (slot === -1) continue;
        if (this.tooBig(w, slot)) {
          this.refuseTooBig(w, slot);
          progress = true;
          break;
        }
        progress = true;
        if (roundRobin) {
          receivers.setTurn(receivers.nextTurnAfter(w));
          this.deliverQueued(w, slot);
          break;
        }
        if (this.deliverQueuedRun(w, slot) === 0) this.deliverQueued(w, slot);
      }
    }
    if (this.rendezvous) this.admitBlocked();
  }

  /** The queued message is over w's max size and w did not ask to truncate. */
  private tooBig(w: ReceiveWaiter, slot: number): boolean {
    return this.store.length(slot) - MESSAGE_HEAD_BYTES > w.maxSize && (w.flags & ReceiveFlag.TRUNCATE) === 0;
  }

  /** E2BIG, as msgrcv without MSG_NOERROR: the receive ends and the message stays queued. */
  private refuseTooBig(w: ReceiveWaiter, slot: number): void {
    const body = this.store.length(slot) - MESSAGE_HEAD_BYTES;
    this.endReceive(
      w,
      'E2BIG',
      `the first matching message in ${this.label} is ${body} bytes, over the receiver's ${w.maxSize}`,
    );
  }

  /** Moves a queued message to w: out of the queue, in flight until w takes it. */
  private deliverQueued(w: ReceiveWaiter, slot: number): void {
    const len = this.store.length(slot);
    const buf = this.store.buffer(slot);
    const off = this.store.offset(slot);
    const sw = this.receiptBySlot?.get(slot) ?? null;
    if (sw !== null) {
      this.receiptBySlot!.delete(slot);
      sw.state = 'inflight';
      sw.slot = -1;
    }
    const body = len - MESSAGE_HEAD_BYTES;
    // A fixed-size mailbox keeps the slot (its ring bytes) until the message is taken.
    this.store.remove(slot, body, this.ring !== null);
    this.host.totalBytes -= body;
    this.deliver(w, buf, off, len, sw, this.sendsOnce(buf, sw));
  }

  /**
   * Moves queued messages to w, oldest first, while it has credit: the pump's common case (a
   * receiver that takes anything, of any size, from a fifo mailbox) in one loop, the frames
   * relabelled where they lie in the slab and written as slices. Stops before a message with a
   * receipt, which goes by {@link deliverQueued}. Returns how many it moved.
   */
  private deliverQueuedRun(w: ReceiveWaiter, slot: number): number {
    if (
      w.sel.type !== 0 ||
      w.sel.from !== 0 ||
      w.maxSize !== Number.POSITIVE_INFINITY ||
      this.order !== 'fifo' ||
      this.ring !== null ||
      !this.leads(w)
    )
      return 0;
    const store = this.store;
    const receipts = this.receiptBySlot !== null && this.receiptBySlot.size > 0;
    const writer = w.peer.writer;
    const credit = w.credit;
    let n = 0;
    let bodies = 0;
    while (n < credit && slot !== -1) {
      if (receipts && this.receiptBySlot!.has(slot)) break;
      const buf = store.buffer(slot);
      const off = store.offset(slot);
      const len = store.length(slot);
      const body = len - MESSAGE_HEAD_BYTES;
      const next = store.removeHead(slot, body);
      relabelAsDeliver(buf, off, w.request, this.id);
      writer.appendRef(buf, off, off + len);
      w.pushInflight(buf, off, len, getU32(buf, off + Off.SENDER), null, true);
      n++;
      bodies += body;
      slot = next;
    }
    if (n === 0) return 0;
    this.host.totalBytes -= bodies;
    this.host.markDirty(w.peer);
    this.inflight += n;
    this.inflightBytes += bodies;
    w.credit -= n;
    if (w.credit === 0 && w.waiting && !w.stream) this.stopWaiting(w);
    return n;
  }

  /** The receiver that should get a message arriving now, by policy, or null. */
  private findReceiver(buf: Buffer, start: number, bodyBytes: number): ReceiveWaiter | null {
    const receivers = this.receivers;
    if (receivers.length === 0) return null;
    const w = receivers.keyed === 0 ? this.takerInLine(buf, start) : this.takerByKind(buf, start);
    if (w === null) return null;
    if (bodyBytes > w.maxSize && (w.flags & ReceiveFlag.TRUNCATE) === 0) {
      // As Linux does for a pipelined send: the too-small receiver fails, the next is tried.
      this.endReceive(
        w,
        'E2BIG',
        `a ${bodyBytes}-byte message arrived in ${this.label}, over the receiver's ${w.maxSize}`,
      );
      return this.findReceiver(buf, start, bodyBytes);
    }
    // Round robin takes turns by process, so a process with many receives outstanding does not
    // take a burst in a row (one process's receives alone take turns among themselves).
    if (this.policy === 'round-robin') receivers.setTurn(receivers.nextTurnAfter(w));
    return w;
  }

  /** The first receiver in the policy's order that can take the message now and selects it, or null. */
  private takerInLine(buf: Buffer, start: number): ReceiveWaiter | null {
    const receivers = this.receivers;
    const n = receivers.length;
    const roundRobin = this.policy === 'round-robin';
    let type = -1;
    let sender = -1;
    let next = roundRobin ? receivers.turn() : receivers.first();
    for (let k = 0; k < n && next !== null; k++) {
      const w = next;
      next = roundRobin ? receivers.after(w) : w.nextInLine;
      if (w.credit === 0 || w.peer.congested) continue;
      const sel = w.sel;
      if (sel.type !== 0 || sel.from !== 0) {
        if (type === -1) {
          type = readInt64(buf, start + Off.TYPE);
          sender = buf.readUInt32LE(start + Off.SENDER);
        }
        if (!selects(sel, type, sender)) continue;
      }
      return w;
    }
    return null;
  }

  /**
   * {@link takerInLine} where receives wait for one sender or one type each (System V's clients,
   * each in msgrcv for type = its pid; an inbox's owner waiting on each of its peers): of those
   * waiting for this message's sender and of those for its type, the first from the turn that can
   * take it; of the others (any type, type < 0, except), the first that can and selects it, if it
   * comes sooner. Walking the whole line, as Linux's pipelined_send walks every msgrcv waiting,
   * cost a send past 10,000 of them 55 µs.
   */
  private takerByKind(buf: Buffer, start: number): ReceiveWaiter | null {
    const type = readInt64(buf, start + Off.TYPE);
    const sender = buf.readUInt32LE(start + Off.SENDER);
    const line = this.receivers;
    let taker = this.firstTaker(line.ofSender(sender), type, sender, null);
    taker = this.firstTaker(line.ofType(type), type, sender, taker) ?? taker;
    return this.firstTaker(line.others(), type, sender, taker) ?? taker;
  }

  /**
   * The first of `kind` from the turn that can take a message of this type and sender now, if it
   * comes before `than` (null: wherever it stands); else null.
   */
  private firstTaker(
    kind: ReceiverKind<ReceiveWaiter> | null,
    type: number,
    sender: number,
    than: ReceiveWaiter | null,
  ): ReceiveWaiter | null {
    if (kind === null || kind.head === null) return null;
    const line = this.receivers;
    const before = than === null ? Number.POSITIVE_INFINITY : line.rank(than);
    const first = line.firstOf(kind);
    let w = first;
    do {
      if (line.rank(w) > before) return null;
      if (w.credit > 0 && !w.peer.congested && selects(w.sel, type, sender)) return w;
      w = line.kindAfter(w);
    } while (w !== first);
    return null;
  }

  /**
   * Writes a DELIVER frame for buf[off, off+len) to w's process and records it in flight.
   *
   * `direct` is for a message going straight from the sender's input to a waiting receiver: its
   * bytes are relabelled where they lie and written by reference, not copied. That is safe only
   * for bytes relabelled once: a message given back is re-queued as a copy, never re-sent from
   * the same bytes. Stored messages are copied into the writer and relabelled there.
   */
  private deliver(
    w: ReceiveWaiter,
    buf: Buffer,
    off: number,
    len: number,
    sw: SendWaiter | null,
    direct = false,
  ): void {
    const writer = w.peer.writer;
    let outLen = len;
    if (len - MESSAGE_HEAD_BYTES > w.maxSize) {
      // Only reached with TRUNCATE (MSG_NOERROR): the rest of the body is dropped.
      const headers = buf.readUInt16LE(off + Off.HEADERS_LENGTH);
      outLen = Math.max(MESSAGE_HEAD_BYTES + headers, MESSAGE_HEAD_BYTES + w.maxSize);
      direct = false;
    }
    let out: Buffer;
    let o: number;
    if (direct) {
      out = buf;
      o = off;
    } else {
      o = writer.copyIn(buf, off, off + outLen);
      out = writer.buf;
      if (outLen !== len) putU32(out, o, outLen - 4);
    }
    relabelAsDeliver(out, o, w.request, this.id);
    if (direct) writer.appendRef(buf, off, off + len);
    this.host.markDirty(w.peer);
    w.pushInflight(buf, off, len, getU32(buf, off + Off.SENDER), sw, sw === null && buf !== this.ring);
    this.inflight++;
    this.inflightBytes += len - MESSAGE_HEAD_BYTES;
    w.credit--;
    if (w.credit === 0 && w.waiting && !w.stream) this.stopWaiting(w);
  }

  /**
   * Whether these bytes will be sent at most once, so they may be relabelled in place and
   * written by reference. A message given back is re-queued as a copy, except in two places
   * where the same bytes come back: a fixed-size mailbox's ring slot, and a rendezvous
   * message returning to its blocked sender.
   */
  private sendsOnce(buf: Buffer, sw: SendWaiter | null): boolean {
    return buf !== this.ring && !(sw !== null && this.rendezvous);
  }

  /** The receiver's application has taken n messages: they leave the mailbox. */
  take(w: ReceiveWaiter, n: number): boolean {
    if (n > w.inflight) return false;
    if (n === 0) return true; // credit only: nothing was received
    const pid = w.peer.id;
    let left = n;
    while (left > 0) {
      const count = w.headCount();
      const buf = w.headBuffer();
      const off = w.headOffset();
      if (count > left) {
        // Part of a run: of frames all the same length, counted; else walked by their lengths.
        const each = w.headEach();
        let at = off + left * each;
        if (each === 0) for (let i = 0; i < left; i++) at += getU32(buf, at) + LENGTH_BYTES;
        w.dropFromHead(left, at - off);
        this.inflightBytes -= at - off - left * MESSAGE_HEAD_BYTES;
        break;
      }
      const len = w.headLength();
      const sw = w.headReceipt();
      w.dropHead();
      left -= count;
      if (buf === this.ring) this.store.releaseSlot(off / this.frameBytes);
      this.inflightBytes -= len - count * MESSAGE_HEAD_BYTES;
      if (sw !== null) {
        sw.holder = null;
        this.completeSend(sw, Outcome.RECEIVED, pid, readSeq(buf, off));
      }
    }
    this.inflight -= n;
    this.received += n;
    this.times.lastReceiveTime = this.host.now;
    this.times.lastReceiveProcess = pid;
    this.times.lastReceivePid = w.peer.osPid;
    if (this.endOnLastWriter) this.checkEnd();
    return true;
  }

  /**
   * w's process gave back unread (RETURN) the message `seq` that was recalled from it: the send
   * that gave up fails now, and the room and credit it held are free. False if w holds no such
   * recalled message.
   */
  returned(w: ReceiveWaiter, seq: number): boolean {
    this.host.slab.settle();
    const sw = w.receiptWithSeq(seq);
    if (sw === null || !sw.recalled) return false;
    w.removeReceipt(sw, (buf, off, len) => {
      this.inflight--;
      this.inflightBytes -= len - MESSAGE_HEAD_BYTES;
      if (buf === this.ring) this.store.releaseSlot(off / this.frameBytes);
    });
    if (w.stream && !w.ended) w.credit++;
    this.settleExpired(sw);
    this.pump();
    this.admitBlocked();
    if (this.endOnLastWriter) this.checkEnd();
    return true;
  }

  /** Fails a send that gave up while its message was in a receiver's hands, now it is back. */
  private settleExpired(sw: SendWaiter): void {
    const why = sw.expired === 'ETIMEDOUT' ? 'timed out' : 'was aborted';
    this.settleSender(sw, sw.expired!, `send to ${this.label} ${why} before anyone took the message`);
  }

  /** Gives back what w holds untaken (receiver cancelled or died), in order, and passes it on. */
  giveBack(w: ReceiveWaiter): void {
    if (w.inflight === 0) return;
    // Rendezvous senders go back to the head of the line together, in the order they were in.
    const first: SendWaiter[] = [];
    while (
      w.shiftInflight((buf, off, len, sw) => {
        const body = len - MESSAGE_HEAD_BYTES;
        this.inflight--;
        this.inflightBytes -= body;
        if (this.removed) {
          if (sw !== null)
            this.settleSender(sw, 'EIDRM', `${this.label} was removed before anyone received the message`);
          return;
        }
        if (sw?.expired != null) {
          // Dropped: a send that gave up is never delivered. Its ring slot, if it had one, is free.
          if (buf === this.ring) this.store.releaseSlot(off / this.frameBytes);
          this.settleExpired(sw);
          return;
        }
        if (this.rendezvous && sw !== null) {
          // A rendezvous message goes back to its still-waiting sender, first in line.
          sw.state = 'blocked';
          first.push(sw);
          return;
        }
        if (buf === this.ring) {
          // Back into the slot it never gave up: no copy.
          const slot = this.store.insertAt(off / this.frameBytes, buf, off, len, body);
          this.host.totalBytes += body;
          if (sw !== null) {
            sw.state = 'queued';
            sw.slot = slot;
            this.receiptBySlot ??= new Map();
            this.receiptBySlot.set(slot, sw);
          }
          return;
        }
        this.enqueue(buf, off, off + len, body, sw);
        // The next one goes back to its place by sequence number, read from the queued frames.
        this.host.slab.settle();
      })
    );
    for (let i = first.length - 1; i >= 0; i--) {
      const sw = first[i]!;
      if (this.blocked.length === 0 || sw.bodyBytes < this.smallestBlocked)
        this.smallestBlocked = sw.bodyBytes;
      this.blocked.unshift(sw);
    }
    // The receiver giving back is no longer waiting (callers stop it first), so the messages go
    // to the others, before any newer message could; a receive from a terminated sender that
    // none of them was for can end.
    if (!this.removed) {
      this.pump();
      this.recheckSendersGone();
      // What came back may all have been dropped (sends that gave up): the stream may end now.
      if (this.endOnLastWriter) this.checkEnd();
    }
    // A rendezvous send that would not wait (nowait, or onFull drop / replace-oldest) passed only
    // because a receiver was waiting. Back in line with none left to meet it, it must not turn
    // into a send that waits (with no timeout, for ever): it fails as it would have had it come
    // now. It was never taken, so the kernel's answer stays final.
    for (const sw of first) {
      if (sw.state !== 'blocked' || sw.onFull === OnFull.WAIT) continue;
      this.blocked.remove(sw);
      this.settleSender(sw, 'EAGAIN', `${this.label} has capacity 0 and no receiver is waiting`);
    }
  }

  stopWaiting(w: ReceiveWaiter): void {
    if (!w.waiting) return;
    w.waiting = false;
    this.receivers.remove(w);
    if (this.goneWaits !== null && w.senderGone) this.goneWaits.delete(w);
    if (w.timer !== null) {
      clearTimeout(w.timer);
      w.timer = null;
    }
  }

  timeOutReceive(w: ReceiveWaiter): void {
    this.stopWaiting(w);
    if (w.inflight > 0) return; // a message reached it first: the receive happened
    w.peer.receives.delete(w.request);
    if (!w.peer.terminated)
      this.host.replyError(w.peer, w.request, 'ETIMEDOUT', `receive from ${this.label} timed out`, this);
  }

  /**
   * Ends w with ESRCH if the process it receives from is gone and nothing of that process's is
   * left here for it: none queued that w selects, and none in another receiver's hands that could
   * come back. No message could ever satisfy it then, so it must not wait for its timeout (or, a
   * stream, for ever). What w holds untaken stays with it, as when a mailbox is removed: the
   * process still reads those, then the error. Returns true if w ended.
   */
  endIfSenderGone(w: ReceiveWaiter): boolean {
    if (!w.senderGone || !w.waiting) return false;
    this.host.slab.settle();
    if (this.store.first(w.sel) !== -1) return false;
    if (this.othersHold(w)) {
      this.waitForGone(w);
      return false;
    }
    this.stopWaiting(w);
    if (w.inflight > 0) w.ended = true;
    else w.peer.receives.delete(w.request);
    if (!w.peer.terminated)
      this.host.replyError(w.peer, w.request, 'ESRCH', this.senderGoneMessage(w), this, senderGone(w));
    return true;
  }

  /**
   * Whether receivers other than w hold, untaken, messages of the process w names that would
   * come back to the queue if given back. By sender alone, not by what w selects of it: a
   * receive of type 2 waits while a type 1 message of its sender is out, and ends when it
   * has been taken or has come back.
   */
  private othersHold(w: ReceiveWaiter): boolean {
    // All w holds is from that process (it selects by it), and counted unless it has a receipt.
    return this.inflightFrom.of(w.sel.from) > w.counted;
  }

  /** w waits on a terminated sender's messages in other hands: looked at again as they leave. */
  private waitForGone(w: ReceiveWaiter): void {
    if (this.goneWaits === null) this.goneWaits = new Set();
    this.goneWaits.add(w);
  }

  /**
   * Messages left receivers' hands (taken, or given back and passed on): a receive that waited
   * on a terminated sender only for those ends if none is left for it.
   */
  recheckSendersGone(): void {
    const waits = this.goneWaits;
    if (waits === null) return;
    this.goneWaits = null;
    for (const w of waits) this.endIfSenderGone(w);
  }

  private senderGoneMessage(w: ReceiveWaiter): string {
    const what = w.sel.type === 0 ? 'nothing from it' : 'nothing from it that this receive selects';
    return `process ${w.sel.from} has terminated (or never was) and ${what} is left in ${this.label}`;
  }

  /**
   * Ends a receive with an error: it stops waiting. A stream keeps what it was pushed until the
   * process says which of it was taken (TAKE) and gives back the rest (CANCEL): given back now,
   * a message the application took while the error was on its way would be received twice.
   */
  endReceive(w: ReceiveWaiter, code: ErrorCode, message: string): void {
    this.stopWaiting(w);
    if (w.stream && w.inflight > 0) w.ended = true;
    else {
      this.giveBack(w);
      w.peer.receives.delete(w.request);
    }
    if (!w.peer.terminated) this.host.replyError(w.peer, w.request, code, message, this);
  }

  // ── handles, end of stream ─────────────────────────────────────────────────────────────────────

  /** A handle opened: reading, writing, or both. */
  openHandle(read: boolean, write: boolean): void {
    this.opens++;
    if (read) {
      this.readers++;
      this.hadReader = true;
      if (this.readerWaits !== null) this.tellReaderWaits({ event: 'reader', mailbox: this.id });
    }
    if (write) {
      this.writers++;
      this.hadWriter = true;
    }
  }

  /** Tells every process waiting for a reader, once, and forgets them. */
  private tellReaderWaits(payload: Record<string, unknown>): void {
    const waits = this.readerWaits;
    if (waits === null) return;
    this.readerWaits = null;
    for (const [id, peer] of waits) {
      peer.awaitingReader?.delete(this);
      peer.readerWaitCount--;
      if (!peer.terminated) this.host.event(peer, id, payload);
    }
  }

  /** A handle closed. Returns true when the mailbox should now be removed (unlinked, last close). */
  closeHandle(read: boolean, write: boolean): boolean {
    this.opens--;
    if (read) {
      this.readers--;
      if (this.readers === 0 && (this.requireReader || this.brokenPipe())) this.failSendsWithoutReader();
    }
    if (write) {
      this.writers--;
      if (this.endOnLastWriter) this.checkEnd();
    }
    // With both ends closed and nothing left unread, a FIFO starts afresh, as one reopened on
    // Linux: the next reader waits for a writer, the next writer is not told the (previous)
    // readers are gone. Data still queued keeps its end of file for the reader to come.
    if (this.readers === 0 && this.writers === 0 && this.count === 0) this.hadReader = this.hadWriter = false;
    return this.unlinked && this.opens === 0;
  }

  /**
   * The last reader of a mailbox that requires one, or of a pipe, has closed: sends still
   * waiting to be taken (a receipt, or blocked on a full mailbox) would wait for a reader that
   * may never come, so they fail with EPIPE, as a new send would now (a writer blocked on a full
   * pipe whose reader exits gets EPIPE, as write(2) does; an RPC call queued behind the only
   * server is NoServerError, not a call that hangs). On a mailbox that requires a reader, those
   * that asked to wait for one (WITHOUT_READER, RPC's waitForServer) keep waiting; a pipe has no
   * such exception. Messages already accepted stay.
   */
  private failSendsWithoutReader(): void {
    this.host.slab.settle();
    const pipe = this.brokenPipe();
    const message = pipe
      ? `nobody will read: every read end of ${this.label} is closed`
      : `the last reader of ${this.label} closed before anyone took the message`;
    const waiting: SendWaiter[] = this.receiptBySlot === null ? [] : [...this.receiptBySlot.values()];
    for (const sw of this.blocked) waiting.push(sw);
    // None is admitted until all have failed: withdrawn one at a time, each let in the next
    // blocked send that fitted, which a writer then saw succeed after one that failed with
    // EPIPE, its bytes left behind in the FIFO for the next reader with a hole before them.
    for (const sw of waiting) if (pipe || !sw.waitsForReader) this.withdrawSend(sw, 'EPIPE', message, false);
    this.admitBlocked();
  }

  /**
   * Nothing left and nobody left to write: the stream has ended. Nothing left includes what is in
   * a reader's hands untaken: given back, it is the next reader's to read, not after an END.
   */
  ended(): boolean {
    return (
      this.endOnLastWriter &&
      this.hadWriter &&
      this.writers === 0 &&
      this.store.count === 0 &&
      this.inflight === 0 &&
      this.blocked.length === 0
    );
  }

  /** Nobody will ever read: sends fail with EPIPE (a pipe whose read end is closed). */
  brokenPipe(): boolean {
    return this.endOnLastWriter && this.hadReader && this.readers === 0;
  }

  /** Nobody reads now, and the mailbox says senders should be told at once. */
  unread(): boolean {
    return this.requireReader && this.readers === 0;
  }

  /** At end of stream, every waiting receiver is told so. */
  private checkEnd(): void {
    if (!this.ended()) return;
    this.goneWaits = null;
    for (const w of this.receivers.clear()) {
      w.waiting = false;
      if (w.timer !== null) clearTimeout(w.timer);
      if (w.inflight > 0 && !w.stream) continue; // it has its message; it will TAKE it
      // A stream still holding untaken messages stays known until it takes them.
      if (w.inflight > 0) w.ended = true;
      else w.peer.receives.delete(w.request);
      if (!w.peer.terminated) this.host.replyEnd(w.peer, w.request);
    }
  }

  // ── completion and cancellation of sends ─────────────────────────────────────────────────────

  completeSend(sw: SendWaiter, outcome: number, receiver: number, seq: number): void {
    if (sw.state === 'settled') return;
    sw.state = 'settled';
    this.host.totalBytes -= sw.heldBytes;
    sw.peer.waitingBytes -= sw.heldBytes;
    sw.frame = null;
    if (sw.timer !== null) clearTimeout(sw.timer);
    sw.peer.sends.delete(sw.request);
    if (!sw.peer.terminated) this.host.replySent(sw.peer, sw.request, outcome, receiver, seq);
  }

  settleSender(sw: SendWaiter, code: ErrorCode, message: string, detail?: ErrorDetail): void {
    if (sw.state === 'settled') return;
    sw.state = 'settled';
    this.host.totalBytes -= sw.heldBytes;
    sw.peer.waitingBytes -= sw.heldBytes;
    sw.frame = null;
    if (sw.timer !== null) clearTimeout(sw.timer);
    sw.peer.sends.delete(sw.request);
    if (!sw.peer.terminated && !sw.peer.saidBye)
      this.host.replyError(sw.peer, sw.request, code, message, this, detail);
  }

  /**
   * Withdraws a send (timeout, abort, or its process died). The kernel's answer is final: a
   * send withdrawn here was never delivered and never will be. One already in a receiver's hands
   * cannot be withdrawn; it completes when taken, or is dropped if it comes back.
   *
   * `admit` false leaves the senders behind it blocked, for a caller withdrawing several sends of
   * one process (its termination) that calls {@link admitBlocked} once they are all gone: else
   * withdrawing one would admit the next of the same process that fits (a small message behind a
   * big one), and a stream would get a later write without the one before it.
   */
  withdrawSend(sw: SendWaiter, code: ErrorCode, message: string, admit = true): void {
    this.host.slab.settle();
    switch (sw.state) {
      case 'blocked': {
        this.blocked.remove(sw);
        this.settleSender(sw, code, message);
        // Removing a blocked sender may unblock those behind it (a big message ahead of small ones).
        if (admit) this.admitBlocked();
        return;
      }
      case 'queued': {
        this.receiptBySlot?.delete(sw.slot);
        const body = this.store.length(sw.slot) - MESSAGE_HEAD_BYTES;
        this.store.remove(sw.slot, body);
        this.host.totalBytes -= body;
        this.settleSender(sw, code, message);
        if (admit) this.admitBlocked();
        return;
      }
      case 'inflight': {
        // In a receiver's hands it cannot be withdrawn: it completes if taken, and is dropped
        // (and the send fails) if it comes back.
        if (code !== 'ETIMEDOUT' && code !== 'ECANCELED') return;
        sw.expired = code;
        // Its process is gone, or going (it said goodbye, and its client failed the send):
        // nobody waits for this receipt any more. At the goodbye it is not yet terminated, and
        // its sends are gone from it by its end, so its stat listed it until the message was
        // taken or came back.
        if (sw.peer.terminated || sw.peer.saidBye) this.receiptWaits?.delete(sw);
        // Pushed ahead to a stream, it may sit unread behind a busy loop for as long as the
        // loop takes: ask for it back, so that the send fails now, not when the loop gets to it
        // (the process answers RETURN if it had not handed it out; else its TAKE says it had).
        const w = sw.holder;
        if (w === null || !w.stream || !w.peer.recalls || sw.recalled || w.peer.terminated) return;
        const seq = w.seqOf(sw);
        if (seq === null) return;
        sw.recalled = true;
        this.host.recall(w, seq);
        return;
      }
      default:
        return;
    }
  }

  // ── removal ───────────────────────────────────────────────────────────────────────────────────

  /** Removes the mailbox now: every waiter fails with EIDRM (System V IPC_RMID). */
  remove(why: string, code: ErrorCode = 'EIDRM'): void {
    this.host.slab.settle();
    if (this.removed) return;
    this.removed = true;
    const message = `${this.label} was removed (${why})`;
    this.goneWaits = null;
    for (const w of this.receivers.clear()) {
      w.waiting = false;
      if (w.timer !== null) clearTimeout(w.timer);
      // One still holding pushed messages stays known: its TAKEs complete their receipts, and
      // what it gives back settles them with EIDRM.
      if (w.inflight > 0) w.ended = true;
      else w.peer.receives.delete(w.request);
      if (!w.peer.terminated) this.host.replyError(w.peer, w.request, code, message, this);
    }
    for (const sw of this.blocked.drain()) this.settleSender(sw, code, message);
    // A map's clear() allocates its table anew even when empty: a process ending removes every
    // mailbox it owned in one turn, most of them with nothing waiting, and paid for that.
    if (this.receiptBySlot !== null && this.receiptBySlot.size > 0) {
      for (const sw of this.receiptBySlot.values()) this.settleSender(sw, code, message);
      this.receiptBySlot.clear();
    }
    this.tellReaderWaits({ event: 'removed', mailbox: this.id });
    this.host.totalBytes -= this.store.bytes;
    // Its messages can never be received now, and no limit counts them any more: let them go at
    // once (a process's cache of the last mailbox it sent to may keep this object a while),
    // unless a receiver still holds some pushed to it, whose TAKE or RETURN settles them here.
    if (this.inflight === 0) {
      if (!this.store.asNew) this.store = new MessageStore(this.store.byPriority, 0, this);
      this.ring = null;
    }
  }
}

const EMPTY_TEMPLATE = (() => {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(8, 0);
  b[4] = Op.EMPTY;
  return b;
})();

export function readSeq(buf: Buffer, start: number): number {
  return buf.readInt32LE(start + Off.SEQ + 4) * 2 ** 32 + buf.readUInt32LE(start + Off.SEQ);
}

/** Node timers hold at most 2^31 − 1 ms; a wire timeout may be up to 2^32 − 1, so longer ones wait twice. */
const MAX_TIMER = 2 ** 31 - 1;

function later<T extends { timer: NodeJS.Timeout | null }>(
  fn: (arg: T) => void,
  ms: number,
  arg: T,
): NodeJS.Timeout {
  if (ms <= MAX_TIMER) return setTimeout(fn, ms, arg);
  return setTimeout(() => {
    arg.timer = later(fn, ms - MAX_TIMER, arg);
  }, MAX_TIMER);
}

function sendTimedOut(sw: SendWaiter): void {
  sw.timer = null;
  sw.mailbox.withdrawSend(sw, 'ETIMEDOUT', `send to ${sw.mailbox.label} timed out`);
}

function receiveTimedOut(w: ReceiveWaiter): void {
  w.timer = null;
  w.mailbox.timeOutReceive(w);
}

/** The process a receive's `from` named, which has terminated: what its ESRCH is about. */
function senderGone(w: ReceiveWaiter): ErrorDetail {
  return { process: String(w.sel.from) };
}

import { Off, SendFlag } from '../protocol/frame.js';
import type { Mailbox, Peer } from './mailbox.js';
import type { ReceiveWaiter } from './receive-waiter.js';

/** Where a send's message is: waiting to enter, queued (store slot), in flight to a receiver, or settled. */
export type SendState = 'blocked' | 'queued' | 'inflight' | 'settled';

/** A send that has not completed: blocked on a full mailbox, or waiting for its receipt. */
export class SendWaiter {
  /** The whole frame, copied out of the input so it pins nothing. */
  frame: Buffer | null;
  private where: SendState = 'blocked';
  slot = -1;
  /** The send gave up (timeout or abort) while its message was in a receiver's hands: if it comes back, it is dropped and the send fails with this code. */
  expired: 'ETIMEDOUT' | 'ECANCELED' | null = null;
  /** The receive its message was pushed to, while in flight. */
  holder: ReceiveWaiter | null = null;
  /** Expired in flight, and its holder's process asked to give the message back (RECALL). */
  recalled = false;
  timer: NodeJS.Timeout | null = null;
  /** Where it stands in its mailbox's line of blocked senders (kept by BlockedSenders). */
  blockedAt = -1;
  /** Its neighbours among the blocked senders of its priority (kept by PriorityBlockedSenders). */
  prevAtPriority: SendWaiter | null = null;
  nextAtPriority: SendWaiter | null = null;
  /** Its message's priority. */
  readonly priority: number;
  /** Asked to wait for a reader (WITHOUT_READER): read from the frame before any relabelling. */
  readonly waitsForReader: boolean;
  /** Bytes of the kernel's memory limit it holds until it is settled: its frame and itself. */
  readonly heldBytes: number;
  /** Where the message is: waiting to enter, queued (store slot), in flight to a receiver, or settled. */
  get state(): SendState {
    return this.where;
  }
  /**
   * Kept here, where every change of state passes, so that the mailbox's index of sends waiting
   * for their receipt ({@link Mailbox.receiptWaits}) cannot miss one: stat counted them by a walk
   * over every process's sends in the whole kernel.
   */
  set state(state: SendState) {
    this.where = state;
    if ((state === 'queued' || state === 'inflight') && !this.peer.terminated) {
      this.mailbox.receiptWaits ??= new Set();
      this.mailbox.receiptWaits.add(this);
    } else this.mailbox.receiptWaits?.delete(this);
  }
  constructor(
    readonly peer: Peer,
    readonly request: number,
    readonly mailbox: Mailbox,
    frame: Buffer,
    readonly bodyBytes: number,
    /**
     * A receipt was asked for: the send completes only when its message is taken. (In a
     * rendezvous every send does; one admitted after the capacity was raised completes as queued.)
     */
    readonly receipt: boolean,
    readonly onFull: number,
  ) {
    this.frame = frame;
    this.heldBytes = frame.length + SEND_WAITER_BYTES;
    this.waitsForReader = (frame[Off.FLAGS]! & SendFlag.WITHOUT_READER) !== 0;
    this.priority = frame.readUInt16LE(Off.PRIORITY);
  }
}

/**
 * What a waiting send costs the kernel beyond its frame (the waiter, the frame's Buffer, its
 * entry in its process's table), counted against the memory limit with the frame: a sender
 * pipelining to a full mailbox must meet ENOMEM as one filling an unbounded mailbox does.
 */
export const SEND_WAITER_BYTES = 256;

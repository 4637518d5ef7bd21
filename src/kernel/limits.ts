/**
 * The one table of defaults and kernel-wide limits. Each limit is a `postbox kernel` flag;
 * docs/api.md prints this table.
 */
import { InvalidArgumentError } from '../protocol/errors.js';
import { MAX_HEARTBEAT_MS, MAX_MESSAGE_SIZE_LIMIT } from '../protocol/frame.js';

/** Kernel-wide limits, fixed at start. */
export interface KernelLimits {
  /** Largest message body (plus user headers) any mailbox accepts. `--max-message-size`. */
  maxMessageSize: number;
  /** Default byte limit of a mailbox (System V msg_qbytes). `--max-mailbox-bytes`. */
  maxMailboxBytes: number;
  /**
   * Bytes queued in all mailboxes together, and held for sends that wait (to enter a full mailbox,
   * or for their receipt); beyond it sends fail with ENOMEM. `--max-total-bytes`.
   */
  maxTotalBytes: number;
  /**
   * Bytes one process's sends may hold while they wait (to enter a full mailbox, for a
   * rendezvous, or for their receipt); beyond it that process's sends that would wait fail with
   * ENOMEM, so that one producer cannot take the whole of `maxTotalBytes`. `--max-waiting-bytes`;
   * when not given, a quarter of `maxTotalBytes` (1 GiB with the defaults).
   */
  maxWaitingBytes: number;
  /**
   * Bytes that large frames begun and not yet whole may hold together; a process whose frame
   * finds no room is not read until room comes (FrameRoom). `--max-partial-bytes`.
   */
  maxPartialBytes: number;
  /** Mailboxes at once (inboxes included). `--max-mailboxes`. */
  maxMailboxes: number;
  /** Connected processes at once. `--max-processes`. */
  maxProcesses: number;
  /**
   * Open handles, monitors, waits for a reader and waiting receives each process may have (each
   * counted apart), as RLIMIT_NOFILE bounds a Unix process's descriptors: one process cannot take
   * the kernel's memory by opening without end. `--max-per-process`.
   */
  maxPerProcess: number;
  /** Largest credit a prefetching receiver may hold. */
  maxCredit: number;
  /** Bytes waiting to be written to one process before the kernel stops delivering to it. */
  outputHighWater: number;
  /** Heartbeat interval for TCP processes, ms; a process silent for 3 intervals is terminated. */
  heartbeatMs: number;
}

/** The limits a kernel has when none is given (the `postbox kernel` flags' defaults, docs/api.md). */
export const defaultLimits: Readonly<KernelLimits> = Object.freeze({
  maxMessageSize: 1024 * 1024,
  maxMailboxBytes: 64 * 1024 * 1024,
  maxTotalBytes: 4 * 1024 * 1024 * 1024,
  maxWaitingBytes: 1024 * 1024 * 1024,
  maxPartialBytes: 256 * 1024 * 1024,
  maxMailboxes: 1_000_000,
  maxProcesses: 100_000,
  maxPerProcess: 65_536,
  maxCredit: 16384,
  outputHighWater: 4 * 1024 * 1024,
  heartbeatMs: 5000,
});

/** The default share of one process's waiting sends: this fraction of `maxTotalBytes`. */
const WAITING_SHARES = 4;

/**
 * The kernel's limits with `given` over the defaults, each checked: a program that starts a
 * kernel with a misspelt limit, or one of 0, NaN or a fraction, is told so at once, as
 * `postbox kernel` tells its flags' users, instead of getting a kernel that refuses everything
 * (or nothing).
 *
 * @example
 * ```ts
 * const limits = kernelLimits({ maxPerProcess: 1024 }); // the rest are the defaults
 * ```
 */
export function kernelLimits(given: Partial<KernelLimits> = {}): KernelLimits {
  const limits: KernelLimits = { ...defaultLimits };
  for (const [key, value] of Object.entries(given)) {
    if (!Object.hasOwn(defaultLimits, key))
      throw new InvalidLimitError(
        `there is no kernel limit '${key}'; the limits are ${Object.keys(defaultLimits).join(', ')}`,
      );
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
      throw new InvalidLimitError(
        `the kernel limit ${key} must be a positive whole number, not ${String(value)}`,
      );
    // A frame's length is 32 bits: a larger message could never be sent, yet `limits` showed it.
    if (key === 'maxMessageSize' && value > MAX_MESSAGE_SIZE_LIMIT)
      throw new InvalidLimitError(
        `the kernel limit maxMessageSize is at most ${MAX_MESSAGE_SIZE_LIMIT} bytes (a frame's length is 32 bits), not ${value}`,
      );
    // A timer longer than Node's longest fires at once, every millisecond (a TimeoutOverflowWarning
    // in the kernel and in each TCP client, and an idle kernel busy checking heartbeats).
    if (key === 'heartbeatMs' && value > MAX_HEARTBEAT_MS)
      throw new InvalidLimitError(
        `the kernel limit heartbeatMs is at most ${MAX_HEARTBEAT_MS} ms (about 24.8 days, a timer's longest), not ${value}`,
      );
    limits[key as keyof KernelLimits] = value;
  }
  // A share fixed at 1 GiB would let four greedy processes fill a kernel given 4 GiB, and one
  // fill a kernel given less: it follows the total unless it was set.
  if (given.maxWaitingBytes === undefined)
    limits.maxWaitingBytes = Math.max(1, Math.floor(limits.maxTotalBytes / WAITING_SHARES));
  return limits;
}

/**
 * A kernel limit that does not exist, or is not a positive whole number (EINVAL): one of the
 * client's error classes, so `instanceof PostboxError` and `code` hold for it too.
 */
export class InvalidLimitError extends InvalidArgumentError {}

/** How a mailbox is shared between receivers. */
export type ReceiverPolicy = 'first' | 'round-robin' | 'exclusive' | 'pair';
/** In which order a mailbox delivers. */
export type MailboxOrder = 'fifo' | 'priority';

/** Attributes of a mailbox, as given at creation. */
export interface MailboxAttributes {
  /** Messages it holds: 0 (rendezvous), n, or Infinity (unbounded). Default unbounded. */
  capacity: number;
  /** Largest message (body plus user headers), bytes. Default the kernel's maxMessageSize. */
  maxMessageSize: number;
  /** Bytes it holds at most, like System V msg_qbytes. Default the kernel's maxMailboxBytes. */
  maxBytes: number;
  order: MailboxOrder;
  policy: ReceiverPolicy;
  /** Three octal digits owner/group/others; 4 receive, 2 send. */
  mode: number;
  /**
   * Fixed message size in bytes (body plus user headers), or 0 for variable-size messages. A
   * fixed-size mailbox preallocates capacity × size and allocates nothing per message.
   */
  messageSize: number;
  /** End of stream when the last writer closes (pipes, FIFOs); EPIPE once the last reader closes. */
  endOnLastWriter: boolean;
  /** Removed when its last handle closes (anonymous pipes). */
  transient: boolean;
  /** Sends fail with EPIPE while no handle reads it (a service nobody serves), unless they ask to wait. */
  requireReader: boolean;
  /**
   * 'in-order' (the contract): blocked senders enter in arrival order and a newcomer waits behind
   * them; capacity 0 is a rendezvous. 'fits' (System V): any sender whose message fits enters;
   * capacity 0 holds nothing.
   */
  admission: 'in-order' | 'fits';
  /**
   * Rights are checked when a handle is opened, not on each send and receive (POSIX queues):
   * a process sends through a handle open for writing and receives through one open for reading.
   */
  rightsAtOpen: boolean;
}

/** Default mode of a process-owned mailbox: owner and granted processes send and receive, others send. */
export const PROCESS_OWNED_MODE = 0o662;
/** Default mode of a system-owned mailbox: everyone connected sends and receives. */
export const SYSTEM_OWNED_MODE = 0o666;
/** Mode of a process's inbox: only its process receives, anyone sends. */
export const INBOX_MODE = 0o622;
/** Highest priority a message may carry (POSIX MQ_PRIO_MAX − 1 on Linux). */
export const MAX_PRIORITY = 32767;
/**
 * How many process ids a stat lists of each line of waiting operations (`waitingSenders`,
 * `waitingReceipts`, `waitingReceivers`); the `…Count` beside each says how many there are.
 */
export const STAT_IDS = 100;

/**
 * Connections a listening socket holds before the kernel accepts them. Node's default, 511, is
 * less than a pool of workers joining at once; Linux caps it at net.core.somaxconn (4,096 since
 * 5.4), and a client that meets a full queue on the Unix socket tries again.
 */
export const LISTEN_BACKLOG = 4096;

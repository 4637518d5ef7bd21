import { FrameError } from '../protocol/decoder.js';
import { AbortedError, ClosedError, InvalidArgumentError, type PostboxError } from '../protocol/errors.js';
import type { CallOp } from './answer-check.js';
import type { CallEvents } from './call-events.js';
import type { Connection, MessageListener } from './connection.js';
import { type ConsumeOptions, Consumer, type MessageHandler } from './consumer.js';
import type { Message } from './message.js';
import { checkOptions, describeValue, type OptionNames, unknownOption } from './option-names.js';
import { badFrom, badProcessRef, badSignal } from './option-values.js';
import type { MailboxOptions } from './process.js';
import { checkReceiveOptions, type ReceiveOptions } from './receive-options.js';
import type { SendOptions } from './send-options.js';
import type { SendPromise } from './send-promise.js';
import type { SendManyResult, SendResult } from './send-result.js';

/** A mailbox as the kernel describes it. */
export interface MailboxInfo {
  id: number;
  name: string | null;
  /** Messages it holds at most; null is unbounded, 0 is a rendezvous (admission `in-order`). */
  capacity: number | null;
  maxMessageSize: number;
  maxBytes: number;
  order: 'fifo' | 'priority';
  policy: 'first' | 'round-robin' | 'exclusive' | 'pair';
  /** Fixed message size, or 0 for variable-size messages. */
  messageSize: number;
  /** Three octal digits owner/group/others; 4 receive, 2 send. */
  mode: number;
  /** Owner's process id; null once a system-owned mailbox's owner has terminated. */
  owner: number | null;
  /** Lives until deleted (true), or removed with its owner (false). */
  system: boolean;
  /** Processes the owner granted rights to. */
  group: number[];
  /** System V key, 0 if none. */
  key: number;
  /** Ends when the last writer closes (pipes, FIFOs). */
  endOnLastWriter: boolean;
  /**
   * How waiting senders enter: in order, or any whose message fits (`'fits'`, System V queues,
   * where capacity 0 is msg_qbytes 0, a queue that holds nothing, not a rendezvous).
   */
  admission: 'in-order' | 'fits';
  /** Rights are checked when a handle opens, and the handle's role is the right (POSIX queues). */
  rightsAtOpen: boolean;
  /** Its name is gone; it is removed at its last close. */
  unlinked: boolean;
  /**
   * This handle's id in the kernel: on `mailbox.info`, from the open or create that made the
   * handle. Descriptions from other calls (stat, chmod, setLimits, …) describe the mailbox, not
   * a handle, and have none.
   */
  handle?: number;
  /**
   * The secret that gives the group's rights to whoever opens the mailbox with it: only on its
   * creator's `mailbox.info`, and only if it was created with `passkey: true`; as the create
   * said it (after {@link Mailbox.renewPasskey}, the old one). {@link Mailbox.passkey} asks again.
   */
  passkey?: string;
  /**
   * Whether it has a passkey (told to everyone; the passkey itself only to its owner). Absent
   * from older kernels.
   */
  hasPasskey?: boolean;
}

/** A mailbox's state, like System V's msqid_ds. */
export interface MailboxStat extends MailboxInfo {
  /**
   * The process whose inbox this is, or null for a mailbox. Only `stat()` by id reaches an inbox; lists
   * leave them out. Absent from older kernels.
   */
  inboxOf?: number | null;
  /** Messages held (queued plus delivered and not yet taken). */
  count: number;
  /** Bytes held. */
  bytes: number;
  queued: number;
  inflight: number;
  /**
   * Ids of processes blocked sending, in order: a process id per send waiting to enter, for the
   * first 100 of them; {@link waitingSendersCount} says how many wait in all.
   */
  waitingSenders: number[];
  /** Sends waiting to enter, all of them (`waitingSenders` lists the first 100). */
  waitingSendersCount: number;
  /**
   * Ids of processes whose send waits for its receipt (`receipt`, or a rendezvous taken in):
   * its message is in the mailbox, not yet taken. A process id per such send, for the first 100.
   */
  waitingReceipts: number[];
  /** Sends waiting for their receipt, all of them (`waitingReceipts` lists the first 100). */
  waitingReceiptsCount: number;
  /** Ids of processes blocked receiving, in order: one per waiting receive, for the first 100. */
  waitingReceivers: number[];
  /** Receives waiting, all of them (`waitingReceivers` lists the first 100). */
  waitingReceiversCount: number;
  holders: number[];
  /** Handles open on it, and how many read and write. */
  opens: number;
  readers: number;
  writers: number;
  lastSendPid: number;
  lastReceivePid: number;
  sent: number;
  received: number;
  replaced: number;
  dropped: number;
  lastSendTime: number;
  lastSendProcess: number;
  lastReceiveTime: number;
  lastReceiveProcess: number;
  changeTime: number;
  createTime: number;
}

/**
 * @internal How busy a mailbox is, as the kernel's `busiest` ranks it: its messages and every
 * process waiting on it (to send, for a receipt, to receive). `busiestMailboxes` and `postbox
 * watch` rank by it, busiest first, the lowest id first among equals ({@link busiestFirst}).
 */
export function mailboxBusyness(s: MailboxStat): number {
  return s.count + s.waitingSendersCount + s.waitingReceiptsCount + s.waitingReceiversCount;
}

/** @internal Busiest first by {@link mailboxBusyness}, then the lowest id: the kernel's order. */
export function busiestFirst(a: MailboxStat, b: MailboxStat): number {
  return mailboxBusyness(b) - mailboxBusyness(a) || a.id - b.id;
}

/** Options of a receiving iterator. */
export interface IterateOptions extends Omit<ReceiveOptions, 'nowait' | 'timeout' | 'signal'> {
  /**
   * How many messages the kernel may push ahead (default 256). Pushed messages stay the
   * mailbox's until taken, and go back if the iterator ends first. Priority mailboxes and a
   * `type` below 0 never push ahead: each message is asked for when the loop wants it, as
   * `prefetch: 0` asks for it anywhere.
   */
  prefetch?: number | undefined;
  /**
   * Give credit back only on {@link MessageStream.returnCredit}, not as messages are taken: `prefetch`
   * then bounds the messages pushed ahead plus those still being worked on, as a worker pool
   * wants. A message is the process's as soon as the loop takes it (the kernel is told at once),
   * so one that another worker could have had is never handled twice. Where nothing is pushed
   * ahead (a priority mailbox, a `type` below 0), an iterator refuses it (EINVAL) and `consume()`
   * takes it as the most handlers in progress; with prefetch 0 it is EINVAL.
   */
  holdCredit?: boolean | undefined;
  /** Only messages from this process id (direct links). */
  from?: number | undefined;
  /**
   * Stops the loop when aborted: the iterator ends (`done`, no error, unlike a `receive()`'s
   * ECANCELED) and the messages pushed ahead and not yet taken go back to the mailbox.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * process.once('SIGTERM', () => stop.abort());
   * for await (const m of jobs.messages({ signal: stop.signal })) await handle(m);
   * await me.close(); // the loop ended: what it took is written first
   * ```
   */
  signal?: AbortSignal | undefined;
}

/**
 * An async iterator over a mailbox, fed by the kernel within a credit, so a loop pays no round
 * trip per message. Ending the loop (break, return, abort) gives untaken messages back.
 */
export class MessageStream<T = unknown> implements MessageIterator<T> {
  private readonly conn: Connection;
  private readonly request: number;
  // Delivered and not yet yielded: a ring, never more than the credit (it grows if it must).
  private queue: (Message | null)[];
  private head = 0;
  private count = 0;
  private waiter: {
    resolve: (r: IteratorResult<Message<T>>) => void;
    reject: (e: PostboxError) => void;
  } | null = null;
  /** A batch reader waiting for deliveries (see {@link nextBatch}). */
  private wake: (() => void) | null = null;
  private error: PostboxError | null = null;
  private ended = false;
  private endReceived = false;
  private taken = 0;
  private readonly batch: number;
  /** The most the kernel may have pushed and this side not yet handed out. */
  private readonly credit: number;
  private readonly holdCredit: boolean;
  /** Taken and not yet given back (holdCredit). */
  private held = 0;
  /** Credit given back by the application and not yet sent to the kernel (holdCredit). */
  private creditBack = 0;
  private readonly onEnd: (s: MessageStream<T>) => void;
  /** Over TCP, what was delivered is handed out only while the kernel can still have heard us. */
  private readonly checksSilence: boolean;
  /** A consumer's: each message is handed to it as it is read, instead of waiting for a step. */
  private listener: StreamListener<T> | null = null;
  /**
   * The caller's signal, until the stream is done with it: one signal often outlives many
   * iterators (a program's shutdown signal), and a listener left on it would keep each ended
   * stream, and all it refers to, alive until the signal aborts.
   */
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => void this.return();

  /** @internal */
  constructor(
    conn: Connection,
    target: number,
    inbox: boolean,
    options: IterateOptions,
    call: string,
    onEnd: (s: MessageStream<T>) => void,
  ) {
    this.conn = conn;
    this.onEnd = onEnd;
    this.checksSilence = conn.transport === 'tcp';
    const bad = badIterateOptions(options, call, conn.info.limits.maxCredit);
    if (bad !== null) throw bad;
    const credit = options.prefetch ?? 256;
    this.credit = Math.max(1, credit);
    this.batch = Math.max(1, credit >> 2);
    this.holdCredit = options.holdCredit === true;
    let size = 1;
    while (size < credit && size < 65536) size *= 2;
    this.queue = new Array<Message | null>(size).fill(null);
    this.request = conn.openStream(target, inbox, options.from ?? 0, options, credit, this);
    conn.streams.add(this);
    this.signal = options.signal;
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /**
   * Lets go of the caller's signal once the stream has ended and has nothing left to yield.
   * Ended with messages still queued (an error or END after them), an abort must still be
   * able to give those back, so the listener stays until they are yielded or returned.
   */
  private unwatchIfDone(): void {
    if (this.signal === undefined || !this.ended || this.count > 0) return;
    this.signal.removeEventListener('abort', this.onAbort);
    this.signal = undefined;
  }

  /**
   * @internal Hands every message to `listener` as it is read, from inside the connection's
   * reading: no promise, no step, no await per message. Taking is as for a step: the take goes
   * out at the end of the turn, after the listener has run on the message.
   */
  listen(listener: StreamListener<T>): void {
    this.listener = listener;
  }

  // deliver, fail, end and recall make it the connection's StreamSink, by its shape: that
  // interface is internal, and left out of the published types with them.

  /** @internal */
  deliver(message: Message): void {
    if (this.ended) return;
    // Over TCP, a process stopped in the middle of a read (SIGSTOP, a debugger) goes on with the
    // rest of it when it resumes: each message is handed out only while the kernel can still
    // have heard from it, as next() checks; else it waits in the queue for the kernel's answer.
    const handOut = !this.conn.holdingDeliveries && !(this.checksSilence && this.conn.checkSilence());
    if (this.listener !== null && handOut) {
      this.conn.handedInRead = true;
      this.markTaken();
      // Taken at once, the message's handler runs when its take is out (Connection.receiveChunk).
      if (this.holdCredit) this.conn.handOffAfterTakes(this.listener as MessageListener, message);
      else this.listener.message(message as Message<T>);
      return;
    }
    if (this.waiter !== null && handOut) {
      const w = this.waiter;
      this.waiter = null;
      this.markTaken();
      w.resolve({ value: message as Message<T>, done: false });
      return;
    }
    // A kernel pushes within the credit: a DELIVER past it is a broken or hostile one, and taken,
    // its messages would be held here without end (a queue of 4 grew to millions).
    if (this.count >= this.credit)
      throw new FrameError(`DELIVER for stream ${this.request} past its credit of ${this.credit}`);
    if (this.count === this.queue.length) this.grow();
    this.queue[(this.head + this.count) & (this.queue.length - 1)] = message;
    this.count++;
    if (this.wake !== null) {
      // The batch reader resumes in a microtask, after the rest of this chunk is delivered.
      const w = this.wake;
      this.wake = null;
      w();
    }
  }

  private grow(): void {
    const n = this.queue.length;
    const q = new Array<Message | null>(n * 2).fill(null);
    for (let k = 0; k < n; k++) q[k] = this.queue[(this.head + k) & (n - 1)]!;
    this.queue = q;
    this.head = 0;
  }

  /** @internal */
  fail(err: PostboxError): void {
    if (this.ended) return;
    this.error = err;
    this.finish();
    // Takes still due at the end of the turn go now: what the application does on this error
    // (a stat, a new receive) must find them counted.
    this.flushTaken();
    if (err.code === 'EACCES') {
      // The right to receive is gone (revoke, chmod): what was pushed ahead and not taken is
      // the mailbox's, not this receiver's. The kernel kept it for us; it goes back now, after
      // the takes above, and the loop never yields it.
      this.conn.cancel(this.request);
      this.dropPushed();
    }
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
    this.wakeBatchReader();
  }

  private wakeBatchReader(): void {
    if (this.wake === null) return;
    const w = this.wake;
    this.wake = null;
    w();
  }

  /** @internal */
  recall(seq: number): boolean {
    const mask = this.queue.length - 1;
    for (let k = 0; k < this.count; k++) {
      if (this.queue[(this.head + k) & mask]!.seq !== seq) continue;
      // Close the gap: the messages after it move up one, in order.
      for (let j = k; j < this.count - 1; j++)
        this.queue[(this.head + j) & mask] = this.queue[(this.head + j + 1) & mask]!;
      this.queue[(this.head + this.count - 1) & mask] = null;
      this.count--;
      this.unwatchIfDone();
      return true;
    }
    return false;
  }

  /**
   * @internal The kernel terminated this process: what it pushed ahead is no longer this
   * receiver's (it went back to the mailbox), so it is dropped, never yielded.
   */
  dropPushed(): void {
    this.queue.fill(null);
    this.head = 0;
    this.count = 0;
    this.taken = 0;
    this.unwatchIfDone();
  }

  /** @internal */
  end(): void {
    if (this.ended) return;
    this.endReceived = true;
    this.wakeBatchReader();
    if (this.count === 0 && this.listener !== null) {
      this.flushTaken();
      this.finish();
      return;
    }
    if (this.count === 0 && this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      this.flushTaken();
      this.finish();
      w.resolve({ value: undefined, done: true });
    }
  }

  /**
   * @internal The kernel has answered after a silence: a step that waited while deliveries were
   * held takes the first of them.
   */
  release(): void {
    if (this.listener !== null) {
      while (this.count > 0 && !this.ended) this.listener.message(this.takeFirst());
      if (this.endReceived && !this.ended) this.end();
      return;
    }
    if (this.waiter === null || this.count === 0) return;
    const w = this.waiter;
    this.waiter = null;
    w.resolve({ value: this.takeFirst(), done: false });
  }

  /** Takes the first message delivered and not yet yielded (there is one). */
  private takeFirst(): Message<T> {
    const m = this.queue[this.head]!;
    this.queue[this.head] = null;
    this.head = (this.head + 1) & (this.queue.length - 1);
    this.count--;
    this.markTaken();
    this.unwatchIfDone();
    return m as Message<T>;
  }

  next(): Promise<IteratorResult<Message<T>, undefined>> {
    // A process stopped past the kernel's heartbeat (TCP) may have been ended meanwhile, and
    // what it holds given to another receiver: it asks the kernel before handing out more.
    if (this.count > 0 && this.checksSilence && this.conn.checkSilence()) {
      return new Promise((resolve, reject) =>
        this.conn.afterSilence(() => this.next().then(resolve, reject)),
      );
    }
    if (this.count > 0) return Promise.resolve({ value: this.takeFirst(), done: false });
    if (this.error !== null) return Promise.reject(this.error);
    if (this.endReceived && !this.ended) {
      this.flushTaken();
      this.finish();
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Ends the iteration; untaken messages go back to the mailbox. */
  return(): Promise<IteratorResult<Message<T>, undefined>> {
    // Failed by the kernel with messages still to yield (its sender terminated): those are
    // still this receiver's in the kernel, so leaving early must give them back too.
    if (!this.ended || (this.error !== null && this.count > 0)) {
      this.flushTaken();
      if (!this.endReceived) this.conn.cancel(this.request);
      if (!this.ended) this.finish();
      this.queue.fill(null);
      this.head = 0;
      this.count = 0;
      if (this.waiter !== null) {
        this.waiter.resolve({ value: undefined, done: true });
        this.waiter = null;
      }
      this.wakeBatchReader();
    }
    this.unwatchIfDone();
    return Promise.resolve({ value: undefined, done: true });
  }

  /**
   * Takes every message delivered and not yet taken, up to `max`, waiting for one if there is
   * none; done when the stream ends. Taking a batch is taking each of its messages, in order.
   * @internal Used through {@link Mailbox.batches}.
   */
  async nextBatch(max: number): Promise<IteratorResult<Message<T>[], undefined>> {
    // Woken with nothing to take is not the end: the message that woke it may have been recalled
    // in the same read (a send that gave up), and its RETURN gone out. Only END, an error or
    // return() end the loop; else it waits again. (Ending here would leave the stream open in
    // the kernel, unread and never cancelled, holding what it is pushed from then on.)
    for (;;) {
      while (this.count === 0 && this.error === null && !this.endReceived && !this.ended) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
      if (this.count === 0 || !this.checksSilence || !this.conn.checkSilence()) break;
      await new Promise<void>((resolve) => this.conn.afterSilence(resolve));
    }
    if (this.count > 0) {
      const n = Math.min(this.count, max);
      const batch = new Array<Message<T>>(n);
      const mask = this.queue.length - 1;
      for (let k = 0; k < n; k++) {
        batch[k] = this.queue[this.head] as Message<T>;
        this.queue[this.head] = null;
        this.head = (this.head + 1) & mask;
      }
      this.count -= n;
      this.markTaken(n);
      this.unwatchIfDone();
      return { value: batch, done: false };
    }
    if (this.error !== null) throw this.error;
    if (this.endReceived && !this.ended) {
      this.flushTaken();
      this.finish();
    }
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private finish(): void {
    this.ended = true;
    this.unwatchIfDone();
    this.conn.streams.delete(this);
    this.onEnd(this);
    this.listener?.ended(this.error);
  }

  /**
   * With `holdCredit`: n messages taken from this iterator are finished, and the kernel may push
   * that many more. Credit goes back in batches, as takes do.
   *
   * @example
   * ```ts
   * const jobs = box.messages({ prefetch: 8, holdCredit: true }); // has returnCredit()
   * for await (const m of jobs) void work(m.body).finally(() => jobs.returnCredit());
   * ```
   */
  returnCredit(n = 1): void {
    if (!this.holdCredit)
      throw new InvalidArgumentError('returnCredit() is for an iterator opened with holdCredit: true');
    if (!Number.isInteger(n) || n < 1 || n > this.held)
      throw new InvalidArgumentError(
        `returnCredit(${n}): ${this.held} taken messages have not given theirs back`,
      );
    this.held -= n;
    if (this.ended) return;
    const first = this.creditBack === 0;
    this.creditBack += n;
    this.writeTakesWhenDue(this.creditBack, first);
  }

  private markTaken(n = 1): void {
    if (this.holdCredit) {
      // The kernel learns of each take at once, ahead of anything the work on it sends, and
      // before the work can start: a message taken so is never handled twice.
      this.held += n;
      this.conn.take(this.request, n, 0);
      this.conn.takeWritten();
      return;
    }
    if (this.ended) {
      // Yielding what was left after END or an error: no credit to keep up, and a take held
      // for the flush would go out after requests made meanwhile (a stat would count the
      // message as still in flight).
      this.taken += n;
      this.flushTaken();
      return;
    }
    // Takes are acknowledged in batches, each returning the credit it used. A full batch of
    // takes from earlier steps is written at once, so the kernel refills the window before this
    // side runs dry; this step's own take waits for the end of the turn, after the loop body
    // has run on it: a process that crashes there has the message given back (at least once),
    // where a take written now would have lost it (every batch-th message, before this).
    if (this.taken >= this.batch) {
      this.flushTaken();
      this.conn.flush();
    }
    const first = this.taken === 0;
    this.taken += n;
    if (first) this.conn.takesDueAtFlush(this);
  }

  /** A full batch of credit is written at once; the first of a batch is written by the end of the turn. */
  private writeTakesWhenDue(pending: number, first: boolean): void {
    if (pending >= this.batch) {
      this.flushTaken();
      this.conn.flush();
    } else if (first) {
      this.conn.takesDueAtFlush(this);
    }
  }

  /** @internal */
  flushTaken(): void {
    // After return() the kernel gives back all it had pushed, so takes would be too many. After
    // END or an error it keeps what it pushed until the takes of what is still yielded come.
    if (this.ended && !this.endReceived && this.error === null) return;
    if (this.holdCredit) {
      if (this.creditBack === 0) return;
      this.conn.take(this.request, 0, this.creditBack);
      this.creditBack = 0;
      return;
    }
    if (this.taken === 0) return;
    this.conn.take(this.request, this.taken, this.taken);
    this.taken = 0;
  }
}

/** @internal What a {@link MessageStream} hands its messages to instead of yielding them. */
export interface StreamListener<T> {
  message(m: Message<T>): void;
  /** The stream has ended: by `return()`, by END (`null`), or by the kernel's error. */
  ended(err: PostboxError | null): void;
}

/**
 * An async iterator that is its own iterable, as `for await` wants, and whose end carries
 * `undefined` where the standard `AsyncIterableIterator` has `any`: a step read by hand is typed.
 *
 * @example
 * ```ts
 * const box = await me.openMailbox<string>('replies'); // the type its bodies are said to have
 * const replies: MessageIterator<string> = box.messages();
 * const r = await replies.next();
 * if (!r.done) console.log(r.value.body); // r.value is a Message<string>
 * ```
 */
export interface TypedAsyncIterator<Y> extends AsyncIterator<Y, undefined, undefined> {
  next(): Promise<IteratorResult<Y, undefined>>;
  /** Ends the iteration early; for a mailbox, what was not yielded goes back to it. */
  return(value?: undefined): Promise<IteratorResult<Y, undefined>>;
  [Symbol.asyncIterator](): TypedAsyncIterator<Y>;
}

/** What {@link Mailbox.messages} returns: one message a step. */
export type MessageIterator<T = unknown> = TypedAsyncIterator<Message<T>>;

/** What {@link Mailbox.batches} returns: every message that has arrived, a step. */
export type BatchIterator<T = unknown> = TypedAsyncIterator<Message<T>[]>;

/** A message iterator opened with `holdCredit: true`: credit comes back with `returnCredit(n)`. */
export interface CreditedMessages<T = unknown> extends MessageIterator<T> {
  /** n taken messages are finished: the kernel may push that many more (see MessageStream). */
  returnCredit(n?: number): void;
  [Symbol.asyncIterator](): CreditedMessages<T>;
}

/** Options of a batch iterator. */
export interface BatchOptions extends IterateOptions {
  /** Most messages in one batch (default 4096). */
  max?: number | undefined;
}

const LIMIT_OPTIONS: OptionNames<Pick<MailboxOptions, 'capacity' | 'maxBytes'>> = {
  capacity: true,
  maxBytes: true,
};

/** The names {@link IterateOptions} has. */
export const ITERATE_OPTIONS: OptionNames<IterateOptions> = {
  type: true,
  except: true,
  maxSize: true,
  truncate: true,
  prefetch: true,
  holdCredit: true,
  from: true,
  signal: true,
};

/** The names {@link BatchOptions} has. */
export const BATCH_OPTIONS: OptionNames<BatchOptions> = { ...ITERATE_OPTIONS, max: true };

/**
 * An async iterator over a mailbox that yields, at each step, every message that has arrived
 * (at least one): for a consumer that can take many at once, it saves an iterator step and an
 * `await` per message. The rules are those of {@link MessageStream}: messages are pushed ahead
 * within `prefetch`, a batch is taken when it is yielded, and ending the loop gives back what
 * was not yielded.
 *
 * @example
 * ```ts
 * for await (const batch of box.batches()) {
 *   for (const m of batch) handle(m.body);
 * }
 * ```
 */
export class MessageBatches<T = unknown> implements BatchIterator<T> {
  private readonly stream: MessageStream<T>;
  private readonly max: number;

  /** @internal */
  constructor(stream: MessageStream<T>, max: number) {
    this.stream = stream;
    this.max = max;
  }

  next(): Promise<IteratorResult<Message<T>[], undefined>> {
    return this.stream.nextBatch(this.max);
  }

  /** Ends the iteration; messages not yet yielded go back to the mailbox. */
  async return(): Promise<IteratorResult<Message<T>[], undefined>> {
    await this.stream.return();
    return { value: undefined, done: true };
  }

  /** With `holdCredit`: see {@link MessageStream.returnCredit}. */
  returnCredit(n = 1): void {
    this.stream.returnCredit(n);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** @internal The `max` of a batch iterator, checked (EINVAL), with its default. */
export function batchMax(max: number | undefined): number {
  if (max === undefined) return 4096;
  if (!Number.isSafeInteger(max) || max < 1)
    throw new InvalidArgumentError(
      `max must be a whole number of messages, at least 1, not ${describeValue(max)}`,
    );
  return max;
}

/**
 * A handle on a mailbox: send to it, receive from it, iterate it, inspect and manage it.
 * Handles come from {@link PostboxProcess.createMailbox} and {@link PostboxProcess.openMailbox}.
 *
 * @example
 * ```ts
 * const jobs = await proc.createMailbox('jobs', { capacity: 100 });
 * await jobs.send({ task: 'resize', id: 7 });
 * for await (const m of jobs) handle(m.body);
 * ```
 */
export class Mailbox<T = unknown> implements AsyncIterable<Message<T>> {
  readonly id: number;
  readonly name: string | null;
  /** What the kernel said of it when the handle was made; {@link stat} is current. */
  readonly info: MailboxInfo;
  private readonly conn: Connection;
  private readonly receives = new Set<number>();
  private readonly streams = new Set<MessageStream<T>>();
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Whether the kernel closed the handle (null) or the connection ended first (its error). */
  private closeOutcome: Promise<PostboxError | null> | null = null;

  /** @internal */
  constructor(conn: Connection, info: MailboxInfo) {
    this.conn = conn;
    this.info = info;
    this.id = info.id;
    this.name = info.name;
  }

  /**
   * Sends a message. By default waits while the mailbox is full (bounded) or until a receiver
   * takes it (capacity 0); see {@link SendOptions} for nowait, timeout, signal, receipt, onFull.
   * Many sends may be in flight at once: they are pipelined, and each settles on its own. Without
   * `signal` or `receipt` the promise is a {@link SendPromise}, made native only if awaited.
   */
  send(body: T | Uint8Array | string, options?: SendOptions): Promise<SendResult> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.conn.send(this.id, false, body, options, this.name);
  }

  /**
   * Sends many messages, in order, with the same options, and one promise for all of them: for
   * a producer that has many at hand, it saves a promise and its settling per message. Each
   * message is a send of its own to the kernel (it waits, fails or times out as `send` would);
   * the promise resolves once all are in the mailbox, or rejects with a {@link SendManyError}
   * naming the ones that were not. Every body is encoded and size-checked first: a bad one sends
   * none. `receipt` is not taken: send each such message on its own. With `onFull: 'drop'` the
   * result's `dropped` counts those dropped (`sent` those that went in); with
   * `'replace-oldest'`, `replaced` counts those that pushed an older message out.
   *
   * @example
   * ```ts
   * const lines = readFileSync('log.txt', 'utf8').split('\n');
   * await box.sendMany(lines); // { sent: lines.length }
   * ```
   */
  sendMany(bodies: Iterable<T | Uint8Array | string>, options?: SendOptions): Promise<SendManyResult> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.conn.sendMany(this.id, false, bodies, options, this.label, this.info);
  }

  /** Receives one message: waits for one unless `nowait` (then null if none). */
  receive(options?: ReceiveOptions & { from?: number | undefined }): Promise<Message<T> | null> {
    if (this.closed) return Promise.reject(this.closedError());
    const badSender = badFrom(options?.from, 'receive()');
    if (badSender !== null) return Promise.reject(badSender);
    return this.conn.receive(
      this.id,
      false,
      options?.from ?? 0,
      options,
      this.receives,
    ) as Promise<Message<T> | null>;
  }

  /** A receive whose message stays in this process's hands until released (see Connection.release). */
  private receiveHeld(options: ReceiveOptions & { from?: number | undefined }): Promise<Message<T> | null> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.conn.receive(
      this.id,
      false,
      options.from ?? 0,
      options,
      this.receives,
      true,
    ) as Promise<Message<T> | null>;
  }

  /**
   * Iterates messages as they come, with the kernel pushing ahead within `prefetch`. With
   * `holdCredit: true` the iterator also has `returnCredit()`.
   */
  messages(options: IterateOptions & { holdCredit: true }): CreditedMessages<T>;
  messages(options?: IterateOptions): MessageIterator<T>;
  messages(options: IterateOptions = {}): MessageIterator<T> | CreditedMessages<T> {
    return this.iterate(options, 'messages()');
  }

  /**
   * Calls `handler` for each message as the kernel pushes it, with no promise or `await` per
   * message: the fastest way to take a stream (see {@link Consumer}). Takes the options of
   * {@link messages}; with `holdCredit: true` at most `prefetch` handlers are in progress.
   *
   * @example
   * ```ts
   * const c = jobs.consume(async (m) => resize(m.body), { prefetch: 8, holdCredit: true });
   * process.once('SIGTERM', () => void c.stop());
   * await c.closed; // stopped, every handler finished
   * ```
   */
  consume(handler: MessageHandler<T>, options: ConsumeOptions = {}): Consumer<T> {
    if (this.closed) throw this.closedError();
    checkOptions(options, ITERATE_OPTIONS, 'consume()');
    const badSig = badSignal(options.signal, 'consume()');
    if (badSig !== null) throw badSig;
    const most = handlersInProgress(readOneAtATime(this.info.order, options), options);
    const source = most === undefined ? options : { ...options, holdCredit: undefined };
    // Read one at a time with holdCredit, each receive is held: the kernel counts its job in
    // this process's hands (`postbox ps`) until the handler settles.
    const held = most !== undefined;
    return new Consumer<T>(
      handler,
      options.holdCredit === true,
      options.signal,
      (signal) => this.iterate({ ...source, signal }, 'consume()', held),
      most,
      held ? (m) => this.conn.release(m) : undefined,
    );
  }

  private iterate(
    options: IterateOptions,
    call: string,
    hold = false,
  ): MessageIterator<T> | CreditedMessages<T> {
    if (this.closed) throw this.closedError();
    checkOptions(options, ITERATE_OPTIONS, call);
    const badSig = badSignal(options.signal, call);
    if (badSig !== null) throw badSig;
    // Checked here, not at the first step's receive: a loop read one message at a time would
    // otherwise fail at its first step, which in a consumer nobody can catch.
    const bad = badIterateOptions(options, call, this.conn.info.limits.maxCredit);
    if (bad !== null) throw bad;
    // Aborted already: the loop ends at once, as one aborted while it runs does, having taken
    // nothing (opening the stream would have had the kernel push messages ahead first).
    if (options.signal?.aborted === true) {
      const none = noMessages<Message<T>>();
      if (options.holdCredit !== true) return none;
      // Nothing was taken, so there is no credit to give back.
      return Object.assign(none, {
        returnCredit(n = 1): void {
          throw new InvalidArgumentError(`returnCredit(${n}): 0 taken messages have not given theirs back`);
        },
      });
    }
    const oneByOne = readOneAtATime(this.info.order, options);
    if (oneByOne !== null) {
      // Nothing is pushed ahead here, so there is no credit to hold.
      if (options.holdCredit === true)
        throw new InvalidArgumentError(
          `holdCredit needs an iterator that is pushed ahead; ${oneByOne} is read one message at a time`,
        );
      return receiveEach(
        (o) => (hold ? this.receiveHeld(o) : this.receive(o)),
        options,
        () => this.closed || this.conn.closedByUs,
      );
    }
    const stream = new MessageStream<T>(this.conn, this.id, false, options, call, (s) =>
      this.streams.delete(s),
    );
    this.streams.add(stream);
    return stream;
  }

  /**
   * Iterates the mailbox a batch at a time: each step yields every message that has arrived,
   * up to `max`. Where nothing is pushed ahead (priority mailboxes, prefetch 0) each batch is
   * one message, received as {@link receive} would.
   */
  batches(options: BatchOptions = {}): BatchIterator<T> {
    if (this.closed) throw this.closedError();
    checkOptions(options, BATCH_OPTIONS, 'batches()');
    const badSig = badSignal(options.signal, 'batches()');
    if (badSig !== null) throw badSig;
    const { max, ...iterate } = options;
    const most = batchMax(max);
    if (options.signal?.aborted === true) return noMessages<Message<T>[]>();
    if (readOneAtATime(this.info.order, options) !== null) {
      const one = this.iterate(iterate, 'batches()');
      return (async function* singles(): AsyncGenerator<Message<T>[], undefined, undefined> {
        for await (const m of one) yield [m];
        return undefined;
      })();
    }
    const stream = new MessageStream<T>(this.conn, this.id, false, iterate, 'batches()', (s) =>
      this.streams.delete(s),
    );
    this.streams.add(stream);
    return new MessageBatches(stream, most);
  }

  [Symbol.asyncIterator](): MessageIterator<T> {
    return this.messages();
  }

  /** Counts, limits, times and waiters, like System V's IPC_STAT. */
  stat(): Promise<MailboxStat> {
    return this.call<MailboxStat>('stat', { id: this.id });
  }

  /** Removes the mailbox (owner only): waiters fail with EIDRM. */
  async delete(): Promise<void> {
    await this.call('delete', { id: this.id });
  }

  /** Changes the mode (owner only), e.g. 0o660. */
  chmod(mode: number): Promise<MailboxInfo> {
    return this.call<MailboxInfo>('chmod', { id: this.id, mode });
  }

  /** Adds a process to the mailbox's group (owner only): it gets the group's rights. */
  grant(process: number | string): Promise<MailboxInfo> {
    const bad = badProcessRef(process);
    if (bad !== null) return Promise.reject(bad);
    return this.call<MailboxInfo>('grant', { id: this.id, process });
  }

  /** Removes a process from the group (owner only). */
  revoke(process: number | string): Promise<MailboxInfo> {
    const bad = badProcessRef(process);
    if (bad !== null) return Promise.reject(bad);
    return this.call<MailboxInfo>('revoke', { id: this.id, process });
  }

  /**
   * The mailbox's passkey, or null if it has none: for its owner (and for an unowned one with a
   * passkey, its group: the processes that may act as its owner), as a process that did not keep
   * what its create was told asks again. EACCES for anyone else, a member of an owned mailbox's
   * group too.
   *
   * @example
   * ```ts
   * const key = await jobs.passkey(); // hand it to a worker: openMailbox(jobs.id, { passkey: key })
   * ```
   */
  async passkey(): Promise<string | null> {
    return (await this.call<{ passkey: string | null }>('passkey', { id: this.id })).passkey;
  }

  /**
   * Gives the mailbox a new passkey and resolves with it (owner only, as {@link passkey}); a
   * mailbox that had none has one from now on. The old passkey opens nothing any more; the
   * processes it let in stay in the group, as those inside stay when a lock is changed:
   * `revoke(p)` puts one out.
   *
   * @example
   * ```ts
   * const fresh = await jobs.renewPasskey(); // for those to be let in from now on
   * await jobs.revoke(7); // process 7 is out of the group, and its passkey lets it in no more
   * ```
   */
  async renewPasskey(): Promise<string> {
    return (await this.call<{ passkey: string }>('passkey', { id: this.id, renew: true })).passkey;
  }

  /** Passes ownership to another process (owner only). */
  transfer(process: number | string): Promise<MailboxInfo> {
    const bad = badProcessRef(process);
    if (bad !== null) return Promise.reject(bad);
    return this.call<MailboxInfo>('transfer', { id: this.id, process });
  }

  /**
   * Gives up an exclusive receive right (or a place in a pair). This process's receives waiting
   * on the mailbox end with `ECANCELED` (an iterator first hands out what it was already
   * pushed), and so do its sends waiting on a pair: the right's next holder gets what comes.
   *
   * @example
   * ```ts
   * const jobs = await me.openMailbox('jobs'); // policy 'exclusive'
   * const job = await jobs.receive();          // this process now holds the receive right
   * await jobs.release();                      // another process may take it
   * ```
   */
  async release(): Promise<void> {
    await this.call('release', { id: this.id });
  }

  /**
   * Changes capacity or byte limit (owner only), like IPC_SET of msg_qbytes. A byte limit left
   * at its default follows a new capacity, as if the mailbox were created with it; one given
   * stays until changed.
   *
   * @example
   * ```ts
   * await jobs.setLimits({ capacity: 'unbounded' });  // no byte limit of its own either
   * ```
   */
  setLimits(limits: Pick<MailboxOptions, 'capacity' | 'maxBytes'>): Promise<MailboxInfo> {
    const unknown = unknownOption(limits, LIMIT_OPTIONS, 'setLimits()');
    if (unknown !== null) return Promise.reject(unknown);
    return this.call<MailboxInfo>('set', { id: this.id, ...limits });
  }

  /**
   * Closes this handle: its waiting receives fail with ENOTCONN (or, if the kernel delivered
   * first, resolve with their message) and its iterators end. The mailbox itself stays.
   * Resolves once the kernel has had it all, the takes of what the iterators yielded first:
   * await it before `process.exit()`, or taken messages go back and are received again.
   *
   * @example
   * ```ts
   * for await (const m of box.messages()) if (handle(m)) break;
   * await box.close();
   * process.exit(0);
   * ```
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    const err = this.closedError();
    for (const id of this.receives) this.conn.cancel(id, err);
    for (const s of [...this.streams]) void s.return();
    // Tell the kernel this handle is gone (a pipe's last writer closing ends its stream); its
    // answer comes after everything written before it, the takes included.
    const conn = this.conn;
    this.closeOutcome = conn.closed
      ? Promise.resolve(conn.lostWith)
      : conn.call('close', { handle: this.info.handle }).then(
          () => null,
          (err: PostboxError) => (conn.closed ? conn.lostWith : err),
        );
    this.closing = this.closeOutcome.then(() => {});
    conn.flush();
    return this.closing;
  }

  /**
   * @internal Closes this handle as {@link close} does, and resolves with null once the kernel
   * has closed it (its answer to the close, or to this process's own close(), which closes every
   * handle), or with the error that ended the connection first: the kernel went, or ended this
   * process. A pipe's writer ends by it: its end is done only when the kernel has it.
   */
  closeConfirmed(): Promise<PostboxError | null> {
    void this.close();
    return this.closeOutcome!;
  }
  /**
   * Closes this handle when an `await using` block ends, as {@link close} does.
   *
   * @example
   * ```ts
   * await using jobs = await me.openMailbox('jobs');
   * const m = await jobs.receive();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Removes the name now; the mailbox itself goes when its last handle closes (POSIX
   * `mq_unlink`, unlinking a FIFO). Owner only (anyone if unowned).
   */
  async unlink(): Promise<void> {
    await this.call('unlink', { id: this.id });
  }

  /**
   * Registers this process to be told, once, when a message arrives in the empty mailbox while
   * nobody waits to receive (POSIX `mq_notify`). EBUSY if another process is registered.
   * Returns a function that unregisters.
   */
  async notify(onMessage: () => void): Promise<() => Promise<void>> {
    if (typeof onMessage !== 'function')
      throw new InvalidArgumentError(`notify() takes a function to call, not ${describeValue(onMessage)}`);
    // Called from a microtask of its own, not from inside the connection's reading of frames:
    // an exception in it is the application's, reported as any uncaught exception is, and the
    // connection (and whatever else that read carried) goes on unharmed.
    const r = await this.call<{ event: number }>(
      'notify',
      { id: this.id },
      { idOf: (result) => result.event, handler: () => queueMicrotask(onMessage) },
    );
    return async () => {
      this.conn.offEvent(r.event);
      await this.conn.call('notify', { id: this.id, on: false });
    };
  }

  private get label(): string {
    return this.name === null ? `mailbox #${this.id}` : `mailbox '${this.name}'`;
  }

  /** A kernel call on this handle's mailbox: ENOTCONN once the handle is closed, as EBADF is. */
  private call<R>(op: CallOp, args: Record<string, unknown>, events?: CallEvents<R>): Promise<R> {
    if (this.closed) return Promise.reject(this.closedError());
    return this.conn.call<R>(op, args, events);
  }

  private closedError(): ClosedError {
    return new ClosedError(`the handle on ${this.label} is closed`, {
      mailbox: this.name ?? `#${this.id}`,
    });
  }
}

/**
 * @internal Why an iterator with these options must not be pushed ahead, or null if it may be.
 * A message pushed ahead is chosen when it arrives; where a later one could have to come first
 * (a higher priority, or a lower type under `type < 0`, msgrcv's "lowest type first"), only a
 * receive made when the loop asks gives the order of one receive at a time.
 */
export function readOneAtATime(order: MailboxInfo['order'], options: IterateOptions): string | null {
  if (order === 'priority') return 'a priority mailbox';
  if (options.prefetch === 0) return 'prefetch 0';
  if (typeof options.type === 'number' && options.type < 0) return `type ${options.type} (lowest type first)`;
  return null;
}

/**
 * @internal What is wrong with a loop's options, checked when the loop is made, whether it is
 * pushed ahead or reads one message at a time, so the error names the call that was made.
 */
export function badIterateOptions(
  options: IterateOptions,
  call: string,
  maxCredit: number,
): PostboxError | null {
  const badSender = badFrom(options.from, call);
  if (badSender !== null) return badSender;
  const badSelection = checkReceiveOptions(options);
  if (badSelection !== null) return new InvalidArgumentError(`${call}: ${badSelection.message}`);
  const credit = options.prefetch;
  if (credit !== undefined && (!Number.isSafeInteger(credit) || credit < 0))
    return new InvalidArgumentError(
      `${call}: prefetch must be a whole number of messages, not ${describeValue(credit)}`,
    );
  // The credit is a 32-bit field on the wire: a larger one threw a RangeError from the writer.
  if (credit !== undefined && credit > 0xffffffff)
    return new InvalidArgumentError(
      `${call}: prefetch ${credit} is over 4294967295 (the kernel pushes at most ${maxCredit} ahead)`,
    );
  if (options.holdCredit !== undefined && typeof options.holdCredit !== 'boolean')
    return new InvalidArgumentError(
      `${call}: holdCredit must be true or false, not ${describeValue(options.holdCredit)}`,
    );
  return null;
}

/**
 * @internal How many handlers a consumer that receives one message at a time may have in
 * progress: with holdCredit, `prefetch` of them; undefined where holdCredit means credit (a
 * stream) or is refused (prefetch 0).
 */
export function handlersInProgress(oneByOne: string | null, options: IterateOptions): number | undefined {
  if (oneByOne === null || options.holdCredit !== true || options.prefetch === 0) return undefined;
  return options.prefetch ?? 256;
}

/**
 * @internal An iterator that receives each message when the loop asks for it. `closedHere`
 * says whether this process closed the handle or itself: a receive that fails for that ends the
 * loop, as a pushed-ahead iterator ends; one opened after the close fails as every call does.
 */
export async function* receiveEach<T>(
  receive: (options: ReceiveOptions & { from?: number | undefined }) => Promise<Message<T> | null>,
  options: IterateOptions,
  closedHere: () => boolean,
): AsyncGenerator<Message<T>, undefined, undefined> {
  const { prefetch: _prefetch, holdCredit: _holdCredit, ...rest } = options;
  const openAtStart = !closedHere();
  const signal = options.signal;
  const stopped = (): boolean => signal?.aborted === true;
  for (;;) {
    // The signal stops the loop as it stops a pushed-ahead one: done, not the receive's
    // ECANCELED, whether it aborted while the loop body ran or while the receive waited.
    if (stopped()) return undefined;
    let m: Message<T> | null;
    try {
      m = await receive(rest);
    } catch (err) {
      if (openAtStart && (err as PostboxError).code === 'ENOTCONN' && closedHere()) return undefined;
      if (stopped() && err instanceof AbortedError) return undefined;
      throw err;
    }
    if (m === null) return undefined;
    yield m;
  }
}

/** @internal An iterator that is already done: what a loop over an aborted signal gets. */
export function noMessages<M>(): TypedAsyncIterator<M> {
  const done: IteratorResult<M, undefined> = { value: undefined, done: true };
  const it: TypedAsyncIterator<M> = {
    next: () => Promise.resolve(done),
    return: () => Promise.resolve(done),
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

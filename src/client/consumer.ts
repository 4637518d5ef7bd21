import { InvalidArgumentError, type PostboxError } from '../protocol/errors.js';
import type { IterateOptions, MessageIterator, MessageStream } from './mailbox.js';
import type { Message } from './message.js';
import { describeValue } from './option-names.js';

/**
 * What a {@link Consumer} calls for each message. It may return a promise: the consumer then
 * counts the message as in progress until it settles (see {@link ConsumeOptions}), and a
 * rejection stops the consumer as a throw does. Any other value it returns is ignored.
 */
export type MessageHandler<T = unknown> = (message: Message<T>) => unknown;

/**
 * Options of {@link Mailbox.consume}: those of an iterator. With `holdCredit: true` a message's
 * credit comes back when its handler has finished (returned, or its promise settled), so at most
 * `prefetch` messages are pushed ahead or in progress: a bounded pool of async handlers.
 */
export type ConsumeOptions = IterateOptions;

/**
 * A handler called for each message of a mailbox as the kernel pushes it: no promise, no
 * iterator step and no `await` per message, the cheapest way to take a stream of messages (as
 * a callback subscription is in NATS). The handler runs inside the connection's reading, one
 * message after another in arrival order; an async handler does not hold the reading up.
 *
 * The rules are those of {@link MessageStream}: the kernel pushes ahead within `prefetch`, a
 * message is taken when its handler is called (the kernel learns of it at the end of the turn,
 * after the handler ran: a process that crashes in a handler has that message given back), and
 * stopping gives back what was pushed and not yet handed out.
 *
 * @example
 * ```ts
 * const c = box.consume((m) => console.log(m.text()));
 * // … later, or from a signal handler:
 * await c.stop();
 * ```
 */
export class Consumer<T = unknown> {
  /**
   * Settles once the consumer has stopped and every handler it started has finished. Resolves
   * when it was stopped ({@link stop}, the `signal`, the close of its mailbox handle or of its
   * process) or its stream ended (a pipe's last writer closed); rejects with what stopped it
   * otherwise: the kernel's error (EIDRM when the mailbox
   * is removed, ESHUTDOWN…) or the first error a handler threw or rejected with. Like a
   * `for await` loop's error, a rejection nobody handles is reported as unhandled.
   */
  readonly closed: Promise<void>;
  private readonly handler: MessageHandler<T>;
  private readonly credit: { returnCredit(n?: number): void } | null;
  private readonly stopping = new AbortController();
  /** Handlers whose promise has not settled yet. */
  private running = 0;
  private streamEnded = false;
  private failed = false;
  private error: unknown = undefined;
  private settle!: { resolve: () => void; reject: (err: unknown) => void };
  /** Most handlers in progress at once where each message is received as asked (holdCredit). */
  private readonly most: number;
  /** Gives a finished message's credit back where each is received as asked (holdCredit). */
  private readonly release: ((m: Message<T>) => void) | null;
  /** The receiving loop, waiting for a handler to finish before it asks for another message. */
  private slot: (() => void) | null = null;
  /**
   * The caller's signal while the stream runs. One signal often outlives many consumers (a
   * program's shutdown signal): a listener left on it would keep each stopped consumer, its
   * handler and its stream alive until the signal aborts.
   */
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.stopping.abort();

  /**
   * @internal Made by {@link Mailbox.consume} and {@link PostboxProcess.consume}: `open` opens
   * the source with the consumer's own signal, which stops it. `most` bounds the handlers in
   * progress where the source receives each message as asked (holdCredit's bound there), and
   * `release` tells the kernel when each of those handlers has finished with its message.
   */
  constructor(
    handler: MessageHandler<T>,
    holdCredit: boolean,
    signal: AbortSignal | undefined,
    open: (signal: AbortSignal) => MessageStream<T> | MessageIterator<T>,
    most = Number.POSITIVE_INFINITY,
    release?: (m: Message<T>) => void,
  ) {
    this.most = most;
    this.release = release ?? null;
    if (typeof handler !== 'function')
      throw new InvalidArgumentError(
        `consume() takes a function to call for each message, not ${describeValue(handler)}`,
      );
    this.handler = handler;
    this.closed = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (signal?.aborted === true) this.stopping.abort();
    const source = open(this.stopping.signal);
    // Added once the source is open (a throw there leaves nothing on the caller's signal), and
    // removed when the stream ends: see ended().
    if (signal !== undefined && !signal.aborted) {
      this.signal = signal;
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    if (isStream(source)) {
      this.credit = holdCredit ? source : null;
      source.listen(this);
    } else {
      // Nothing is pushed ahead (a priority mailbox, prefetch 0, a negative type): each message
      // is received as the loop asks, so there is a step per message here, and no credit to
      // hold; with holdCredit the loop asks only while fewer than `most` handlers are running,
      // so a busy consumer is not receiving (prefetch 1: strictly one at a time).
      this.credit = null;
      void this.pump(source);
    }
  }

  /**
   * Stops taking messages: those pushed ahead and not yet handed to the handler go back to the
   * mailbox. Resolves as {@link closed} does, once the handlers in progress have finished.
   */
  stop(): Promise<void> {
    this.stopping.abort();
    return this.closed;
  }

  /**
   * Stops the consumer when an `await using` block ends, as {@link stop} does.
   *
   * @example
   * ```ts
   * await using c = jobs.consume((m) => console.log(m.text()));
   * await done; // stopped on leaving the block
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  // message and ended make it its stream's StreamListener, by its shape: that interface is
  // internal, and left out of the published types with them.

  /** @internal */
  message(m: Message<T>): void {
    let r: unknown;
    try {
      r = this.handler(m);
    } catch (err) {
      this.fail(err);
      this.finished(m);
      return;
    }
    if (isThenable(r)) {
      this.running++;
      r.then(
        () => this.settled(m),
        (err: unknown) => {
          this.fail(err);
          this.settled(m);
        },
      );
    } else {
      this.finished(m);
    }
  }

  /** @internal */
  ended(err: PostboxError | null): void {
    this.streamEnded = true;
    // Nothing is left for an abort to stop: handlers still running finish on their own.
    this.signal?.removeEventListener('abort', this.onAbort);
    this.signal = undefined;
    if (err !== null) this.fail(err);
    this.settleIfDone();
  }

  private async pump(source: MessageIterator<T>): Promise<void> {
    try {
      for (;;) {
        if (this.running >= this.most) {
          await new Promise<void>((resolve) => {
            this.slot = resolve;
          });
          if (this.stopping.signal.aborted) break;
        }
        const r = await source.next();
        if (r.done) break;
        this.message(r.value);
        if (this.stopping.signal.aborted) break;
      }
      await source.return?.();
      this.ended(null);
    } catch (err) {
      // The consumer's own stop aborts the receive it was waiting in: that is an end, not an error.
      this.ended(this.stopping.signal.aborted ? null : (err as PostboxError));
    }
  }

  private settled(m: Message<T>): void {
    this.running--;
    if (this.slot !== null) {
      const resume = this.slot;
      this.slot = null;
      resume();
    }
    this.finished(m);
    this.settleIfDone();
  }

  /** A handler has finished with its message: with holdCredit, the kernel may push another. */
  private finished(m: Message<T>): void {
    this.credit?.returnCredit(1);
    this.release?.(m);
  }

  private fail(err: unknown): void {
    if (!this.failed) {
      this.failed = true;
      this.error = err;
    }
    this.stopping.abort();
  }

  private settleIfDone(): void {
    if (!this.streamEnded || this.running > 0) return;
    if (this.failed) this.settle.reject(this.error);
    else this.settle.resolve();
  }
}

/**
 * Whether a handler's result is something to wait for: a promise or any other thenable, as
 * `await` would wait for it. Shared by the consumer and the RPC server.
 */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === 'object' || typeof v === 'function') &&
    v !== null &&
    typeof (v as PromiseLike<unknown>).then === 'function'
  );
}

function isStream<T>(s: MessageStream<T> | MessageIterator<T>): s is MessageStream<T> {
  return typeof (s as MessageStream<T>).listen === 'function';
}

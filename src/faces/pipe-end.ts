import { Readable, Writable } from 'node:stream';
import type { Mailbox, MessageIterator } from '../client/mailbox.js';

/** Linux's default pipe capacity: a writer waits when this much is unread (pipes and FIFOs). */
export const PIPE_BYTES = 64 * 1024;

/**
 * The read end of a pipe or FIFO: a Node Readable over the mailbox, fed by the kernel within a
 * credit; it ends (end of file) when the last writer closes and nothing is left. It takes a
 * write from the pipe only as it is read: what a reader that closes has not read stays for the
 * next reader, as in a Unix pipe.
 *
 * @example
 * ```ts
 * const { reader } = await spawn(proc, 'ls', ['-la'], 'r');
 * reader.pipe(process.stdout);
 * ```
 */
export class PipeReader extends Readable {
  readonly mailbox: Mailbox;
  #messages: MessageIterator | null = null;
  #pulling = false;

  constructor(mailbox: Mailbox) {
    // No read-ahead: a message is taken only when the application reads (or a read waits for
    // it). What the kernel pushed ahead is still the pipe's, counted in its 64 KiB and given
    // back on close; a Readable buffer of 64 KiB held as much again out of the pipe, so a paused
    // reader let a writer run a second pipe ahead, and a reader that closed lost it.
    super({ highWaterMark: 0 });
    this.mailbox = mailbox;
  }

  /** The messages themselves (each write became one), instead of a byte stream. */
  messages(): MessageIterator {
    this.#messages ??= this.mailbox.messages({ prefetch: 64 });
    return this.#messages;
  }

  override _read(): void {
    if (this.#pulling) return;
    this.#pulling = true;
    void this.#pull();
  }

  async #pull(): Promise<void> {
    const it = this.messages();
    try {
      for (;;) {
        const r = await it.next();
        if (r.done === true) {
          this.push(null);
          return;
        }
        // Backpressure: stop pulling when the consumer is full; _read starts us again.
        if (!this.push(r.value.data)) {
          this.#pulling = false;
          return;
        }
      }
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    void this.#messages?.return?.();
    this.mailbox.close();
    callback(err);
  }
}

/** Most bytes in one message of a pipe: larger writes are split, as write(2) splits them. */
const PIECE_BYTES = 64 * 1024;

/**
 * The write end of a pipe or FIFO: a Node Writable whose every chunk is one message (a chunk
 * larger than a message may be is sent as several, in order). Up to `window` sends are in
 * flight at once; past that, writes wait (backpressure from a full pipe reaches the writer).
 * Ending it closes the write end: the reader sees end of file once the last writer has closed.
 */
export class PipeWriter extends Writable {
  readonly mailbox: Mailbox;
  readonly #window: number;
  readonly #piece: number;
  #inFlight = 0;
  /** Bytes of the sends in flight: at most a pipe's worth, beyond one piece. */
  #inFlightBytes = 0;
  #error: Error | null = null;
  /** What of the current write is not yet sent (a write larger than a message). */
  #rest: Buffer | null = null;
  #waiting: ((err?: Error | null) => void) | null = null;
  #drained: (() => void) | null = null;

  constructor(mailbox: Mailbox, window = 64) {
    super({ highWaterMark: 64 * 1024 });
    this.mailbox = mailbox;
    this.#window = window;
    // A write over the message limit would be refused while the writes after it, already in
    // flight, went through: a hole in the stream the reader never sees.
    const { maxMessageSize, maxBytes } = mailbox.info;
    this.#piece = Math.max(1, Math.min(PIECE_BYTES, maxMessageSize, maxBytes));
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#error !== null) return callback(this.#error);
    this.#rest = chunk;
    this.#waiting = callback;
    this.#sendWhileRoom();
  }

  /**
   * Sends pieces of the current write while the window has room; once all are sent and there
   * is room for more, the write is done.
   */
  #sendWhileRoom(): void {
    while (this.#rest !== null && this.#hasRoom()) {
      const rest = this.#rest;
      const whole = rest.length <= this.#piece;
      const piece = whole ? rest : rest.subarray(0, this.#piece);
      this.#rest = whole ? null : rest.subarray(this.#piece);
      this.#inFlight++;
      this.#inFlightBytes += piece.length;
      this.mailbox.send(piece).then(
        () => this.#settled(null, piece.length),
        (err: Error) => this.#settled(err, piece.length),
      );
    }
    if (this.#rest === null && this.#hasRoom() && this.#waiting !== null) {
      const cb = this.#waiting;
      this.#waiting = null;
      cb();
    }
  }

  /**
   * Whether another send may go: within `window` sends and a pipe's worth of bytes (64 KiB) in
   * flight, so that a full pipe stops the writer (write() returns false) after about that much
   * more, as write(2) blocks, not after megabytes of sends parked in the kernel.
   */
  #hasRoom(): boolean {
    return this.#inFlight < this.#window && (this.#inFlight === 0 || this.#inFlightBytes < PIPE_BYTES);
  }

  #settled(err: Error | null, bytes: number): void {
    this.#inFlight--;
    this.#inFlightBytes -= bytes;
    const first = err !== null && this.#error === null;
    if (first) this.#error = err;
    if (this.#waiting !== null) {
      if (this.#error === null) this.#sendWhileRoom();
      else {
        // The rest of the write is not sent: the stream stops at the first failure.
        this.#rest = null;
        const cb = this.#waiting;
        this.#waiting = null;
        cb(this.#error);
      }
    } else if (first && this.#drained === null) {
      // The write's callback has already said yes (writes are pipelined): the failure (EPIPE
      // once the last reader has gone) is reported now, not at some later write or at end().
      this.destroy(err);
    }
    if (this.#inFlight === 0) this.#drained?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    const finish = (): void => {
      const closed = this.mailbox.closeConfirmed();
      if (this.#error !== null) return callback(this.#error);
      // Done when the kernel has the end, not when it is written: a process the kernel has
      // ended (silent past its heartbeat) or lost wrote its end to nobody. It finished without
      // an error, so a writer whose last sends the kernel had withdrawn with its process, or
      // never read, looked like one whose reader would get every byte.
      closed.then(callback, callback);
    };
    if (this.#inFlight === 0) return finish();
    this.#drained = finish;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.mailbox.close();
    callback(err);
  }
}

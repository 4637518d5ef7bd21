import { Readable, Writable } from 'node:stream';
import type { Mailbox } from '../client/mailbox.js';
import type { Message } from '../client/message.js';

/**
 * The read end of a pipe or FIFO: a Node Readable over the mailbox, fed by the kernel within a
 * credit; it ends (end of file) when the last writer closes and nothing is left.
 *
 * @example
 * ```ts
 * const { reader } = await spawn(proc, 'ls', ['-la'], 'r');
 * reader.pipe(process.stdout);
 * ```
 */
export class PipeReader extends Readable {
  readonly mailbox: Mailbox;
  #messages: AsyncIterator<Message> | null = null;
  #pulling = false;

  constructor(mailbox: Mailbox) {
    super({ highWaterMark: 64 * 1024 });
    this.mailbox = mailbox;
  }

  /** The messages themselves (each write became one), instead of a byte stream. */
  messages(): AsyncIterator<Message> {
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

/**
 * The write end of a pipe or FIFO: a Node Writable whose every chunk is one message. Up to
 * `window` sends are in flight at once; past that, writes wait (backpressure from a full
 * pipe reaches the writer). Ending it closes the write end: the reader sees end of file once
 * the last writer has closed.
 */
export class PipeWriter extends Writable {
  readonly mailbox: Mailbox;
  readonly #window: number;
  #inFlight = 0;
  #error: Error | null = null;
  #waiting: ((err?: Error | null) => void) | null = null;
  #drained: (() => void) | null = null;

  constructor(mailbox: Mailbox, window = 64) {
    super({ highWaterMark: 64 * 1024 });
    this.mailbox = mailbox;
    this.#window = window;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#error !== null) return callback(this.#error);
    this.#inFlight++;
    this.mailbox.send(chunk).then(
      () => this.#settled(null),
      (err: Error) => this.#settled(err),
    );
    if (this.#inFlight < this.#window) callback();
    else this.#waiting = callback;
  }

  #settled(err: Error | null): void {
    this.#inFlight--;
    const first = err !== null && this.#error === null;
    if (first) this.#error = err;
    const cb = this.#waiting;
    if (cb !== null) {
      this.#waiting = null;
      cb(this.#error);
    } else if (first && this.#drained === null) {
      // The write's callback has already said yes (writes are pipelined): the failure (EPIPE
      // once the last reader has gone) is reported now, not at some later write or at end().
      this.destroy(err);
    }
    if (this.#inFlight === 0) this.#drained?.();
  }

  override _final(callback: (error?: Error | null) => void): void {
    const finish = (): void => {
      this.mailbox.close();
      callback(this.#error);
    };
    if (this.#inFlight === 0) return finish();
    this.#drained = finish;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.mailbox.close();
    callback(err);
  }
}

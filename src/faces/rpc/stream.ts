/**
 * The caller's end of a streaming call: a small bounded mailbox it owns, named to the server in
 * a START; the server's blocking sends fill it, so a slow reader slows the server. Stopping
 * (break, return, abort, timeout) deletes the mailbox, which fails the server's blocked send.
 */
import type { Mailbox, TypedAsyncIterator } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import type { PostboxError } from '../../protocol/errors.js';
import { atAwaiters, atSite, type CallSite, processClosed, rethrownAt } from './errors.js';
import { ControlType, StreamType, type WireError, wireErrorFrom } from './wire.js';

/** What a stream needs from the call that started it. */
export interface StreamOwner {
  readonly id: number;
  readonly service: string;
  readonly method: string;
  /** The server process streaming to us. */
  readonly server: number;
  readonly site: CallSite;
  /** The caller's process id (fences come from it). */
  readonly self: number;
  createMailbox(capacity: number): Promise<Mailbox>;
  control(type: number, body: { id: number; to?: number }): void;
  /** The call is over: forget its timer, signal and tracking. */
  finish(): void;
  /** An error from the stream's ERROR marker. */
  answerError(wire: WireError): PostboxError;
}

const noop = (): void => {};

/**
 * An async iterator over a streaming call's items. One read at a time (calls to next() queue);
 * after an error it throws once, then reports done.
 */
export class StreamReader<T = unknown> implements TypedAsyncIterator<T> {
  private readonly owner: StreamOwner;
  private box: Mailbox | null = null;
  private it: AsyncIterator<Message> | null = null;
  private readonly ready: Promise<void>;
  private error: PostboxError | null = null;
  private ended = false;
  private down: PostboxError | null = null;
  private chain: Promise<void> = Promise.resolve();

  /** @internal */
  constructor(owner: StreamOwner, capacity: number) {
    this.owner = owner;
    this.ready = this.open(capacity);
  }

  private async open(capacity: number): Promise<void> {
    const o = this.owner;
    let box: Mailbox;
    try {
      box = await o.createMailbox(capacity);
    } catch (err) {
      this.fail(rethrownAt(err, o.site, `${o.service}.${o.method}: cannot make the stream's mailbox`));
      return;
    }
    if (this.ended) {
      box.delete().catch(noop);
      return;
    }
    this.box = box;
    this.it = box.messages({ prefetch: capacity });
    o.control(ControlType.START, { id: o.id, to: box.id });
    if (this.down !== null) this.sendFence(box);
  }

  async next(): Promise<IteratorResult<T, undefined>> {
    // One read at a time. Awaited, not chained with then(): a failure thrown in read() then
    // carries the stack of the caller's loop (see atAwaiters), which V8 finds only through awaits.
    const turn = this.chain;
    let release = noop;
    this.chain = new Promise<void>((resolve) => {
      release = resolve;
    });
    await turn;
    try {
      return await this.read();
    } finally {
      release();
    }
  }

  /** Stops reading: the mailbox is deleted and the server told; the handler's ctx.signal aborts. */
  return(_value?: undefined): Promise<IteratorResult<T, undefined>> {
    if (!this.ended) {
      this.ended = true;
      this.teardown(true);
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** As return(), then rejects with err. */
  async throw(err?: unknown): Promise<IteratorResult<T, undefined>> {
    await this.return();
    throw err;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** @internal Ends the stream with err (timeout, abort, a lost connection). */
  fail(err: PostboxError): void {
    if (this.ended) return;
    this.ended = true;
    this.error = atSite(err, this.owner.site);
    this.teardown(true);
  }

  /**
   * @internal The server terminated. Items it sent before are still read: a fence sent into the
   * mailbox now arrives after them, and ends the stream with err.
   */
  serverDown(err: PostboxError): void {
    if (this.ended || this.down !== null) return;
    this.down = err;
    if (this.box !== null) this.sendFence(this.box);
  }

  private sendFence(box: Mailbox): void {
    box.send(null, { codec: 'msgpack', type: StreamType.FENCE }).catch(noop);
  }

  private async read(): Promise<IteratorResult<T, undefined>> {
    if (!this.ended) await this.ready;
    const o = this.owner;
    for (;;) {
      const it = this.it;
      if (this.ended || it === null) return this.last();
      let r: IteratorResult<Message>;
      try {
        r = await it.next();
      } catch (err) {
        if (!this.ended) this.fail(rethrownAt(err, o.site, `${o.service}.${o.method}: the stream broke`));
        return this.last();
      }
      if (this.ended) return this.last();
      if (r.done === true) {
        // Not ended by the caller (that is `ended`): the stream's mailbox closed with its process.
        this.fail(rethrownAt(processClosed(), o.site, `${o.service}.${o.method}`));
        return this.last();
      }
      const m = r.value;
      if (m.type === StreamType.FENCE) {
        if (m.sender === o.self && this.down !== null) this.fail(this.down);
        continue;
      }
      if (m.sender !== o.server) continue; // only the server that took the call speaks here
      let body: unknown;
      try {
        body = m.body;
      } catch (err) {
        this.fail(rethrownAt(err, o.site, `${o.service}.${o.method}: an item could not be decoded`));
        return this.last();
      }
      switch (m.type) {
        case StreamType.ITEM:
          return { value: body as T, done: false };
        case StreamType.END:
          this.ended = true;
          this.teardown(false);
          return { value: undefined, done: true };
        case StreamType.ERROR:
          this.fail(o.answerError(wireErrorFrom(body)));
          return this.last();
        default:
          continue;
      }
    }
  }

  /** Done, or the error that ended the stream (thrown once). */
  private last(): IteratorResult<T> {
    const err = this.error;
    if (err !== null) {
      this.error = null;
      // Thrown inside read(), which the caller's loop awaits: the stack names that loop.
      throw this.owner.site === null ? atAwaiters(err, this.read) : err;
    }
    return { value: undefined, done: true };
  }

  private teardown(cancel: boolean): void {
    const o = this.owner;
    o.finish();
    const box = this.box;
    this.box = null;
    if (this.it !== null) void this.it.return?.();
    if (box !== null) {
      box.delete().catch(noop);
      box.close();
    }
    if (cancel) o.control(ControlType.CANCEL, { id: o.id });
  }
}

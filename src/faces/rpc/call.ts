/**
 * One call as its caller sees it: the promise (and, for a stream, iterator) handed to the
 * application, and the record behind it — its timer and signal, the server that took it, and
 * what to do on an answer, a timeout, an abort or the server's death.
 */
import type { Mailbox, TypedAsyncIterator } from '../../client/mailbox.js';
import type { DownEvent } from '../../client/process.js';
import {
  AbortedError,
  type ErrorCode,
  InvalidArgumentError,
  makeError,
  type PostboxError,
  TimeoutError,
  WireErrorCode,
} from '../../protocol/errors.js';
import type { Caller } from './client.js';
import { atSite, type CallSite, RemoteError, ServerDownError } from './errors.js';
import { type StreamOwner, StreamReader } from './stream.js';
import { ControlType, type ReplyBody, STREAM_CAPACITY, type WireError } from './wire.js';

const noop = (): void => {};

/**
 * A call in progress. It is a Promise of the answer; a streaming call's promise resolves to an
 * async iterator, and the call can be iterated directly too (`for await (const x of call)`).
 */
export class RpcCall<T = unknown> extends Promise<T> implements TypedAsyncIterator<unknown> {
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }
  /** @internal */
  rec: CallRecord | null = null;
  private streamP: Promise<StreamReader> | null = null;

  async next(): Promise<IteratorResult<unknown, undefined>> {
    // Awaited, not chained: a stream's failure names the caller's loop (see atAwaiters).
    const reader = await this.reader();
    return await reader.next();
  }

  return(_value?: undefined): Promise<IteratorResult<unknown, undefined>> {
    const rec = this.rec;
    if (rec !== null && rec.state === 'pending') {
      // Stopped before the stream began: the call is cancelled like an aborted one.
      this.reader().then(noop, noop);
      rec.giveUp(new AbortedError(`${rec.service}.${rec.method}: iteration stopped before the stream began`));
    }
    return this.reader().then(
      (r) => r.return(),
      () => ({ value: undefined, done: true }),
    );
  }

  async throw(err?: unknown): Promise<IteratorResult<unknown, undefined>> {
    await this.return();
    throw err;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private reader(): Promise<StreamReader> {
    this.streamP ??= this.then((v) => {
      if (v instanceof StreamReader) return v;
      const rec = this.rec!;
      throw atSite(
        new InvalidArgumentError(
          `${rec.service}.${rec.method} answered with a value, not a stream: await it instead of iterating`,
        ),
        rec.site,
      );
    });
    return this.streamP;
  }
}

/** A server process as a caller knows it: the calls it took, its monitor, its control mailbox. */
export class Peer {
  readonly id: number;
  readonly calls = new Set<CallRecord>();
  down: DownEvent | null = null;
  fencing = false;
  control: Promise<Mailbox | null> | null = null;
  constructor(id: number) {
    this.id = id;
  }
}

/** One call's state on the caller's side. */
export class CallRecord implements StreamOwner {
  readonly caller: Caller;
  readonly id: number;
  readonly service: string;
  readonly method: string;
  site: CallSite;
  resolve: (v: unknown) => void = noop;
  reject: (e: unknown) => void = noop;
  /** Process id of the server that took it, once known. */
  server = 0;
  /**
   * An answer read before the receipt said who took the call (most are: the receipt resolves a
   * microtask after an answer read in the same chunk), and who sent it; answers from other
   * senders wait in `earlyOthers` (the first of each). Only the one from the server the receipt
   * names counts. Kept in fields, not a map, so that the common case allocates nothing.
   */
  earlyAnswer: ReplyBody | null = null;
  earlySender = 0;
  earlyOthers: Map<number, ReplyBody> | null = null;
  state: 'pending' | 'streaming' | 'done' = 'pending';
  /** Finished by a timeout or abort: a server that takes it later is told to cancel. */
  gaveUp = false;
  deadline: number | undefined = undefined;
  sendAbort: AbortController | null = null;
  timer: NodeJS.Timeout | null = null;
  signal: AbortSignal | undefined = undefined;
  onAbort: (() => void) | null = null;
  peer: Peer | null = null;
  reader: StreamReader | null = null;
  streamCapacity = STREAM_CAPACITY;

  constructor(caller: Caller, id: number, service: string, method: string, site: CallSite) {
    this.caller = caller;
    this.id = id;
    this.service = service;
    this.method = method;
    this.site = site;
  }

  get self(): number {
    return this.caller.proc.id;
  }

  createMailbox(capacity: number): Promise<Mailbox> {
    return this.caller.proc.createMailbox(null, { capacity, mode: 0o622 });
  }

  control(type: number, body: { id: number; to?: number }): void {
    this.caller.control(this.server, type, body);
  }

  answerError(wire: WireError): PostboxError {
    if (wire.rpc === true && typeof wire.code === 'string' && wire.code in WireErrorCode) {
      const measured =
        wire.size !== undefined && wire.limit !== undefined
          ? { size: wire.size, limit: wire.limit }
          : undefined;
      return makeError(wire.code as ErrorCode, wire.message, { mailbox: `rpc:${this.service}` }, measured);
    }
    return new RemoteError(this.service, this.method, this.server, wire);
  }

  /** The call is over: no timer, no abort listener, no tracking. */
  finish(): void {
    this.state = 'done';
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.onAbort !== null) {
      this.signal!.removeEventListener('abort', this.onAbort);
      this.onAbort = null;
    }
    this.caller.pending.delete(this.id);
    this.peer?.calls.delete(this);
  }

  succeed(value: unknown): void {
    if (this.state !== 'pending') return;
    this.finish();
    this.resolve(value);
  }

  fail(err: PostboxError): void {
    if (this.state !== 'pending') return;
    this.finish();
    this.reject(atSite(err, this.site));
  }

  /** Timeout or abort: reject now, and withdraw the request or tell the server that took it. */
  giveUp(err: PostboxError): void {
    if (this.state === 'streaming') {
      this.reader!.fail(err);
      return;
    }
    if (this.state !== 'pending') return;
    this.gaveUp = true;
    this.fail(err);
    if (this.server !== 0) this.control(ControlType.CANCEL, { id: this.id });
    // Still queued: the kernel withdraws it (never delivered later), or answers that a server
    // has just taken it, and then that server is told (onReceipt).
    else this.sendAbort?.abort();
  }

  serverDown(down: DownEvent): void {
    const err = new ServerDownError(this.service, this.method, this.server, down.name, down.reason);
    if (this.state === 'streaming') this.reader!.serverDown(err);
    else this.fail(err);
  }
}

export function onTimeout(rec: CallRecord, ms: number): void {
  rec.timer = null;
  rec.giveUp(
    new TimeoutError(`${rec.service}.${rec.method} timed out after ${ms} ms`, {
      mailbox: `rpc:${rec.service}`,
    }),
  );
}

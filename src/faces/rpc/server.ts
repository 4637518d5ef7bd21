/**
 * The serving side of the RPC face. A service is a mailbox, `rpc:<service>`; a server is a
 * process that consumes it with `concurrency` credit, runs the handler for each request it
 * takes, and sends the answer to the caller's reply mailbox.
 */
import { isThenable } from '../../client/consumer.js';
import type { Mailbox } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import { checkOptions, type OptionNames } from '../../client/option-names.js';
import { badProcess } from '../../client/option-values.js';
import type { PostboxProcess } from '../../client/process.js';
import type { SendOptions } from '../../client/send-options.js';
import {
  AbortedError,
  InvalidArgumentError,
  MessageSizeError,
  NotFoundError,
  PostboxError,
} from '../../protocol/errors.js';
import { unsendable } from '../../protocol/sendable.js';
import { ControlChannel, ServerCall } from './control.js';
import type { CallContext } from './types.js';
import {
  DEFAULT_CONCURRENCY,
  isAsyncIterable,
  isGenerator,
  type ReplyBody,
  ReplyType,
  replyToWire,
  requestFromWire,
  StreamType,
  serviceMailbox,
  shrinkWireError,
  streamOfGenerator,
  toWireError,
  type WireError,
} from './wire.js';

/** Options of {@link serve}. */
export interface ServeOptions {
  /**
   * Requests taken, and so handlers run, at once (default 64). The server reads the service
   * mailbox with this much credit, given back only as handlers finish; a request beyond them
   * stays in the service mailbox for another server.
   */
  concurrency?: number | undefined;
}

const SERVE_OPTIONS: OptionNames<ServeOptions> = { concurrency: true };

/** A running server: see {@link serve}. */
export interface Server {
  readonly service: string;
  /** Handlers running now. */
  readonly running: number;
  /** Requests taken so far. */
  readonly handled: number;
  /**
   * Messages taken from the service mailbox that were no request (`postbox send rpc:calc hi`):
   * there is nobody to answer, so they are dropped, and counted here so that they are not lost
   * without a trace.
   */
  readonly dropped: number;
  /**
   * Messages taken from this process's control mailbox, `rpc:ctl:<process id>`, that were no
   * CANCEL or START a caller sends (`postbox send rpc:ctl:7 hi`): dropped, and counted here. The
   * mailbox is the process's, shared by its servers: each shows the same count.
   */
  readonly controlDropped: number;
  /**
   * Stops taking requests and resolves when the running handlers have finished (and their
   * answers are sent). With `abort`, their ctx.signal aborts first, and a stream cut short ends
   * at its caller with that reason (a RemoteError), not as if it were complete.
   */
  close(options?: { abort?: boolean | undefined }): Promise<void>;
  /**
   * Closes the server when an `await using` block ends, as `close()` does (without `abort`).
   *
   * @example
   * ```ts
   * await using server = await serve(proc, 'calc', handlers);
   * await shutdownRequested;
   * ```
   */
  [Symbol.asyncDispose](): Promise<void>;
  /** Resolves when the server has stopped: null after close(), or the error that stopped it (e.g. EIDRM). */
  readonly closed: Promise<PostboxError | null>;
}

const REPLY: SendOptions = Object.freeze({ codec: 'msgpack', type: ReplyType.REPLY });

/** Handles on callers' reply mailboxes kept open by a server (the oldest opened go first). */
const MAX_REPLY_HANDLES = 1024;

/**
 * The servers of each process that have not stopped yet, for the one wait on the process's
 * `closed` that all of them share: a wait of each server's own would keep every server ever
 * made (its handlers, its caches) alive until the process closes.
 */
const liveServers = new WeakMap<PostboxProcess, Set<RpcServer>>();

function watchConnection(proc: PostboxProcess, server: RpcServer): void {
  let servers = liveServers.get(proc);
  if (servers === undefined) {
    const set = new Set<RpcServer>();
    servers = set;
    liveServers.set(proc, set);
    void proc.closed.then((err) => {
      for (const s of set) s.connectionLost(err);
    });
  }
  servers.add(server);
}

/**
 * Serves `handlers` as `service`: every method of the object (own or inherited, not Object's)
 * may be called by name. A handler gets the call's arguments, then a {@link CallContext}; it may
 * return a value, a promise, or an async iterable (a stream), or throw (the caller gets a
 * RemoteError). Several servers of one service share the calls round robin.
 *
 * @example
 * ```ts
 * const handlers = {
 *   add(a: number, b: number) { return a + b; },
 *   async *ticks(n: number, ctx?: CallContext) { for (let i = 0; i < n && !ctx?.signal.aborted; i++) yield i; },
 * };
 * export type Calc = typeof handlers;
 * const server = await serve(proc, 'calc', handlers, { concurrency: 16 });
 * // … later
 * await server.close();
 * ```
 */
export async function serve<H extends object>(
  proc: PostboxProcess,
  service: string,
  handlers: H,
  options: ServeOptions = {},
): Promise<Server> {
  const badProc = badProcess(proc, 'serve()');
  if (badProc !== null) throw badProc;
  checkOptions(options, SERVE_OPTIONS, 'serve()');
  const name = serviceMailbox(service);
  if (typeof handlers !== 'object' || handlers === null)
    throw new InvalidArgumentError('serve() needs an object of handler functions');
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 4096)
    throw new InvalidArgumentError(`concurrency must be an integer from 1 to 4096, not ${concurrency}`);
  const control = await ControlChannel.of(proc);
  const box = await proc.openMailbox(name, {
    create: { system: true, policy: 'round-robin', requireReader: true, mode: 0o666 },
    role: 'read',
  });
  if (box.info.order === 'priority') {
    box.close();
    throw new InvalidArgumentError(`'${name}' is a priority mailbox; a service takes its requests in order`);
  }
  return new RpcServer(proc, service, handlers, box, control, concurrency);
}

class RpcServer implements Server {
  readonly service: string;
  running = 0;
  handled = 0;
  dropped = 0;
  readonly closed: Promise<PostboxError | null>;
  private readonly proc: PostboxProcess;
  private readonly handlers: Record<string, unknown>;
  private readonly box: Mailbox;
  private readonly control: ControlChannel;
  private readonly jobs = new Set<ServerCall>();
  private closing = false;
  private stopError: PostboxError | null = null;
  private readonly replyBoxes = new Map<number, Mailbox | Promise<Mailbox | null>>();
  /** Answers given to reply() whose send the kernel has not yet accepted (or dropped). */
  private unsent = 0;
  private onAllSent: (() => void) | null = null;
  private readonly sent = (): void => {
    if (--this.unsent === 0 && this.onAllSent !== null) {
      const done = this.onAllSent;
      this.onAllSent = null;
      done();
    }
  };

  constructor(
    proc: PostboxProcess,
    service: string,
    handlers: object,
    box: Mailbox,
    control: ControlChannel,
    concurrency: number,
  ) {
    this.proc = proc;
    this.service = service;
    this.handlers = handlers as Record<string, unknown>;
    this.box = box;
    this.control = control;
    // Each request's handler runs as the kernel pushes it; its credit comes back only when the
    // handler has finished, so at most `concurrency` are in hand: one stream instead of a
    // receive per request, and no request held that another server could run.
    const requests = box.consume(this.take, {
      prefetch: concurrency,
      holdCredit: true,
    });
    watchConnection(proc, this);
    // The consumer settles once it stopped taking (closed, or the mailbox went) and the requests
    // in hand are answered; the server is stopped once every answer is in the kernel: a process
    // that closes its connection when close() resolves must not lose the answers it finished.
    this.closed = requests.closed
      .then(undefined, (err: unknown) => {
        if (!this.closing) {
          this.closing = true;
          this.stopError = err instanceof PostboxError ? err : null;
          this.box.close();
        }
      })
      .then(() => this.allSent())
      .then(() => this.stopped())
      .then(() => this.stopError);
  }

  /**
   * Without the kernel no answer can be sent, and no caller's cancel can come: the handlers are
   * told to stop, or one that waits on its signal would keep the process (and `closed`) for ever.
   */
  connectionLost(err: PostboxError | null): void {
    for (const job of this.jobs)
      job.abort(new AbortedError(`the connection to the kernel was lost: ${err?.message ?? 'closed'}`));
  }

  /**
   * Every answer is in the kernel and no handler runs: the handles on callers' reply mailboxes
   * (up to MAX_REPLY_HANDLES of them) are closed, or the process would hold them in the kernel
   * for as long as it lives, and the server lets go of the process.
   */
  private async stopped(): Promise<void> {
    liveServers.get(this.proc)?.delete(this);
    const closing: Promise<void>[] = [];
    for (const entry of this.replyBoxes.values()) {
      // An opening still in flight has no answer waiting on it (all are sent): close what it opens.
      if (entry instanceof Promise) closing.push(entry.then((box) => box?.close()));
      else closing.push(entry.close());
    }
    this.replyBoxes.clear();
    await Promise.all(closing);
  }

  async close(options: { abort?: boolean | undefined } = {}): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      // The stream is cancelled: requests pushed to it and not yet taken go back to the service
      // mailbox for another server; those taken are handled like any other (they must be answered).
      this.box.close();
    }
    if (options.abort === true)
      for (const job of this.jobs) job.abort(new AbortedError(`the server of '${this.service}' is closing`));
    await this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  get controlDropped(): number {
    return this.control.dropped;
  }

  /** The consumer's handler: what handle() throws or rejects with would reach no one. */
  private readonly take = (m: Message): Promise<void> | undefined => {
    try {
      return this.handle(m)?.then(undefined, ignore);
    } catch {
      return undefined;
    }
  };

  /**
   * Runs one request. A handler that answers at once is answered here, inside the read that
   * brought the request, and its credit comes back here too: the answer and both takes go out in
   * one write as that read ends (Connection.receiveChunk). Only a handler that returns a promise
   * or a stream makes this return a promise, for the consumer to hold the credit until it settles.
   */
  private handle(m: Message): Promise<void> | undefined {
    let req: ReturnType<typeof requestFromWire>;
    try {
      req = requestFromWire(m.body);
    } catch {
      req = null; // not a request we can read
    }
    if (req === null || !Number.isSafeInteger(req.reply) || (req.reply as number) < 1) {
      this.dropped++; // no one to tell
      return undefined;
    }
    const reply = req.reply as number;
    const { method, args } = req;
    // Checked just below, before any use as such.
    const id = req.id as number;
    const wireDeadline = req.deadline as number | undefined;
    const caller = m.sender;
    if (
      !Number.isSafeInteger(id) ||
      typeof method !== 'string' ||
      !Array.isArray(args) ||
      (wireDeadline !== undefined && (typeof wireDeadline !== 'number' || !Number.isFinite(wireDeadline)))
    ) {
      this.reply(reply, caller, {
        id,
        error: rpcError('EINVAL', `a malformed request to '${this.service}'`),
      });
      return undefined;
    }
    // The caller wrote its deadline by the kernel's clock; this machine's may differ from both.
    const deadline = wireDeadline === undefined ? undefined : wireDeadline - this.proc.kernelClockOffset;
    if (deadline !== undefined && Date.now() >= deadline) return undefined; // the caller has given up
    const fn = this.lookup(method);
    if (fn === null) {
      this.reply(reply, caller, {
        id,
        error: rpcError('ENOENT', `service '${this.service}' has no method '${method}'`),
      });
      return undefined;
    }
    this.handled++;
    this.running++;
    const job = new ServerCall(this.control, caller, this.service, method, deadline);
    this.jobs.add(job);
    this.control.add(caller, id, job);
    let later: Promise<void> | undefined;
    try {
      const full = args;
      while (full.length < fn.length - 1) full.push(undefined);
      full.push(job);
      const result: unknown = fn.apply(this.handlers, full);
      if (isThenable(result) || isAsyncIterable(result) || isGenerator(result))
        later = this.answerLater(job, id, reply, result);
      else this.answer(job, id, reply, result);
    } catch (err) {
      if (!job.gaveUp) this.reply(reply, caller, { id, error: toWireError(err) });
    } finally {
      if (later === undefined) this.finish(job, id);
    }
    return later;
  }

  /** Waits for a handler's promise, or sends its stream, then answers. */
  private async answerLater(job: ServerCall, id: number, reply: number, result: unknown): Promise<void> {
    try {
      if (isThenable(result)) result = await result;
      if (isGenerator(result)) result = streamOfGenerator(result);
      if (isAsyncIterable(result)) await this.stream(job, job.caller, id, reply, result);
      else this.answer(job, id, reply, result);
    } catch (err) {
      if (!job.gaveUp) this.reply(reply, job.caller, { id, error: toWireError(err) });
    } finally {
      this.finish(job, id);
    }
  }

  /** Sends a handler's value as the answer, unless the caller has given up on it. */
  private answer(job: ServerCall, id: number, reply: number, result: unknown): void {
    if (job.gaveUp) return;
    const bad = unsendable(result, 'the result');
    if (bad !== null)
      this.reply(reply, job.caller, {
        id,
        error: rpcError('EINVAL', `${this.service}.${job.method}: ${bad}`),
      });
    else this.reply(reply, job.caller, { id, ok: result }, `${this.service}.${job.method}`);
  }

  private finish(job: ServerCall, id: number): void {
    job.done();
    this.control.remove(job.caller, id);
    this.jobs.delete(job);
    this.running--;
  }

  private lookup(method: string): ((...args: unknown[]) => unknown) | null {
    if (method in Object.prototype || method.startsWith('$')) return null;
    const fn = this.handlers[method];
    return typeof fn === 'function' ? (fn as (...args: unknown[]) => unknown) : null;
  }

  /**
   * A handler returned an async iterable: offer a stream, wait for the caller's START naming
   * the mailbox it reads, then send each item there with a blocking send (a slow caller slows
   * this loop), then END, or ERROR if the iterable throws. If the caller stops (its mailbox goes,
   * it cancels, it dies) the send fails, ctx.signal aborts and the iterable's return() is called.
   */
  private async stream(
    job: ServerCall,
    caller: number,
    id: number,
    reply: number,
    iterable: AsyncIterable<unknown>,
  ): Promise<void> {
    const ctx = job;
    const { signal } = ctx;
    const iterator = iterable[Symbol.asyncIterator]();
    const stop = async (why: string): Promise<void> => {
      job.abort(new AbortedError(why));
      try {
        await iterator.return?.();
      } catch {
        // Its own cleanup failed; the caller is gone anyway.
      }
    };
    if (signal.aborted) {
      // Stopped before the stream was offered: a caller still waiting is answered with why (the
      // server closing with abort), or it would wait for ever; one that gave up is told nothing.
      if (!job.gaveUp) this.reply(reply, caller, { id, error: toWireError(signal.reason) });
      return stop(`${this.service}.${ctx.method} was stopped before its stream was offered`);
    }
    // Offer the stream; wait for the caller's START, or until it gives up (cancels, dies, passes
    // its deadline). A server closing with abort waits for the START too: the caller is told on
    // the stream why it ended, where it would otherwise wait for ever.
    let unwatch = (): void => {};
    const to = await new Promise<number | null>((resolve) => {
      job.onStart = resolve;
      job.onGiveUp = () => resolve(null);
      unwatch = this.control.watch(caller, () => resolve(null));
      this.reply(reply, caller, { id, stream: true });
    });
    job.onStart = null;
    job.onGiveUp = null;
    unwatch();
    const what = `${this.service}.${ctx.method}`;
    if (to === null) return stop(`the caller of ${what} went away before the stream started`);
    let sink: Mailbox;
    try {
      sink = await this.proc.openMailbox(to, { role: 'write' });
    } catch {
      return stop(`the stream mailbox of ${what} is gone`);
    }
    if (sink.info.owner !== caller) {
      sink.close();
      return stop(`the caller of ${what} named a stream mailbox it does not own`);
    }
    // Items wait for room (backpressure) and give up when ctx.signal aborts; the last word (END
    // or ERROR) is sent whatever the signal says, so the caller learns how the stream ended.
    const send = async (body: unknown, type: number): Promise<PostboxError | null> => {
      try {
        await sink.send(
          body,
          type === StreamType.ITEM ? { codec: 'msgpack', type, signal } : { codec: 'msgpack', type },
        );
        return null;
      } catch (err) {
        return err instanceof PostboxError ? err : new InvalidArgumentError(String(err));
      }
    };
    /** ERROR, cut down if it is over the size limit: without it the caller would wait for ever. */
    const sendError = async (error: WireError): Promise<void> => {
      const failed = await send(error, StreamType.ERROR);
      const small = failed?.code === 'EMSGSIZE' ? shrinkWireError(error) : null;
      if (small !== null) await send(small, StreamType.ERROR);
    };
    try {
      for (;;) {
        let r: IteratorResult<unknown>;
        try {
          r = await iterator.next();
        } catch (err) {
          // The iterable threw: that ends it. A caller that gave up (it cancelled, died, or its
          // deadline passed) is told nothing, as for an answer; any other is told, or it would
          // wait for ever (a handler that throws its signal's reason when the server closes).
          if (!job.gaveUp) await sendError(toWireError(err));
          return;
        }
        if (r.done === true) {
          // Past the deadline the caller times out by its own timer, as for an answer: an END
          // would end its stream cleanly instead. Stopped by the server (close with abort), the
          // stream may have been cut short: the caller is told why, not that it is complete.
          if (job.gaveUp) return;
          if (signal.aborted) await sendError(toWireError(signal.reason));
          else await send(null, StreamType.END);
          return;
        }
        let bad: string | null;
        try {
          bad = unsendable(r.value, 'an item');
        } catch (err) {
          // Looking into the item threw (a getter): the iterable failed, as if it had thrown.
          await sendError(toWireError(err));
          await stop(`${what} yielded an item that cannot be read`);
          return;
        }
        const failed =
          bad !== null ? new InvalidArgumentError(`${what}: ${bad}`) : await send(r.value, StreamType.ITEM);
        if (failed === null) continue;
        if (failed.code === 'EINVAL' || failed.code === 'EMSGSIZE') {
          // This item cannot go: the stream ends with that error, naming the call (the size
          // error named the stream's mailbox, which the caller never sees).
          const said =
            failed.code === 'EMSGSIZE' ? `${what}: an item cannot be sent: ${tooBig(failed, 'item')}` : null;
          await sendError(
            measuredAs(failed, toWireError(said === null ? failed : new MessageSizeError(said), true)),
          );
          await stop(`${what} yielded an item that cannot be sent`);
        } else {
          // The mailbox was deleted (the consumer stopped), the caller gave up, or the server
          // stopped the stream (close with abort) while its send waited for room: only that last
          // caller is still there to be told, and would otherwise wait for ever.
          if (failed.code === 'ECANCELED' && signal.aborted && !job.gaveUp)
            await sendError(toWireError(signal.reason));
          await stop(`the consumer of ${what} stopped reading`);
        }
        return;
      }
    } finally {
      sink.close();
    }
  }

  /**
   * Sends an answer to a reply mailbox; a caller that is gone (ENOENT, EIDRM) is dropped. The
   * mailbox must be the caller's own: a request naming someone else's mailbox is not answered
   * (a server does not send where a caller could not receive).
   */
  private allSent(): Promise<void> {
    if (this.unsent === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.onAllSent = resolve));
  }

  /** `what` (service.method) names the call in the error its caller gets if the answer cannot go. */
  private reply(to: number, caller: number, body: ReplyBody, what?: string): void {
    const cached = this.replyBoxes.get(to);
    if (cached !== undefined && !(cached instanceof Promise)) {
      if (cached.info.owner === caller) this.sendReply(to, cached, body, what);
      return;
    }
    let p = cached;
    if (p === undefined) {
      const opening: Promise<Mailbox | null> = this.proc.openMailbox(to, { role: 'write' }).then(
        (box) => {
          if (this.replyBoxes.get(to) === opening) this.replyBoxes.set(to, box);
          return box;
        },
        () => {
          if (this.replyBoxes.get(to) === opening) this.replyBoxes.delete(to);
          return null; // the caller is gone: its reply mailbox went with it
        },
      );
      p = opening;
      this.replyBoxes.set(to, p);
      if (this.replyBoxes.size > MAX_REPLY_HANDLES) this.evictOldest();
    }
    // The first answer to a caller waits for its reply mailbox to open: counted as unsent too.
    this.unsent++;
    p.then((box) => {
      if (box !== null && box.info.owner === caller) this.sendReply(to, box, body, what);
      this.sent();
    });
  }

  private sendReply(to: number, box: Mailbox, body: ReplyBody, what?: string): void {
    this.unsent++;
    box.send(replyToWire(body), REPLY).then(this.sent, (err: unknown) => {
      // Counted as sent only after a retry below has been counted in its turn.
      this.dropOrRetry(to, box, body, err, what);
      this.sent();
    });
  }

  private dropOrRetry(to: number, box: Mailbox, body: ReplyBody, err: unknown, what?: string): void {
    if (!(err instanceof PostboxError)) return;
    if (err.code === 'ENOENT' || err.code === 'EIDRM') {
      // A caller that terminated: its reply is dropped (its ids are never reused).
      this.forget(to, box);
    } else if ((err.code === 'EMSGSIZE' || err.code === 'EINVAL') && 'ok' in body) {
      const error = measuredAs(err, {
        name: err.name,
        message: `${what ?? this.service}: the answer cannot be sent: ${tooBig(err, 'answer')}`,
        code: err.code,
        rpc: true,
      });
      this.sendReply(to, box, { id: body.id, error });
    } else if (err.code === 'EMSGSIZE' && 'error' in body) {
      // An error too big to send (a huge message or stack) was dropped, and the caller waited
      // for ever: it goes again cut down (each cut is smaller, and a cut one is not cut again).
      const error = shrinkWireError(body.error);
      if (error !== null) this.sendReply(to, box, { id: body.id, error });
    }
  }

  private forget(to: number, box: Mailbox): void {
    if (this.replyBoxes.get(to) === box) this.replyBoxes.delete(to);
    box.close();
  }

  private evictOldest(): void {
    for (const [to, entry] of this.replyBoxes) {
      if (entry instanceof Promise) continue;
      this.forget(to, entry);
      return;
    }
  }
}

/**
 * Whether `value` is a context the server made, not a value a caller sent. A handler's context
 * is found by counting parameters, so a caller that sends more arguments than the handler
 * declares before it (with `call()`, or another client) puts its own value in its place: check
 * with this before trusting `ctx.caller`. (A context from another copy of this library is not
 * recognised.)
 *
 * @example
 * ```ts
 * const admin = {
 *   wipe(ctx?: CallContext) {
 *     if (!isCallContext(ctx) || !allowed.has(ctx.caller)) throw new Error('not allowed');
 *     // …
 *   },
 * };
 * ```
 */
export function isCallContext(value: unknown): value is CallContext {
  return value instanceof ServerCall;
}

/** handle() answers every failure it can; what is left would reach no one. */
function ignore(): void {}

function rpcError(code: 'EINVAL' | 'ENOENT', message: string): WireError {
  const err = code === 'EINVAL' ? new InvalidArgumentError(message) : new NotFoundError(message);
  return { name: err.name, message, code, rpc: true };
}

/**
 * `error`, the wire form of a send's failure, with the sizes the send measured if it was an
 * EMSGSIZE that did: the caller's MessageSizeError says by how much, as its own send's would.
 */
function measuredAs(failed: PostboxError, error: WireError): WireError {
  if (failed instanceof MessageSizeError && failed.size !== undefined && failed.limit !== undefined) {
    error.size = failed.size;
    error.limit = failed.limit;
  }
  return error;
}

/**
 * What an EMSGSIZE says, in the caller's words: the answer or item is over the kernel's limit.
 * The send's own message names the reply or stream mailbox, an id the caller never sees.
 */
function tooBig(err: PostboxError, what: 'answer' | 'item'): string {
  if (err instanceof MessageSizeError && err.size !== undefined && err.limit !== undefined)
    return `a ${err.size}-byte ${what} is over the kernel's ${err.limit}-byte limit (postbox kernel --max-message-size)`;
  return err.message;
}

/**
 * The calling side of the RPC face. Each caller process has one reply mailbox (process-owned,
 * mode 0622: servers may send, only the caller receives), read by one prefetching iterator and
 * multiplexed by call id. Requests go to `rpc:<service>` with a receipt, which names the server
 * process that took each one; the caller watches those servers and fails the calls a dying one
 * took, and no others.
 */
import type { Mailbox } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import { type OptionNames, unknownOption } from '../../client/option-names.js';
import { badSignal } from '../../client/option-values.js';
import type { PostboxProcess } from '../../client/process.js';
import type { SendOptions } from '../../client/send-options.js';
import type { SendResult } from '../../client/send-result.js';
import { AbortedError, InvalidArgumentError, PostboxError } from '../../protocol/errors.js';
import { unsendableArgs } from '../../protocol/sendable.js';
import { CallRecord, onTimeout, Peer, RpcCall } from './call.js';
import { atAwaiters, captureSite, NoServerError, processClosed, rethrownAt } from './errors.js';
import { StreamReader } from './stream.js';
import type { CallOptions } from './types.js';
import {
  ControlType,
  controlMailbox,
  type ReplyBody,
  ReplyType,
  replyFromWire,
  requestToWire,
  serviceMailbox,
} from './wire.js';

const noop = (): void => {};

/** Attributes every server and waiting caller creates a service mailbox with. */
export const SERVICE_ATTRIBUTES = {
  system: true,
  policy: 'round-robin',
  requireReader: true,
  mode: 0o666,
} as const;

const SEND: SendOptions = Object.freeze({ receipt: true, codec: 'msgpack', type: 1 });
const SEND_WAITING: SendOptions = Object.freeze({
  receipt: true,
  codec: 'msgpack',
  type: 1,
  withoutReader: true,
});

const callers = new WeakMap<PostboxProcess, Caller>();

/**
 * Handles on service mailboxes a caller keeps open at most. Without a bound a process calling
 * services named per session or per job would hold a kernel handle on each for its whole life,
 * until `--max-per-process` refused its next call. A handle closed to make room is opened again
 * on the service's next call: one more round trip, paid only past this many services.
 */
const MAX_SERVICE_HANDLES = 1024;

/** A caller's handle on one service's mailbox. */
interface ServiceHandle {
  readonly box: Mailbox;
  /** Requests sent on it and not yet answered by the kernel: it is not closed under them. */
  sending: number;
  /**
   * Opened for calls not yet sent: it is not closed before them, though a burst of answers to
   * other opens may make it the least recently used before they run.
   */
  fresh: boolean;
}

/** A process's calling side: its reply mailbox, its calls in flight, the servers they went to. */
export class Caller {
  readonly proc: PostboxProcess;
  /** @internal */
  readonly pending = new Map<number, CallRecord>();
  private nextId = 0;
  private replyBox: Mailbox | null = null;
  private replyOpening: Promise<Mailbox> | null = null;
  /** One handle per service called, the least recently used first. */
  private readonly services = new Map<string, ServiceHandle>();
  /** The handle used last: calls to one service in a row do not reorder the map. */
  private lastUsed: ServiceHandle | null = null;
  private readonly opening = new Map<string, Promise<ServiceHandle>>();
  private readonly peers = new Map<number, Peer>();

  private constructor(proc: PostboxProcess) {
    this.proc = proc;
  }

  static of(proc: PostboxProcess): Caller {
    let c = callers.get(proc);
    if (c === undefined) {
      c = new Caller(proc);
      callers.set(proc, c);
    }
    return c;
  }

  /** Starts a call; `above` is left out of the captured stack (the stub method). */
  call(
    service: string,
    method: string,
    args: unknown[],
    o: CallOptions,
    above: (...args: never[]) => unknown,
  ): RpcCall<unknown> {
    const site = o.captureStack === true ? captureSite(above) : null;
    let resolve: (v: unknown) => void = noop;
    let reject: (e: unknown) => void = noop;
    const call = new RpcCall<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const rec = new CallRecord(this, ++this.nextId, service, method, site);
    if (site !== null) {
      rec.resolve = resolve;
      rec.reject = reject;
    } else {
      // The answer reaches the caller through an async function, where a failure is given the
      // stack of whoever awaits the call (atAwaiters): nothing is captured for a success.
      const answer = new Promise<unknown>((res, rej) => {
        rec.resolve = res;
        rec.reject = rej;
      });
      surfaced(answer, rec).then(resolve, reject);
    }
    call.rec = rec;
    // A call refused before it is sent fails before anyone awaits it: nobody is awaiting yet to
    // name, so the stack is captured here, where the call is.
    const bad = checkCall(service, method, args, o);
    if (bad !== null) {
      rec.site ??= captureSite(above);
      rec.fail(bad);
      return call;
    }
    if (o.signal?.aborted === true) {
      rec.site ??= captureSite(above);
      rec.fail(
        new AbortedError(
          `${service}.${method} was aborted before it was sent`,
          {},
          { cause: o.signal.reason },
        ),
      );
      return call;
    }
    this.pending.set(rec.id, rec);
    if (o.timeout !== undefined && o.timeout > 0) {
      // On the wire by the kernel's clock, which the server can read by its own offset.
      rec.deadline = Date.now() + this.proc.kernelClockOffset + o.timeout;
      rec.timer = setTimeout(onTimeout, o.timeout, rec, o.timeout);
    }
    if (o.signal !== undefined) {
      const signal = o.signal;
      rec.signal = signal;
      rec.onAbort = () =>
        rec.giveUp(
          new AbortedError(
            `${service}.${method} was aborted`,
            { mailbox: `rpc:${service}` },
            { cause: signal.reason },
          ),
        );
      signal.addEventListener('abort', rec.onAbort, { once: true });
    }
    if (rec.timer !== null || rec.signal !== undefined) rec.sendAbort = new AbortController();
    const wait = o.waitForServer === true;
    if (o.streamCapacity !== undefined) rec.streamCapacity = o.streamCapacity;
    const handle = this.services.get(service);
    if (handle !== undefined && this.replyBox !== null) this.dispatch(rec, args, handle, this.replyBox, wait);
    else {
      Promise.all([this.ensureReplyBox(), this.serviceBox(service, wait)]).then(
        ([reply, handle]) => {
          // A call given up while its handle opened leaves it fresh, as other calls may be
          // about to send on it: it counts toward the bound until the service's next call.
          if (rec.state === 'pending') this.dispatch(rec, args, handle, reply, wait);
        },
        (err: unknown) => {
          if (err instanceof PostboxError && err.code === 'ENOENT')
            rec.fail(new NoServerError(service, method));
          else rec.fail(rethrownAt(err, site, `${service}.${method}`));
        },
      );
    }
    return call;
  }

  private dispatch(
    rec: CallRecord,
    args: unknown[],
    handle: ServiceHandle,
    reply: Mailbox,
    wait: boolean,
  ): void {
    const body = requestToWire(
      rec.deadline === undefined
        ? { id: rec.id, method: rec.method, args, reply: reply.id }
        : { id: rec.id, method: rec.method, args, reply: reply.id, deadline: rec.deadline },
    );
    const options =
      rec.sendAbort === null
        ? wait
          ? SEND_WAITING
          : SEND
        : { ...(wait ? SEND_WAITING : SEND), signal: rec.sendAbort.signal };
    if (handle !== this.lastUsed && this.services.get(rec.service) === handle) {
      // Moved to the end: the map's order is the order of last use.
      this.services.delete(rec.service);
      this.services.set(rec.service, handle);
      this.lastUsed = handle;
    }
    handle.sending++;
    handle.fresh = false;
    this.trimServices();
    handle.box.send(body, options).then(
      (r) => {
        this.sent(handle);
        this.onReceipt(rec, r);
      },
      (err: unknown) => {
        this.sent(handle);
        this.onSendError(rec, err);
      },
    );
  }

  private sent(handle: ServiceHandle): void {
    handle.sending--;
    // Room may have been left to make while every handle had a request on it.
    if (this.services.size > MAX_SERVICE_HANDLES) this.trimServices();
  }

  /** Closes the least recently used service handles with no request on them, down to the bound. */
  private trimServices(): void {
    if (this.services.size <= MAX_SERVICE_HANDLES) return;
    for (const [service, handle] of this.services) {
      if (handle.sending > 0 || handle.fresh) continue;
      this.services.delete(service);
      if (this.lastUsed === handle) this.lastUsed = null;
      handle.box.close();
      if (this.services.size <= MAX_SERVICE_HANDLES) return;
    }
  }

  private onReceipt(rec: CallRecord, r: SendResult): void {
    const server = r.receiver;
    if (server === undefined) return;
    if (rec.state === 'done') {
      // Taken after the caller gave up: that server is told to stop.
      if (rec.gaveUp && rec.server === 0) {
        rec.server = server;
        rec.control(ControlType.CANCEL, { id: rec.id });
      }
      return;
    }
    if (rec.server === 0) rec.server = server;
    this.track(rec);
    if (rec.earlyAnswer === null) return;
    const early = rec.earlySender === rec.server ? rec.earlyAnswer : rec.earlyOthers?.get(rec.server);
    rec.earlyAnswer = null;
    rec.earlyOthers = null;
    if (early !== undefined && rec.state === 'pending') this.settle(rec, early);
  }

  private onSendError(rec: CallRecord, err: unknown): void {
    if (rec.state !== 'pending') return; // given up: the withdrawal's answer needs nothing more
    if (err instanceof PostboxError && (err.code === 'EPIPE' || err.code === 'ENOENT')) {
      if (err.code === 'ENOENT') this.forgetService(rec.service);
      rec.fail(new NoServerError(rec.service, rec.method));
      return;
    }
    rec.fail(rethrownAt(err, rec.site, `${rec.service}.${rec.method}`));
  }

  /** Watches the server that took rec (one monitor per server process). */
  private track(rec: CallRecord): void {
    if (rec.peer !== null) return;
    const peer = this.peer(rec.server);
    rec.peer = peer;
    peer.calls.add(rec);
    if (peer.down !== null) this.fence(peer);
  }

  private peer(server: number): Peer {
    let peer = this.peers.get(server);
    if (peer === undefined) {
      const p = new Peer(server);
      peer = p;
      this.peers.set(server, p);
      this.proc.monitor(server).then(
        (down) => {
          p.down = down;
          if (p.calls.size > 0) this.fence(p);
          else this.dropPeer(p);
        },
        noop, // this process closed: its calls fail with it
      );
    }
    return peer;
  }

  private dropPeer(peer: Peer): void {
    if (this.peers.get(peer.id) === peer) this.peers.delete(peer.id);
    peer.control?.then((box) => box?.close(), noop);
  }

  /**
   * A server terminated with calls of ours. Its answers sent before it ended are already in the
   * reply mailbox; a fence sent there now arrives after them, and the calls still open when it
   * does fail (ECONNRESET naming the server). No answer is lost, and no call hangs.
   */
  private fence(peer: Peer): void {
    if (peer.fencing) return;
    peer.fencing = true;
    this.replyBox?.send({ fence: peer.id }, { codec: 'msgpack', type: ReplyType.FENCE }).catch(noop);
  }

  private onFence(server: number): void {
    const peer = this.peers.get(server);
    if (peer === undefined || peer.down === null) return;
    peer.fencing = false;
    this.dropPeer(peer);
    for (const rec of [...peer.calls]) rec.serverDown(peer.down);
  }

  /** Sends a control message (CANCEL, START) to a server process's control mailbox. */
  control(server: number, type: number, body: { id: number; to?: number }): void {
    if (server === 0) return;
    const peer = this.peer(server);
    peer.control ??= this.proc.openMailbox(controlMailbox(server), { role: 'write' }).catch(() => null);
    peer.control.then((box) => box?.send(body, { codec: 'msgpack', type }).catch(noop), noop);
  }

  private ensureReplyBox(): Promise<Mailbox> {
    if (this.replyBox !== null) return Promise.resolve(this.replyBox);
    this.replyOpening ??= this.proc.createMailbox(null, { mode: 0o622 }).then(
      (box) => {
        this.replyBox = box;
        this.replyOpening = null;
        void this.loop(box);
        return box;
      },
      (err: unknown) => {
        this.replyOpening = null;
        throw err;
      },
    );
    return this.replyOpening;
  }

  private serviceBox(service: string, create: boolean): Promise<ServiceHandle> {
    const cached = this.services.get(service);
    if (cached !== undefined) return Promise.resolve(cached);
    const key = `${create ? '+' : '-'}${service}`;
    let p = this.opening.get(key);
    if (p === undefined) {
      const name = serviceMailbox(service);
      p = this.proc
        .openMailbox(name, create ? { create: SERVICE_ATTRIBUTES, role: 'write' } : { role: 'write' })
        .then(
          (box) => {
            this.opening.delete(key);
            const other = this.services.get(service);
            if (other !== undefined) {
              box.close();
              return other;
            }
            const handle: ServiceHandle = { box, sending: 0, fresh: true };
            this.services.set(service, handle);
            return handle;
          },
          (err: unknown) => {
            this.opening.delete(key);
            throw err;
          },
        );
      this.opening.set(key, p);
    }
    return p;
  }

  private forgetService(service: string): void {
    const handle = this.services.get(service);
    if (handle === undefined) return;
    this.services.delete(service);
    if (this.lastUsed === handle) this.lastUsed = null;
    handle.box.close();
  }

  /**
   * Reads the reply mailbox for as long as the process lives. A handler per reply, called inside
   * the read, rather than a loop: no promise or await per answer on the caller's side.
   */
  private async loop(box: Mailbox): Promise<void> {
    let failure: unknown = null;
    try {
      await box.consume((m) => this.onMessage(m), { prefetch: 256 }).closed;
    } catch (err) {
      failure = err;
    }
    // The process closed (or lost its kernel): every call still open fails with that. A read
    // that ended without an error is the process's own close(): ENOTCONN, as a call made after
    // it gets, not a protocol error.
    if (this.replyBox === box) this.replyBox = null;
    for (const rec of [...this.pending.values()]) {
      rec.fail(rethrownAt(failure ?? processClosed(), rec.site, `${rec.service}.${rec.method}`));
    }
  }

  private onMessage(m: Message): void {
    let body: unknown;
    try {
      body = m.body;
    } catch {
      return; // not a body anyone here can read
    }
    if (typeof body !== 'object' || body === null) return;
    if (m.type === ReplyType.FENCE) {
      if (m.sender === this.proc.id) this.onFence((body as { fence: number }).fence);
      return;
    }
    const answer = replyFromWire(body);
    if (answer !== null) this.onReply(m.sender, answer);
  }

  private onReply(sender: number, body: ReplyBody): void {
    const rec = this.pending.get(body.id);
    if (rec === undefined || rec.state !== 'pending') return; // late: timed out, aborted, done
    if (rec.server === 0) {
      // Who took the call is not known yet: the receipt resolves a microtask after an answer
      // read with it, and before any server took the call another process could write an
      // answer here, which was taken as the call's. It waits for the receipt to name the server.
      if (rec.earlyAnswer === null) {
        rec.earlyAnswer = body;
        rec.earlySender = sender;
      } else if (sender !== rec.earlySender) {
        rec.earlyOthers ??= new Map();
        if (!rec.earlyOthers.has(sender)) rec.earlyOthers.set(sender, body);
      }
      return;
    }
    if (rec.server !== sender) return; // not from the server that took it
    this.settle(rec, body);
  }

  /** Ends a call, or begins its stream, by its server's answer. */
  private settle(rec: CallRecord, body: ReplyBody): void {
    if ('ok' in body) rec.succeed(body.ok);
    else if ('error' in body) rec.fail(rec.answerError(body.error));
    else if ('stream' in body && body.stream === true) {
      this.track(rec);
      rec.state = 'streaming';
      this.pending.delete(rec.id);
      rec.reader = new StreamReader(rec, rec.streamCapacity);
      rec.resolve(rec.reader);
    }
  }
}

/**
 * The answer as the caller gets it: a failure carries the stack of the functions awaiting it,
 * unless a stack was captured at the call.
 */
async function surfaced(answer: Promise<unknown>, rec: CallRecord): Promise<unknown> {
  try {
    return await answer;
  } catch (err) {
    throw err instanceof Error && rec.site === null ? atAwaiters(err, surfaced) : err;
  }
}

/** The options a call takes, checked on every call: a stub's defaults and `$with`'s are merged into them. */
export const CALL_OPTIONS: OptionNames<CallOptions> = {
  timeout: true,
  signal: true,
  waitForServer: true,
  streamCapacity: true,
  captureStack: true,
};

function checkCall(service: string, method: unknown, args: unknown, o: CallOptions): PostboxError | null {
  try {
    serviceMailbox(service);
  } catch (err) {
    return err as PostboxError;
  }
  if (typeof method !== 'string' || method.length === 0)
    return new InvalidArgumentError(`a method name is a non-empty string, not ${String(method)}`);
  if (!Array.isArray(args)) return new InvalidArgumentError(`${service}.${method}: args must be an array`);
  if (typeof o !== 'object' || o === null)
    return new InvalidArgumentError(`${service}.${method}: options must be an object`);
  const unknown = unknownOption(o, CALL_OPTIONS, `${service}.${method}()`);
  if (unknown !== null) return unknown;
  if (o.timeout !== undefined && (!Number.isInteger(o.timeout) || o.timeout < 0 || o.timeout > 0x7fffffff))
    return new InvalidArgumentError(
      `${service}.${method}: timeout must be a whole number of ms, not ${o.timeout}`,
    );
  const badSig = badSignal(o.signal, `${service}.${method}()`);
  if (badSig !== null) return badSig;
  if (o.waitForServer !== undefined && typeof o.waitForServer !== 'boolean')
    return new InvalidArgumentError(
      `${service}.${method}: waitForServer must be true or false, not ${String(o.waitForServer)}`,
    );
  if (o.captureStack !== undefined && typeof o.captureStack !== 'boolean')
    return new InvalidArgumentError(
      `${service}.${method}: captureStack must be true or false, not ${String(o.captureStack)}`,
    );
  if (o.streamCapacity !== undefined && (!Number.isInteger(o.streamCapacity) || o.streamCapacity < 1))
    return new InvalidArgumentError(
      `${service}.${method}: streamCapacity must be a positive integer, not ${o.streamCapacity}`,
    );
  const why = unsendableArgs(args);
  if (why !== null) return new InvalidArgumentError(`${service}.${method}: ${why}`);
  return null;
}

import type { Mailbox } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import { checkOptions, describeValue, type OptionNames } from '../../client/option-names.js';
import { badProcess, badSignal, badTimeout, MAX_TIMER_MS } from '../../client/option-values.js';
import type { PostboxProcess } from '../../client/process.js';
import {
  AbortedError,
  ClosedError,
  ConnectionLostError,
  ConnectionRefusedError,
  ExistsError,
  InvalidArgumentError,
  PostboxError,
  TimeoutError,
} from '../../protocol/errors.js';
import { Connection } from './socket.js';
import { watchProcess } from './watch.js';
import {
  anySignal,
  type ConnectionStyle,
  isSyn,
  isSynAck,
  MAX_PORT_NAME,
  PORT_PREFIX,
  processLabel,
  type Refuse,
  type Syn,
  type SynAck,
  T_REFUSE,
  T_SYN,
  T_SYNACK,
  VERSION,
} from './wire.js';

/** The size of this side's mailbox: how much the peer may send ahead of this side's reading. */
export interface WindowOptions {
  /** Messages this side's mailbox holds (default 64): a stream writer waits past it, a datagram is dropped. */
  capacity?: number | undefined;
  /** Bytes it holds (default 1 MiB); full is whichever limit is reached first. */
  maxBytes?: number | undefined;
  /** Whether the writable side stays open after the peer ends (Duplex `allowHalfOpen`, default true). */
  allowHalfOpen?: boolean | undefined;
}

/** Options of {@link listen}. */
export interface ListenOptions extends WindowOptions {
  /** `'stream'` (default) or `'datagram'`: dialers must ask for the same. */
  style?: ConnectionStyle | undefined;
  /**
   * Dialers that may wait for accept() at once (the port mailbox's capacity, default 128); more
   * wait to get in. It also bounds the handshakes accept() has under way, and those completed
   * that no accept() has taken yet.
   */
  backlog?: number | undefined;
  /** How long accept() waits for a dialer to take its answer before dropping it (default 10 000 ms). */
  handshakeTimeout?: number | undefined;
}

/** Options of {@link dial}. */
export interface DialOptions extends WindowOptions {
  /** `'stream'` (default) or `'datagram'`: the listener's style. */
  style?: ConnectionStyle | undefined;
  /** Give up after this many ms (ETIMEDOUT), e.g. when nobody calls accept(); 0, like none, is no limit. */
  timeout?: number | undefined;
  /** Give up when aborted (ECANCELED). */
  signal?: AbortSignal | undefined;
}

/** Options of {@link Port.accept}. */
export interface AcceptOptions {
  /** Give up after this many ms with no dialer (ETIMEDOUT); 0, like none, is no limit. */
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
}

const WINDOW_OPTIONS: OptionNames<WindowOptions> = { capacity: true, maxBytes: true, allowHalfOpen: true };
const LISTEN_OPTIONS: OptionNames<ListenOptions> = {
  ...WINDOW_OPTIONS,
  style: true,
  backlog: true,
  handshakeTimeout: true,
};
const DIAL_OPTIONS: OptionNames<DialOptions> = {
  ...WINDOW_OPTIONS,
  style: true,
  timeout: true,
  signal: true,
};
const ACCEPT_OPTIONS: OptionNames<AcceptOptions> = { timeout: true, signal: true };

const DEFAULT_CAPACITY = 64;
const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_BACKLOG = 128;
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

/** What a handshake ended with, for an accept() to take: its connection, or the error that failed it. */
type Accepted =
  | { readonly seq: number; readonly conn: Connection }
  | { readonly seq: number; readonly error: unknown };

/** An accept() call waiting: the first handshake to complete gives it its result, and wakes it. */
interface Waiter {
  given: Accepted | null;
  readonly wake: AbortController;
}

/**
 * A listening port: a mailbox named `port:NAME` owned by the listening process, so it goes with
 * it — dialing a port whose listener ended or died fails at once with `ECONNREFUSED`. Dialers'
 * requests wait in it until {@link accept} takes them.
 *
 * @example
 * ```ts
 * const port = await listen(proc, 'echo');
 * for await (const conn of port) pipeline(conn, conn, () => {});
 * ```
 */
export class Port implements AsyncIterable<Connection> {
  /** The port's name (its mailbox is `port:NAME`). */
  readonly name: string;
  readonly style: ConnectionStyle;
  /** Id of the port's mailbox. */
  readonly mailbox: number;
  /**
   * Messages accept() took from the port that were no dialer's request (`postbox send port:web
   * hi`, a request naming a mailbox not its sender's, or one no answer fits): dropped, with nobody to answer, and
   * counted here so that they are not lost without a trace.
   */
  get dropped(): number {
    return this.#dropped;
  }
  #dropped = 0;
  readonly #proc: PostboxProcess;
  readonly #box: Mailbox;
  readonly #options: ListenOptions;
  #closed = false;
  /**
   * Requests taken from the port and not yet answered (handshakes under way, and receives that
   * may bring one) are at most this many: the backlog, so that a dialer that never takes its
   * answer holds one of them for `handshakeTimeout`, not the whole port.
   */
  readonly #bound: number;
  readonly #inFlight = new Set<Promise<void>>();
  #receiving = 0;
  /** Handshakes completed that no accept() has taken yet, in request order (as TCP's accept queue). */
  readonly #ready: Accepted[] = [];
  /** accept() calls waiting, oldest first. */
  readonly #waiters: Waiter[] = [];
  /** accept() calls waiting for the bound to let them take another request. */
  readonly #roomWaits = new Set<() => void>();
  #seq = 0;
  /** Aborted by close(): the answers still waiting to be taken are withdrawn. */
  readonly #stop = new AbortController();

  /** @internal Made by {@link listen}. */
  constructor(
    proc: PostboxProcess,
    name: string,
    style: ConnectionStyle,
    box: Mailbox,
    options: ListenOptions,
  ) {
    this.#proc = proc;
    this.name = name;
    this.style = style;
    this.#box = box;
    this.mailbox = box.id;
    this.#options = options;
    this.#bound = options.backlog ?? DEFAULT_BACKLOG;
  }

  /**
   * Waits for a dialer and completes its handshake: resolves with the new connection. Dialers
   * that gave up or died meanwhile are skipped; one asking for the other style is refused.
   * While it waits, requests are answered side by side (up to `backlog` at once): the first
   * handshake to complete is this call's, and those completing after it wait for the next
   * accept(). `ENOTCONN` once the port is closed.
   */
  async accept(options: AcceptOptions = {}): Promise<Connection> {
    checkOptions(options, ACCEPT_OPTIONS, 'accept()');
    const bad = badTimeout(options.timeout, 'timeout', 'accept()') ?? badSignal(options.signal, 'accept()');
    if (bad !== null) throw bad;
    if (this.#closed) throw this.#closedError();
    const ready = this.#ready.shift();
    if (ready !== undefined) return taken(ready);
    // 0, like no timeout, is no limit, as for every other call.
    const deadline = options.timeout ? Date.now() + options.timeout : null;
    const timedOut = (): TimeoutError =>
      new TimeoutError(`accept on port '${this.name}' timed out after ${options.timeout} ms`);
    const aborted = (): AbortedError =>
      new AbortedError(
        `accept on port '${this.name}' was aborted`,
        { mailbox: PORT_PREFIX + this.name },
        { cause: options.signal?.reason },
      );
    const waiter: Waiter = { given: null, wake: new AbortController() };
    this.#waiters.push(waiter);
    const stop = anySignal([options.signal, waiter.wake.signal]);
    try {
      for (;;) {
        // Whatever else happened meanwhile, a connection given is returned, never lost.
        if (waiter.given !== null) return taken(waiter.given);
        if (this.#closed) throw this.#closedError();
        if (options.signal?.aborted) throw aborted();
        const left = deadline === null ? undefined : deadline - Date.now();
        if (left !== undefined && left <= 0) throw timedOut();
        if (this.#inFlight.size + this.#receiving >= this.#bound) {
          await this.#room(stop.signal, left);
          continue;
        }
        let m: Message | null;
        this.#receiving++;
        try {
          m = await this.#box.receive({ timeout: left, signal: stop.signal });
        } catch (err) {
          if (waiter.given !== null) return taken(waiter.given);
          if (this.#closed || (err instanceof PostboxError && err.code === 'EIDRM'))
            throw this.#closedError();
          // Only the receive's own timeout is accept's; an ETIMEDOUT without one is the kernel's
          // (this process ended for silence) and says so itself.
          if (err instanceof PostboxError && err.code === 'ETIMEDOUT' && left !== undefined) throw timedOut();
          if (err instanceof PostboxError && err.code === 'ECANCELED') throw aborted();
          throw err;
        } finally {
          this.#receiving--;
          this.#roomFreed();
        }
        if (m === null) continue;
        if (m.type !== T_SYN) {
          this.#dropped++;
          continue;
        }
        this.#start(m);
      }
    } finally {
      stop.dispose();
      const i = this.#waiters.indexOf(waiter);
      if (i !== -1) this.#waiters.splice(i, 1);
    }
  }

  /** Accepts connections until the port is closed. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Connection, void, undefined> {
    for (;;) {
      let conn: Connection;
      try {
        conn = await this.accept();
      } catch (err) {
        if (this.#closed) return;
        throw err;
      }
      yield conn;
    }
  }

  /**
   * Stops listening: the port's mailbox is removed, so waiting and later dialers are refused.
   * Dialers whose handshake is under way are refused too, and those whose handshake completed
   * but that no accept() took are reset (`ECONNRESET`); resolves once their mailboxes are gone.
   * Connections already accepted stay.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    // A connection given to an accept() that has not yet returned it is nobody's now.
    for (const w of this.#waiters) {
      if (w.given !== null) this.#ready.push(w.given);
      w.given = null;
      w.wake.abort();
    }
    try {
      await this.#box.delete();
    } catch {
      // Gone already.
    }
    this.#box.close();
    // A handshake started after this point refuses at once: the loop ends.
    while (this.#inFlight.size > 0) await Promise.allSettled(this.#inFlight);
    await Promise.all(this.#ready.splice(0).map((done) => ('conn' in done ? this.#reset(done.conn) : null)));
  }

  /**
   * Closes the port when an `await using` block ends, as {@link close} does.
   *
   * @example
   * ```ts
   * await using port = await listen(proc, 'echo');
   * const conn = await port.accept();
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Answers a dialer's request beside the others under way; its result goes to an accept(). */
  #start(m: Message): void {
    const seq = this.#seq++;
    const run: Promise<void> = this.#handshake(m)
      .then(
        (conn) => {
          if (conn !== null) this.#deliver({ seq, conn });
        },
        (error: unknown) => this.#deliver({ seq, error }),
      )
      .finally(() => {
        this.#inFlight.delete(run);
        this.#roomFreed();
      });
    this.#inFlight.add(run);
  }

  /** Gives a handshake's result to the oldest accept() waiting, or queues it for the next one. */
  #deliver(done: Accepted): void {
    if (!this.#closed) {
      for (const w of this.#waiters) {
        if (w.given !== null) continue;
        w.given = done;
        w.wake.abort();
        return;
      }
    }
    let i = this.#ready.length;
    while (i > 0 && this.#ready[i - 1]!.seq > done.seq) i--;
    this.#ready.splice(i, 0, done);
  }

  /** Waits until a request's receive or handshake ends, `signal` aborts, or `left` ms pass. */
  #room(signal: AbortSignal, left: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#roomWaits.delete(done);
        resolve();
      };
      // The caller looks at the clock again: a longer timeout than a timer takes is waited in turns.
      const timer = left === undefined ? undefined : setTimeout(done, Math.min(left, MAX_TIMER_MS));
      signal.addEventListener('abort', done, { once: true });
      this.#roomWaits.add(done);
    });
  }

  #roomFreed(): void {
    for (const done of this.#roomWaits) done();
  }

  /** Resets a connection no accept() took: its dialer reads ECONNRESET saying why. */
  async #reset(conn: Connection): Promise<void> {
    // destroy(err) emits it on this side too, where nobody has had the connection to listen.
    conn.on('error', noop);
    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    conn.destroy(
      new ConnectionLostError(`port '${this.name}' was closed before accept() took the connection`, {
        mailbox: PORT_PREFIX + this.name,
      }),
    );
    await closed;
  }

  /** Answers one dialer: its connection, or null if it is gone (or was refused). */
  async #handshake(m: Message): Promise<Connection | null> {
    let syn: unknown;
    try {
      syn = m.body;
    } catch {
      syn = null; // a body that does not decode
    }
    if (!isSyn(syn)) {
      this.#dropped++;
      return null;
    }
    const dialer = m.sender;
    if (syn.v !== VERSION || syn.style !== this.style) {
      const reason =
        syn.v !== VERSION
          ? `it speaks handshake version ${VERSION}, not ${syn.v}`
          : `it takes ${this.style} connections, not ${syn.style} ones`;
      await this.#refuse(syn, dialer, reason);
      return null;
    }
    if (this.#closed) {
      await this.#refuse(syn, dialer, PORT_CLOSED);
      return null;
    }
    const proc = this.#proc;
    const [own, peerBox, info] = await Promise.allSettled([
      createInbound(proc, this.#options, 0o620),
      proc.openMailbox(syn.mailbox, { role: 'write' }),
      proc.lookup(dialer),
    ]);
    const inbound = own.status === 'fulfilled' ? own.value : null;
    const outbound = peerBox.status === 'fulfilled' ? peerBox.value : null;
    // Whether a failure is the dialer's mailbox's: one a request names is the sender's to make,
    // and one no answer fits (a 1-byte message size) failed accept() itself, so any process
    // that could send to the port could end a server's accept loop.
    let dialerSide = false;
    // Whether the mailbox named is the dialer's own: only then may a refusal go there.
    let dialersOwn = false;
    try {
      if (own.status === 'rejected') throw own.reason;
      dialerSide = true;
      if (peerBox.status === 'rejected') throw peerBox.reason;
      if (info.status === 'rejected') throw info.reason;
      // The request names a mailbox of the dialer's own, or it is not a dialer's request.
      if (outbound!.info.owner !== dialer) {
        this.#dropped++;
        await discard(inbound, outbound);
        return null;
      }
      dialersOwn = true;
      // Only the dialer may send to this side's mailbox, only this process receive from it.
      dialerSide = false;
      await inbound!.grant(dialer);
      dialerSide = true;
      // close() withdraws it; one the dialer has taken completes, and close() resets it.
      await outbound!.send({ v: VERSION, mailbox: inbound!.id } satisfies SynAck, {
        type: T_SYNACK,
        receipt: true,
        timeout: this.#options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
        signal: this.#stop.signal,
      });
    } catch (err) {
      if (this.#closed) {
        // The dialer would otherwise wait for its answer until its own timeout, if it has one.
        if (dialersOwn) await sendRefusal(outbound!, PORT_CLOSED);
        await discard(inbound, outbound);
        return null;
      }
      await discard(inbound, outbound);
      // The dialer gave up or died before taking the answer: on to the next one.
      if (err instanceof PostboxError && DIALER_GONE.has(err.code)) return null;
      // Its mailbox cannot take an answer: no dialer's request that can be served, dropped.
      if (err instanceof PostboxError && dialerSide) {
        this.#dropped++;
        return null;
      }
      throw err;
    }
    return new Connection({
      proc,
      style: this.style,
      port: this.name,
      inbound: inbound!,
      outbound: outbound!,
      peer: { id: dialer, name: info.status === 'fulfilled' ? info.value.name : null },
      prefetch: prefetchFor(proc, inbound!),
      allowHalfOpen: this.#options.allowHalfOpen,
    });
  }

  async #refuse(syn: Syn, dialer: number, reason: string): Promise<void> {
    let box: Mailbox;
    try {
      box = await this.#proc.openMailbox(syn.mailbox, { role: 'write' });
    } catch {
      return; // The dialer is gone: nobody to tell.
    }
    // As for an answer: a request naming a mailbox not its sender's would have this process
    // write into a third party's mailbox, which reads the refusal as its own.
    if (box.info.owner === dialer) await sendRefusal(box, reason);
    else this.#dropped++;
    box.close();
  }

  #closedError(): ClosedError {
    return new ClosedError(`port '${this.name}' is closed`, { mailbox: PORT_PREFIX + this.name });
  }
}

/** Why a dialer whose request the port took is refused when the port closes first. */
const PORT_CLOSED = 'the port was closed';

function taken(done: Accepted): Connection {
  if ('conn' in done) return done.conn;
  throw done.error;
}

/** Tells a dialer it is refused, and why; never waits (a full mailbox is a dialer not reading). */
async function sendRefusal(box: Mailbox, reason: string): Promise<void> {
  try {
    await box.send({ reason } satisfies Refuse, { type: T_REFUSE, nowait: true });
  } catch {
    // The dialer is gone, or does not read: nobody to tell.
  }
}

function noop(): void {}

/** Errors of a handshake step that mean the dialer is gone or gave up. */
const DIALER_GONE = new Set(['ENOENT', 'EIDRM', 'ESRCH', 'ETIMEDOUT', 'EACCES', 'EPIPE']);

/**
 * Listens on a port: creates its mailbox `port:NAME`, owned by this process (it goes when the
 * process ends or the port closes). `EEXIST` if the port is taken.
 *
 * @example
 * ```ts
 * const port = await listen(proc, 'time');
 * for await (const conn of port) {
 *   conn.end(new Date().toISOString());
 *   // Nothing reads this side, so it would never see the client's end and close by itself.
 *   void conn.close();
 * }
 * ```
 */
export async function listen(proc: PostboxProcess, name: string, options: ListenOptions = {}): Promise<Port> {
  const badProc = badProcess(proc, 'listen()');
  if (badProc !== null) throw badProc;
  checkOptions(options, LISTEN_OPTIONS, 'listen()');
  checkPortName(name);
  const style = checkStyle(options.style);
  checkWindow(options);
  const backlog = options.backlog ?? DEFAULT_BACKLOG;
  if (!Number.isSafeInteger(backlog) || backlog < 1) {
    throw new InvalidArgumentError(`backlog must be a positive integer, not ${describeValue(backlog)}`);
  }
  // Unchecked, a bad one surfaced only in accept(), as a send's timeout the caller never gave.
  const badHandshake = badTimeout(options.handshakeTimeout, 'handshakeTimeout', 'listen()');
  if (badHandshake !== null) throw badHandshake;
  let box: Mailbox;
  try {
    box = await proc.createMailbox(PORT_PREFIX + name, {
      capacity: backlog,
      // Others may only send (dial); only the listener receives. Sends fail at once (EPIPE) if
      // the listener has let go of it.
      mode: 0o622,
      requireReader: true,
      role: 'read',
    });
  } catch (err) {
    if (err instanceof PostboxError && err.code === 'EEXIST') {
      throw new ExistsError(`port '${name}' is in use: another process listens on it`, {
        mailbox: PORT_PREFIX + name,
      });
    }
    throw err;
  }
  return new Port(proc, name, style, box, options);
}

/**
 * Connects to a listening port: resolves with the connection once the listener has accepted.
 * `ECONNREFUSED` at once if nobody listens (or the listener ends while this waits, or listens
 * for the other style); `ETIMEDOUT` / `ECANCELED` with `timeout` / `signal`.
 *
 * @example
 * ```ts
 * const conn = await dial(proc, 'echo', { timeout: 5000 });
 * ```
 */
export async function dial(
  proc: PostboxProcess,
  name: string,
  options: DialOptions = {},
): Promise<Connection> {
  const badProc = badProcess(proc, 'dial()');
  if (badProc !== null) throw badProc;
  checkOptions(options, DIAL_OPTIONS, 'dial()');
  checkPortName(name);
  const style = checkStyle(options.style);
  checkWindow(options);
  const { timeout, signal } = options;
  const bad = badTimeout(timeout, 'timeout', 'dial()') ?? badSignal(signal, 'dial()');
  if (bad !== null) throw bad;
  if (signal?.aborted)
    throw new AbortedError(`dialing port '${name}' was aborted`, {}, { cause: signal.reason });
  // 0, like no timeout, is no limit, as for every other call.
  const deadline = timeout ? Date.now() + timeout : null;
  const left = (): number | undefined => {
    if (deadline === null) return undefined;
    const ms = deadline - Date.now();
    if (ms <= 0) throw timedOut();
    return ms;
  };
  const timedOut = (): TimeoutError =>
    new TimeoutError(`dialing port '${name}' timed out after ${timeout} ms: no listener accepted`, {
      mailbox: PORT_PREFIX + name,
    });
  // One wording whichever step the dial was in: the port's mailbox is the layer's, not the user's.
  const aborted = (): AbortedError =>
    new AbortedError(
      `dialing port '${name}' was aborted`,
      { mailbox: PORT_PREFIX + name },
      { cause: signal?.reason },
    );
  const refused = (why: string): ConnectionRefusedError =>
    new ConnectionRefusedError(`connection to port '${name}' refused: ${why}`, {
      mailbox: PORT_PREFIX + name,
    });

  let port: Mailbox;
  try {
    port = await proc.openMailbox(PORT_PREFIX + name, { role: 'write' });
  } catch (err) {
    if (err instanceof PostboxError && err.code === 'ENOENT') throw refused('nobody is listening on it');
    throw err;
  }
  let inbound: Mailbox | null = null;
  let outbound: Mailbox | null = null;
  let unwatch: (() => void) | null = null;
  try {
    // Open to every sender until the handshake names the peer; then only to it.
    inbound = await createInbound(proc, options, 0o622);
    let acceptor: number;
    try {
      const r = await port.send({ v: VERSION, mailbox: inbound.id, style } satisfies Syn, {
        type: T_SYN,
        receipt: true,
        timeout: left(),
        signal,
      });
      acceptor = r.receiver!;
    } catch (err) {
      if (err instanceof PostboxError) {
        if (err.code === 'ENOENT' || err.code === 'EIDRM') throw refused('its listener went away');
        if (err.code === 'EPIPE') throw refused('nobody is listening on it');
        if (err.code === 'ETIMEDOUT') throw timedOut();
        if (err.code === 'ECANCELED') throw aborted();
      }
      throw err;
    } finally {
      port.close();
    }

    // The listener took the request: wait for its answer, or its end.
    const down = new AbortController();
    unwatch = watchProcess(proc, acceptor, () => down.abort());
    const both = anySignal([signal, down.signal]);
    let answer: SynAck;
    try {
      for (;;) {
        const m = (await inbound.receive({ timeout: left(), signal: both.signal }))!;
        if (m.sender !== acceptor) continue;
        let body: unknown;
        try {
          body = m.body;
        } catch {
          continue;
        }
        if (m.type === T_REFUSE) {
          const reason = (body as Refuse | null)?.reason;
          throw refused(typeof reason === 'string' ? reason : 'the listener refused it');
        }
        if (m.type === T_SYNACK && isSynAck(body)) {
          answer = body;
          break;
        }
      }
    } catch (err) {
      if (down.signal.aborted && !(signal?.aborted ?? false)) {
        throw refused(`its listener, ${processLabel(acceptor, null)}, ended during the handshake`);
      }
      if (err instanceof PostboxError && err.code === 'ETIMEDOUT') throw timedOut();
      if (err instanceof PostboxError && err.code === 'ECANCELED') throw aborted();
      throw err;
    } finally {
      both.dispose();
    }

    const [peerBox, info, granted, moded] = await Promise.allSettled([
      proc.openMailbox(answer.mailbox, { role: 'write' }),
      proc.lookup(acceptor),
      inbound.grant(acceptor),
      inbound.chmod(0o620),
    ]);
    if (peerBox.status === 'fulfilled') outbound = peerBox.value;
    if (outbound !== null && outbound.info.owner !== acceptor) {
      throw new ConnectionLostError(
        `the connection to port '${name}' was reset during the handshake: ${processLabel(acceptor, null)} answered with a mailbox not its own`,
        { process: String(acceptor) },
      );
    }
    for (const r of [peerBox, info, granted, moded]) {
      if (r.status === 'rejected') {
        const err = r.reason;
        if (err instanceof PostboxError && DIALER_GONE.has(err.code)) {
          throw new ConnectionLostError(
            `the connection to port '${name}' was reset during the handshake: ${processLabel(acceptor, null)} is gone`,
            { process: String(acceptor) },
          );
        }
        throw err;
      }
    }
    const conn = new Connection({
      proc,
      style,
      port: name,
      inbound,
      outbound: outbound!,
      peer: { id: acceptor, name: info.status === 'fulfilled' ? info.value.name : null },
      prefetch: prefetchFor(proc, inbound),
      allowHalfOpen: options.allowHalfOpen,
    });
    return conn;
  } catch (err) {
    await discard(inbound, outbound);
    throw err;
  } finally {
    port.close();
    unwatch?.();
  }
}

/** This side's mailbox of a new connection: process-owned, bounded, receivable only by it. */
function createInbound(proc: PostboxProcess, options: WindowOptions, mode: number): Promise<Mailbox> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  return proc.createMailbox(null, {
    capacity: options.capacity ?? DEFAULT_CAPACITY,
    maxBytes,
    // A message larger than the byte limit could never get in: make that EMSGSIZE at once.
    maxMessageSize: Math.min(proc.limits.maxMessageSize, maxBytes),
    mode,
    role: 'read',
  });
}

function prefetchFor(proc: PostboxProcess, inbound: Mailbox): number {
  const capacity = inbound.info.capacity ?? DEFAULT_CAPACITY;
  return Math.max(1, Math.min(capacity, proc.limits.maxCredit ?? 4096));
}

/** Removes a half-made connection's mailbox and handle. */
async function discard(inbound: Mailbox | null, outbound: Mailbox | null): Promise<void> {
  outbound?.close();
  if (inbound === null) return;
  try {
    await inbound.delete();
  } catch {
    // Gone already.
  }
  inbound.close();
}

function checkPortName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError('a port name is a non-empty string');
  }
  if (Buffer.byteLength(name) > MAX_PORT_NAME) {
    throw new InvalidArgumentError(`port name '${name.slice(0, 32)}…' is over ${MAX_PORT_NAME} bytes`);
  }
}

function checkStyle(style: unknown): ConnectionStyle {
  if (style === undefined) return 'stream';
  if (style === 'stream' || style === 'datagram') return style;
  throw new InvalidArgumentError(`style must be 'stream' or 'datagram', not '${String(style)}'`);
}

function checkWindow(options: WindowOptions): void {
  const { capacity, maxBytes } = options;
  if (capacity !== undefined && (!Number.isSafeInteger(capacity) || capacity < 1)) {
    throw new InvalidArgumentError(`capacity must be a positive integer, not ${describeValue(capacity)}`);
  }
  if (maxBytes !== undefined && (!Number.isSafeInteger(maxBytes) || maxBytes < 1)) {
    throw new InvalidArgumentError(`maxBytes must be a positive integer, not ${describeValue(maxBytes)}`);
  }
}

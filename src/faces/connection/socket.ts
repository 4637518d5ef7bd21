import { Duplex } from 'node:stream';
import type { Mailbox, MailboxStat } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import { checkOptions, describeValue, type OptionNames, unknownOption } from '../../client/option-names.js';
import { badSignal, badTimeout, MAX_TIMER_MS } from '../../client/option-values.js';
import type { DownEvent, PostboxProcess } from '../../client/process.js';
import type { SendOptions } from '../../client/send-options.js';
import type { SendResult } from '../../client/send-result.js';
import type { CodecName } from '../../protocol/codec.js';
import {
  AbortedError,
  BrokenPipeError,
  ClosedError,
  ConnectionLostError,
  InvalidArgumentError,
  PostboxError,
  TimeoutError,
} from '../../protocol/errors.js';
import { watchKernel, watchProcess } from './watch.js';
import {
  type ConnectionStyle,
  deferred,
  downText,
  processLabel,
  RESERVED_TYPE,
  type Reset,
  T_FIN,
  T_RST,
} from './wire.js';

/** Options of {@link Connection.send}. */
export interface ConnectionSendOptions {
  /** Message type, 1 … 2147483391 (default 1); the receiver sees it on the message. */
  type?: number | undefined;
  /** Stream style: give up after this many ms if the peer's mailbox stays full (ETIMEDOUT). */
  timeout?: number | undefined;
  /** Give up when aborted (ECANCELED); a send that gave up is never delivered. */
  signal?: AbortSignal | undefined;
  /** User headers, string to string. */
  headers?: Record<string, string> | undefined;
  /** Body codec; default by the body's kind (bytes, string, else msgpack). */
  codec?: CodecName | undefined;
}

/** Options of {@link Connection.receive}. */
const CONNECTION_SEND_OPTIONS: OptionNames<ConnectionSendOptions> = {
  type: true,
  timeout: true,
  signal: true,
  headers: true,
  codec: true,
};
const CONNECTION_RECEIVE_OPTIONS: OptionNames<ConnectionReceiveOptions> = { timeout: true, signal: true };
const CLOSE_OPTIONS: OptionNames<{ timeout?: number | undefined }> = { timeout: true };

/** Options of {@link Connection.receive}. */
export interface ConnectionReceiveOptions {
  /**
   * Give up after this many ms (ETIMEDOUT); a receive that gave up took nothing. 0, like
   * leaving it out, is no limit; at most 2147483647 (Node's longest timer).
   */
  timeout?: number | undefined;
  /** Give up when aborted (ECANCELED). */
  signal?: AbortSignal | undefined;
}

/** The process at the other end. */
export interface PeerInfo {
  readonly id: number;
  readonly name: string | null;
}

/** Messages dropped because a datagram connection's mailbox was full. */
export interface DropCounts {
  /** Sent to this side, dropped by this side's full mailbox (the kernel's count). */
  incoming: number;
  /** Sent by this side, dropped by the peer's full mailbox (each send's result said so). */
  outgoing: number;
}

/** @internal What dial() and accept() hand a new connection. */
export interface ConnectionInit {
  proc: PostboxProcess;
  style: ConnectionStyle;
  port: string;
  /** This side's mailbox: the peer sends here, only this process receives. */
  inbound: Mailbox;
  /** A handle on the peer's mailbox, for sending. */
  outbound: Mailbox;
  peer: PeerInfo;
  prefetch: number;
  allowHalfOpen?: boolean;
}

interface Waiter {
  resolve(m: Message | null): void;
  reject(err: Error): void;
}

const STREAM_CHUNK = 64 * 1024;
const FIN: SendOptions = Object.freeze({ type: T_FIN });
const RST: SendOptions = Object.freeze({ type: T_RST });
const DATAGRAM: SendOptions = Object.freeze({ onFull: 'drop' });

function noop(): void {}

/**
 * One end of a connection made by {@link dial} or {@link Port.accept}: two mailboxes, one per
 * direction, each owned by the process that receives from it.
 *
 * It speaks messages — {@link send}, {@link receive}, {@link messages} — and is also a Node
 * `Duplex`: `write()` sends (waiting while the peer's mailbox is full, in the stream style),
 * reading yields the data of each message (a `Buffer`; in the datagram style one chunk per
 * datagram), `end()` sends the end-of-data marker, `destroy()` closes. So
 * `pipeline(conn, transform, conn)` is an echo server. Read through one of the two, not both.
 *
 * The peer's end (its `end()` or `close()`) ends this side's reading cleanly after every message
 * sent before it. The peer's process terminating without ending ends it with `ECONNRESET` naming
 * that process, after the messages it did send.
 * A `write()` that fails because the peer went does not destroy the stream while this side is
 * reading: the reader has the peer's data first, then the error.
 *
 * @example
 * ```ts
 * const conn = await dial(proc, 'echo');
 * await conn.send('hello');
 * console.log((await conn.receive())?.text()); // 'hello'
 * await conn.close();
 * ```
 */
export class Connection extends Duplex {
  /** `'stream'` (reliable, ordered, backpressure) or `'datagram'` (bounded, never blocks). */
  readonly style: ConnectionStyle;
  /** The port it was made through. */
  readonly port: string;
  /** The process at the other end. */
  readonly peer: PeerInfo;
  /** Id of this side's mailbox (where the peer's messages wait). */
  readonly localMailbox: number;
  /** Id of the peer's mailbox (where this side's messages go). */
  readonly remoteMailbox: number;

  readonly #proc: PostboxProcess;
  readonly #inbound: Mailbox;
  readonly #outbound: Mailbox;
  readonly #prefetch: number;
  readonly #chunk: number;
  readonly #window: number;
  readonly #unwatch: () => void;
  readonly #downSeen = deferred<DownEvent>();
  #down: DownEvent | null = null;

  // Reading: one prefetching iterator over the inbound mailbox, shared by receive(), messages()
  // and the Readable side. A message goes straight to whoever waits for it; the stash holds one
  // only when its receiver gave up (timeout, abort) while the kernel was delivering it.
  #iter: AsyncIterator<Message> | null = null;
  #waiters: Waiter[] = [];
  #stash: Message[] = [];
  #pulling = false;
  #pumping = false;
  #heldError: Error | null = null;
  #finSeen = false;
  #readError: PostboxError | null = null;
  #received = 0;
  #readStarted = false;
  #duplexReading = false;

  // Writing.
  #sent = 0;
  #droppedOut = 0;
  #inflight = 0;
  #writeError: Error | null = null;
  #writeCallback: ((err?: Error | null) => void) | null = null;
  #drained: (() => void) | null = null;
  #finSent = false;
  /** end() was given a callback: the program hears how its end went, error included. */
  #endHeard = false;
  // A write that fails because the peer has gone (closed, or terminated) while this side is
  // reading must not fail the stream yet: Node destroys a Duplex on a write error, both sides, and
  // what the peer sent before it went would never be read. So the error waits until the reader
  // has reached the peer's end; writes until then are discarded, since nobody can take them (a
  // TCP socket's writes after its peer went are lost the same way, and reported later).
  #writeErrorWaits = false;
  #finalWaiting: ((error?: Error | null) => void) | null = null;

  #closing = false;
  #finalStat: MailboxStat | null = null;

  /** @internal Made by dial() and accept(). */
  constructor(init: ConnectionInit) {
    const datagram = init.style === 'datagram';
    super({
      allowHalfOpen: init.allowHalfOpen ?? true,
      readableObjectMode: datagram,
      readableHighWaterMark: datagram ? 16 : STREAM_CHUNK,
      writableHighWaterMark: STREAM_CHUNK,
    });
    this.#proc = init.proc;
    this.style = init.style;
    this.port = init.port;
    this.peer = Object.freeze({ ...init.peer });
    this.#inbound = init.inbound;
    this.#outbound = init.outbound;
    this.localMailbox = init.inbound.id;
    this.remoteMailbox = init.outbound.id;
    this.#prefetch = init.prefetch;
    const info = init.outbound.info;
    this.#chunk = Math.max(1, Math.min(STREAM_CHUNK, info.maxMessageSize, info.maxBytes));
    this.#window = datagram ? 64 : 8;
    const unwatchPeer = watchProcess(init.proc, init.peer.id, (e) => this.#peerDown(e));
    // A net.Socket that loses its peer emits 'error' and 'close' even while nobody reads or
    // writes it; without this, a connection left idle never learned the kernel had gone. Only
    // one that listens for 'error', as a net.Socket's user does: a program that uses receive()
    // learns from its calls, and an 'error' nobody listens for would crash it. One with data
    // still to be read is left to its reader, who gets the data, then the error.
    const unwatchKernel = watchKernel(init.proc, (err) => {
      if (!this.destroyed && this.readableLength === 0 && this.listenerCount('error') > 0) this.destroy(err);
    });
    this.#unwatch = () => {
      unwatchPeer();
      unwatchKernel();
    };
    this.once('end', () => this.#readerReachedEnd());
  }

  /** Data messages this side has sent (a dropped datagram counts: it was sent). */
  get sent(): number {
    return this.#sent;
  }

  /** Data messages this side has received. */
  get received(): number {
    return this.#received;
  }

  // ── sending ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Sends one message to the peer. Stream style: resolves once it is in the peer's mailbox,
   * waiting while that is full. Datagram style: never waits; when the peer's mailbox is full the
   * message is dropped and the result's outcome is `'dropped'`.
   *
   * Fails with `EPIPE` once this side has ended, or when the peer closed its side; with
   * `ECONNRESET` when the peer's process terminated.
   */
  async send(body: unknown, options: ConnectionSendOptions = {}): Promise<SendResult> {
    checkOptions(options, CONNECTION_SEND_OPTIONS, 'send()');
    const refused = this.#cannotSend();
    if (refused !== null) throw refused;
    const type = options.type ?? 1;
    if (!Number.isSafeInteger(type) || type < 1 || type >= RESERVED_TYPE) {
      throw new InvalidArgumentError(
        `type must be an integer from 1 to ${RESERVED_TYPE - 1}, not ${describeValue(type)}`,
      );
    }
    const o: SendOptions = { type };
    if (this.style === 'datagram') o.onFull = 'drop';
    if (options.timeout !== undefined) o.timeout = options.timeout;
    if (options.signal !== undefined) o.signal = options.signal;
    if (options.headers !== undefined) o.headers = options.headers;
    if (options.codec !== undefined) o.codec = options.codec;
    let r: SendResult;
    try {
      r = await this.#outbound.send(body, o);
    } catch (err) {
      throw await this.#sendFailed(err);
    }
    this.#sent++;
    if (r.outcome === 'dropped') this.#droppedOut++;
    return r;
  }

  /**
   * Datagrams dropped because a mailbox was full: those sent to this side (the kernel's count on
   * this side's mailbox) and those this side sent. Always 0 and 0 in the stream style.
   */
  async dropped(): Promise<DropCounts> {
    const stat = this.#finalStat ?? (await this.#inbound.stat());
    return { incoming: stat.dropped, outgoing: this.#droppedOut };
  }

  // ── receiving ────────────────────────────────────────────────────────────────────────────────

  /**
   * Receives the next message from the peer; `null` once the peer has ended its side and every
   * message before that was received. Rejects with `ECONNRESET` (after the peer's last message)
   * if the peer's process terminated without ending, `ENOTCONN` once this side is closed.
   */
  receive(options: ConnectionReceiveOptions = {}): Promise<Message | null> {
    const unknown = unknownOption(options, CONNECTION_RECEIVE_OPTIONS, 'receive()');
    if (unknown !== null) return Promise.reject(unknown);
    const { signal } = options;
    // This process keeps the time, so up to Node's longest timer; 0, like none, is no limit.
    const bad =
      badTimeout(options.timeout, 'timeout', 'receive()', MAX_TIMER_MS) ?? badSignal(signal, 'receive()');
    if (bad !== null) return Promise.reject(bad);
    const timeout = options.timeout || undefined;
    if (signal?.aborted)
      return Promise.reject(
        new AbortedError('receive aborted before it started', {}, { cause: signal.reason }),
      );
    if (timeout === undefined && signal === undefined) {
      return new Promise((resolve, reject) => this.#take({ resolve, reject }));
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        resolve(m) {
          finish();
          resolve(m);
        },
        reject(err) {
          finish();
          reject(err);
        },
      };
      const giveUp = (err: PostboxError): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i < 0) return; // already answered
        this.#waiters.splice(i, 1);
        waiter.reject(err);
      };
      const onAbort = (): void =>
        giveUp(new AbortedError(`receive on port '${this.port}' aborted`, {}, { cause: signal?.reason }));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeout !== undefined) {
        timer = setTimeout(
          () => giveUp(new TimeoutError(`receive on port '${this.port}' timed out after ${timeout} ms`)),
          timeout,
        );
      }
      this.#take(waiter);
    });
  }

  /**
   * The peer's messages as they come; the loop ends when the peer ends its side, or when this
   * side closes. Throws `ECONNRESET` if the peer's process terminated without ending.
   */
  async *messages(): AsyncGenerator<Message, void, undefined> {
    for (;;) {
      let m: Message | null;
      try {
        m = await this.receive();
      } catch (err) {
        if (this.#closing && err instanceof ClosedError) return;
        throw err;
      }
      if (m === null) return;
      yield m;
    }
  }

  #take(w: Waiter): void {
    this.#readStarted = true;
    if (this.#closing) return w.reject(this.#closedError());
    if (this.#stash.length > 0) return w.resolve(this.#stash.shift()!);
    if (this.#readError !== null) {
      w.reject(this.#readError);
      if (!this.#duplexReading) this.#readerReachedEnd();
      return;
    }
    if (this.#finSeen) {
      w.resolve(null);
      // The Duplex side's reader reaches the end at 'end', once it has read what is buffered.
      if (!this.#duplexReading) this.#readerReachedEnd();
      return;
    }
    this.#waiters.push(w);
    void this.#pull();
  }

  /** Whether this side's reader has had everything the peer sent, and its end. */
  #readEnded(): boolean {
    if (this.readableEnded || this.destroyed) return true;
    if (this.#duplexReading) return false;
    return this.#stash.length === 0 && (this.#finSeen || this.#readError !== null);
  }

  /** The reader has had the peer's last data: a write error that waited for it is due now. */
  #readerReachedEnd(): void {
    if (!this.#writeErrorWaits) return;
    this.#writeErrorWaits = false;
    const final = this.#finalWaiting;
    this.#finalWaiting = null;
    final?.(this.#writeError);
  }

  async #pull(): Promise<void> {
    if (this.#pulling) return;
    this.#pulling = true;
    try {
      while (this.#waiters.length > 0 && !this.#finSeen && !this.#closing) {
        const m = await this.#next();
        if (m === null) break;
        const w = this.#waiters.shift();
        if (w === undefined) this.#stash.push(m);
        else w.resolve(m);
      }
    } catch (err) {
      this.#readError ??= err instanceof PostboxError ? err : new ConnectionLostError(String(err));
    }
    this.#pulling = false;
    if (this.#readError !== null || this.#finSeen || this.#closing) {
      for (const w of this.#waiters.splice(0)) this.#take(w);
    }
  }

  /** The next data message, or null at the peer's end (or when this side closed). */
  async #next(): Promise<Message | null> {
    for (;;) {
      this.#iter ??= this.#inbound.messages({ prefetch: this.#prefetch });
      const it = this.#iter;
      let r: IteratorResult<Message>;
      try {
        r = await it.next();
      } catch (err) {
        if (this.#closing) return null;
        throw err;
      }
      if (r.done === true) {
        if (this.#closing) return null;
        throw new ConnectionLostError(`the mailbox of the connection on port '${this.port}' ended`);
      }
      const m = r.value;
      const from = m.sender;
      // Rights keep others out (mode 0620, the peer in the group); this is the second lock.
      if (from !== this.peer.id && from !== this.#proc.id) continue;
      const type = m.type;
      if (type < RESERVED_TYPE) {
        if (from !== this.peer.id) continue;
        this.#received++;
        return m;
      }
      if (type === T_FIN && from === this.peer.id) {
        this.#finSeen = true;
        this.#stopReading();
        return null;
      }
      if (type === T_RST) {
        let body: Reset = {};
        try {
          body = (m.body ?? {}) as Reset;
        } catch {
          // An undecodable reason is still a reset.
        }
        let err: PostboxError;
        if (from === this.#proc.id && body.down !== undefined) {
          err = this.#downError(body.down);
        } else if (from === this.peer.id) {
          err = new ConnectionLostError(
            `${processLabel(this.peer.id, this.peer.name)} reset the connection on port '${this.port}'${
              typeof body.reason === 'string' && body.reason !== '' ? `: ${body.reason}` : ''
            }`,
            { process: this.#peerSubject() },
          );
        } else {
          continue;
        }
        this.#readError = err;
        this.#stopReading();
        throw err;
      }
      // Anything else in the reserved range (a stray handshake message) is not data.
    }
  }

  /** Ends the iterator: messages it holds ahead go back to the mailbox. */
  #stopReading(): void {
    const it = this.#iter;
    this.#iter = null;
    void it?.return?.();
  }

  // ── Duplex ───────────────────────────────────────────────────────────────────────────────────

  override _read(): void {
    this.#duplexReading = true;
    if (this.#heldError !== null) {
      if (this.readableLength === 0) this.destroy(this.#heldError);
      return;
    }
    if (this.#pumping) return;
    this.#pumping = true;
    this.#pump();
  }

  #pump(): void {
    this.#take({
      resolve: (m) => {
        if (this.destroyed) {
          this.#pumping = false;
          return;
        }
        if (m === null) {
          this.#pumping = false;
          this.push(null);
          return;
        }
        let more: boolean;
        try {
          more = this.push(m.data);
        } catch (err) {
          // A 'data' listener threw (push calls it). As from a net.Socket's listener, that is
          // the application's uncaught exception, not this connection's failure: raise it on
          // its own, and keep reading for a process that survives it.
          process.nextTick(rethrow, err);
          more = !this.destroyed && this.readableLength < this.readableHighWaterMark;
        }
        if (more) this.#pump();
        else this.#pumping = false;
      },
      reject: (err) => {
        this.#pumping = false;
        if (this.destroyed) return;
        // A destroyed Readable drops what it holds: let the reader have the data first.
        if (this.readableLength === 0) this.destroy(err);
        else this.#heldError = err;
      },
    });
  }

  /** @internal Raises an error held back behind buffered data once the reader has taken it all. */
  override read(size?: number): unknown {
    const chunk: unknown = super.read(size);
    if (this.#heldError !== null && this.readableLength === 0 && !this.destroyed) {
      const err = this.#heldError;
      this.#heldError = null;
      process.nextTick(() => this.destroy(err));
    }
    return chunk;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.#writeError !== null) return this.#writeErrorWaits ? callback() : callback(this.#writeError);
    const refused = this.#cannotSend(true);
    if (refused !== null) return callback(refused);
    if (this.style === 'stream') {
      if (chunk.length === 0) return callback();
      for (let at = 0; at < chunk.length; at += this.#chunk) {
        this.#writeOne(
          at === 0 && chunk.length <= this.#chunk ? chunk : chunk.subarray(at, at + this.#chunk),
        );
      }
    } else {
      this.#writeOne(chunk);
    }
    // Up to a window of sends in flight; past it the write waits, and so backpressure from a
    // full mailbox (its blocked sends) reaches the writer.
    if (this.#inflight < this.#window) callback();
    else this.#writeCallback = callback;
  }

  #writeOne(piece: Buffer): void {
    this.#inflight++;
    const p = this.style === 'stream' ? this.#outbound.send(piece) : this.#outbound.send(piece, DATAGRAM);
    p.then(
      (r) => {
        this.#sent++;
        if (r.outcome === 'dropped') this.#droppedOut++;
        this.#settled();
      },
      (err: unknown) => {
        void this.#sendFailed(err).then((e) => {
          const first = this.#writeError === null;
          if (first) {
            this.#writeError = e;
            this.#writeErrorWaits = isGone(err) && this.#readStarted && !this.#readEnded();
          }
          this.#settled();
          // The write's callback was given when the send went out (a window of sends is in
          // flight), so unless a held callback or end() took the error just now, nothing would
          // report it before the next write: a writer that wrote its last and waits would never
          // hear of it. Fail the stream now, as a net.Socket's failed write does.
          if (first && !this.#writeErrorWaits && !this.destroyed) this.destroy(e);
        });
      },
    );
  }

  #settled(): void {
    this.#inflight--;
    const cb = this.#writeCallback;
    if (cb !== null && (this.#inflight < this.#window || this.#writeError !== null)) {
      this.#writeCallback = null;
      cb(this.#writeErrorWaits ? null : this.#writeError);
    }
    if (this.#inflight === 0 && this.#drained !== null) {
      const d = this.#drained;
      this.#drained = null;
      d();
    }
  }

  override end(cb?: () => void): this;
  override end(chunk: unknown, cb?: () => void): this;
  override end(chunk: unknown, encoding?: BufferEncoding, cb?: () => void): this;
  override end(...args: unknown[]): this {
    if (typeof args.at(-1) === 'function') this.#endHeard = true;
    return (super.end as (...a: unknown[]) => this).apply(this, args);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const fin = (): void => {
      if (this.#writeErrorWaits) {
        this.#finalWaiting = callback;
        return;
      }
      if (this.#writeError !== null) return callback(this.#writeError);
      if (this.#finSent) return callback();
      this.#finSent = true;
      this.#outbound.send('', FIN).then(
        () => callback(),
        (err: unknown) => {
          // The peer's mailbox is gone: it closed or died; reading says which. Nothing to end.
          if (isGone(err)) callback();
          // This process lost its kernel (or was ended by it): as for an idle connection, only
          // a program that listens for 'error', or gave end() a callback, is told so by the
          // stream; one that uses send() and receive() learns it from its calls, and an 'error'
          // nobody hears would kill it. An end() callback must not hear "ended": the peer never
          // got the end, and sees a reset.
          else if (this.#proc.conn.closed && this.listenerCount('error') === 0) {
            if (!this.#endHeard) return callback();
            // The callback is who listens: Node emits 'error' too, which it takes the place of.
            this.once('error', () => {});
            callback(err as Error);
          } else callback(err as Error);
        },
      );
    };
    if (this.#inflight === 0) fin();
    else this.#drained = fin;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#closing = true;
    this.#readerReachedEnd();
    this.#cleanup(error).then(
      () => callback(error),
      () => callback(error),
    );
  }

  // ── closing ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Closes this side: ends it (the end-of-data marker goes after everything written), stops
   * receiving and removes this side's mailbox; what the peer sent and this side did not read is
   * discarded, and the peer's later sends fail with `EPIPE`. Resolves once done. The end waits
   * while the peer's mailbox is full; with `timeout` the connection is closed anyway after that
   * many ms (0, like none, is no limit). Rejects only for bad options (EINVAL), before anything
   * is done.
   */
  async close(options: { timeout?: number | undefined } = {}): Promise<void> {
    checkOptions(options, CLOSE_OPTIONS, 'close()');
    const bad = badTimeout(options.timeout, 'timeout', 'close()', MAX_TIMER_MS);
    if (bad !== null) throw bad;
    if (!this.destroyed) {
      if (!this.writableFinished && this.#writeError === null) {
        if (!this.writableEnded) this.end();
        await settledWriting(this, options.timeout);
      }
      this.destroy();
    }
    if (!this.closed) await new Promise<void>((resolve) => this.once('close', () => resolve()));
  }

  /**
   * Closes this side when an `await using` block ends, as {@link close} does: gracefully, the
   * end after everything written. (A Node stream's own disposal destroys it, which here is a
   * reset that the peer reads as `ECONNRESET`.)
   *
   * @example
   * ```ts
   * await using conn = await dial(proc, 'echo');
   * conn.write('hello');
   * ```
   */
  override [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #cleanup(error: Error | null): Promise<void> {
    this.#unwatch();
    // Tell the peer, unless it is gone or was told. Not awaited: it may wait for room, behind
    // the data already sent.
    if (!this.#finSent && this.#down === null) {
      this.#finSent = true;
      const marker =
        error === null
          ? this.#outbound.send('', FIN)
          : this.#outbound.send({ reason: error.message } satisfies Reset, RST);
      marker.catch(noop);
    }
    this.#stopReading();
    for (const w of this.#waiters.splice(0)) this.#take(w);
    try {
      this.#finalStat = await this.#inbound.stat();
    } catch {
      // Gone already (the kernel or this process ended).
    }
    try {
      await this.#inbound.delete();
    } catch {
      // Likewise.
    }
    this.#inbound.close();
    this.#outbound.close();
  }

  // ── the peer's end ───────────────────────────────────────────────────────────────────────────

  #peerDown(e: DownEvent): void {
    this.#down = e;
    this.#downSeen.resolve(e);
    if (this.#closing || this.#finSeen) return;
    // Queue the news behind everything the peer managed to send: the reader gets its data first.
    this.#inbound.send({ down: e } satisfies Reset, RST).catch(noop);
  }

  #downError(e: DownEvent): ConnectionLostError {
    return new ConnectionLostError(
      `the connection on port '${this.port}' was reset: ${processLabel(this.peer.id, this.peer.name ?? e.name)} ${downText(e)}`,
      { process: this.#peerSubject() },
    );
  }

  #peerSubject(): string {
    return this.peer.name ?? String(this.peer.id);
  }

  #closedError(): ClosedError {
    return new ClosedError(`the connection on port '${this.port}' is closed`, {
      process: this.#peerSubject(),
    });
  }

  #cannotSend(writing = false): PostboxError | null {
    if (this.#closing) return this.#closedError();
    if (!writing && (this.writableEnded || this.#finSent)) {
      return new BrokenPipeError(
        `this side of the connection on port '${this.port}' has ended: it sends no more`,
      );
    }
    return null;
  }

  /** What a failed send means for the connection: the peer's mailbox gone is its end. */
  async #sendFailed(err: unknown): Promise<Error> {
    if (!isGone(err)) return err as Error;
    if (this.#down === null && !this.#finSeen) {
      // Closed on purpose (alive), or dead: then its monitor's word is on its way.
      const alive = await this.#proc.lookup(this.peer.id).then(
        () => true,
        () => false,
      );
      if (!alive) await Promise.race([this.#downSeen.promise, delay(1000)]);
    }
    if (this.#down !== null && !this.#finSeen) return this.#downError(this.#down);
    return new BrokenPipeError(
      `${processLabel(this.peer.id, this.peer.name)} closed the connection on port '${this.port}': it receives no more`,
      { process: this.#peerSubject() },
    );
  }
}

function isGone(err: unknown): boolean {
  return err instanceof PostboxError && (err.code === 'ENOENT' || err.code === 'EIDRM');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Resolves when the writable side has finished, failed or closed, or after `timeout` ms. */
function settledWriting(stream: Duplex, timeout: number | undefined): Promise<void> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      stream.off('finish', done);
      stream.off('error', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('finish', done);
    stream.on('error', done);
    stream.on('close', done);
    if (timeout) timer = setTimeout(done, timeout);
  });
}

function rethrow(err: unknown): never {
  throw err;
}

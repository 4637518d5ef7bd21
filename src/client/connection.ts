import { connect as netConnect, type Socket } from 'node:net';
import { type CodecName, encodeBody } from '../protocol/codec.js';
import { FrameDecoder, FrameError } from '../protocol/decoder.js';
import {
  AbortedError,
  ClosedError,
  ConnectionLostError,
  errorFromWire,
  InvalidArgumentError,
  MessageSizeError,
  type PostboxError,
  ProtocolError,
  SendManyError,
  TimeoutError,
  WireErrorCode,
} from '../protocol/errors.js';
import {
  Codec,
  type CodecCode,
  encodeJsonFrame,
  getU32,
  HEAD_BYTES,
  MAX_HEADERS_BYTES,
  MESSAGE_HEAD_BYTES,
  NO_MAX_SIZE,
  Off,
  OnFull,
  Op,
  Outcome,
  PingFlag,
  PROTOCOL_VERSION,
  putU32,
  RECALL_FRAME_BYTES,
  RECEIVE_FRAME_BYTES,
  ReceiveFlag,
  readInt64,
  TAKE_FRAME_BYTES,
  writeHead,
  writeInt64,
} from '../protocol/frame.js';
import { FrameWriter } from '../transport/frame-writer.js';
import { ReadArena } from '../transport/read-arena.js';
import { AckQueue } from './ack-queue.js';
import { answerOf, badEvent, badResult, type CallAnswer, type CallOp } from './answer-check.js';
import type { CallEvents } from './call-events.js';
import { type ConnectOptions, type JoinPlan, noKernelError, planJoin } from './connect-options.js';
import { flushAtExit, noFlushAtExit } from './exit-flush.js';
import { badKernelFrame, kernelErrorPayload, kernelPayload } from './frame-check.js';
import { Message } from './message.js';
import { describeValue } from './option-names.js';
import { refusedAtStart } from './option-values.js';
import { checkReceiveOptions, RECEIVE_OPTIONS, type ReceiveOptions } from './receive-options.js';
import { planSend, SEND_OPTIONS, type SendOptions, SendPlan, writeSendHead } from './send-options.js';
import { SendPromise } from './send-promise.js';
import type { SendManyResult, SendResult } from './send-result.js';
import { badWelcome, type Welcome } from './welcome.js';

const QUEUED: SendResult = Object.freeze({ outcome: 'queued' });
// Indexed by the wire's outcome; RECEIVED (4) is answered with its receiver, not from here.
const outcomeNames = ['queued', 'queued', 'replaced', 'dropped'] as const;

/** Receives the deliveries of a prefetching receive. */
export interface StreamSink {
  deliver(message: Message): void;
  fail(err: PostboxError): void;
  /** End of stream: the last writer closed and nothing is left. */
  end(): void;
  /**
   * The kernel wants the message `seq` back (its send gave up): removes it and says true if it
   * was delivered and not yet handed out; false if it was (its take says so).
   */
  recall(seq: number): boolean;
}

/** What takes a message handed over after the read's takes are out (a consumer). */
export interface MessageListener {
  message(message: Message): void;
}

type Resolve = (value: never) => void;
/** Rejects an operation; `request` says which, for settlers shared by many (sendMany). */
type Reject = (err: PostboxError, request: number) => void;

/** The handler of a kernel EVENT, and the call that announced it (null: registered by hand). */
interface EventWatch {
  readonly handler: (event: Record<string, unknown>) => void;
  readonly answer: CallAnswer | null;
}

interface Pending {
  kind: 'send' | 'receive' | 'call' | 'stream';
  resolve: Resolve;
  reject: Reject;
  sink?: StreamSink;
  /** Error to report instead of ECANCELED when the kernel confirms a cancel we asked for. */
  cancelAs?: PostboxError;
  /** A call's events: registered as its RESULT is read, before any EVENT behind it. */
  events?: CallEvents<unknown>;
  /** What a call's RESULT, and the EVENTs it announces, must hold. */
  answer?: CallAnswer;
  /** A held receive (ReceiveFlag.HOLD): its message stays in hand until {@link Connection.release}. */
  hold?: boolean;
}

/** Waits `ms`, or less if `signal` aborts first. */
function pauseUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Why {@link Connection.open} found no kernel to join, from one attempt. */
interface NoKernel {
  /** The socket's error code, or the kernel's: ECONNRESET (gone before it answered), ESHUTDOWN, ETIMEDOUT. */
  readonly code: string;
  /** Whether waiting may change it (`waitForKernel`). */
  readonly retry: boolean;
  /**
   * A kernel is there but its listening queue is full (EAGAIN on a Unix socket: thousands of
   * processes joining at once): tried again within the join's `timeout`, waiting or not.
   */
  readonly busy?: true;
  /** What the kernel said or did, thrown as it is to a caller that does not wait. */
  readonly error: PostboxError | null;
}

/**
 * One connection to the kernel: framing, pipelining and matching replies to requests. Sends
 * that complete at once are answered by a cumulative ACK, so a burst of sends costs no round
 * trip per message; every error still reaches the send it belongs to.
 */
export class Connection {
  readonly socket: Socket;
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private nextRequest = 1;
  // Sends awaiting the cumulative ACK, in request order: parallel arrays, no object per send.
  private readonly acks = new AckQueue<SendResult, PostboxError>();
  /** The head of a SEND written once per `sendMany` and copied for each of its messages. */
  private readonly pending = new Map<number, Pending>();
  /** The stream that had the last delivery (request id, 0 if none), so a run needs no lookup. */
  private lastStream = 0;
  private lastSink: StreamSink | null = null;
  /** Messages of held receives still in hand, with their request ids (see {@link release}). */
  private readonly held = new WeakMap<Message, number>();
  /** Requests waiting on each AbortSignal. */
  private readonly signals = new WeakMap<AbortSignal, Set<number>>();
  /**
   * The reason of the signal that cancelled each request, until the request ends: the kernel's
   * ECANCELED for it carries it as its cause, so a timeout can be told from a shutdown.
   */
  private readonly abortReasons = new Map<number, unknown>();
  private readonly monitors = new Map<number, EventWatch>();
  private flushScheduled = false;
  /** @internal A consumer's handler ran on a message of the chunk being read (receiveChunk). */
  handedInRead = false;
  /** Inside {@link receiveChunk}: what the application does on a message runs after it. */
  private reading = false;
  /**
   * Takes written at once in this read (holdCredit): they go out as the read ends, before any
   * loop body or handler can run on their messages, and so before it can crash on them.
   */
  takenAtOnce = false;
  /** Handlers of holdCredit consumers, with their messages, to run once those takes are out. */
  private readonly handoffListeners: MessageListener[] = [];
  private readonly handoffMessages: Message[] = [];
  private closedError: PostboxError | null = null;
  /**
   * close() was called: the end is this process's own doing, not the kernel's. From then on a
   * new send or receive fails at once with ENOTCONN (see {@link refusal}).
   */
  closedByUs = false;
  /** Set while a send or receive issued before close() was called is written (see {@link admit}). */
  private admitting = false;
  /** The promise of the close under way, once close() is called. */
  private closing: Promise<void> | null = null;
  private welcome: Welcome | null = null;
  /**
   * What to add to this machine's `Date.now()` for the kernel's clock, measured at the handshake
   * and, over TCP, at each heartbeat (to within half its round trip). Times that cross processes (message times, RPC deadlines)
   * are the kernel's, so that processes on machines whose clocks differ agree on them.
   */
  clockOffset = 0;
  /** When the last heartbeat that asked for the kernel's clock was written, and how many are out. */
  private clockPingAt = 0;
  private clockPings = 0;
  private onWelcome: ((w: Welcome) => void) | null = null;
  /** A WELCOME came: until then, bytes that are not frames come from something else than a kernel. */
  private welcomed = false;
  private onHelloError: ((e: PostboxError) => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  /** When this side last handed bytes to its socket (ms; kept only with a heartbeat, TCP). */
  private lastSent = 0;
  /** Reads so far: a heartbeat that finds this unchanged since the last one heard nothing. */
  private reads = 0;
  private readsAtBeat = 0;
  /** Heartbeats in a row that heard nothing from the kernel, and when the last one ran. */
  private quietBeats = 0;
  private lastBeat = 0;
  /**
   * Set while this side has been silent so long that the kernel may have ended it (a process
   * stopped, or its event loop held): deliveries already read are held until the kernel answers
   * a PING, since they may have gone back to the mailbox and on to another receiver.
   */
  private silent = false;
  /** The request id of the PING whose PONG ends {@link silent}. */
  private silencePing = 0;
  /** One-shot receives answered while {@link silent}: handed over once the kernel answers. */
  private heldReceives: { resolve: () => void; reject: (e: PostboxError) => void }[] = [];
  /** Called once {@link silent} ends, or the connection does. */
  private whenHeard: (() => void)[] = [];
  /**
   * Open prefetching iterators: closing writes the takes they have not yet reported, and ends
   * them as a loop's `break` would.
   */
  readonly streams = new Set<{
    flushTaken(): void;
    dropPushed(): void;
    release(): void;
    return(): unknown;
  }>();
  /** Streams whose takes go out with the next flush (takesDueAtFlush). */
  private takesDue: { flushTaken(): void }[] = [];
  /** Calls to make when the connection ends, for handles to settle (see also {@link whenEnded}). */
  readonly onClose = new Set<(err: PostboxError) => void>();
  readonly transport: 'unix' | 'tcp';
  readonly address: string;
  /**
   * @internal The token this connection joined with over TCP (null over a Unix socket): a child
   * handed a pipe (`spawn` with `handOver`) joins the same kernel with it.
   */
  token: string | null = null;

  private constructor(socket: Socket, transport: 'unix' | 'tcp', address: string) {
    this.socket = socket;
    this.transport = transport;
    this.address = address;
    // Deliveries are bounded by the kernel's max message size plus the head.
    this.decoder = new FrameDecoder(256 * 1024 * 1024, (buf, s, e) => this.onFrame(buf, s, e));
    this.writer = new FrameWriter(socket, () => this.scheduleFlush());
    socket.setNoDelay?.(true);
    socket.on('close', () =>
      this.fail(new ConnectionLostError(`the connection to the kernel at ${address} was lost`)),
    );
    socket.on('error', () => {});
  }

  /** Takes the bytes of one read; a stream the decoder cannot frame ends the connection. */
  private receiveChunk(chunk: Buffer): void {
    this.reads++;
    if (this.heartbeat !== null) this.checkSilence();
    this.reading = true;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.reading = false;
      this.handedInRead = false;
      this.takenAtOnce = false;
      this.handoffListeners.length = 0;
      this.handoffMessages.length = 0;
      // Before any WELCOME it is most likely not a kernel at all (a wrong port, another
      // service): say so, rather than blame a kernel for a frame of 1347703884 bytes ("HTTP").
      const why = !(err instanceof FrameError)
        ? String(err)
        : this.welcomed
          ? `bad frame from the kernel: ${err.message}`
          : `what answers at ${this.address} is not a Postbox kernel: it sent a bad frame before any WELCOME (${err.message})`;
      this.fail(new ProtocolError(why));
      this.socket.destroy();
      return;
    }
    this.reading = false;
    if (this.takenAtOnce) {
      // Messages taken at once are the process's for good (holdCredit: never handled twice, an
      // RPC request never run by two servers): their takes reach the kernel before anything
      // runs on them that could crash the process, and only then do the handlers run.
      this.takenAtOnce = false;
      this.flush();
      // That flush found this side had been silent (it was stopped in the middle of this read):
      // the takes may have come after the kernel ended it, so the handlers wait for its answer
      // (endSilence runs them, or drops them if it had).
      if (!this.silent) this.runHandoffs();
    }
    if (this.handedInRead) {
      // A consumer's handlers answered inside this read (an echo, a relay): their sends go out
      // now, with the takes, not at the end of the turn, which would cost a read that finds
      // nothing and a callback first (1.5–1.7 µs of a round trip, docs/performance.md). A
      // stream's takes alone wait for the turn, to go out with what the application sends on
      // them; a single receive's go now (above).
      this.handedInRead = false;
      if (this.flushScheduled && this.writer.size > 0) this.flush();
    }
  }

  /**
   * @internal Calls a holdCredit consumer's handler on a message as this read ends, once the
   * message's take is written (see {@link takenAtOnce}).
   */
  handOffAfterTakes(listener: MessageListener, message: Message): void {
    this.handoffListeners.push(listener);
    this.handoffMessages.push(message);
  }

  /**
   * @internal A take written at once (holdCredit): inside a read it goes out as the read ends;
   * outside one (a loop stepping through messages already at hand) it goes out now.
   */
  takeWritten(): void {
    if (this.reading) this.takenAtOnce = true;
    else this.flush();
  }

  private runHandoffs(): void {
    const listeners = this.handoffListeners;
    const messages = this.handoffMessages;
    // Ended by the kernel before it heard the takes: those messages went back to the mailbox.
    if (this.closedError !== null && !this.closedByUs) {
      listeners.length = 0;
      messages.length = 0;
      return;
    }
    // A handler may stop its consumer or end the connection: what is handed over still runs,
    // as it would have inside the read.
    for (let i = 0; i < messages.length; i++) listeners[i]!.message(messages[i]!);
    listeners.length = 0;
    messages.length = 0;
  }

  /** Opens a connection and does the handshake. */
  static async open(options: ConnectOptions): Promise<Connection> {
    const plan = planJoin(options);
    const { address, wait, timeout, signal } = plan;
    if (signal?.aborted)
      throw new AbortedError(
        `connect() to ${address} was aborted before it started`,
        {},
        { cause: signal.reason },
      );
    const begun = Date.now();
    const deadline = begun + wait;
    for (let pause = 20; ; pause = Math.min(pause * 2, 500)) {
      const joined = await Connection.join(plan);
      if (joined instanceof Connection) return joined;
      const busyFor = Math.max(begun + timeout - Date.now(), 0);
      const left = Math.max(deadline - Date.now(), joined.busy === true ? busyFor : 0);
      if (joined.retry && left > 0) {
        await pauseUnlessAborted(Math.min(pause, left), signal);
        if (signal?.aborted)
          throw new AbortedError(
            `connect() was aborted while waiting for a kernel at ${address}`,
            {},
            { cause: signal.reason },
          );
        continue;
      }
      // Not waiting: the kernel's own word (ECONNRESET, ESHUTDOWN) as it is.
      if (joined.error !== null && (wait === 0 || joined.busy === true)) throw joined.error;
      throw noKernelError(plan, joined.code, joined.retry);
    }
  }

  /**
   * One attempt to join the kernel at `address`: the socket, the HELLO and the WELCOME. Returns
   * the connection, or why there was no kernel to join, and whether that may change by waiting:
   * nothing listening yet, or a kernel that went away (killed, restarting) or said it is
   * shutting down before it welcomed us. A kernel that answers and refuses throws.
   */
  private static async join(plan: JoinPlan): Promise<Connection | NoKernel> {
    const { transport, address, tcp, hello, timeout, signal } = plan;
    // Reads go straight to the connection's decoder. A kernel says nothing before our HELLO, but
    // a peer that is not one may: what comes before the connection exists is kept for it, so
    // the decoder judges it (a clear EPROTO) instead of it being lost.
    let conn: Connection | null = null;
    const early: Buffer[] = [];
    const arena = new ReadArena((chunk) => {
      if (conn !== null) conn.receiveChunk(chunk);
      else early.push(chunk);
    });
    const socket =
      tcp !== null
        ? netConnect({ port: tcp.port, host: tcp.host, onread: arena.onread })
        : netConnect({ path: address, onread: arena.onread });
    let onAbort: (() => void) | undefined;
    // The join's timeout counts from here: a host that drops the connection's packets (a
    // firewall, a machine that is down, a kernel stopped with its listening backlog full)
    // leaves the connect to the OS's own limit, some two minutes on Linux, whatever it says.
    const started = Date.now();
    let connectTimer: NodeJS.Timeout | undefined;
    const failed = await new Promise<NodeJS.ErrnoException | 'timeout' | null>((resolve) => {
      socket.once('connect', () => resolve(null));
      socket.once('error', resolve);
      onAbort = () => resolve(null);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Past 2^31 - 1 ms Node would fire at once: that long is as good as forever.
      if (timeout < 2 ** 31) connectTimer = setTimeout(() => resolve('timeout'), timeout);
    });
    clearTimeout(connectTimer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    if (signal?.aborted) {
      socket.destroy();
      throw new AbortedError(
        `connect() was aborted while connecting to ${address}`,
        {},
        { cause: signal.reason },
      );
    }
    if (failed === 'timeout') {
      socket.destroy();
      // Worth waiting out, as a kernel that does not answer is: one may be there later.
      return {
        code: 'ETIMEDOUT',
        retry: true,
        error: new TimeoutError(
          `nothing at ${address} took the connection within ${timeout} ms: is the address right, and do the network and its firewalls let it through?`,
        ),
      };
    }
    if (failed !== null) {
      socket.destroy();
      // A reset here is a kernel killed with this connection still in its listening socket's
      // backlog (TCP completes the handshake before the kernel accepts): it went away before it
      // answered, as when it drops a connection it took, and a new one may come where it was.
      if (failed.code === 'ECONNRESET')
        return {
          code: failed.code,
          retry: true,
          error: new ConnectionLostError(
            `the connection to the kernel at ${address} was lost before it answered`,
          ),
        };
      // A Unix socket's listening queue is full: the kernel is there, behind others joining at
      // once (a pool of workers starting). Their joins take it a moment; told "no kernel is
      // answering", a process would give up on a kernel that is answering.
      if (failed.code === 'EAGAIN' && transport === 'unix')
        return {
          code: failed.code,
          retry: true,
          busy: true,
          error: new TimeoutError(
            `the kernel at ${address} took no new connection within ${timeout} ms: its queue of connections waiting to be accepted stayed full (EAGAIN; is the kernel stopped, or are more processes joining at once than it takes?)`,
          ),
        };
      // Otherwise only "nobody listens here yet" is worth waiting out; the rest will not change.
      const absent = failed.code === 'ENOENT' || failed.code === 'ECONNREFUSED';
      return { code: failed.code ?? failed.message, retry: absent, error: null };
    }
    const opened = new Connection(socket, transport, address);
    conn = opened;
    for (const chunk of early) opened.receiveChunk(chunk);
    if (opened.closedError !== null) throw opened.closedError;
    const asked = Date.now();
    let welcome: Welcome;
    let timer: NodeJS.Timeout | undefined;
    try {
      welcome = await new Promise<Welcome>((resolve, reject) => {
        opened.onWelcome = resolve;
        opened.onHelloError = reject;
        opened.writer.append(encodeJsonFrame(Op.HELLO, 0, PROTOCOL_VERSION, 0, hello));
        opened.flush();
        if (timeout < 2 ** 31)
          timer = setTimeout(
            () =>
              opened.fail(new TimeoutError(`the kernel at ${address} did not answer within ${timeout} ms`)),
            timeout - (Date.now() - started),
          );
        onAbort = () =>
          opened.fail(
            new AbortedError(
              `connect() was aborted before the kernel at ${address} answered`,
              {},
              { cause: signal?.reason },
            ),
          );
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    } catch (err) {
      const code = (err as PostboxError).code;
      // Aborted, or refused: the kernel drops a process that left before its welcome.
      socket.destroy();
      // A kernel killed or restarting can take the connection and then drop it (its listening
      // socket outlived the connections it had), or say it is shutting down: a new kernel may
      // come where it was. One stopped may answer later.
      if (code !== 'ECONNRESET' && code !== 'ESHUTDOWN' && code !== 'ETIMEDOUT') throw err;
      return { code, retry: true, error: err as PostboxError };
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
    const answered = Date.now();
    opened.welcome = welcome;
    flushAtExit(opened);
    if (typeof hello.token === 'string') opened.token = hello.token;
    // The kernel read its clock somewhere between our two readings: the middle is the best guess.
    const kernelTime = welcome.kernel.time;
    if (typeof kernelTime === 'number' && Number.isFinite(kernelTime))
      opened.clockOffset = Math.round(kernelTime - (asked + answered) / 2);
    if (transport === 'tcp') {
      // Each heartbeat also asks for the kernel's clock: the offset follows a clock stepped later.
      opened.heartbeat = setInterval(() => opened.beat(), welcome.limits.heartbeatMs);
      opened.heartbeat.unref();
      opened.lastSent = Date.now();
      opened.lastBeat = opened.lastSent;
    }
    return opened;
  }

  get info(): Welcome {
    return this.welcome!;
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  /**
   * @internal Why the connection ended without this process's say: the kernel went, or ended
   * this process (silent, a bad frame). Null while it is open, and once this process's own
   * close() ended it: the kernel answered its goodbye, so it had handled all that came before,
   * and closed every handle left open as it let the process go.
   */
  get lostWith(): PostboxError | null {
    if (this.closedByUs && this.closedError instanceof ClosedError) return null;
    return this.closedError;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(flushConnection, this);
  }

  /** @internal The turn's flush, unless a read has already written what gathered. */
  flushIfScheduled(): void {
    if (this.flushScheduled) this.flush();
  }

  /** Writes what has gathered now. */
  flush(): void {
    // Takes first, while a flush still counts as scheduled: writing them schedules no other.
    if (this.takesDue.length > 0) {
      const due = this.takesDue;
      this.takesDue = [];
      for (const s of due) s.flushTaken();
    }
    this.flushScheduled = false;
    if (this.heartbeat !== null && this.writer.size > 0) this.noteSending();
    this.writer.flush();
  }

  /**
   * TCP: bytes go out now. A write is not proof the kernel still has this process: one that
   * comes after a silence (a process continued after SIGSTOP flushes what it had gathered, a
   * send, a heartbeat, before it reads its socket) may reach a kernel that ended it meanwhile,
   * and then what it had read, and reads next, went back to the mailboxes. Counting such a
   * write as heard hid the silence from {@link checkSilence}, and it handed out messages
   * other receivers had already got (chaos test, heartbeat, seed 316). The PING goes last, after
   * the takes, so its PONG also says they were heard.
   */
  private noteSending(): void {
    if (!this.silent && this.closedError === null && this.mayHaveBeenEnded()) this.beginSilence();
    this.lastSent = Date.now();
  }

  /** Silent past the kernel's heartbeat limit (it ends a process after 3 intervals), with room for the network. */
  private mayHaveBeenEnded(): boolean {
    return Date.now() - this.lastSent > 2 * this.welcome!.limits.heartbeatMs;
  }

  /** Holds deliveries and asks the kernel, with a PING written now, whether it still has us. */
  private beginSilence(): void {
    this.silent = true;
    this.silencePing = this.nextRequest++;
    this.ping(this.silencePing);
  }

  /**
   * TCP: whether this side may have been silent past the kernel's heartbeat limit (it ends a
   * process it has not heard from in 3 heartbeats). If so, it asks the kernel with a PING, and
   * until the PONG comes, deliveries already read are held back: a process the kernel ended
   * has had them given back to the mailbox, maybe to another receiver, and reads its
   * termination notice instead of the PONG. Twice the heartbeat leaves room for the network.
   */
  checkSilence(): boolean {
    if (this.silent) return true;
    if (this.heartbeat === null || this.closedError !== null || !this.mayHaveBeenEnded()) return false;
    this.beginSilence();
    this.flush();
    return true;
  }

  /** Calls fn once the kernel has answered after a silence (or the connection has ended). */
  afterSilence(fn: () => void): void {
    if (!this.silent || this.closedError !== null) fn();
    else this.whenHeard.push(fn);
  }

  /** True while deliveries are held (see {@link checkSilence}). */
  get holdingDeliveries(): boolean {
    return this.silent;
  }

  private endSilence(err: PostboxError | null): void {
    this.silent = false;
    const held = this.heldReceives;
    const heard = this.whenHeard;
    this.heldReceives = [];
    this.whenHeard = [];
    for (const r of held) {
      if (err === null) r.resolve();
      else r.reject(err);
    }
    // Before what the streams held: those handlers' messages came first.
    this.runHandoffs();
    for (const s of this.streams) s.release();
    for (const fn of heard) fn();
  }

  /**
   * A stream's takes are written with this turn's output, just before it goes out: one write
   * and one scheduled callback for both, where a callback of their own would cost a second.
   */
  takesDueAtFlush(stream: { flushTaken(): void }): void {
    this.takesDue.push(stream);
    this.scheduleFlush();
  }

  /**
   * TCP, each heartbeat: a PING, and a check that the kernel still answers. The kernel answers
   * every PING, so a link over which nothing has come for 3 heartbeats is dead: a kernel
   * stopped or wedged, or a link that went dark without a FIN or RST (a NAT or firewall that
   * forgot the connection, a cable pulled, a peer machine gone). TCP alone notices only when
   * its retransmissions of these PINGs give up, some 15 minutes on (never, behind a middlebox
   * that still acknowledges them), and until then every pending call (a receive, an iterator,
   * an RPC call, `closed`, `close()`) hangs.
   * This is the kernel's own rule for its processes, the other way. A heartbeat that runs late
   * means this side was held (stopped, its event loop busy): what the kernel sent meanwhile
   * may be waiting unread behind it, so the count starts again rather than blame the kernel.
   */
  private beat(): void {
    const now = Date.now();
    const hb = this.welcome!.limits.heartbeatMs;
    const late = now - this.lastBeat > 2 * hb;
    this.lastBeat = now;
    if (late || this.reads !== this.readsAtBeat) this.quietBeats = 0;
    else if (++this.quietBeats >= 3) {
      this.fail(
        new ConnectionLostError(
          `the connection to the kernel at ${this.address} was lost: heard nothing from it for over ${3 * hb} ms (3 heartbeats)`,
        ),
      );
      // Not ended but destroyed: a FIN would wait on a link that carries nothing, and so
      // would close().
      this.socket.destroy();
      return;
    }
    this.readsAtBeat = this.reads;
    this.ping(0, true);
  }

  private ping(request = 0, clock = false): void {
    if (this.closed) return;
    const o = this.writer.reserve(HEAD_BYTES);
    writeHead(this.writer.buf, o, HEAD_BYTES, Op.PING, clock ? PingFlag.CLOCK : 0, 0, request);
    this.writer.commit(HEAD_BYTES);
    if (clock) {
      this.clockPingAt = Date.now();
      this.clockPings++;
    }
  }

  /** A PONG with the kernel's clock: the offset again, if it answers the last such PING sent. */
  private clockPong(buf: Buffer, start: number, end: number): void {
    if (this.clockPings > 0) this.clockPings--;
    // With another still out, this answers an older PING, whose time is not kept.
    if (this.clockPings !== 0 || end - start < HEAD_BYTES + 8) return;
    const kernelTime = buf.readDoubleLE(start + HEAD_BYTES);
    if (Number.isFinite(kernelTime))
      this.clockOffset = Math.round(kernelTime - (this.clockPingAt + Date.now()) / 2);
  }

  // ── requests ────────────────────────────────────────────────────────────────────────────────

  /**
   * Sends a message frame to a mailbox id, or to a process id with `toProcess`. `name` is the
   * mailbox's name, when known, for errors raised here.
   */
  send(
    target: number,
    toProcess: boolean,
    body: unknown,
    options: SendOptions | undefined,
    name: string | null = null,
  ): Promise<SendResult> {
    if (this.closedError !== null || this.closedByUs) {
      const refused = this.refusal();
      if (refused !== null) return Promise.reject(refused);
    }
    // The common case — bytes or a string, no options — takes the short road: no option
    // parsing, no intermediate objects; one frame written in place and one promise.
    if (options === undefined) {
      if (body instanceof Uint8Array) return this.sendPlain(target, toProcess, Codec.BYTES, body, null, name);
      if (typeof body === 'string') return this.sendPlain(target, toProcess, Codec.STRING, null, body, name);
    }
    const refused = refusedAtStart(options, SEND_OPTIONS, 'send');
    if (refused !== null) return Promise.reject(refused);
    const o = options ?? EMPTY_OPTIONS;
    const signal = o.signal;
    const encoded = encodeChecked(body, o.codec);
    if (encoded instanceof InvalidArgumentError) return Promise.reject(encoded);
    const plan = planSend(o, toProcess);
    if (!(plan instanceof SendPlan)) return Promise.reject(plan);
    const bodyLen =
      typeof encoded.bytes === 'string' ? Buffer.byteLength(encoded.bytes) : encoded.bytes.length;
    const tooBig = this.checkSize(bodyLen, plan.headLen, target, toProcess, name);
    if (tooBig !== null) return Promise.reject(tooBig);
    const receipt = o.receipt === true;
    const id = this.writePlanned(target, plan, encoded.code, encoded.bytes, bodyLen);
    if (signal === undefined) return receipt ? this.awaitIndividual(id) : this.awaitAck(id);
    return new Promise<SendResult>((resolve, reject) => {
      this.watchSignal(signal, id);
      const res = (r: SendResult): void => {
        this.unwatchSignal(signal, id);
        resolve(r);
      };
      const rej = (e: PostboxError): void => {
        this.unwatchSignal(signal, id);
        reject(e);
      };
      if (receipt) {
        this.pending.set(id, { kind: 'send', resolve: res as Resolve, reject: rej });
      } else {
        this.acks.push(id, { resolve: res, reject: rej });
      }
    });
  }

  /**
   * Sends many messages, in order, with the same options: one promise for all of them instead of
   * one each. Every body is encoded and checked before any is written, so bad input sends none.
   */
  sendMany(
    target: number,
    toProcess: boolean,
    bodies: Iterable<unknown>,
    options: SendOptions | undefined,
    label: string,
    /**
     * The mailbox, when known: its own size limits are checked up front with the kernel's, and
     * its name is given in errors raised here.
     */
    sizes?: { maxMessageSize: number; messageSize: number; name: string | null },
  ): Promise<SendManyResult> {
    const refused = this.refusal() ?? refusedAtStart(options, SEND_OPTIONS, 'sendMany');
    if (refused !== null) return Promise.reject(refused);
    const o = options ?? EMPTY_OPTIONS;
    const signal = o.signal;
    if (o.receipt === true)
      return Promise.reject(
        new InvalidArgumentError('sendMany takes no receipt: send() each message that needs one'),
      );
    if (typeof (bodies as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function')
      return Promise.reject(
        new InvalidArgumentError(
          `sendMany takes an array or other iterable of bodies, not ${String(bodies)}`,
        ),
      );
    const list = Array.isArray(bodies) ? (bodies as unknown[]) : Array.from(bodies);
    const n = list.length;
    const plan = planSend(o, toProcess);
    if (!(plan instanceof SendPlan)) return Promise.reject(plan);
    // Bytes and strings are written as they are, checked in a first pass; a batch with other
    // bodies (or a codec) is encoded first, into arrays, so that nothing is written if one fails.
    let encoded: { codes: Uint8Array; payloads: (Uint8Array | string)[] } | null = null;
    for (let i = 0; i < n; i++) {
      const body = list[i];
      let bodyLen: number;
      if (encoded === null && o.codec === undefined && body instanceof Uint8Array) bodyLen = body.length;
      else if (encoded === null && o.codec === undefined && typeof body === 'string')
        bodyLen = Buffer.byteLength(body);
      else {
        if (encoded === null) {
          encoded = { codes: new Uint8Array(n), payloads: new Array<Uint8Array | string>(n) };
          for (let k = 0; k < i; k++) {
            const earlier = list[k] as Uint8Array | string;
            encoded.codes[k] = typeof earlier === 'string' ? Codec.STRING : Codec.BYTES;
            encoded.payloads[k] = earlier;
          }
        }
        const e = encodeChecked(body, o.codec);
        if (e instanceof InvalidArgumentError)
          return Promise.reject(new InvalidArgumentError(`message ${i}: ${e.message}`, {}, { cause: e }));
        encoded.codes[i] = e.code;
        encoded.payloads[i] = e.bytes;
        bodyLen = typeof e.bytes === 'string' ? Buffer.byteLength(e.bytes) : e.bytes.length;
      }
      const tooBig = this.checkSize(bodyLen, plan.headLen, target, toProcess, sizes?.name ?? null);
      if (tooBig !== null)
        return Promise.reject(
          new MessageSizeError(
            `message ${i}: ${tooBig.message}`,
            {
              ...(tooBig.mailbox !== undefined ? { mailbox: tooBig.mailbox } : {}),
              ...(tooBig.process !== undefined ? { process: tooBig.process } : {}),
            },
            { size: bodyLen + plan.headLen, limit: this.welcome!.limits.maxMessageSize },
          ),
        );
      // The mailbox's limits too: the kernel would refuse only that message, after the ones
      // before it went in, and sendMany promises a bad body sends none.
      // Said as the kernel says it: the mailbox, the size and the limit (a fixed size's is that size).
      const size = bodyLen + plan.headLen;
      if (sizes !== undefined && size > sizes.maxMessageSize)
        return Promise.reject(
          new MessageSizeError(
            `message ${i}: a ${size}-byte message is over the ${sizes.maxMessageSize}-byte limit of ${label}`,
            { mailbox: sizes.name ?? `#${target}` },
            { size, limit: sizes.maxMessageSize },
          ),
        );
      if (sizes !== undefined && sizes.messageSize !== 0 && size !== sizes.messageSize)
        return Promise.reject(
          new MessageSizeError(
            `message ${i}: ${label} takes messages of exactly ${sizes.messageSize} bytes; this one is ${size}`,
            { mailbox: sizes.name ?? `#${target}` },
            { size, limit: sizes.messageSize },
          ),
        );
    }
    if (n === 0) return Promise.resolve({ sent: 0 });
    return new Promise<SendManyResult>((resolve, reject) => {
      let first = 0;
      let left = n;
      let failures: { index: number; error: PostboxError }[] | null = null;
      // With onFull 'drop' or 'replace-oldest', a message answered on its own may not be in the
      // mailbox, or may have pushed an older one out: counted, so the result does not say every
      // message went in when some were dropped (they were lost without a word to the sender).
      let dropped = 0;
      let replaced = 0;
      const settled = (count: number): void => {
        left -= count;
        if (left > 0) return;
        // The batch is done: an abort now has nothing left to cancel.
        if (signal !== undefined) for (let k = 0; k < n; k++) this.unwatchSignal(signal, first + k);
        if (failures === null) {
          const result: SendManyResult = { sent: n - dropped };
          if (dropped > 0) result.dropped = dropped;
          if (replaced > 0) result.replaced = replaced;
          return resolve(result);
        }
        failures.sort((a, b) => a.index - b.index);
        reject(new SendManyError(label, n, failures));
      };
      const accepted = (r: SendResult, count: number): void => {
        if (r.outcome === 'dropped') dropped += count;
        else if (r.outcome === 'replaced') replaced += count;
        settled(count);
      };
      const refused = (err: PostboxError, request: number): void => {
        if (failures === null) failures = [];
        failures.push({ index: request - first, error: err });
        settled(1);
      };
      first = this.writeSendRun(target, plan, encoded?.codes ?? null, encoded?.payloads ?? list);
      // An abort cancels every message of the batch still waiting in the kernel (a CANCEL for
      // one already settled is ignored there).
      if (signal !== undefined) for (let k = 0; k < n; k++) this.watchSignal(signal, first + k);
      // One entry for the whole batch: its request ids are consecutive.
      this.acks.pushRange(first, first + n - 1, { resolve: accepted, reject: refused });
    });
  }

  /** EMSGSIZE if a body of this size with these headers is over the kernel's limit. */
  private checkSize(
    bodyLen: number,
    headLen: number,
    target: number,
    toProcess: boolean,
    name: string | null,
  ): MessageSizeError | null {
    const limit = this.welcome!.limits.maxMessageSize;
    if (bodyLen + headLen <= limit) return null;
    return overKernelLimit(bodyLen + headLen, limit, target, toProcess, name);
  }

  private writePlanned(
    target: number,
    plan: SendPlan,
    codec: number,
    bytes: Uint8Array | string,
    bodyLen: number,
  ): number {
    return this.writeSend(
      target,
      plan.flags,
      codec,
      plan.onFull,
      plan.timeout,
      plan.priority,
      plan.type,
      plan.headers,
      plan.headLen,
      bytes,
      bodyLen,
    );
  }

  private sendPlain(
    target: number,
    toProcess: boolean,
    codec: CodecCode,
    bytes: Uint8Array | null,
    text: string | null,
    name: string | null,
  ): Promise<SendResult> {
    const bodyLen = text !== null ? Buffer.byteLength(text) : bytes!.length;
    const limit = this.welcome!.limits.maxMessageSize;
    if (bodyLen > limit) return Promise.reject(overKernelLimit(bodyLen, limit, target, toProcess, name));
    const id = this.writeSend(
      target,
      toProcess ? 2 : 0,
      codec,
      OnFull.WAIT,
      0,
      0,
      1,
      null,
      0,
      text ?? bytes!,
      bodyLen,
    );
    return this.awaitAck(id);
  }

  /**
   * Writes a SEND frame for each body, with consecutive request ids; returns the first. Each
   * head is written whole, in words: that is faster than copying a prepared one and patching
   * it (11 against 23 ns a head, measured in isolation).
   */
  private writeSendRun(
    target: number,
    plan: SendPlan,
    codes: Uint8Array | null,
    bodies: readonly unknown[],
  ): number {
    const headLen = plan.headLen;
    const headers = plan.headers;
    const w = this.writer;
    const first = this.nextRequest;
    const n = bodies.length;
    for (let i = 0; i < n; i++) {
      const body = bodies[i] as Uint8Array | string;
      const text = typeof body === 'string';
      const bodyLen = text ? Buffer.byteLength(body) : body.length;
      const size = MESSAGE_HEAD_BYTES + headLen + bodyLen;
      const off = w.reserve(size);
      const b = w.buf;
      const codec = codes !== null ? codes[i]! : text ? Codec.STRING : Codec.BYTES;
      writeSendHead(
        w.view,
        off,
        size,
        first + i,
        target,
        plan.flags,
        codec,
        plan.onFull,
        plan.timeout,
        plan.priority,
        plan.type,
        headLen,
      );
      let p = off + MESSAGE_HEAD_BYTES;
      if (headers !== null) p += b.write(headers, p, 'utf8');
      if (text) b.write(body, p, 'utf8');
      else if (bodyLen > 0) b.set(body, p);
      w.commit(size);
      if (w.length >= 256 * 1024) this.flush();
    }
    this.nextRequest = first + n;
    return first;
  }

  /** Writes a SEND frame into the output; returns its request id. */
  private writeSend(
    target: number,
    flags: number,
    codec: number,
    onFull: number,
    timeout: number,
    priority: number,
    type: number,
    headers: string | null,
    headLen: number,
    body: Uint8Array | string,
    bodyLen: number,
  ): number {
    const size = MESSAGE_HEAD_BYTES + headLen + bodyLen;
    const w = this.writer;
    const off = w.reserve(size);
    const b = w.buf;
    const id = this.nextRequest++;
    writeSendHead(w.view, off, size, id, target, flags, codec, onFull, timeout, priority, type, headLen);
    let p = off + MESSAGE_HEAD_BYTES;
    if (headers !== null) p += b.write(headers, p, 'utf8');
    if (typeof body === 'string') b.write(body, p, 'utf8');
    else if (bodyLen > 0) b.set(body, p);
    w.commit(size);
    if (w.length >= 256 * 1024) this.flush();
    return id;
  }

  /** A promise settled by the cumulative ACK (or by its own SENT, BLOCKED or ERROR). */
  private awaitAck(id: number): Promise<SendResult> {
    const p = new SendPromise();
    this.acks.push(id, p);
    return p;
  }

  private awaitIndividual(id: number): Promise<SendResult> {
    const p = new Promise<SendResult>(capture);
    this.pending.set(id, { kind: 'send', resolve: captured.resolve as Resolve, reject: captured.reject });
    return p;
  }

  /**
   * One 'abort' listener per signal per connection, however many operations share the signal:
   * an EventTarget with thousands of listeners makes every add and remove slow.
   */
  private watchSignal(signal: AbortSignal, id: number): void {
    let ids = this.signals.get(signal);
    if (ids === undefined) {
      const set = new Set<number>();
      ids = set;
      this.signals.set(signal, set);
      signal.addEventListener(
        'abort',
        () => {
          this.signals.delete(signal);
          for (const request of set) {
            this.abortReasons.set(request, signal.reason);
            this.cancel(request);
          }
        },
        { once: true },
      );
    }
    ids.add(id);
  }

  private unwatchSignal(signal: AbortSignal, id: number): void {
    this.signals.get(signal)?.delete(id);
    // The request has ended (its answer, the ECANCELED made from it included, is given).
    if (this.abortReasons.size !== 0) this.abortReasons.delete(id);
  }

  /**
   * A single receive: resolves with the message, or null (nowait and nothing there). `hold`: the
   * message stays in this process's hands, as the kernel sees it (`postbox ps`), until
   * {@link release} (a holdCredit consumer that receives one message at a time).
   */
  receive(
    target: number,
    inbox: boolean,
    from: number,
    options: ReceiveOptions | undefined,
    owner?: Set<number>,
    hold = false,
  ): Promise<Message | null> {
    const refused = this.refusal() ?? refusedAtStart(options, RECEIVE_OPTIONS, 'receive');
    if (refused !== null) return Promise.reject(refused);
    const o = options ?? EMPTY_OPTIONS;
    const signal = o.signal;
    const bad = checkReceiveOptions(o);
    if (bad !== null) return Promise.reject(bad);
    const id = this.writeReceive(target, inbox, from, o, 1, false, hold);
    return new Promise<Message | null>((resolve, reject) => {
      const entry: Pending = { kind: 'receive', resolve: resolve as Resolve, reject };
      if (hold) entry.hold = true;
      if (signal !== undefined || owner !== undefined) {
        if (signal !== undefined) this.watchSignal(signal, id);
        owner?.add(id);
        entry.resolve = ((m: Message | null) => {
          if (signal !== undefined) this.unwatchSignal(signal, id);
          owner?.delete(id);
          resolve(m);
        }) as Resolve;
        entry.reject = (e) => {
          if (signal !== undefined) this.unwatchSignal(signal, id);
          owner?.delete(id);
          reject(e);
        };
      }
      this.pending.set(id, entry);
    });
  }

  /** Opens a prefetching receive; returns its request id. Deliveries go to the sink. */
  openStream(
    target: number,
    inbox: boolean,
    from: number,
    options: ReceiveOptions,
    credit: number,
    sink: StreamSink,
  ): number {
    // A connection already ended answers nothing: the stream fails at its first step, as a
    // receive() does at once (it waited for ever, where every other call failed ENOTCONN). In a
    // microtask, so that the stream being built is whole when it fails.
    const ended = this.refusal();
    if (ended !== null) {
      queueMicrotask(() => sink.fail(ended));
      return 0;
    }
    const id = this.writeReceive(target, inbox, from, options, credit, true);
    this.pending.set(id, { kind: 'stream', resolve: noop as Resolve, reject: (e) => sink.fail(e), sink });
    return id;
  }

  /**
   * @internal The application has finished with a held receive's message (its handler settled):
   * its credit goes back, and the kernel no longer counts it in this process's hands.
   */
  release(message: Message): void {
    const request = this.held.get(message);
    if (request === undefined) return;
    this.held.delete(message);
    this.take(request, 0, 1);
  }

  /** Tells the kernel the application took n messages of a receive, and grants more credit. */
  take(request: number, taken: number, credit: number): void {
    if (this.closed) return;
    const w = this.writer;
    const o = w.reserve(TAKE_FRAME_BYTES);
    writeHead(w.buf, o, TAKE_FRAME_BYTES, Op.TAKE, 0, 0, request);
    putU32(w.buf, o + Off.T_TAKEN, taken);
    putU32(w.buf, o + Off.T_CREDIT, credit);
    w.commit(TAKE_FRAME_BYTES);
  }

  /** Gives a recalled message of a stream back, unread (RETURN). */
  private giveBack(request: number, seq: number): void {
    if (this.closed) return;
    const w = this.writer;
    const o = w.reserve(RECALL_FRAME_BYTES);
    writeHead(w.buf, o, RECALL_FRAME_BYTES, Op.RETURN, 0, 0, request);
    writeInt64(w.buf, seq, o + Off.C_SEQ);
    w.commit(RECALL_FRAME_BYTES);
  }

  /** Asks the kernel to cancel a request; its answer (done, or ECANCELED) settles it. */
  cancel(request: number, as?: PostboxError): void {
    if (this.closed) return;
    const entry = this.pending.get(request);
    if (entry !== undefined && as !== undefined) entry.cancelAs = as;
    const w = this.writer;
    const o = w.reserve(HEAD_BYTES);
    writeHead(w.buf, o, HEAD_BYTES, Op.CANCEL, 0, 0, request);
    w.commit(HEAD_BYTES);
  }

  /** A control-plane call; `events` handles the kernel events its result announces. */
  call<T>(op: CallOp, args: Record<string, unknown> = {}, events?: CallEvents<T>): Promise<T> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    // JSON writes NaN as null, which a kernel call may read as "none" (capacity: unbounded);
    // it leaves a symbol or function out, as if not given, and cannot write a bigint at all.
    for (const key in args) {
      const v = args[key];
      if (Number.isNaN(v))
        return Promise.reject(new InvalidArgumentError(`${key} must be a number, not NaN`));
      // Infinity is written as null too: "unbounded" for the limits that have it, and for any
      // other the kernel could only say it is "not null", which the caller never wrote.
      if ((v === Number.POSITIVE_INFINITY && !TAKES_UNBOUNDED.has(key)) || v === Number.NEGATIVE_INFINITY)
        return Promise.reject(new InvalidArgumentError(`${key} must be a finite number, not ${String(v)}`));
      if (typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function')
        return Promise.reject(
          new InvalidArgumentError(`${key} must be a number, string or boolean, not ${describeValue(v)}`),
        );
    }
    const id = this.nextRequest++;
    this.writer.append(encodeJsonFrame(Op.CALL, 0, 0, id, { op, ...args }));
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = {
        kind: 'call',
        resolve: resolve as Resolve,
        reject,
        answer: answerOf(op, args),
      };
      if (events !== undefined) entry.events = events as CallEvents<unknown>;
      this.pending.set(id, entry);
    });
  }

  /**
   * Adds fn to {@link onClose}, or calls it at once if the connection has ended: a wait that
   * begins after an answer was read can find it ended in that same read (a malformed EVENT
   * behind a monitor's RESULT, a kernel that ended the process), and waited for good.
   */
  whenEnded(fn: (err: PostboxError) => void): void {
    if (this.closedError !== null) fn(this.closedError);
    else this.onClose.add(fn);
  }

  /** Registers the handler of a kernel event (a monitor's, a notification's). */
  onEvent(monitor: number, handler: (event: Record<string, unknown>) => void): void {
    this.monitors.set(monitor, { handler, answer: null });
  }

  /** Forgets an event handler. */
  offEvent(id: number): void {
    this.monitors.delete(id);
  }

  /**
   * Closes the connection; pending operations fail with ENOTCONN. A second call, while the
   * first is under way, gets the first's promise: each had sent its own goodbye and added a
   * listener to the socket (a `beforeExit` handler that closes runs again each time the loop
   * empties: 26 times, and Node's MaxListenersExceededWarning).
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  /**
   * @internal The process's close() has begun, though it may still wait for sends issued before
   * it (to a name being looked up): sends and receives issued from now on fail at once.
   */
  beginClose(): void {
    if (!this.closed) this.closedByUs = true;
  }

  /**
   * @internal Runs op, a send issued before close() was called whose lookup has just answered,
   * as if close() had not been called: it is written, ahead of the goodbye.
   */
  admit<R>(op: () => R): R {
    const was = this.admitting;
    this.admitting = true;
    try {
      return op();
    } finally {
      this.admitting = was;
    }
  }

  /**
   * Why a send or receive issued now fails at once, or null if it may go: the connection has
   * ended, or close() was called. A send made after close() went out after its goodbye, and
   * while close() still waited for a lookup it went out ahead of it and was delivered.
   */
  private refusal(): PostboxError | null {
    if (this.closedError !== null) return this.closedError;
    if (!this.closedByUs || this.admitting) return null;
    return new ClosedError('the process is closing: close() was called before this send or receive');
  }

  private async closeOnce(): Promise<void> {
    if (this.closed) return;
    this.closedByUs = true;
    // A close asked for is work to finish, even on a link that lets Node exit (unref()): Node
    // ended in the middle of it, and `await me.close()` at a module's top level made the
    // program exit with code 13 (an unsettled top-level await) instead of 0.
    this.socket.ref();
    // Messages the application took must reach the kernel as taken before we go, or they
    // would be given back to the mailbox and received again by someone else. Each open loop
    // ends as at its `break` (what was pushed ahead and not taken goes back): a process closing
    // itself is not a failure of its loops and consumers, as the kernel going would be. They
    // failed with ENOTCONN, and a consumer nobody awaited crashed the program (unhandled).
    for (const stream of [...this.streams]) void stream.return();
    try {
      await this.call('bye');
    } catch {
      // Closing anyway.
    }
    this.fail(new ClosedError('the process closed its connection to the kernel'));
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }

  private writeReceive(
    target: number,
    inbox: boolean,
    from: number,
    o: ReceiveOptions,
    credit: number,
    stream: boolean,
    hold = false,
  ): number {
    const id = this.nextRequest++;
    const w = this.writer;
    const off = w.reserve(RECEIVE_FRAME_BYTES);
    const b = w.buf;
    const flags =
      (o.nowait === true ? 1 : 0) |
      (o.except === true ? 2 : 0) |
      (o.truncate === true ? 4 : 0) |
      (stream ? 8 : 0) |
      (inbox ? 16 : 0) |
      (hold ? ReceiveFlag.HOLD : 0);
    writeHead(b, off, RECEIVE_FRAME_BYTES, Op.RECEIVE, flags, 0, id);
    b.writeUInt32LE(target, off + Off.R_TARGET);
    b.writeUInt32LE(from, off + Off.R_FROM);
    b.writeUInt32LE(o.timeout ?? 0, off + Off.R_TIMEOUT);
    b.writeUInt32LE(o.maxSize ?? NO_MAX_SIZE, off + Off.R_MAX_SIZE);
    b.writeUInt32LE(credit, off + Off.R_CREDIT);
    b.writeUInt32LE(0, off + Off.R_RESERVED);
    writeInt64(b, o.type ?? 0, off + Off.R_TYPE);
    w.commit(RECEIVE_FRAME_BYTES);
    return id;
  }

  // ── replies ─────────────────────────────────────────────────────────────────────────────────

  private onFrame(buf: Buffer, start: number, end: number): void {
    const op = buf[start + Off.OPCODE]!;
    const request = getU32(buf, start + Off.REQUEST);
    const bad = badKernelFrame(buf, start, end);
    if (bad !== null) {
      this.fail(new ProtocolError(`bad frame from the kernel: ${bad}`));
      this.socket.destroy();
      return;
    }
    switch (op) {
      case Op.DELIVER: {
        // Deliveries come in runs for one stream: the last one is kept at hand.
        if (request === this.lastStream) {
          this.lastSink!.deliver(new Message(buf, start, end));
          return;
        }
        const entry = this.pending.get(request);
        if (entry === undefined) return;
        if (entry.kind !== 'receive' && entry.kind !== 'stream')
          return this.wrongAnswer('DELIVER', request, entry);
        const message = new Message(buf, start, end);
        if (entry.kind === 'stream') {
          this.lastStream = request;
          this.lastSink = entry.sink!;
          entry.sink!.deliver(message);
        } else {
          this.forget(request);
          this.take(request, 1, 0);
          if (entry.hold === true) this.held.set(message, request);
          // Written at the end of this read, before the receive's caller resumes: a message
          // receive() has handed over is taken, as msgrcv's is, even if the process dies at once.
          this.handedInRead = true;
          const resolve = entry.resolve as (m: Message) => void;
          // Checked per message, as a stream's are: a process stopped in the middle of this
          // read (a handler that stalled) goes on with the rest of it when it resumes.
          if (this.checkSilence())
            this.heldReceives.push({
              resolve: () => resolve(message),
              reject: (e) => entry.reject(e, request),
            });
          else resolve(message);
        }
        return;
      }
      case Op.ACK:
        return this.acks.ackThrough(request, QUEUED);
      case Op.SENT: {
        const outcome = buf.readUInt16LE(start + Off.AUX);
        const seq = readInt64(buf, start + Off.S_SEQ);
        // Sequence numbers start at 1: 0 is a message that never got one (dropped when full).
        const result: SendResult =
          outcome === Outcome.RECEIVED
            ? { outcome: 'received', receiver: buf.readUInt32LE(start + Off.S_RECEIVER), seq }
            : seq === 0
              ? { outcome: outcomeNames[outcome] ?? 'queued' }
              : { outcome: outcomeNames[outcome] ?? 'queued', seq };
        return this.settle(request, result, null, 'send');
      }
      case Op.BLOCKED: {
        const send = this.acks.take(request);
        if (send === null) return;
        this.pending.set(request, {
          kind: 'send',
          resolve: ((r: SendResult) => send.resolve(r, 1)) as Resolve,
          reject: (e, id) => send.reject(e, id),
        });
        return;
      }
      case Op.EMPTY:
        return this.settle(request, null, null, 'receive');
      case Op.END: {
        const entry = this.pending.get(request);
        if (entry?.kind === 'stream') {
          this.forget(request);
          entry.sink!.end();
          return;
        }
        return this.settle(request, null, null, 'receive');
      }
      case Op.RESULT:
        return this.settle(request, kernelPayload(buf, start, end), null, 'call');
      case Op.ERROR: {
        const code = buf.readUInt16LE(start + Off.AUX);
        const { message, subject, measured, holders } = kernelErrorPayload(buf, start, end);
        const err =
          this.abortReasons.size !== 0 && this.abortReasons.has(request) && code === WireErrorCode.ECANCELED
            ? new AbortedError(message, subject, { cause: this.abortReasons.get(request) })
            : errorFromWire(code, message, subject, measured, holders);
        if (request === 0) {
          if (this.onHelloError !== null) {
            this.onHelloError(err);
            this.onHelloError = null;
          }
          // The kernel has terminated this process: what it pushed and this side has not yet
          // taken went back to the mailboxes (maybe to another receiver already). Yielding it
          // now would deliver it twice.
          for (const stream of this.streams) stream.dropPushed();
          this.fail(err);
          return;
        }
        return this.settle(request, undefined, err);
      }
      case Op.WELCOME: {
        const welcome = kernelPayload(buf, start, end) as Welcome;
        // Checked before the connection counts as welcomed, so that connect() fails with it.
        const bad = badWelcome(welcome);
        if (bad !== null) {
          this.fail(new ProtocolError(`what answers at ${this.address} is not a Postbox kernel: ${bad}`));
          this.socket.destroy();
          return;
        }
        this.welcomed = true;
        this.onHelloError = null;
        // A kernel started with a larger --max-message-size delivers larger frames: this end
        // refused them as bad frames and died, and the message went on to kill the next receiver.
        const largest = MESSAGE_HEAD_BYTES + MAX_HEADERS_BYTES + (welcome.limits?.maxMessageSize ?? 0);
        if (largest > this.decoder.maxFrameBytes) this.decoder.maxFrameBytes = largest;
        this.onWelcome?.(welcome);
        this.onWelcome = null;
        return;
      }
      case Op.EVENT: {
        const watch = this.monitors.get(request);
        if (watch === undefined) return;
        const event = kernelPayload(buf, start, end);
        const bad = badEvent(watch.answer, event);
        if (bad !== null) {
          const of = watch.answer === null ? '' : ` (announced by ${watch.answer.op})`;
          return this.badAnswer(`EVENT ${request}${of}`, bad);
        }
        this.monitors.delete(request);
        watch.handler(event as Record<string, unknown>);
        return;
      }
      case Op.RECALL: {
        const entry = this.pending.get(request);
        const seq = readInt64(buf, start + Off.C_SEQ);
        if (entry?.kind === 'stream' && entry.sink!.recall(seq)) this.giveBack(request, seq);
        return;
      }
      case Op.PONG:
        if ((buf[start + Off.FLAGS]! & PingFlag.CLOCK) !== 0) this.clockPong(buf, start, end);
        if (this.silent && request === this.silencePing) this.endSilence(null);
        return;
      default:
        this.fail(new ProtocolError(`unknown opcode 0x${op.toString(16)} from the kernel`));
        this.socket.destroy();
    }
  }

  /**
   * Settles a request with its answer; `answers` is the kind of request the answer's opcode
   * belongs to (an ERROR's belongs to any). An answer of another kind is the kernel breaking the
   * protocol: taken as it came, an EMPTY resolved a CALL with null and a RESULT a send with
   * whatever JSON it held, and the caller failed later with a TypeError of its own.
   */
  private settle(request: number, value: unknown, err: PostboxError | null, answers?: Pending['kind']): void {
    const entry = this.pending.get(request);
    if (entry !== undefined) {
      if (answers !== undefined && entry.kind !== answers) {
        const op = answers === 'call' ? 'RESULT' : answers === 'send' ? 'SENT' : 'EMPTY or END';
        return this.wrongAnswer(op, request, entry);
      }
      if (err === null && entry.answer !== undefined) {
        const bad = badResult(entry.answer, value);
        if (bad !== null) return this.badAnswer(`RESULT for ${entry.answer.op} (request ${request})`, bad);
      }
      this.forget(request);
      if (err === null && entry.events !== undefined) {
        const id = entry.events.idOf(value);
        if (id !== undefined)
          this.monitors.set(id, { handler: entry.events.handler, answer: entry.answer ?? null });
      }
      if (err === null) (entry.resolve as (v: unknown) => void)(value);
      else
        entry.reject(
          err.code === 'ECANCELED' && entry.cancelAs !== undefined ? entry.cancelAs : err,
          request,
        );
      return;
    }
    // A send waiting for its ACK is settled by SENT or ERROR; any other answer is for no one.
    if (answers !== undefined && answers !== 'send') return;
    const send = this.acks.take(request);
    if (send === null) return;
    if (err === null) send.resolve(value as SendResult, 1);
    else send.reject(err, request);
  }

  /**
   * The kernel answered with JSON of another shape than its answers have (see answer-check.ts):
   * the connection fails, EPROTO, naming the answer and what is wrong with it.
   */
  private badAnswer(what: string, why: string): void {
    this.fail(new ProtocolError(`bad answer from the kernel: its ${what}: ${why}`));
    this.socket.destroy();
  }

  /** The kernel answered a request with a frame of another kind's: the connection fails, EPROTO. */
  private wrongAnswer(op: string, request: number, entry: Pending): void {
    const what = entry.kind === 'stream' ? 'a receive (a stream)' : `a ${entry.kind}`;
    this.fail(new ProtocolError(`bad frame from the kernel: ${op} for request ${request}, which is ${what}`));
    this.socket.destroy();
  }

  private forget(request: number): void {
    this.pending.delete(request);
    if (request === this.lastStream) {
      this.lastStream = 0;
      this.lastSink = null;
    }
  }

  /** Ends the connection: every pending operation fails with err. */
  private fail(err: PostboxError): void {
    if (this.closedError !== null) return;
    this.closedError = err;
    noFlushAtExit(this);
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.onHelloError?.(err);
    this.onHelloError = null;
    this.acks.failAll(err);
    const pending = [...this.pending];
    this.pending.clear();
    this.lastStream = 0;
    this.lastSink = null;
    for (const [request, entry] of pending) entry.reject(err, request);
    if (this.silent) this.endSilence(err);
    for (const fn of this.onClose) fn(err);
    this.onClose.clear();
    if (!this.socket.destroyed) this.socket.end();
  }
}

/**
 * EMSGSIZE for a message over the kernel's size limit, naming where it was going and the flag
 * that sets the limit: the error said only the sizes, so a program sending to several mailboxes
 * could not tell which send it was. A mailbox is named as the kernel names it in its errors: by
 * name when it has one (and the sender knows it), else by `#id`.
 */
function overKernelLimit(
  size: number,
  limit: number,
  target: number,
  toProcess: boolean,
  name: string | null,
): MessageSizeError {
  const mailbox = name ?? `#${target}`;
  const to = toProcess ? `process ${target}` : name === null ? `mailbox #${target}` : `mailbox '${name}'`;
  return new MessageSizeError(
    `a ${size}-byte message to ${to} is over the kernel's ${limit}-byte limit (postbox kernel --max-message-size)`,
    toProcess ? { process: String(target) } : { mailbox },
    { size, limit },
  );
}

/** Encodes a body by its codec; a body the codec cannot take is EINVAL. */
function encodeChecked(
  body: unknown,
  codec: CodecName | undefined,
): ReturnType<typeof encodeBody> | InvalidArgumentError {
  try {
    return encodeBody(body, codec);
  } catch (err) {
    return new InvalidArgumentError(`cannot encode the body: ${(err as Error).message}`, {}, { cause: err });
  }
}

const EMPTY_OPTIONS: SendOptions & ReceiveOptions = Object.freeze({});

// One executor shared by every send's promise: it hands out the resolvers through `captured`
// instead of each send allocating a closure of its own.
const captured: { resolve: (v: never) => void; reject: (e: PostboxError) => void } = {
  resolve: noop,
  reject: noop,
};
function capture(resolve: (v: never) => void, reject: (e: PostboxError) => void): void {
  captured.resolve = resolve;
  captured.reject = reject;
}

function noop(): void {}

function flushConnection(conn: Connection): void {
  conn.flushIfScheduled();
}

/** The call arguments for which Infinity (sent as null) means no limit: see the kernel's parseCapacity. */
const TAKES_UNBOUNDED: ReadonlySet<string> = new Set(['capacity', 'maxBytes']);

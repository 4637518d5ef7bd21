import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { FrameError } from '../protocol/decoder.js';
import { type ErrorCode, WireErrorCode } from '../protocol/errors.js';
import {
  decodeJsonPayload,
  encodeJsonFrame,
  getU32,
  HEAD_BYTES,
  LENGTH_BYTES,
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
  SENT_FRAME_BYTES,
  SendFlag,
  TAKE_FRAME_BYTES,
  writeHead,
  writeInt64,
} from '../protocol/frame.js';
import { readIntoArena } from '../transport/read-arena.js';
import { ConnectionGate } from './connection-gate.js';
import { handleCall, overLimit } from './control.js';
import { FREE_PARTIAL_BYTES, FrameRoom } from './frame-room.js';
import { type HelloPayload, OPERATOR_RESERVE, parseHello } from './hello.js';
import { IdOrder } from './id-order.js';
import { INBOX_MODE, type KernelLimits, kernelLimits, MAX_PRIORITY } from './limits.js';
import { LogThrottle } from './log-throttle.js';
import { type ErrorDetail, Mailbox, type MailboxHost, type Peer } from './mailbox.js';
import { KernelProcess, type TerminationReason, type Transport } from './process.js';
import { ReceiveWaiter } from './receive-waiter.js';
import { Slab } from './slab.js';

/** Options of the kernel core. */
export interface KernelOptions {
  limits?: Partial<KernelLimits> | undefined;
  /** Token TCP processes must present. */
  token?: string | undefined;
  /** Where diagnostics go (one line each). */
  log?: ((line: string) => void) | undefined;
}

/** Scratch for the clock's bytes. */
const CLOCK = Buffer.alloc(8);

/**
 * Where a refused TCP process finds the token: the kernel's own `$POSTBOX_TOKEN`, else the file
 * it wrote and printed. (Not the file's path: this goes to a process not yet trusted.)
 */
const TOKEN_HINT =
  "use the kernel's token: the POSTBOX_TOKEN it was started with, or the contents of the token file it printed when it started (next to its socket, named after it: kernel.sock → kernel.token)";

/** Largest frame accepted before HELLO. */
const HELLO_MAX_FRAME = 64 * 1024;

/** The kernel's own description, sent in WELCOME. */
export const KERNEL_VERSION = '0.1.0';

/** How long the socket of a process ended for silence stays half-open for it to read why. */
const SILENT_CLOSE_MS = 120_000;

/** How many removed mailboxes' names are kept, so errors about them can name them. */
const REMOVED_NAMES_KEPT = 4096;

/**
 * The kernel: the single source of truth for processes, mailboxes, queues and waiters. It knows
 * sockets only as byte streams; {@link startKernel} gives it listeners, and tests or a single
 * program can run it in their own process the same way.
 */
export class Kernel implements MailboxHost {
  readonly limits: KernelLimits;
  readonly slab = new Slab();
  now = 0;
  /** `now` as the two little-endian words of a float64, as it is stamped into every message. */
  nowLo = 0;
  nowHi = 0;
  totalBytes = 0;
  /** What one process's unfinished sends may hold (MailboxHost's view of the limit). */
  get maxWaitingBytes(): number {
    return this.limits.maxWaitingBytes;
  }
  readonly processes = new Map<number, KernelProcess>();
  /** The ids of the processes, ascending: a page of `processes` starts where it asks. */
  readonly processOrder = new IdOrder((id) => this.processes.has(id));
  readonly processByName = new Map<string, KernelProcess>();
  /**
   * Receives that name a sender (`from`), by that sender's id: when it terminates they are told
   * (ESRCH) instead of waiting for a message that cannot come. Entries of receives that ended
   * otherwise are swept out as the list grows (see {@link noteReceiveFrom}).
   */
  private readonly receivesFrom = new Map<number, ReceiveWaiter[]>();
  readonly mailboxes = new Map<number, Mailbox>();
  /** The ids of the mailboxes `list` shows (not inboxes), ascending: a page starts where it asks. */
  readonly listed = new IdOrder((id) => this.mailboxes.has(id));
  readonly mailboxByName = new Map<string, Mailbox>();
  /** System V keys. */
  readonly mailboxByKey = new Map<number, Mailbox>();
  nextHandleId = 1;
  /** Every connection, with or without a HELLO yet. */
  readonly connections = new Set<KernelProcess>();
  nextProcessId = 1;
  nextMailboxId = 1;
  /** Sockets of processes it ended (fatal), half-open for them to read why; gone at shutdown. */
  private readonly lingering = new Set<Socket>();
  /** Sockets held: every connection, and those ended and lingering; each is a file descriptor. */
  get openConnections(): number {
    return this.connections.size + this.lingering.size;
  }
  /** Names of the mailboxes removed last (at most REMOVED_NAMES_KEPT), by id, for errors. */
  private readonly removedNames = new Map<number, string>();
  nextMonitorId = 1;
  shuttingDown = false;
  /**
   * The token's SHA-256: tokens are compared by digest, so that the time a refusal takes says
   * nothing of the token, not even its length (a comparison of unequal lengths returns at once).
   */
  private readonly tokenDigest: Buffer | null;
  private readonly log: (line: string) => void;
  private dirty: KernelProcess[] = [];
  private flushScheduled = false;
  private heartbeat: NodeJS.Timeout | null = null;
  /** When the last heartbeat check ran (checkHeartbeats). */
  private lastCheck = Date.now();
  /** Room for large frames in progress (`--max-partial-bytes`). */
  readonly room: FrameRoom<KernelProcess>;
  /** Bytes of frames begun by connections that have not said HELLO yet, all together. */
  private helloBytes = 0;
  /** How long a new connection has to say HELLO: three heartbeats, at most 10 s. */
  readonly helloTimeoutMs: number;
  /** Connections the file descriptors allow (ulimit -n), and TCP strangers before HELLO. */
  readonly gate: ConnectionGate;
  /** TCP connections that have not said HELLO yet. */
  private tcpUnjoined = 0;
  /** Connections closed before HELLO: what strangers can make it say, summed up. */
  private readonly unjoinedLog: LogThrottle;
  /** The kernel's own faults, in answering CALLs (by op) and frames: one repeated is summed up. */
  private readonly faultLog: LogThrottle;

  /**
   * This kernel among all that ever ran: ids (of processes, mailboxes) mean something only in
   * the kernel that gave them, and a kernel started again often has its predecessor's OS pid (a
   * container's first process; kernels run by one program with startKernel).
   */
  readonly instance = randomBytes(8).toString('hex');

  constructor(options: KernelOptions = {}) {
    this.limits = kernelLimits(options.limits);
    this.tokenDigest = options.token === undefined ? null : tokenDigest(options.token);
    this.log = options.log ?? (() => {});
    this.helloTimeoutMs = Math.min(3 * this.limits.heartbeatMs, 10_000);
    this.gate = new ConnectionGate(this.log, OPERATOR_RESERVE);
    this.unjoinedLog = new LogThrottle(
      this.log,
      UNJOINED_LOG_WINDOW_MS,
      (n, last) =>
        `${n} more ${n === 1 ? 'connection was' : 'connections were'} closed before HELLO in the last ${UNJOINED_LOG_WINDOW_MS / 1000} s for the same kind of reason; the last: ${last}`,
    );
    this.faultLog = new LogThrottle(
      this.log,
      FAULT_LOG_WINDOW_MS,
      (n, last, where) =>
        `${n} more internal ${n === 1 ? 'error' : 'errors'} ${where} in the last ${FAULT_LOG_WINDOW_MS / 1000} s; the last: ${last}`,
    );
    this.room = new FrameRoom(this.limits.maxPartialBytes, (p) => this.mayRead(p));
    this.tick();
    this.heartbeat = setInterval(() => this.checkHeartbeats(), this.limits.heartbeatMs);
    this.heartbeat.unref();
  }

  /**
   * Takes a connection a server accepted with `pauseOnConnect`: it is read into slabs of the
   * kernel's own (readIntoArena) and becomes a process once its HELLO is accepted.
   */
  accept(accepted: Socket, transport: Transport): KernelProcess {
    let p: KernelProcess | null = null;
    // Reads start only after this turn, so p is set before the first chunk.
    const socket = readIntoArena(accepted, (chunk) => this.input(p!, chunk));
    p = this.register(socket, transport);
    return p;
  }

  /**
   * Takes any connected socket, read as a stream; it becomes a process once its HELLO is
   * accepted. A listener of your own can pass its sockets here (or accept paused and use
   * {@link accept}, which reads faster).
   *
   * @example
   * ```ts
   * const kernel = new Kernel();
   * net.createServer((socket) => kernel.attach(socket, 'unix')).listen('/tmp/pb.sock');
   * ```
   */
  attach(socket: Socket, transport: Transport): KernelProcess {
    const p = this.register(socket, transport);
    socket.on('data', (chunk: Buffer) => this.input(p, chunk));
    return p;
  }

  /** A connection's process, its HELLO deadline and its socket's events; not its reads. */
  private register(socket: Socket, transport: Transport): KernelProcess {
    // Until its HELLO is accepted a connection may send only small frames, and must say HELLO
    // within a bounded time: an unauthenticated peer can hold neither memory nor a socket.
    const p = new KernelProcess(socket, transport, HELLO_MAX_FRAME, onFrame, (q) => this.markDirty(q));
    p.helloTimer = setTimeout(() => {
      if (p.id === 0) this.fatal(p, 'EPROTO', `no HELLO within ${this.helloTimeoutMs} ms`);
    }, this.helloTimeoutMs);
    p.helloTimer.unref();
    (p as KernelProcessWithKernel)[kKernel] = this;
    const open = this.openConnections;
    this.connections.add(p);
    if (transport === 'tcp') this.tcpUnjoined++;
    socket.setNoDelay?.(true);
    socket.on('drain', () => this.uncongest(p));
    socket.on('error', () => {});
    // Ended at its end of file, not only at the socket's close: the end comes before this side's
    // own end goes out, so a process whose close() has resolved (it waits for that end) is gone
    // for everyone else's next request; 'close' comes later, in a phase of its own.
    const ended = (): void => {
      this.handleHeld(p);
      this.terminate(p, p.saidBye ? 'exit' : 'crash');
    };
    socket.on('end', ended);
    socket.on('close', ended);
    const refusal = this.gate.refuseConnection(open, this.tcpUnjoined - 1, transport);
    if (refusal !== null) this.fatal(p, 'ENOMEM', refusal);
    return p;
  }

  /**
   * Bytes from a process, as read. They must never be written again by anyone else: frames are
   * forwarded and kept as views of them.
   */
  private input(p: KernelProcess, chunk: Buffer): void {
    // Ended (fatal): what it still sends is read only so that closing does not reset the socket.
    if (p.terminated) return;
    this.tick();
    p.lastHeard = this.now;
    this.feed(p, chunk);
    if (p.congested) this.holdInput(p);
  }

  /** Decodes a chunk (null: the frames held back while the process was congested). */
  private feed(p: KernelProcess, chunk: Buffer | null): void {
    try {
      if (chunk === null) p.decoder.resume();
      else p.decoder.push(chunk);
    } catch (err) {
      this.slab.settle();
      if (err instanceof FrameError) this.fatal(p, 'EPROTO', err.message);
      else this.frameFault(p, err);
      return;
    }
    this.slab.settle();
    if (p.ackPending) this.markDirty(p);
    if (p.terminated) return;
    const begun = p.decoder.pendingFrameBytes;
    if (p.id === 0 || p.helloBytes > 0) {
      this.countHelloBytes(p, p.id === 0 ? begun : 0);
      if (p.terminated) return;
    }
    if ((begun > FREE_PARTIAL_BYTES || p.room > 0) && !this.room.fit(p, begun, this.now)) p.socket.pause();
  }

  /**
   * Before its HELLO a connection is nobody: its frames are small (HELLO_MAX_FRAME) and it has
   * little time, but connections are many. What they have begun together is bounded too, so
   * that a crowd of peers that never finish a HELLO cannot fill the kernel's memory.
   */
  private countHelloBytes(p: KernelProcess, bytes: number): void {
    this.helloBytes += bytes - p.helloBytes;
    p.helloBytes = bytes;
    if (bytes > 0 && this.helloBytes > HELLO_BYTES_HELD) {
      this.fatal(
        p,
        'EPROTO',
        `connections that have not said HELLO hold ${this.helloBytes} bytes of unfinished frames, over the kernel's bound of ${HELLO_BYTES_HELD}`,
      );
    }
  }

  /** Reads p again, unless something still holds it: a frame without room, or congestion. */
  private mayRead(p: KernelProcess): void {
    if (p.terminated || p.roomWanted > 0) return;
    if (p.congested && p.decoder.buffered > HELD_WHILE_CONGESTED) return;
    p.socket.resume();
  }

  /** Reads the clock for this turn, once for every message stamped in it. */
  tick(): void {
    const now = Date.now();
    this.now = now;
    CLOCK.writeDoubleLE(now, 0);
    this.nowLo = CLOCK.readUInt32LE(0);
    this.nowHi = CLOCK.readUInt32LE(4);
  }

  markDirty(p: Peer): void {
    const kp = p as KernelProcess;
    if (kp.dirtyQueued) return;
    kp.dirtyQueued = true;
    this.dirty.push(kp);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(flushAll, this);
    }
  }

  /** Writes every process's gathered output: one write per process per turn. */
  flush(): void {
    this.flushScheduled = false;
    const dirty = this.dirty;
    this.dirty = [];
    for (const p of dirty) {
      p.dirtyQueued = false;
      if (p.terminated && p.socket.destroyed) continue;
      if (p.ackPending) this.writeAck(p);
      p.writer.flush();
      if (p.socket.writableLength > this.limits.outputHighWater) this.congest(p);
      // Congested by a read's answers, which the socket then took at once: no 'drain' will come.
      else if (p.congested && p.socket.writableLength === 0) this.uncongest(p);
    }
  }

  /** The cumulative ACK of the sends completed since the last one. */
  private writeAck(p: KernelProcess): void {
    p.ackPending = false;
    const o = p.writer.reserve(HEAD_BYTES);
    writeHead(p.writer.buf, o, HEAD_BYTES, Op.ACK, 0, 0, p.ackThrough);
    p.writer.commit(HEAD_BYTES);
  }

  // ── replies ─────────────────────────────────────────────────────────────────────────────────

  replyError(
    p: Peer,
    request: number,
    code: ErrorCode,
    message: string,
    mailbox?: Mailbox | string,
    detail?: ErrorDetail,
  ): void {
    const kp = p as KernelProcess;
    if (kp.terminated) return;
    // Only the members that say something: most errors are a message and a mailbox.
    const payload: Record<string, string | number | string[]> = { message };
    if (typeof mailbox === 'string') payload.mailbox = mailbox;
    else if (mailbox !== undefined) payload.mailbox = mailbox.name ?? `#${mailbox.id}`;
    if (detail?.process !== undefined) payload.process = detail.process;
    if (detail?.measured !== undefined) {
      payload.size = detail.measured.size;
      payload.limit = detail.measured.limit;
    }
    if (detail?.holders !== undefined) payload.holders = detail.holders;
    kp.writer.append(encodeJsonFrame(Op.ERROR, 0, WireErrorCode[code], request, payload));
    this.markDirty(kp);
  }

  replySent(p: Peer, request: number, outcome: number, receiver: number, seq: number): void {
    const w = (p as KernelProcess).writer;
    const o = w.reserve(SENT_FRAME_BYTES);
    const b = w.buf;
    writeHead(b, o, SENT_FRAME_BYTES, Op.SENT, 0, outcome, request);
    putU32(b, o + Off.S_RECEIVER, receiver);
    putU32(b, o + Off.S_RESERVED, 0);
    writeInt64(b, seq, o + Off.S_SEQ);
    w.commit(SENT_FRAME_BYTES);
    this.markDirty(p);
  }

  replyEnd(p: Peer, request: number): void {
    const w = (p as KernelProcess).writer;
    const o = w.reserve(HEAD_BYTES);
    writeHead(w.buf, o, HEAD_BYTES, Op.END, 0, 0, request);
    w.commit(HEAD_BYTES);
    this.markDirty(p);
  }

  event(p: Peer, id: number, payload: Record<string, unknown>): void {
    const kp = p as KernelProcess;
    if (kp.terminated) return;
    kp.writer.append(encodeJsonFrame(Op.EVENT, 0, 0, id, payload));
    this.markDirty(kp);
  }

  replyBlocked(p: Peer, request: number): void {
    const w = (p as KernelProcess).writer;
    const o = w.reserve(HEAD_BYTES);
    writeHead(w.buf, o, HEAD_BYTES, Op.BLOCKED, 0, 0, request);
    w.commit(HEAD_BYTES);
    this.markDirty(p);
  }

  reply(p: KernelProcess, request: number, result: unknown): void {
    // The client fails what is pending once its goodbye is answered: the sends completed before
    // it must be acknowledged first, not at the end of the turn, which may reach it in a later
    // read (they failed with ENOTCONN while their messages were received).
    if (p.saidBye && p.ackPending) this.writeAck(p);
    p.writer.append(encodeJsonFrame(Op.RESULT, 0, 0, request, result ?? {}));
    this.markDirty(p);
  }

  /**
   * A CALL's handler threw what no refusal throws: a bug in the kernel. Logged as the kernel's
   * fault, with where it was thrown (once per op per window: a process that repeats the CALL in a
   * loop does not flood the log), and answered EIO; the kernel carries on.
   */
  callFault(p: KernelProcess, request: number, op: string, err: unknown): void {
    const what = thrownWhat(err);
    this.faultLog.note(
      `in CALL '${op}'`,
      `${INTERNAL_ERROR} in CALL '${op}' from ${p.label}: ${what}${thrownWhere(err)}`,
    );
    this.replyError(
      p,
      request,
      'EIO',
      `${INTERNAL_ERROR} in the kernel's '${op}': ${what} (the kernel's fault, not the request's; the kernel's log has it)`,
    );
  }

  /**
   * Handling a frame threw what no refusal throws (the decoder's FrameError is the peer's): a bug
   * in the kernel, not the process's fault. Said so in the log, where it was thrown (once per
   * window: a process can send the same frame again and again, and so can others), and to the
   * process, ended with EIO, not the EPROTO that would send it looking for what it sent wrong;
   * its monitors hear that the kernel ended it. Its pending operations are in an unknown state
   * (the frame may have been half handled), so it cannot go on as if nothing happened.
   */
  frameFault(p: KernelProcess, err: unknown): void {
    if (p.socket.destroyed) return;
    const what = thrownWhat(err);
    const from = p.id === 0 ? 'a connection before its HELLO' : p.label;
    this.faultLog.note(
      'handling a frame',
      `${INTERNAL_ERROR} handling a frame from ${from}, which is ended: ${what}${thrownWhere(err)}`,
    );
    this.endConnection(
      p,
      'EIO',
      `${INTERNAL_ERROR} in the kernel handling a frame of this process: ${what} (the kernel's fault, not the process's; the kernel's log has it)`,
      'fault',
    );
  }

  /** Sends an error on the connection itself and closes it; the kernel carries on. */
  fatal(
    p: KernelProcess,
    code: ErrorCode,
    message: string,
    reason: TerminationReason = code === 'EPROTO' ? 'protocol' : 'crash',
  ): void {
    if (p.socket.destroyed) return;
    const line = `closing connection${p.id ? ` of ${p.label}` : ''}: ${message}`;
    // A stranger can be refused as often as it likes.
    if (p.id === 0) this.unjoinedLog.note(code, line);
    else this.log(line);
    this.endConnection(p, code, message, reason);
  }

  /** Writes the fatal ERROR (request id 0), closes the connection and terminates its process. */
  private endConnection(p: KernelProcess, code: ErrorCode, message: string, reason: TerminationReason): void {
    // Its sends already in a mailbox stay there (termination keeps what was sent): it must hear
    // so before the ERROR that fails the rest. The ACK waited for the turn's flush, which comes
    // after the end: the client failed them all, and a message it was told was not sent was
    // received (a process ended for silence, with sends held while it did not read, handled at
    // its end; a bad frame after good sends in one read).
    if (p.ackPending) this.writeAck(p);
    p.writer.append(encodeJsonFrame(Op.ERROR, 0, WireErrorCode[code], 0, { message }));
    p.writer.flush();
    // Half-close and go on reading (input() drops it) until the client closes its side: a socket
    // closed with unread input is reset, and a reset can destroy the ERROR on its way, leaving
    // the client to guess why it was ended. A client that never closes is cut off after 1 s;
    // one ended for silence (stopped, a VM paused) after 2 minutes, so that when it wakes, its
    // first write (a heartbeat) does not meet a reset that throws away the ERROR unread.
    p.socket.end();
    const socket = p.socket;
    this.lingering.add(socket);
    socket.once('close', () => {
      this.lingering.delete(socket);
      this.gate.closed(this.openConnections, this.processes.size);
    });
    setTimeout(() => socket.destroy(), reason === 'timeout' ? SILENT_CLOSE_MS : 1000).unref();
    this.terminate(p, reason);
  }

  // ── frames ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Handles the frame at buf[start, end). `limit` is where the bytes received so far end: a run
   * of plain sends after it may be handled with it (the decoder is told to skip them).
   */
  handleFrame(p: KernelProcess, buf: Buffer, start: number, end: number, limit: number): void {
    this.frame(p, buf, start, end);
    const mb = p.runMailbox;
    if (mb === null) return;
    p.runMailbox = null;
    if (end === limit) return;
    const reached = this.sendRun(p, mb, buf, start, end, limit);
    if (reached !== end) p.decoder.skipTo(reached);
  }

  private frame(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    if (p.terminated) return;
    const op = buf[start + Off.OPCODE]!;
    if (p.id === 0) {
      if (op !== Op.HELLO)
        return this.fatal(
          p,
          'EPROTO',
          `the first frame must be HELLO (0x01), got opcode 0x${op.toString(16)}`,
        );
      return this.hello(p, buf, start, end);
    }
    if (op === Op.SEND) return this.handleSend(p, buf, start, end);
    // Only a run of SENDs may leave queued bytes uncopied: anything else may read them.
    this.slab.settle();
    switch (op) {
      case Op.TAKE:
        return this.handleTake(p, buf, start, end);
      case Op.RETURN:
        return this.handleReturn(p, buf, start, end);
      case Op.RECEIVE:
        return this.handleReceive(p, buf, start, end);
      case Op.CANCEL:
        if (end - start !== HEAD_BYTES) return this.headOnly(p, 'CANCEL', end - start);
        return this.handleCancel(p, buf.readUInt32LE(start + Off.REQUEST));
      case Op.CALL:
        return this.handleCallFrame(p, buf, start, end);
      case Op.PING: {
        if (end - start !== HEAD_BYTES) return this.headOnly(p, 'PING', end - start);
        // A TCP client's heartbeat asks for the clock, to keep its offset to the kernel's (a
        // machine's clock may be stepped while the process runs).
        const clock = (buf[start + Off.FLAGS]! & PingFlag.CLOCK) !== 0;
        const size = clock ? HEAD_BYTES + 8 : HEAD_BYTES;
        const o = p.writer.reserve(size);
        const request = buf.readUInt32LE(start + Off.REQUEST);
        writeHead(p.writer.buf, o, size, Op.PONG, clock ? PingFlag.CLOCK : 0, 0, request);
        if (clock) p.writer.buf.writeDoubleLE(Date.now(), o + HEAD_BYTES);
        p.writer.commit(size);
        this.markDirty(p);
        return;
      }
      case Op.HELLO:
        // HELLO's request id is 0, so an answer to it could only be a fatal one.
        return this.fatal(p, 'EPROTO', 'a second HELLO: HELLO was already accepted on this connection');
      default:
        return this.fatal(p, 'EPROTO', `unknown opcode 0x${op.toString(16)}`);
    }
  }

  /**
   * A frame that is only the head, with bytes after it: as for a RECEIVE or TAKE of the wrong
   * size, the stream cannot be trusted (a client that framed it so is not the one we know).
   */
  private headOnly(p: KernelProcess, name: string, size: number): void {
    this.fatal(p, 'EPROTO', `${name} frame must be ${HEAD_BYTES} bytes, got ${size}`);
  }

  private hello(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    const version = buf.readUInt16LE(start + Off.AUX);
    if (version !== PROTOCOL_VERSION) {
      return this.fatal(
        p,
        'EPROTO',
        `protocol version ${version} is not supported; this kernel speaks version ${PROTOCOL_VERSION}`,
      );
    }
    let hello: HelloPayload;
    try {
      hello = parseHello(decodeJsonPayload(buf, start, end));
    } catch (err) {
      return this.fatal(p, 'EPROTO', `bad HELLO: ${(err as Error).message}`);
    }
    if (p.transport === 'tcp' && this.tokenDigest !== null) {
      if (!timingSafeEqual(tokenDigest(hello.token ?? ''), this.tokenDigest)) {
        return this.fatal(
          p,
          'ECONNREFUSED',
          `${
            hello.token === undefined || hello.token === ''
              ? 'a token is required over TCP (connect({ token }) or POSTBOX_TOKEN, not empty)'
              : 'wrong token'
          }: ${TOKEN_HINT}`,
        );
      }
    }
    if (this.shuttingDown) return this.fatal(p, 'ESHUTDOWN', 'the kernel is shutting down');
    if (hello.name !== undefined && this.processByName.has(hello.name)) {
      return this.fatal(
        p,
        'EEXIST',
        `the process name '${hello.name}' is taken by process ${this.processByName.get(hello.name)!.id}`,
      );
    }
    // An operator's process over the Unix socket may go past the limits by a small reserve, to
    // look and clean up when they are reached (as Linux keeps processes and blocks for root).
    const reserve = hello.operator === true && p.transport === 'unix' ? OPERATOR_RESERVE : 0;
    if (this.processes.size >= this.limits.maxProcesses + reserve) {
      return this.fatal(
        p,
        'ENOMEM',
        `the kernel's limit of ${this.limits.maxProcesses} processes is reached (postbox kernel --max-processes)`,
      );
    }
    // Every process has an inbox, and inboxes count toward the mailbox limit.
    const noDescriptors = this.gate.refuseProcess(this.processes.size, reserve > 0);
    if (noDescriptors !== null) return this.fatal(p, 'ENOMEM', noDescriptors);
    if (this.mailboxes.size >= this.limits.maxMailboxes + reserve) {
      return this.fatal(
        p,
        'ENOMEM',
        `the kernel's limit of ${this.limits.maxMailboxes} mailboxes is reached: a process needs one for its inbox (postbox kernel --max-mailboxes)`,
      );
    }
    p.id = this.nextProcessId++;
    if (p.transport === 'tcp') this.tcpUnjoined--;
    if (p.helloTimer !== null) {
      clearTimeout(p.helloTimer);
      // Dropped, not only cleared: a cleared timer and its closure stay as long as they are
      // referenced, about 250 bytes for each process.
      p.helloTimer = null;
    }
    p.decoder.maxFrameBytes = MESSAGE_HEAD_BYTES + MAX_HEADERS_BYTES + this.limits.maxMessageSize;
    p.name = hello.name ?? null;
    p.osPid = hello.pid ?? 0;
    p.recalls = hello.recall === true;
    p.host = hello.host ?? '';
    this.processes.set(p.id, p);
    this.processOrder.add(p.id);
    if (p.name !== null) this.processByName.set(p.name, p);
    const inbox = new Mailbox(
      this,
      this.nextMailboxId++,
      null,
      {
        capacity: hello.inboxCapacity ?? Number.POSITIVE_INFINITY,
        maxMessageSize: this.limits.maxMessageSize,
        // An unbounded inbox never makes a sender wait: only the kernel's total holds it.
        maxBytes:
          hello.inboxCapacity === undefined || hello.inboxCapacity === null
            ? this.limits.maxTotalBytes
            : this.limits.maxMailboxBytes,
        order: 'fifo',
        policy: 'first',
        mode: INBOX_MODE,
        messageSize: 0,
        endOnLastWriter: false,
        transient: false,
        requireReader: false,
        admission: 'in-order',
        rightsAtOpen: false,
      },
      p,
      false,
      p.id,
    );
    this.mailboxes.set(inbox.id, inbox);
    p.inbox = inbox;
    p.writer.append(
      encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, {
        process: { id: p.id, name: p.name },
        inbox: inbox.id,
        // The kernel's clock, for processes on other machines to learn how theirs differs.
        kernel: { pid: process.pid, instance: this.instance, version: KERNEL_VERSION, time: Date.now() },
        limits: this.limits,
      }),
    );
    this.markDirty(p);
    this.log(`${p.label} connected over ${p.transport}${p.osPid ? ` (pid ${p.osPid})` : ''}`);
  }

  private handleSend(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    const request = getU32(buf, start + Off.REQUEST);
    if (request === 0) return this.reservedId(p, 'SEND');
    // A frame too short to be a SEND is a stream that cannot be trusted, whatever its id says.
    const size = end - start;
    if (size < MESSAGE_HEAD_BYTES)
      return this.fatal(p, 'EPROTO', `SEND frame of ${size} bytes is shorter than its 56-byte head`);
    // A second send under the id of one still waiting would hide the first from its process's
    // table: at its end that one would stay in the mailbox, a sender from the dead.
    const inUse = this.requestInUse(p, request);
    if (inUse !== null) return this.replyError(p, request, 'EPROTO', inUse);
    // Its client failed every send still pending as its goodbye was answered: one that came
    // after would be delivered while its sender was told it was not.
    if (p.saidBye)
      return this.replyError(p, request, 'ENOTCONN', `${p.label} said goodbye: no sends after it`);
    const flags = buf[start + Off.FLAGS]!;
    const onFull = buf[start + Off.ON_FULL]!;
    const headers = buf[start + Off.HEADERS_LENGTH]! | (buf[start + Off.HEADERS_LENGTH + 1]! << 8);
    const type = readInt64(buf, start + Off.TYPE);
    const priority = buf[start + Off.PRIORITY]! | (buf[start + Off.PRIORITY + 1]! << 8);
    const target = getU32(buf, start + Off.TARGET);
    if (buf[start + Off.CODEC]! > 3)
      return this.replyError(p, request, 'EINVAL', `unknown codec ${buf[start + Off.CODEC]}`);
    if (onFull > OnFull.DROP_NEW)
      return this.replyError(p, request, 'EINVAL', `unknown on-full rule ${onFull}`);
    if (!(type >= 1 && type <= Number.MAX_SAFE_INTEGER))
      return this.replyError(p, request, 'EINVAL', `message type ${type} is not a positive integer`);
    if (priority > MAX_PRIORITY)
      return this.replyError(p, request, 'EINVAL', `priority ${priority} is over ${MAX_PRIORITY}`);
    if (MESSAGE_HEAD_BYTES + headers > size)
      return this.replyError(p, request, 'EINVAL', `headers length ${headers} runs past the frame`);
    let mb: Mailbox | undefined;
    if ((flags & SendFlag.TO_PROCESS) !== 0) {
      const to = this.processes.get(target);
      if (to === undefined) {
        if (target === 0) return this.replyError(p, request, 'EINVAL', badTarget('process'));
        return this.replyError(
          p,
          request,
          'ESRCH',
          target < this.nextProcessId && target > 0
            ? `process ${target} has terminated`
            : `no process ${target}`,
          undefined,
          { process: String(target) },
        );
      }
      mb = to.inbox!;
    } else {
      // Consecutive sends usually go to the same mailbox: remember the last one looked up.
      const last = p.lastMailbox;
      if (last !== null && last.id === target && !last.removed) mb = last;
      else {
        mb = this.mailboxes.get(target);
        if (mb === undefined) {
          if (target === 0) return this.replyError(p, request, 'EINVAL', badTarget('mailbox'));
          return this.replyError(p, request, 'ENOENT', this.goneMessage(target), this.goneSubject(target));
        }
        p.lastMailbox = mb;
      }
    }
    if (headers > 0 && !isHeaderObject(buf, start + MESSAGE_HEAD_BYTES, headers)) {
      return this.replyError(p, request, 'EINVAL', 'user headers must be a JSON object of strings');
    }
    const body = size - MESSAGE_HEAD_BYTES;
    if (body > mb.maxMessageSize) {
      return this.replyError(
        p,
        request,
        'EMSGSIZE',
        `a ${body}-byte message is over the ${mb.maxMessageSize}-byte limit of ${mb.label}`,
        mb,
        { measured: { size: body, limit: mb.maxMessageSize } },
      );
    }
    if (body > mb.maxBytes && mb.admission === 'in-order') {
      // It could never fit, and would hold up every sender behind it. (System V admission
      // waits, as Linux does: msg_qbytes may be raised.)
      return this.replyError(
        p,
        request,
        'EMSGSIZE',
        `a ${body}-byte message is over the ${mb.maxBytes}-byte limit of ${mb.label}`,
        mb,
        { measured: { size: body, limit: mb.maxBytes } },
      );
    }
    if (mb.messageSize !== 0 && body !== mb.messageSize) {
      return this.replyError(
        p,
        request,
        'EMSGSIZE',
        `${mb.label} takes messages of exactly ${mb.messageSize} bytes; this one is ${body}`,
        mb,
        // The limit is the size it must have, which a message can be under as well as over.
        { measured: { size: body, limit: mb.messageSize } },
      );
    }
    // A run of sends to one mailbox checks the right once: the answer holds until the mailbox's
    // mode, group or owner changes. (Pairs and POSIX handles are checked every time.)
    if (p.sendRight !== mb || p.sendRightAt !== mb.rightsChanged) {
      const denied = this.checkRight(p, mb, 2);
      if (denied !== null) return this.replyError(p, request, denied.code, denied.message, mb, denied);
      if (!mb.rightsAtOpen && mb.policy !== 'pair') {
        p.sendRight = mb;
        p.sendRightAt = mb.rightsChanged;
      }
    }
    if (mb.unread() && (flags & SendFlag.WITHOUT_READER) === 0) {
      return this.replyError(p, request, 'EPIPE', `nobody is reading ${mb.label}`, mb);
    }
    if (mb.brokenPipe())
      return this.replyError(
        p,
        request,
        'EPIPE',
        `nobody will read: every read end of ${mb.label} is closed`,
        mb,
      );
    if (this.totalBytes + body > this.limits.maxTotalBytes) {
      // A sender that would rather lose the message than wait or fail has it dropped: queued, it
      // would take the kernel past its memory limit.
      if (onFull === OnFull.DROP_NEW) {
        mb.dropped++;
        return this.replySent(p, request, Outcome.DROPPED, 0, 0);
      }
      return this.replyError(
        p,
        request,
        'ENOMEM',
        `the kernel's memory limit of ${this.limits.maxTotalBytes} queued bytes is reached (postbox kernel --max-total-bytes)`,
        mb,
      );
    }
    const timeout = getU32(buf, start + Off.TIMEOUT);
    const result = mb.send(p, buf, start, end, request, (flags & SendFlag.RECEIPT) !== 0, onFull, timeout);
    if (result === 'done') {
      p.ackThrough = request;
      p.ackPending = true;
      // What follows in the same input may be more of the same: see sendRun.
      if ((flags & (SendFlag.RECEIPT | SendFlag.TO_PROCESS)) === 0) p.runMailbox = mb;
    }
  }

  /**
   * The frames after a plain send that completed at once (`first`, ending at `pos`), while they
   * are plain sends to the same mailbox with the same flags: validated here frame by frame, then
   * handed to the mailbox as one run (one lookup, one rights check, one delivery write and
   * in-flight record for a burst). The first frame that differs, or that the mailbox cannot
   * take by the common road, is left where it is for {@link frame} to answer on its own.
   * Returns where the run ended.
   */
  private sendRun(
    p: KernelProcess,
    mb: Mailbox,
    buf: Buffer,
    first: number,
    pos: number,
    limit: number,
  ): number {
    const flags = buf[first + Off.FLAGS]!;
    const target = mb.id;
    const maxFrame = p.decoder.maxFrameBytes;
    const maxBody = Math.min(
      mb.maxMessageSize,
      mb.admission === 'in-order' ? mb.maxBytes : Number.POSITIVE_INFINITY,
    );
    const fixed = mb.messageSize;
    const runStart = pos;
    let end = pos;
    let last = 0;
    // A send under an id in use is left to frame(), which refuses it; a run cannot change which
    // ids are (its sends complete at once, and it holds no RECEIVE or TAKE).
    const busy = p.receives.size !== 0 || p.sends.size !== 0;
    while (limit - end >= MESSAGE_HEAD_BYTES) {
      const size = getU32(buf, end) + LENGTH_BYTES;
      if (size < MESSAGE_HEAD_BYTES || size > maxFrame || end + size > limit) break;
      if (
        buf[end + Off.OPCODE] !== Op.SEND ||
        buf[end + Off.FLAGS] !== flags ||
        getU32(buf, end + Off.REQUEST) === 0 ||
        (busy && this.requestInUse(p, getU32(buf, end + Off.REQUEST)) !== null) ||
        getU32(buf, end + Off.TARGET) !== target ||
        buf[end + Off.CODEC]! > 3 ||
        buf[end + Off.ON_FULL]! > OnFull.DROP_NEW ||
        buf[end + Off.HEADERS_LENGTH] !== 0 ||
        buf[end + Off.HEADERS_LENGTH + 1] !== 0 ||
        (buf[end + Off.PRIORITY]! | (buf[end + Off.PRIORITY + 1]! << 8)) > MAX_PRIORITY
      )
        break;
      // A type from 1 to 2^53 - 1: the high word under 2^21 and not both words zero.
      const typeHi = getU32(buf, end + Off.TYPE + 4);
      if (typeHi > 0x1fffff || (typeHi === 0 && getU32(buf, end + Off.TYPE) === 0)) break;
      const body = size - MESSAGE_HEAD_BYTES;
      if (body > maxBody || (fixed !== 0 && body !== fixed)) break;
      end += size;
      last = end;
    }
    if (last === 0) return pos;
    const reached = mb.sendRun(p, buf, runStart, last, this.limits.maxTotalBytes);
    if (reached === runStart) return pos;
    p.ackThrough = mb.runRequest;
    p.ackPending = true;
    return reached;
  }

  private handleReceive(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    const request = buf.readUInt32LE(start + Off.REQUEST);
    if (request === 0) return this.reservedId(p, 'RECEIVE');
    if (end - start !== RECEIVE_FRAME_BYTES)
      return this.fatal(
        p,
        'EPROTO',
        `RECEIVE frame must be ${RECEIVE_FRAME_BYTES} bytes, got ${end - start}`,
      );
    const inUse = this.requestInUse(p, request);
    if (inUse !== null) return this.replyError(p, request, 'EPROTO', inUse);
    if (p.saidBye)
      return this.replyError(p, request, 'ENOTCONN', `${p.label} said goodbye: no receives after it`);
    if (p.receives.size >= this.limits.maxPerProcess)
      return this.replyError(p, request, 'ENOMEM', overLimit(p, p.receives.size, 'receives waiting'));
    const flags = buf[start + Off.FLAGS]!;
    let mb: Mailbox | undefined;
    if ((flags & ReceiveFlag.INBOX) !== 0) mb = p.inbox!;
    else {
      const target = buf.readUInt32LE(start + Off.R_TARGET);
      mb = this.mailboxes.get(target);
      if (mb === undefined) {
        if (target === 0) return this.replyError(p, request, 'EINVAL', badTarget('mailbox'));
        return this.replyError(p, request, 'ENOENT', this.goneMessage(target), this.goneSubject(target));
      }
    }
    const denied = this.checkRight(p, mb, 4);
    if (denied !== null) return this.replyError(p, request, denied.code, denied.message, mb, denied);
    const type = readInt64(buf, start + Off.R_TYPE);
    if (!Number.isSafeInteger(type))
      return this.replyError(p, request, 'EINVAL', `message type ${type} is out of range`, mb);
    const except = (flags & ReceiveFlag.EXCEPT) !== 0;
    const maxSize = buf.readUInt32LE(start + Off.R_MAX_SIZE);
    const stream = (flags & ReceiveFlag.STREAM) !== 0;
    let credit = 1;
    if (stream) {
      credit = Math.min(Math.max(buf.readUInt32LE(start + Off.R_CREDIT), 1), this.limits.maxCredit);
      // Pushing ahead in a priority mailbox could hand out a message before a higher one that
      // arrives later, and under type < 0 before a lower type; there, a stream gets one message
      // at a time (the client library does not open one: it receives each message as asked).
      if (mb.order === 'priority' || type < 0) credit = 1;
    }
    const w = new ReceiveWaiter(
      p,
      request,
      mb,
      { type, except: except && type > 0, from: buf.readUInt32LE(start + Off.R_FROM) },
      flags,
      maxSize === NO_MAX_SIZE ? Number.POSITIVE_INFINITY : maxSize,
      credit,
    );
    p.receives.set(request, w);
    const from = w.sel.from;
    if (from !== 0) {
      if (this.processes.has(from)) this.noteReceiveFrom(from, w);
      else w.senderGone = true;
    }
    mb.receive(w, buf.readUInt32LE(start + Off.R_TIMEOUT));
  }

  private noteReceiveFrom(from: number, w: ReceiveWaiter): void {
    let list = this.receivesFrom.get(from);
    if (list === undefined) {
      list = [];
      this.receivesFrom.set(from, list);
    }
    // Sweep out receives that ended (answered, cancelled, timed out) once they could be half
    // the list: its length stays within twice the live ones, and a sweep is paid for by the
    // pushes since the last. The live ones become the list (spread into push, 131,072 of them
    // from three processes overflowed the stack, and the third process was ended EPROTO).
    if (list.length >= 16 && (list.length & (list.length - 1)) === 0) {
      list = list.filter(isLiveReceive);
      this.receivesFrom.set(from, list);
    }
    list.push(w);
  }

  private handleTake(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    if (end - start !== TAKE_FRAME_BYTES)
      return this.fatal(p, 'EPROTO', `TAKE frame must be ${TAKE_FRAME_BYTES} bytes, got ${end - start}`);
    const request = getU32(buf, start + Off.REQUEST);
    const w = p.receives.get(request);
    // A receive that ended (its mailbox removed) may still see TAKEs that crossed the error.
    if (w === undefined) return;
    const taken = getU32(buf, start + Off.T_TAKEN);
    const more = getU32(buf, start + Off.T_CREDIT);
    const mb = w.mailbox;
    if (!mb.take(w, taken)) {
      return this.replyError(
        p,
        request,
        'EPROTO',
        `TAKE of ${taken} messages on request ${request}, more than were delivered`,
      );
    }
    // In hand: taken, credit not given back (a holdCredit stream's, or a held receive's, jobs).
    const holds = w.stream || (w.flags & ReceiveFlag.HOLD) !== 0;
    if (holds) w.held = Math.max(0, w.held + taken - more);
    const credit = w.credit;
    // Where order forbids pushing ahead (priority, type < 0), a stream keeps a credit of one.
    if (more > 0 && w.stream && !w.ended)
      w.credit =
        mb.order === 'priority' || w.sel.type < 0 ? 1 : Math.min(w.credit + more, this.limits.maxCredit);
    // A held receive stays known, for `ps`, until its credit comes back.
    if ((!w.stream || w.ended) && w.inflight === 0 && !w.waiting && (w.stream || w.held === 0))
      p.receives.delete(request);
    // Queued messages first, then blocked senders: a receiver with credit must never be handed
    // a new message while an older one it would take is still queued. Only credit coming back
    // can give the pump work: a TAKE queues nothing and leaves the other receivers' credit as it
    // was, and none with credit had a message it takes queued. Pumping after every TAKE looked
    // at every receiver waiting: with 10,000 msgrcv waiting each for its own type beside 100
    // requests queued for their server, each one's TAKE cost the kernel 150–170 µs.
    if (w.credit > credit) mb.pump();
    mb.admitBlocked();
    // A stream from a terminated process ends once it has had all that process left queued;
    // a receive from one ends once none of its messages is left in the taker's hands either.
    if (w.senderGone) mb.endIfSenderGone(w);
    if (taken > 0) mb.recheckSendersGone();
  }

  /** A message recalled from a stream, given back unread: see {@link Mailbox.returned}. */
  private handleReturn(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    if (end - start !== RECALL_FRAME_BYTES)
      return this.fatal(p, 'EPROTO', `RETURN frame must be ${RECALL_FRAME_BYTES} bytes, got ${end - start}`);
    const request = getU32(buf, start + Off.REQUEST);
    const w = p.receives.get(request);
    // A stream that ended meanwhile gave its messages back already.
    if (w === undefined) return;
    const seq = readInt64(buf, start + Off.C_SEQ);
    if (!w.mailbox.returned(w, seq))
      this.replyError(
        p,
        request,
        'EPROTO',
        `RETURN of message ${seq}, which was not recalled from request ${request}`,
      );
  }

  /** Asks w's process for the message `seq` back, if it has not handed it out yet. */
  recall(w: ReceiveWaiter, seq: number): void {
    const p = w.peer as KernelProcess;
    const o = p.writer.reserve(RECALL_FRAME_BYTES);
    writeHead(p.writer.buf, o, RECALL_FRAME_BYTES, Op.RECALL, 0, 0, w.request);
    writeInt64(p.writer.buf, seq, o + Off.C_SEQ);
    p.writer.commit(RECALL_FRAME_BYTES);
    this.markDirty(p);
  }

  private handleCancel(p: KernelProcess, request: number): void {
    const w = p.receives.get(request);
    if (w !== undefined) {
      // A single receive already answered is past cancelling: the DELIVER the process is about
      // to read is the kernel's final answer.
      if (!w.waiting && !w.stream) return;
      const mb = w.mailbox;
      mb.stopWaiting(w);
      mb.giveBack(w);
      p.receives.delete(request);
      this.replyError(p, request, 'ECANCELED', `receive from ${mb.label} was cancelled`, mb);
      mb.pump();
      return;
    }
    const sw = p.sends.get(request);
    if (sw !== undefined) sw.mailbox.withdrawSend(sw, 'ECANCELED', `send to ${sw.mailbox.label} was aborted`);
  }

  /**
   * Why `request` cannot name a new operation of p's, or null if it can: an open receive (single,
   * until its TAKE; a STREAM, until it ends) or a send still waiting (for room or its receipt)
   * already has it. Answers carry the id alone, and TAKE and CANCEL name an operation by it, so
   * two under one id would be told apart by nothing: a CANCEL meant for the send would stop the
   * receive, the send's ERROR would read as the receive's.
   */
  private requestInUse(p: KernelProcess, request: number): string | null {
    if (p.receives.size !== 0 && p.receives.has(request))
      return `request id ${request} is already in use by a receive still open`;
    if (p.sends.size !== 0 && p.sends.has(request))
      return `request id ${request} is already in use by a send still waiting`;
    return null;
  }

  /**
   * An operation with request id 0: its answers would carry 0, which means "fatal, about the
   * connection" to every client, so it is treated as that.
   */
  private reservedId(p: KernelProcess, what: string): void {
    this.fatal(p, 'EPROTO', `${what} with request id 0: id 0 is the connection's own, not an operation's`);
  }

  private handleCallFrame(p: KernelProcess, buf: Buffer, start: number, end: number): void {
    const request = buf.readUInt32LE(start + Off.REQUEST);
    if (request === 0) return this.reservedId(p, 'CALL');
    // Its RESULT would read as that operation's answer.
    const inUse = this.requestInUse(p, request);
    if (inUse !== null) return this.replyError(p, request, 'EPROTO', inUse);
    let payload: unknown;
    try {
      payload = decodeJsonPayload(buf, start, end);
    } catch {
      return this.replyError(p, request, 'EINVAL', 'CALL payload is not valid JSON');
    }
    handleCall(this, p, request, payload);
    // A CALL's answer can be large (a `list` of every mailbox), and a read can hold thousands
    // of CALLs: past the backlog limit the rest of the read waits, as bytes, until the process
    // has read its answers. Without this one small write could make gigabytes of answers.
    if (p.unread > this.limits.outputHighWater) this.congest(p);
  }

  /**
   * The process is not reading what it is sent: stop delivering to it and stop taking its
   * requests, so the kernel's memory for it stays bounded, until its socket drains. Its frames
   * wait as bytes; its socket is still read, up to {@link HELD_WHILE_CONGESTED}, so that its
   * heartbeats are heard: a process on a slow link is slow, not gone.
   */
  private congest(p: KernelProcess): void {
    if (p.ending) return;
    p.decoder.pause();
    if (p.congested) return;
    p.congested = true;
    p.backlogSeen = Number.POSITIVE_INFINITY;
    this.holdInput(p);
  }

  /** Stops reading a congested process once what it sent meanwhile reaches the bound. */
  private holdInput(p: KernelProcess): void {
    if (p.decoder.buffered > HELD_WHILE_CONGESTED) p.socket.pause();
  }

  /**
   * A congested process is ending (its end of file, or its silence): the frames it sent before
   * are handled first, as they are for a process the kernel was reading. Its takes above all: a
   * message whose take it wrote was its, and must not go back to the mailbox for another
   * receiver (a receive() returned it; a holdCredit handler ran on it).
   */
  private handleHeld(p: KernelProcess): void {
    if (!p.congested || p.terminated || !p.decoder.paused) return;
    p.congested = false;
    p.ending = true;
    this.tick();
    this.feed(p, null);
  }

  /** Its socket drained: deliveries and requests go on, the frames held back first. */
  private uncongest(p: KernelProcess): void {
    if (!p.congested || p.terminated) return;
    p.congested = false;
    if (p.roomWanted === 0) p.socket.resume();
    if (p.decoder.paused) {
      this.tick();
      this.feed(p, null);
    }
    for (const w of p.receives.values()) if (w.waiting) w.mailbox.pump();
  }

  // ── rights ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Checks a right (4 receive, 2 send) for p on mb; null if granted, else the refusal. An EBUSY
   * names who holds mb: `holders`, each of them (a pair's two ends, in the order they joined), and
   * `process`, the first of them, for a handler that reads one.
   */
  checkRight(
    p: KernelProcess,
    mb: Mailbox,
    right: 2 | 4,
  ): ({ code: ErrorCode; message: string } & ErrorDetail) | null {
    const lacking = this.lacksRight(p, mb, right);
    if (lacking !== null) return { code: 'EACCES', message: lacking };
    if (mb.policy === 'pair' && !mb.holders.includes(p.id)) {
      if (mb.holders.length >= 2)
        return {
          code: 'EBUSY',
          message: `${mb.label} is a pair already linking ${mb.holders.map((id) => this.processLabel(id)).join(' and ')}`,
          process: this.processSubject(mb.holders[0]!),
          holders: mb.holders.map((id) => this.processSubject(id)),
        };
      mb.holders.push(p.id);
      p.holding ??= new Set();
      p.holding.add(mb);
    } else if (right === 4 && mb.policy === 'exclusive' && mb.holders[0] !== p.id) {
      if (mb.holders.length > 0)
        return {
          code: 'EBUSY',
          message: `${this.processLabel(mb.holders[0]!)} holds the receive right of ${mb.label}`,
          process: this.processSubject(mb.holders[0]!),
          holders: [this.processSubject(mb.holders[0]!)],
        };
      mb.holders.push(p.id);
      p.holding ??= new Set();
      p.holding.add(mb);
    }
    return null;
  }

  /** How an error names process `id`: with its name, as other errors do, if it has one. */
  private processLabel(id: number): string {
    return this.processes.get(id)?.label ?? `process ${id}`;
  }

  /** Process `id` as an error's `process`: its name if it has one, else its id. */
  processSubject(id: number): string {
    return this.processes.get(id)?.name ?? String(id);
  }

  /** Why p lacks a right on mb by its mode (or, POSIX, its handles), or null if it has it. */
  private lacksRight(p: KernelProcess, mb: Mailbox, right: 2 | 4): string | null {
    if (mb.rightsAtOpen) {
      // POSIX queues: the mode was checked when the handle was opened; the handle is the right.
      const roles = p.roles?.get(mb);
      if (roles === undefined || (right === 4 ? roles.read : roles.write) === 0)
        return `${p.label} has no handle on ${mb.label} open for ${right === 4 ? 'reading' : 'writing'}`;
      return null;
    }
    if ((this.modeBits(p, mb) & right) !== 0) return null;
    const what = right === 4 ? 'receive' : 'send';
    // Sent to the passkey, not only to the mode (which would send them to chmod), as an open is.
    const passkey = mb.passkey === null ? '' : ': its group is those it was handed to, with its passkey';
    return `${p.label} may not ${what} ${right === 4 ? 'from' : 'to'} ${mb.label} (mode 0${mb.mode.toString(8).padStart(3, '0')}): it lacks the ${what} right${passkey}`;
  }

  /**
   * The rights on mb changed (chmod, grant, revoke, transfer): a receive or a send already
   * waiting there for a process that has lost the right fails with EACCES, as msgrcv and msgsnd
   * check the right again when they wake, instead of going on as if it were still held.
   */
  recheckWaiters(mb: Mailbox): void {
    for (const w of [...mb.receivers]) {
      const lacking = this.lacksRight(w.peer as KernelProcess, mb, 4);
      if (lacking !== null) mb.endReceive(w, 'EACCES', lacking);
    }
    for (const sw of mb.blocked.toArray()) {
      const lacking = this.lacksRight(sw.peer as KernelProcess, mb, 2);
      if (lacking !== null) mb.withdrawSend(sw, 'EACCES', lacking);
    }
  }

  /** The mode's bits that apply to p: owner's, group's, or others'. */
  modeBits(p: KernelProcess, mb: Mailbox): number {
    if (mb.owner === p) return (mb.mode >> 6) & 7;
    if (mb.group?.has(p.id)) return (mb.mode >> 3) & 7;
    return mb.mode & 7;
  }

  goneMessage(id: number): string {
    if (!(id > 0 && id < this.nextMailboxId)) return `no mailbox #${id}`;
    const name = this.removedNames.get(id);
    return name === undefined ? `mailbox #${id} was removed` : `mailbox '${name}' (#${id}) was removed`;
  }

  /** The name an error about a mailbox that is not there gives it: its old name, if it had one. */
  goneSubject(id: number): string | undefined {
    return this.removedNames.get(id);
  }

  // ── lifetime ────────────────────────────────────────────────────────────────────────────────

  /** Removes a mailbox now; every waiter on it fails with EIDRM. */
  removeMailbox(mb: Mailbox, why: string, code: ErrorCode = 'EIDRM'): void {
    mb.remove(why, code);
    if (this.mailboxes.delete(mb.id) && mb.inboxOf === 0) this.listed.removed();
    if (mb.name !== null) {
      // Ids are never reused, so a late send on a handle can still be told which mailbox went.
      this.removedNames.set(mb.id, mb.name);
      if (this.removedNames.size > REMOVED_NAMES_KEPT) {
        const oldest = this.removedNames.keys().next().value as number;
        this.removedNames.delete(oldest);
      }
    }
    if (mb.name !== null && this.mailboxByName.get(mb.name) === mb) this.mailboxByName.delete(mb.name);
    if (mb.key !== 0 && this.mailboxByKey.get(mb.key) === mb) this.mailboxByKey.delete(mb.key);
    if (mb.notify !== null) mb.notify = null;
    mb.owner?.owned?.delete(mb);
    // Nothing of the kernel's may lead to a removed mailbox for long: a handle on it kept it, its
    // messages (which no limit counted any more) and its owner's whole process, dead or not,
    // until the holder closed it or ended (the eleventh session's soak audit: ~2.9 KB a
    // create-and-delete, a whole mailbox's messages, a dead process per RPC caller). A late
    // close of such a handle is a close of an unknown handle, which succeeds.
    mb.owner = null;
    for (const opener of mb.openers) {
      const q = opener as KernelProcess;
      const roles = q.roles?.get(mb);
      if (roles === undefined) continue;
      for (const id of roles.ids) q.handles.delete(id);
      q.roles?.delete(mb);
    }
    if (mb.openers.size > 0) mb.openers.clear(); // clear() allocates a table even when empty
    for (const id of mb.holders) this.processes.get(id)?.holding?.delete(mb);
    if (mb.group !== null) for (const id of mb.group) this.processes.get(id)?.grantedOn?.delete(mb);
  }

  /**
   * A send that has not completed goes with its process, whatever it waits for: room, its
   * receipt, or a rendezvous. Its process can no longer be told the outcome, and its client
   * reported the send failed (ENOTCONN), so delivering it later would contradict that. One in a
   * receiver's hands completes if taken, else it is dropped when it comes back. All of them go
   * before any sender is admitted (by the caller, for every mailbox in `touched`): withdrawing one
   * at a time with admission let in a later send of the same process that fitted where an earlier
   * one had not, a hole in the middle of its stream (a FIFO's reader got write 119 without
   * 116-118). Called at the goodbye, not only at the end: the client fails these sends as soon as
   * its goodbye is answered, and room that came before its socket closed let them in.
   */
  private withdrawSends(p: KernelProcess, touched: Set<Mailbox>): void {
    for (const sw of [...p.sends.values()]) {
      sw.mailbox.withdrawSend(sw, 'ECANCELED', 'sender terminated', false);
      touched.add(sw.mailbox);
    }
    p.sends.clear();
  }

  /** Queued messages first, then blocked senders, in each mailbox a departure touched. */
  private moveOn(touched: Set<Mailbox>): void {
    for (const mb of touched) {
      if (mb.removed) continue;
      mb.pump();
      mb.admitBlocked();
    }
  }

  /**
   * A process said goodbye (BYE): its waiting sends are withdrawn now, its receives wait for
   * nothing more, and sends and receives after it are refused (ENOTCONN), since its client fails
   * them all as the goodbye is answered. A message handed to a receive in between was given back
   * only at the socket's close, after others had received later ones: out of order.
   */
  goodbye(p: KernelProcess): void {
    p.saidBye = true;
    // What they already hold stays theirs until the end: a TAKE for it may follow the BYE.
    for (const w of p.receives.values()) w.mailbox.stopWaiting(w);
    const touched = new Set<Mailbox>();
    this.withdrawSends(p, touched);
    this.moveOn(touched);
  }

  /** A process is gone: give back, withdraw, remove and tell, in that order. */
  terminate(p: KernelProcess, reason: TerminationReason): void {
    this.connections.delete(p);
    if (p.helloTimer !== null) clearTimeout(p.helloTimer);
    if (p.terminated) return;
    p.terminated = true;
    // It may end mid-chunk (a fatal frame after queued SENDs); what follows reads queued bytes.
    this.slab.settle();
    if (p.helloBytes > 0) this.countHelloBytes(p, 0);
    if (p.id === 0 && p.transport === 'tcp') this.tcpUnjoined--;
    this.gate.closed(this.openConnections, this.processes.size - (p.id === 0 ? 0 : 1));
    if (p.room > 0 || p.roomWanted > 0) {
      // Read again so that its close is not a reset (fatal): input() drops what comes.
      if (p.roomWanted > 0 && !p.socket.destroyed) p.socket.resume();
      this.room.leave(p);
    }
    if (p.id === 0) return;
    if (this.processes.delete(p.id)) this.processOrder.removed();
    if (p.name !== null && this.processByName.get(p.name) === p) this.processByName.delete(p.name);
    const touched = new Set<Mailbox>();
    for (const w of p.receives.values()) {
      w.mailbox.stopWaiting(w);
      w.mailbox.giveBack(w);
      touched.add(w.mailbox);
    }
    p.receives.clear();
    this.withdrawSends(p, touched);
    if (p.holding !== null) {
      for (const mb of p.holding) {
        const i = mb.holders.indexOf(p.id);
        if (i >= 0) mb.holders.splice(i, 1);
        touched.add(mb);
      }
      p.holding = null;
    }
    // Its grants end with it, as its other rights do: its id would stay in each group for good,
    // listed by stat, and its owner could not revoke it (the process is gone: ESRCH).
    if (p.grantedOn !== null) {
      for (const mb of p.grantedOn) mb.group?.delete(p.id);
      p.grantedOn = null;
    }
    if (p.roles !== null) {
      for (const mb of p.roles.keys()) mb.openers.delete(p);
      p.roles = null;
    }
    for (const h of p.handles.values()) {
      touched.add(h.mailbox);
      if (!h.mailbox.removed && h.mailbox.closeHandle(h.read, h.write))
        this.removeMailbox(h.mailbox, 'its last handle closed');
    }
    p.handles.clear();
    if (p.notifying !== null) {
      for (const mb of p.notifying) if (mb.notify?.peer === p) mb.notify = null;
      p.notifying = null;
    }
    if (p.awaitingReader !== null) {
      for (const [mb, ids] of p.awaitingReader)
        if (mb.readerWaits !== null) for (const id of ids) mb.readerWaits.delete(id);
      p.awaitingReader = null;
      p.readerWaitCount = 0;
    }
    // Let go of first: deleting its mailboxes one by one from a set of 300,000 shrank the set's
    // table again and again, a sixth of the time this end took.
    const owned = p.owned;
    p.owned = null;
    if (owned !== null)
      for (const mb of owned) {
        if (mb.systemOwned) {
          mb.owner = null;
          mb.rightsChanged++;
        } else {
          this.removeMailbox(mb, `its owner ${p.label} terminated`);
        }
      }
    if (p.inbox !== null) this.removeMailbox(p.inbox, `${p.label} terminated`);
    this.moveOn(touched);
    if (p.watchers !== null) {
      for (const [monitor, watcher] of p.watchers) {
        watcher.watching?.delete(monitor);
        if (watcher.terminated) continue;
        watcher.writer.append(encodeJsonFrame(Op.EVENT, 0, 0, monitor, downEvent(p, reason)));
        this.markDirty(watcher);
      }
      p.watchers = null;
    }
    if (p.watching !== null) {
      for (const [monitor, watched] of p.watching) watched.watchers?.delete(monitor);
      p.watching = null;
    }
    const from = this.receivesFrom.get(p.id);
    if (from !== undefined) {
      this.receivesFrom.delete(p.id);
      for (const w of from) {
        if (!isLiveReceive(w)) continue;
        w.senderGone = true;
        w.mailbox.endIfSenderGone(w);
      }
    }
    // Bytes it sent that were never handled (a frame it began and did not finish, frames held
    // while it did not read): said, so that a sender that died mid-write is not a mystery of a
    // message that never came.
    const unhandled = p.decoder.buffered;
    this.log(
      `${p.label} terminated (${reason === 'fault' ? "the kernel's fault" : reason})${unhandled > 0 ? `; ${unhandled} bytes it sent were not handled (a frame begun and not finished, or held while it did not read)` : ''}`,
    );
  }

  private checkHeartbeats(): void {
    const now = Date.now();
    const limit = this.limits.heartbeatMs * 3;
    // Past one interval, how long this check is late: time the kernel itself did not run.
    const stalled = now - this.lastCheck - this.limits.heartbeatMs;
    this.lastCheck = now;
    if (stalled > this.limits.heartbeatMs) {
      // The kernel was stopped, a VM paused, or its event loop held: what its processes sent
      // meanwhile waits unread in their sockets, and this check runs before it is read.
      // Counting that time as their silence would end every TCP process at once for the
      // kernel's own stall, so it is not counted. Only that time: a kernel late at every check
      // (overloaded) still ends a process gone silent, a few checks later.
      for (const p of this.processes.values())
        if (p.transport === 'tcp') p.lastHeard = Math.min(now, p.lastHeard + stalled);
      this.room.excuse(stalled, now);
    }
    for (const p of this.processes.values()) {
      if (p.transport !== 'tcp') continue;
      if (p.congested) {
        // If it sent so much meanwhile that the kernel stopped reading it, its heartbeats are
        // not heard: then that it takes what it is sent is the sign of life.
        const backlog = p.socket.writableLength;
        if (backlog < p.backlogSeen) p.lastHeard = now;
        p.backlogSeen = backlog;
      }
      if (now - p.lastHeard > limit) {
        const congested = p.congested;
        this.handleHeld(p);
        if (p.terminated) continue;
        // Told, not just cut off: a process that was only stopped reads this when it resumes,
        // and knows what was pushed to it has gone back to the mailbox (no second delivery).
        const why = congested
          ? `heard nothing from it, and it read nothing of what it was sent, for over ${limit} ms`
          : `heard nothing from it for over ${limit} ms`;
        this.fatal(p, 'ETIMEDOUT', `terminated: ${why}`, 'timeout');
      }
    }
    for (const p of this.room.overdue(now, limit)) {
      this.fatal(
        p,
        'ETIMEDOUT',
        `terminated: its frame of ${p.room} bytes was still incomplete after ${limit} ms, holding room other processes wait for (postbox kernel --max-partial-bytes)`,
        'timeout',
      );
    }
  }

  /**
   * Shuts down: every waiting sender and receiver gets ESHUTDOWN, output is flushed, and every
   * connection is closed.
   */
  shutdown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.unjoinedLog.flush();
    this.faultLog.flush();
    // Nobody will wait for these to be read now, and they would keep the process alive.
    for (const socket of this.lingering) socket.destroy();
    for (const mb of [...this.mailboxes.values()])
      this.removeMailbox(mb, 'the kernel is shutting down', 'ESHUTDOWN');
    // Monitors are told that what they watch ends (reason 'shutdown') before the kernel's last
    // word fails everything else the watcher waits for.
    for (const p of this.connections) {
      if (p.watchers === null) continue;
      for (const [monitor, watcher] of p.watchers) {
        watcher.watching?.delete(monitor);
        watcher.writer.append(
          encodeJsonFrame(Op.EVENT, 0, 0, monitor, {
            event: 'down',
            process: p.id,
            name: p.name,
            reason: 'shutdown',
          }),
        );
      }
      p.watchers = null;
    }
    for (const p of this.connections) {
      p.writer.append(
        encodeJsonFrame(Op.ERROR, 0, WireErrorCode.ESHUTDOWN, 0, { message: 'the kernel is shutting down' }),
      );
    }
    this.flush();
    for (const p of [...this.connections]) {
      p.socket.end();
      this.terminate(p, 'shutdown');
    }
  }
}

const kKernel = Symbol('kernel');
type KernelProcessWithKernel = KernelProcess & { [kKernel]: Kernel };

function onFrame(p: KernelProcess, buf: Buffer, start: number, end: number, limit: number): void {
  (p as KernelProcessWithKernel)[kKernel].handleFrame(p, buf, start, end, limit);
}

function isHeaderObject(buf: Buffer, at: number, length: number): boolean {
  try {
    const v: unknown = JSON.parse(buf.toString('utf8', at, at + length));
    return (
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      Object.values(v).every((x) => typeof x === 'string')
    );
  } catch {
    return false;
  }
}

/** Still known to its process: not answered, cancelled or timed out, nor the process gone. */
/**
 * A target of 0 names nothing (ids start at 1): said so, not answered as a mailbox removed or a
 * process that has ended, which a client's mistake would otherwise read as.
 */
function badTarget(what: 'mailbox' | 'process'): string {
  return `target must be a ${what} id (a whole number from 1 to 4294967295), not 0`;
}

const isLiveReceive = (w: ReceiveWaiter): boolean =>
  !w.peer.terminated && w.peer.receives.get(w.request) === w;

function flushAll(kernel: Kernel): void {
  kernel.flush();
}

/**
 * What a congested process may send before the kernel stops reading it: thousands of heartbeats,
 * and a bound on what it can make the kernel hold.
 */
const HELD_WHILE_CONGESTED = 256 * 1024;

/**
 * What connections that have not said HELLO may hold together in frames begun: 256 HELLOs of the
 * largest size allowed (HELLO_MAX_FRAME), where a real HELLO is a few hundred bytes, whole.
 */
const HELLO_BYTES_HELD = 256 * HELLO_MAX_FRAME;

/** How long the log sums up connections closed before HELLO after saying the first of a kind. */
const UNJOINED_LOG_WINDOW_MS = 10_000;
/** How long the log sums up the kernel's faults of one kind (a CALL op, frames) after saying the first. */
const FAULT_LOG_WINDOW_MS = 10_000;
/** How an error that is the kernel's own fault begins. */
const INTERNAL_ERROR = 'internal error';

/** What was thrown, as a fault's log line and error say it: its class and message. */
function thrownWhat(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : `a thrown ${typeof err}`;
}

/** Where it was thrown, as " (at fn (file:line:col))", or nothing if it has no stack. */
function thrownWhere(err: unknown): string {
  const frame = err instanceof Error ? /\n\s+(at .*)/.exec(err.stack ?? '') : null;
  return frame === null ? '' : ` (${frame[1]!})`;
}

/**
 * A monitor's EVENT for p's end. The kernel's own fault is told as a crash that says so: a client
 * that predates `kernelFault` lets a member it does not know through, where a reason it does not
 * know would fail its connection.
 */
function downEvent(p: KernelProcess, reason: TerminationReason): Record<string, unknown> {
  if (reason === 'fault')
    return { event: 'down', process: p.id, name: p.name, reason: 'crash', kernelFault: true };
  return { event: 'down', process: p.id, name: p.name, reason };
}

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * A raw peer of the kernel: a bare socket that writes hand-made bytes and collects whatever
 * frames come back, decoded with the same FrameDecoder the kernel and the client use. Tests use
 * it to say things the client library never would (bad frames, wrong versions, a reader that
 * stops reading) and to see exactly what the kernel answers.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { type ErrorCode, WireErrorCode } from '../../src/protocol/errors.js';
import {
  encodeJsonFrame,
  HEAD_BYTES,
  MESSAGE_HEAD_BYTES,
  NO_MAX_SIZE,
  Off,
  Op,
  PROTOCOL_VERSION,
  RECEIVE_FRAME_BYTES,
  TAKE_FRAME_BYTES,
  writeHead,
  writeInt64,
} from '../../src/protocol/frame.js';

/** One frame the kernel sent, copied out of the stream. */
export interface RawFrame {
  op: number;
  flags: number;
  aux: number;
  request: number;
  /** The whole frame, length field included. */
  bytes: Buffer;
}

/** Where a kernel listens: a Unix socket path, or a TCP address. */
export type PeerAddress = string | { host: string; port: number };

const codeByWire = new Map<number, ErrorCode>(
  Object.entries(WireErrorCode).map(([name, num]) => [num, name as ErrorCode]),
);

/** The JSON payload of a frame (HELLO, CALL, WELCOME, RESULT, ERROR, EVENT), or undefined. */
export function framePayload(f: RawFrame): unknown {
  if (f.bytes.length <= HEAD_BYTES) return undefined;
  return JSON.parse(f.bytes.toString('utf8', HEAD_BYTES));
}

/** For an ERROR frame: its code (by name) and message. */
export function frameError(f: RawFrame): { code: ErrorCode | `wire ${number}`; message: string } {
  const payload = framePayload(f) as { message?: unknown } | undefined;
  return {
    code: codeByWire.get(f.aux) ?? `wire ${f.aux}`,
    message: typeof payload?.message === 'string' ? payload.message : '',
  };
}

/** Rejects after ms unless the promise settles first; the timer never outlives it. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class RawPeer {
  readonly socket: Socket;
  /** Every frame received, in order. */
  readonly frames: RawFrame[] = [];
  /** Bytes received in all. */
  received = 0;
  /** Set if the kernel's output could not be framed (itself a kernel bug). */
  decodeError: Error | null = null;
  /** Resolves when the socket has closed, whoever closed it. */
  readonly closed: Promise<void>;
  private isClosed = false;
  private readonly watchers = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    const decoder = new FrameDecoder(256 * 1024 * 1024, (buf, start, end) => {
      this.frames.push({
        op: buf[start + Off.OPCODE]!,
        flags: buf[start + Off.FLAGS]!,
        aux: buf.readUInt16LE(start + Off.AUX),
        request: buf.readUInt32LE(start + Off.REQUEST),
        bytes: Buffer.from(buf.subarray(start, end)),
      });
    });
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.decodeError !== null) return;
      try {
        decoder.push(chunk);
      } catch (err) {
        this.decodeError = err as Error;
      }
      this.notify();
    });
    // Errors (EPIPE, ECONNRESET when the kernel hangs up first) end in 'close' like any other end.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.isClosed = true;
        this.notify();
        resolve();
      });
    });
  }

  /** Opens a connection; rejects if it is not up within timeoutMs. */
  static async open(address: PeerAddress, timeoutMs = 5000): Promise<RawPeer> {
    const socket = typeof address === 'string' ? netConnect(address) : netConnect(address.port, address.host);
    const peer = new RawPeer(socket);
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        }),
        timeoutMs,
        'raw connect',
      );
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return peer;
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Writes HELLO and waits for the kernel's WELCOME or ERROR, whichever comes. */
  async hello(payload: Record<string, unknown> = { pid: process.pid }, timeoutMs = 5000): Promise<RawFrame> {
    this.write(helloFrame(payload));
    return this.waitFor((f) => f.op === Op.WELCOME || f.op === Op.ERROR, timeoutMs, 'WELCOME or ERROR');
  }

  /** Resolves with the first frame (already received or to come) that matches. */
  waitFor(match: (f: RawFrame) => boolean, timeoutMs: number, what = 'frame'): Promise<RawFrame> {
    return this.until(() => this.frames.find(match), timeoutMs, what);
  }

  /** Resolves true once the socket is closed, false if it is still open after timeoutMs. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    try {
      await this.until(() => (this.isClosed ? true : undefined), timeoutMs, 'close');
      return true;
    } catch {
      return false;
    }
  }

  /** Stops reading: the kernel's output backs up in the sockets. */
  pause(): void {
    this.socket.pause();
  }

  /** Closes at once and waits for the close (bounded). */
  async destroy(timeoutMs = 5000): Promise<void> {
    this.socket.destroy();
    await within(this.closed, timeoutMs, 'raw socket close');
  }

  private until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    if (this.isClosed) {
      return Promise.reject(
        new Error(`connection closed while waiting for ${what}; frames: ${this.describe()}`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const check = (): void => {
        const v = probe();
        if (v === undefined) {
          if (this.isClosed)
            finish(new Error(`connection closed while waiting for ${what}; frames: ${this.describe()}`));
          return;
        }
        finish(null, v);
      };
      const finish = (err: Error | null, v?: T): void => {
        this.watchers.delete(check);
        clearTimeout(timer);
        if (err !== null) reject(err);
        else resolve(v as T);
      };
      const timer = setTimeout(
        () => finish(new Error(`no ${what} within ${timeoutMs} ms; frames: ${this.describe()}`)),
        timeoutMs,
      );
      this.watchers.add(check);
    });
  }

  private notify(): void {
    for (const w of [...this.watchers]) w();
  }

  /** A short account of the frames received, for failure messages. */
  describe(): string {
    return (
      this.frames
        .slice(0, 20)
        .map((f) =>
          f.op === Op.ERROR
            ? `ERROR(${JSON.stringify(frameError(f))})`
            : `0x${f.op.toString(16)}#${f.request}`,
        )
        .join(', ') || '(none)'
    );
  }
}

// ── frame builders: valid frames, for tests to send as they are or to spoil ─────────────────

export function helloFrame(payload: Record<string, unknown>, version: number = PROTOCOL_VERSION): Buffer {
  return encodeJsonFrame(Op.HELLO, 0, version, 0, payload);
}

export function callFrame(request: number, payload: unknown): Buffer {
  return encodeJsonFrame(Op.CALL, 0, 0, request, payload);
}

/** A CALL whose payload is the given text as it is (for bad JSON). */
export function rawCallFrame(request: number, text: string | Buffer): Buffer {
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const buf = Buffer.alloc(HEAD_BYTES + body.length);
  writeHead(buf, 0, buf.length, Op.CALL, 0, 0, request);
  body.copy(buf, HEAD_BYTES);
  return buf;
}

/** A frame that is only the common head (PING, CANCEL, or any opcode). */
export function headFrame(op: number, request: number, flags = 0, aux = 0): Buffer {
  const buf = Buffer.alloc(HEAD_BYTES);
  writeHead(buf, 0, HEAD_BYTES, op, flags, aux, request);
  return buf;
}

export interface SendFields {
  request: number;
  target: number;
  body?: Buffer;
  headers?: Buffer;
  flags?: number;
  codec?: number;
  onFull?: number;
  timeout?: number;
  priority?: number;
  type?: number;
  sender?: number;
}

export function sendFrame(f: SendFields): Buffer {
  const headers = f.headers ?? Buffer.alloc(0);
  const body = f.body ?? Buffer.alloc(0);
  const size = MESSAGE_HEAD_BYTES + headers.length + body.length;
  const buf = Buffer.alloc(size);
  writeHead(buf, 0, size, Op.SEND, f.flags ?? 0, 0, f.request);
  buf[Off.CODEC] = f.codec ?? 0;
  buf[Off.ON_FULL] = f.onFull ?? 0;
  buf.writeUInt32LE(f.target >>> 0, Off.TARGET);
  buf.writeUInt32LE((f.sender ?? 0) >>> 0, Off.SENDER);
  buf.writeUInt32LE((f.timeout ?? 0) >>> 0, Off.TIMEOUT);
  buf.writeUInt16LE(f.priority ?? 0, Off.PRIORITY);
  buf.writeUInt16LE(headers.length, Off.HEADERS_LENGTH);
  writeInt64(buf, f.type ?? 1, Off.TYPE);
  headers.copy(buf, MESSAGE_HEAD_BYTES);
  body.copy(buf, MESSAGE_HEAD_BYTES + headers.length);
  return buf;
}

export interface ReceiveFields {
  request: number;
  target: number;
  flags?: number;
  from?: number;
  timeout?: number;
  /** Largest message accepted; default none (NO_MAX_SIZE). */
  maxSize?: number;
  credit?: number;
  type?: number;
}

export function receiveFrame(f: ReceiveFields): Buffer {
  const buf = Buffer.alloc(RECEIVE_FRAME_BYTES);
  writeHead(buf, 0, RECEIVE_FRAME_BYTES, Op.RECEIVE, f.flags ?? 0, 0, f.request);
  buf.writeUInt32LE(f.target >>> 0, Off.R_TARGET);
  buf.writeUInt32LE((f.from ?? 0) >>> 0, Off.R_FROM);
  buf.writeUInt32LE((f.timeout ?? 0) >>> 0, Off.R_TIMEOUT);
  buf.writeUInt32LE((f.maxSize ?? NO_MAX_SIZE) >>> 0, Off.R_MAX_SIZE);
  buf.writeUInt32LE((f.credit ?? 1) >>> 0, Off.R_CREDIT);
  writeInt64(buf, f.type ?? 0, Off.R_TYPE);
  return buf;
}

export function takeFrame(request: number, taken: number, credit: number): Buffer {
  const buf = Buffer.alloc(TAKE_FRAME_BYTES);
  writeHead(buf, 0, TAKE_FRAME_BYTES, Op.TAKE, 0, 0, request);
  buf.writeUInt32LE(taken >>> 0, Off.T_TAKEN);
  buf.writeUInt32LE(credit >>> 0, Off.T_CREDIT);
  return buf;
}

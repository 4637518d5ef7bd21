/**
 * The wire protocol: docs/protocol.md against the code.
 *
 * (a) every ```hex NAME block of docs/protocol.md equals what the kernel or the client would
 *     write, and decodes to the fields the document claims; the reference client produces and
 *     understands the documented frames (against a fake kernel); the documented session replays
 *     byte for byte against a real kernel over a raw socket.
 * (b) FrameDecoder: any split of a stream decodes the same; bad lengths are fatal.
 * (c) errors: wire numbers round-trip to their classes.
 * (d) codecs: bodies round-trip.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Unpackr } from 'msgpackr';
import { Connection } from '../src/client/connection.js';
import { Message } from '../src/client/message.js';
import { KERNEL_VERSION } from '../src/kernel/kernel.js';
import { defaultLimits } from '../src/kernel/limits.js';
import { type CodecName, codecName, decodeBody, encodeBody } from '../src/protocol/codec.js';
import { FrameDecoder, FrameError } from '../src/protocol/decoder.js';
import * as errorsModule from '../src/protocol/errors.js';
import {
  AbortedError,
  BrokenPipeError,
  BusyError,
  ClosedError,
  ConnectionLostError,
  ConnectionRefusedError,
  type ErrorCode,
  type ErrorSubject,
  ExistsError,
  errorFromWire,
  InvalidArgumentError,
  MessageSizeError,
  makeError,
  NoMessageError,
  NoProcessError,
  NotFoundError,
  OutOfMemoryError,
  PermissionError,
  PostboxError,
  ProtocolError,
  RemovedError,
  ShutdownError,
  TimeoutError,
  TooBigError,
  WireErrorCode,
  WouldBlockError,
} from '../src/protocol/errors.js';
import {
  Codec,
  decodeJsonPayload,
  encodeHeadFrame,
  encodeJsonFrame,
  HEAD_BYTES,
  MESSAGE_HEAD_BYTES,
  Off,
  OnFull,
  Op,
  Outcome,
  PROTOCOL_VERSION,
  RECEIVE_FRAME_BYTES,
  ReceiveFlag,
  readInt64,
  SENT_FRAME_BYTES,
  SendFlag,
  TAKE_FRAME_BYTES,
  writeHead,
  writeInt64,
} from '../src/protocol/frame.js';
import { unsendable } from '../src/protocol/sendable.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { prng } from './helpers/prng.js';

// ── the document ──────────────────────────────────────────────────────────────────────────────

const DOC_URL = new URL('../../docs/protocol.md', import.meta.url);
const doc = readFileSync(DOC_URL, 'utf8');

/** Every ```hex NAME block, in document order. */
function extractVectors(text: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const m of text.matchAll(/^```hex ([A-Za-z0-9_-]+)[ \t]*\n([\s\S]*?)^```[ \t]*$/gm)) {
    const name = m[1]!;
    const tokens = m[2]!.split(/\s+/).filter((t) => t.length > 0);
    for (const t of tokens) {
      if (!/^[0-9a-fA-F]{2}$/.test(t))
        throw new Error(`hex block '${name}' has a token that is not a byte: '${t}'`);
    }
    if (out.has(name)) throw new Error(`hex block '${name}' appears twice`);
    out.set(name, Buffer.from(tokens.join(''), 'hex'));
  }
  return out;
}

const vectors = extractVectors(doc);

function vec(name: string): Buffer {
  const v = vectors.get(name);
  if (v === undefined) throw new Error(`docs/protocol.md has no \`\`\`hex ${name} block`);
  return Buffer.from(v);
}

function hex(buf: Buffer): string {
  return [...buf].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

function assertBytes(actual: Buffer, expected: Buffer, what: string): void {
  assert.equal(hex(actual), hex(expected), `${what}: bytes differ`);
}

// ── frames as the code writes them ────────────────────────────────────────────────────────────

// The documented example values.
const DOC_PROCESS = 2;
const DOC_INBOX = 6;
const DOC_MAILBOX = 7;
const DOC_KERNEL_PID = 4321;
const DOC_KERNEL_INSTANCE = '9f2c4e1a0b7d3c55';
const DOC_TIME_0 = 1_699_999_999_750;
const DOC_TIME_1 = 1_700_000_000_000;
const DOC_TIME_2 = 1_700_000_000_250;
/** RECEIVE max size meaning "no limit" (0 is a real limit). */
const NO_MAX_SIZE = 0xffffffff;

interface SendFields {
  request: number;
  target: number;
  body: string;
  flags?: number;
  type?: number;
  priority?: number;
  onFull?: number;
  timeout?: number;
}

/** A SEND, with exactly the field writes of Connection.send (writeSendHead, src/client/send-options.ts). */
function clientSend(f: SendFields): Buffer {
  const encoded = encodeBody(f.body);
  const bytes = encoded.bytes;
  const bodyLen = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  const size = MESSAGE_HEAD_BYTES + bodyLen;
  const b = Buffer.allocUnsafe(size);
  const off = 0;
  b.writeUInt32LE(size - 4, off);
  b[off + Off.OPCODE] = Op.SEND;
  b[off + Off.FLAGS] = f.flags ?? 0;
  b[off + Off.CODEC] = encoded.code;
  b[off + Off.ON_FULL] = f.onFull ?? OnFull.WAIT;
  b.writeUInt32LE(f.request, off + Off.REQUEST);
  b.writeUInt32LE(f.target, off + Off.TARGET);
  b.writeUInt32LE(0, off + Off.SENDER);
  b.writeUInt32LE(f.timeout ?? 0, off + Off.TIMEOUT);
  b.writeUInt16LE(f.priority ?? 0, off + Off.PRIORITY);
  b.writeUInt16LE(0, off + Off.HEADERS_LENGTH);
  b.writeUInt32LE(0, off + Off.RESERVED);
  writeInt64(b, f.type ?? 1, off + Off.TYPE);
  b.fill(0, off + Off.SEQ, off + Off.BODY);
  if (typeof bytes === 'string') b.write(bytes, off + MESSAGE_HEAD_BYTES, 'utf8');
  else bytes.copy(b, off + MESSAGE_HEAD_BYTES);
  return b;
}

/**
 * The DELIVER the kernel makes of a SEND: the sender stamped on arrival, sequence number and time
 * on acceptance (Mailbox.send / accept), then the rewrite of Mailbox.deliver.
 */
function kernelDeliver(
  send: Buffer,
  receiveRequest: number,
  mailbox: number,
  sender: number,
  seq: number,
  time: number,
): Buffer {
  const out = Buffer.from(send);
  out.writeUInt32LE(sender, Off.SENDER);
  writeInt64(out, seq, Off.SEQ);
  out.writeDoubleLE(time, Off.TIME);
  out[Off.OPCODE] = Op.DELIVER;
  out[Off.FLAGS] = 0;
  out[Off.ON_FULL] = 0;
  out.writeUInt32LE(receiveRequest, Off.REQUEST);
  out.writeUInt32LE(mailbox, Off.TARGET);
  out.writeUInt32LE(0, Off.TIMEOUT);
  return out;
}

/** A RECEIVE, with exactly the field writes of Connection.writeReceive. */
function clientReceive(request: number, target: number, flags: number, credit: number, type = 0): Buffer {
  const b = Buffer.allocUnsafe(RECEIVE_FRAME_BYTES);
  writeHead(b, 0, RECEIVE_FRAME_BYTES, Op.RECEIVE, flags, 0, request);
  b.writeUInt32LE(target, Off.R_TARGET);
  b.writeUInt32LE(0, Off.R_FROM);
  b.writeUInt32LE(0, Off.R_TIMEOUT);
  b.writeUInt32LE(NO_MAX_SIZE, Off.R_MAX_SIZE);
  b.writeUInt32LE(credit, Off.R_CREDIT);
  b.writeUInt32LE(0, Off.R_RESERVED);
  writeInt64(b, type, Off.R_TYPE);
  return b;
}

/** A TAKE, as Connection.take writes it. */
function clientTake(request: number, taken: number, credit: number): Buffer {
  const b = Buffer.allocUnsafe(TAKE_FRAME_BYTES);
  writeHead(b, 0, TAKE_FRAME_BYTES, Op.TAKE, 0, 0, request);
  b.writeUInt32LE(taken, Off.T_TAKEN);
  b.writeUInt32LE(credit, Off.T_CREDIT);
  return b;
}

/** A SENT, as Kernel.replySent writes it. */
function kernelSent(request: number, outcome: number, receiver: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(SENT_FRAME_BYTES);
  writeHead(b, 0, SENT_FRAME_BYTES, Op.SENT, 0, outcome, request);
  b.writeUInt32LE(receiver, Off.S_RECEIVER);
  b.writeUInt32LE(0, Off.S_RESERVED);
  writeInt64(b, seq, Off.S_SEQ);
  return b;
}

const docWelcomePayload = {
  process: { id: DOC_PROCESS, name: null },
  inbox: DOC_INBOX,
  kernel: { pid: DOC_KERNEL_PID, instance: DOC_KERNEL_INSTANCE, version: KERNEL_VERSION, time: DOC_TIME_0 },
  limits: defaultLimits,
};

const docMailboxDescription = {
  id: DOC_MAILBOX,
  name: 'demo',
  capacity: null,
  maxMessageSize: defaultLimits.maxMessageSize,
  maxBytes: defaultLimits.maxTotalBytes,
  order: 'fifo',
  policy: 'first',
  messageSize: 0,
  key: 0,
  endOnLastWriter: false,
  requireReader: false,
  admission: 'in-order',
  rightsAtOpen: false,
  unlinked: false,
  hasPasskey: false,
  mode: 0o666,
  owner: DOC_PROCESS,
  system: false,
  group: [],
  kernelMaxCredit: defaultLimits.maxCredit,
  handle: 1,
};

const sendHello = clientSend({ request: 3, target: DOC_MAILBOX, body: 'hello' });
const sendReceipt = clientSend({ request: 6, target: DOC_MAILBOX, body: 'hello', flags: SendFlag.RECEIPT });

/** What the code produces for every documented vector. */
const expectedFrames: Record<string, () => Buffer> = {
  hello: () => encodeJsonFrame(Op.HELLO, 0, PROTOCOL_VERSION, 0, { pid: 1234, host: 'demo-host' }),
  welcome: () => encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, docWelcomePayload),
  'call-create': () => encodeJsonFrame(Op.CALL, 0, 0, 1, { op: 'create', name: 'demo', mode: 0o666 }),
  'result-create': () => encodeJsonFrame(Op.RESULT, 0, 0, 1, docMailboxDescription),
  'receive-nowait': () => clientReceive(2, DOC_MAILBOX, ReceiveFlag.NOWAIT, 1),
  empty: () => encodeHeadFrame(Op.EMPTY, 2),
  'send-hello': () => sendHello,
  ack: () => encodeHeadFrame(Op.ACK, 3),
  receive: () => clientReceive(4, DOC_MAILBOX, 0, 1),
  deliver: () => kernelDeliver(sendHello, 4, DOC_MAILBOX, DOC_PROCESS, 1, DOC_TIME_1),
  take: () => clientTake(4, 1, 0),
  'send-missing': () => clientSend({ request: 5, target: 99, body: 'hello' }),
  'error-enoent': () => encodeJsonFrame(Op.ERROR, 0, WireErrorCode.ENOENT, 5, { message: 'no mailbox #99' }),
  'send-receipt': () => sendReceipt,
  'receive-2': () => clientReceive(7, DOC_MAILBOX, 0, 1),
  'deliver-2': () => kernelDeliver(sendReceipt, 7, DOC_MAILBOX, DOC_PROCESS, 2, DOC_TIME_2),
  'take-2': () => clientTake(7, 1, 0),
  'sent-received': () => kernelSent(6, Outcome.RECEIVED, DOC_PROCESS, 2),
  'receive-cancel': () => clientReceive(8, DOC_MAILBOX, 0, 1),
  cancel: () => encodeHeadFrame(Op.CANCEL, 8),
  'error-ecanceled': () =>
    encodeJsonFrame(Op.ERROR, 0, WireErrorCode.ECANCELED, 8, {
      message: "receive from mailbox 'demo' was cancelled",
      mailbox: 'demo',
    }),
  ping: () => encodeHeadFrame(Op.PING, 0),
  pong: () => encodeHeadFrame(Op.PONG, 0),
  'receive-stream': () => clientReceive(9, DOC_MAILBOX, ReceiveFlag.STREAM, 64),
  'take-stream': () => clientTake(9, 16, 16),
  blocked: () => encodeHeadFrame(Op.BLOCKED, 12),
  event: () =>
    encodeJsonFrame(Op.EVENT, 0, 0, 1, { event: 'down', process: 3, name: 'worker', reason: 'crash' }),
  'error-fatal': () =>
    encodeJsonFrame(Op.ERROR, 0, WireErrorCode.EPROTO, 0, {
      message: 'frame length 2 is below the minimum of 8',
    }),
};

// ── decoding a frame into named fields ────────────────────────────────────────────────────────

type Fields = Record<string, unknown>;

/** Reads a frame's fields by the layout of docs/protocol.md, independently of the builders above. */
function fieldsOf(buf: Buffer, start: number, end: number): Fields {
  const op = buf[start + 4]!;
  const f: Fields = {
    length: buf.readUInt32LE(start),
    op,
    flags: buf[start + 5]!,
    aux: buf.readUInt16LE(start + 6),
    request: buf.readUInt32LE(start + 8),
  };
  switch (op) {
    case Op.SEND:
    case Op.DELIVER: {
      const headers = buf.readUInt16LE(start + 26);
      Object.assign(f, {
        codec: buf[start + 6]!,
        onFull: buf[start + 7]!,
        target: buf.readUInt32LE(start + 12),
        sender: buf.readUInt32LE(start + 16),
        timeout: buf.readUInt32LE(start + 20),
        priority: buf.readUInt16LE(start + 24),
        headersLength: headers,
        reserved: buf.readUInt32LE(start + 28),
        type: readInt64(buf, start + 32),
        seq: readInt64(buf, start + 40),
        time: buf.readDoubleLE(start + 48),
        body: buf.toString('utf8', start + 56 + headers, end),
      });
      break;
    }
    case Op.RECEIVE:
      Object.assign(f, {
        target: buf.readUInt32LE(start + 12),
        from: buf.readUInt32LE(start + 16),
        timeout: buf.readUInt32LE(start + 20),
        maxSize: buf.readUInt32LE(start + 24),
        credit: buf.readUInt32LE(start + 28),
        reserved: buf.readUInt32LE(start + 32),
        type: readInt64(buf, start + 36),
      });
      break;
    case Op.TAKE:
      Object.assign(f, { taken: buf.readUInt32LE(start + 12), credit: buf.readUInt32LE(start + 16) });
      break;
    case Op.SENT:
      Object.assign(f, {
        receiver: buf.readUInt32LE(start + 12),
        reserved: buf.readUInt32LE(start + 16),
        seq: readInt64(buf, start + 20),
      });
      break;
    case Op.HELLO:
    case Op.CALL:
    case Op.WELCOME:
    case Op.RESULT:
    case Op.ERROR:
    case Op.EVENT:
      f.payload = JSON.parse(buf.toString('utf8', start + 12, end)) as unknown;
      break;
    default:
      f.size = end - start;
  }
  return f;
}

/** The fields the document's prose claims for each vector. */
const expectedFields: Record<string, Fields> = {
  hello: { op: 0x01, flags: 0, aux: 1, request: 0, payload: { pid: 1234, host: 'demo-host' } },
  welcome: { op: 0x81, flags: 0, aux: 1, request: 0, length: 0x1a2 },
  'call-create': { op: 0x02, request: 1, payload: { op: 'create', name: 'demo', mode: 438 } },
  'result-create': { op: 0x82, aux: 0, request: 1 },
  'receive-nowait': {
    op: 0x20,
    flags: 0x01,
    request: 2,
    target: 7,
    from: 0,
    timeout: 0,
    maxSize: NO_MAX_SIZE,
    type: 0,
  },
  empty: { op: 0x87, request: 2, size: 12 },
  'send-hello': {
    length: 57,
    op: 0x10,
    flags: 0,
    codec: 1,
    onFull: 0,
    request: 3,
    target: 7,
    sender: 0,
    timeout: 0,
    priority: 0,
    headersLength: 0,
    reserved: 0,
    type: 1,
    seq: 0,
    time: 0,
    body: 'hello',
  },
  ack: { op: 0x84, request: 3, size: 12 },
  receive: {
    op: 0x20,
    flags: 0,
    request: 4,
    target: 7,
    from: 0,
    timeout: 0,
    maxSize: NO_MAX_SIZE,
    credit: 1,
    type: 0,
  },
  deliver: {
    length: 57,
    op: 0x11,
    flags: 0,
    codec: 1,
    onFull: 0,
    request: 4,
    target: 7,
    sender: 2,
    timeout: 0,
    priority: 0,
    type: 1,
    seq: 1,
    time: DOC_TIME_1,
    body: 'hello',
  },
  take: { op: 0x21, request: 4, taken: 1, credit: 0 },
  'send-missing': { op: 0x10, request: 5, target: 99, body: 'hello' },
  'error-enoent': { op: 0x83, aux: 2, request: 5, payload: { message: 'no mailbox #99' } },
  'send-receipt': { op: 0x10, flags: 0x01, request: 6, target: 7, type: 1, body: 'hello' },
  'receive-2': { op: 0x20, flags: 0, request: 7, target: 7 },
  'deliver-2': { op: 0x11, request: 7, target: 7, sender: 2, seq: 2, time: DOC_TIME_2, body: 'hello' },
  'take-2': { op: 0x21, request: 7, taken: 1, credit: 0 },
  'sent-received': { op: 0x86, aux: 4, request: 6, receiver: 2, reserved: 0, seq: 2 },
  'receive-cancel': { op: 0x20, flags: 0, request: 8, target: 7 },
  cancel: { op: 0x22, request: 8, size: 12 },
  'error-ecanceled': {
    op: 0x83,
    aux: 9,
    request: 8,
    payload: { message: "receive from mailbox 'demo' was cancelled", mailbox: 'demo' },
  },
  ping: { op: 0x23, request: 0, size: 12 },
  pong: { op: 0x88, request: 0, size: 12 },
  'receive-stream': { op: 0x20, flags: 0x08, request: 9, target: 7, credit: 64, type: 0 },
  'take-stream': { op: 0x21, request: 9, taken: 16, credit: 16 },
  blocked: { op: 0x85, request: 12, size: 12 },
  event: {
    op: 0x89,
    aux: 0,
    request: 1,
    payload: { event: 'down', process: 3, name: 'worker', reason: 'crash' },
  },
  'error-fatal': {
    op: 0x83,
    aux: 1,
    request: 0,
    payload: { message: 'frame length 2 is below the minimum of 8' },
  },
};

function pick(f: Fields, keys: string[]): Fields {
  const out: Fields = {};
  for (const k of keys) out[k] = f[k];
  return out;
}

/** Splits a buffer into frames with a FrameDecoder; each frame copied out. */
function decodeAll(input: Buffer, chunks: number[] | null = null, maxFrame = 1 << 24): Buffer[] {
  const frames: Buffer[] = [];
  const d = new FrameDecoder(maxFrame, (buf, start, end) =>
    frames.push(Buffer.from(buf.subarray(start, end))),
  );
  if (chunks === null) d.push(input);
  else {
    let pos = 0;
    for (const n of chunks) {
      d.push(input.subarray(pos, pos + n));
      pos += n;
    }
    if (pos < input.length) d.push(input.subarray(pos));
  }
  assert.equal(d.buffered, 0, 'nothing may be left buffered after whole frames');
  return frames;
}

// ── small async helpers: every wait is bounded ───────────────────────────────────────────────

const WAIT_MS = 5000;

async function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Frames arriving on a socket, read one at a time. */
class FrameReader {
  private readonly frames: Buffer[] = [];
  private readonly waiters: (() => void)[] = [];
  private closed = false;
  private error: Error | null = null;

  constructor(readonly socket: Socket) {
    const decoder = new FrameDecoder(1 << 28, (buf, start, end) => {
      this.frames.push(Buffer.from(buf.subarray(start, end)));
      this.wake();
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (err) {
        this.error = err as Error;
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next frame; fails if the connection closes first or nothing comes in time. */
  async next(what: string, ms = WAIT_MS): Promise<Buffer> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.shift();
      if (f !== undefined) return f;
      if (this.error !== null) throw this.error;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves once the peer has closed the connection. */
  async closedNow(what: string, ms = WAIT_MS): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  get pending(): number {
    return this.frames.length;
  }
}

function connectUnix(path: string): Promise<Socket> {
  return within(
    new Promise<Socket>((resolve, reject) => {
      const s = netConnect(path);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    }),
    `a connection to ${path}`,
  );
}

// ── (a) the document's vectors ────────────────────────────────────────────────────────────────

describe('docs/protocol.md hex examples', () => {
  test('the document has the examples the protocol needs, each one well-formed hex', () => {
    for (const name of [
      'hello',
      'welcome',
      'send-hello',
      'deliver',
      'ack',
      'receive',
      'take',
      'error-enoent',
      'call-create',
      'result-create',
      'sent-received',
      'cancel',
      'error-ecanceled',
      'empty',
      'ping',
      'pong',
      'event',
      'error-fatal',
    ]) {
      assert.ok(vectors.has(name), `docs/protocol.md lacks a \`\`\`hex ${name} block`);
    }
    for (const name of vectors.keys()) {
      assert.ok(
        name in expectedFrames,
        `no check for the documented \`\`\`hex ${name} block; add one to this test`,
      );
      assert.ok(name in expectedFields, `no field check for \`\`\`hex ${name}`);
    }
  });

  for (const [name, build] of Object.entries(expectedFrames)) {
    test(`hex ${name}: equals the bytes the code writes`, () => {
      assertBytes(vec(name), build(), name);
    });
  }

  test('every example is exactly one frame for FrameDecoder, with the documented fields', () => {
    for (const [name, bytes] of vectors) {
      const frames = decodeAll(bytes);
      assert.equal(frames.length, 1, `${name}: one frame`);
      assert.equal(frames[0]!.length, bytes.length, `${name}: the frame is the whole example`);
      assert.equal(bytes.readUInt32LE(0), bytes.length - 4, `${name}: length = bytes after the length field`);
      const f = fieldsOf(bytes, 0, bytes.length);
      const want = expectedFields[name]!;
      assert.deepEqual(pick(f, Object.keys(want)), want, `${name}: fields`);
    }
  });

  test('frame sizes match the fixed layouts', () => {
    const headOnly: number[] = [Op.ACK, Op.BLOCKED, Op.EMPTY, Op.CANCEL, Op.PING, Op.PONG];
    for (const [name, bytes] of vectors) {
      const op = bytes[4]!;
      if (op === Op.SEND || op === Op.DELIVER) assert.ok(bytes.length >= MESSAGE_HEAD_BYTES, name);
      else if (op === Op.RECEIVE) assert.equal(bytes.length, RECEIVE_FRAME_BYTES, name);
      else if (op === Op.TAKE) assert.equal(bytes.length, TAKE_FRAME_BYTES, name);
      else if (op === Op.SENT) assert.equal(bytes.length, SENT_FRAME_BYTES, name);
      else if (headOnly.includes(op)) {
        assert.equal(bytes.length, HEAD_BYTES, name);
      } else assert.ok(bytes.length > HEAD_BYTES, `${name}: a JSON frame has a payload`);
    }
  });

  test('the client reads the documented DELIVER as the documented message', () => {
    const d = vec('deliver');
    const m = new Message(d, 0, d.length);
    assert.equal(m.body, 'hello');
    assert.equal(m.codec, 'string');
    assert.equal(m.sender, DOC_PROCESS);
    assert.equal(m.mailbox, DOC_MAILBOX);
    assert.equal(m.seq, 1);
    assert.equal(m.type, 1);
    assert.equal(m.priority, 0);
    assert.equal(m.time, DOC_TIME_1);
    assert.equal(new Date(m.time).toISOString(), '2023-11-14T22:13:20.000Z');
    assert.deepEqual(m.headers, {});
  });

  test('JSON examples decode with decodeJsonPayload', () => {
    const w = vec('welcome');
    assert.deepEqual(decodeJsonPayload(w, 0, w.length), JSON.parse(JSON.stringify(docWelcomePayload)));
    const r = vec('result-create');
    assert.deepEqual(decodeJsonPayload(r, 0, r.length), docMailboxDescription);
    const ack = vec('ack');
    assert.equal(decodeJsonPayload(ack, 0, ack.length), undefined);
  });

  test('the error-code table matches WireErrorCode', () => {
    const rows = new Map<string, number>();
    for (const m of doc.matchAll(/^\|\s*`(E[A-Z0-9]+)`\s*\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|/gm))
      rows.set(m[1]!, Number(m[2]));
    assert.deepEqual(Object.fromEntries(rows), { ...WireErrorCode });
    for (const m of doc.matchAll(/^\|\s*`(E[A-Z0-9]+)`\s*\|\s*\d+\s*\|\s*`(\w+)`\s*\|/gm)) {
      assert.equal(makeError(m[1] as ErrorCode, 'x').constructor.name, m[2], `class of ${m[1]}`);
    }
  });

  test('the opcode table matches Op', () => {
    const rows = new Map<string, number>();
    for (const m of doc.matchAll(/^\|\s*`([A-Z]+)`\s*\|\s*(0x[0-9a-f]{2})\s*\|/gm))
      rows.set(m[1]!, Number(m[2]));
    assert.deepEqual(Object.fromEntries(rows), { ...Op });
  });
});

// ── (a) the reference client against a fake kernel that speaks the document ────────────────

describe('the reference client writes and reads the documented frames', () => {
  let dir = '';
  let server: Server | null = null;
  let conn: Connection | null = null;
  let kernelSide: FrameReader | null = null;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pbproto-'));
    const path = join(dir, 'fake.sock');
    const srv = createServer();
    server = srv;
    await within(
      new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(path, () => resolve());
      }),
      'the fake kernel to listen',
    );
    const accepted = within(
      new Promise<Socket>((resolve) => srv.once('connection', resolve)),
      'the client to connect',
    );
    const opening = Connection.open({ url: `unix:${path}` });
    opening.catch(() => {});
    const socket = await accepted;
    kernelSide = new FrameReader(socket);
    const hello = await kernelSide.next('HELLO');
    // Same head as the documented HELLO; the payload names this process.
    assertBytes(hello.subarray(4, 12), vec('hello').subarray(4, 12), 'HELLO head');
    assert.deepEqual(decodeJsonPayload(hello, 0, hello.length), {
      pid: process.pid,
      host: hostname(),
      recall: true,
    });
    socket.write(vec('welcome'));
    conn = await within(opening, 'Connection.open to accept the documented WELCOME');
  });

  after(async () => {
    conn?.socket.destroy();
    kernelSide?.socket.destroy();
    if (server !== null) {
      const s = server;
      await within(
        new Promise<void>((resolve) => s.close(() => resolve())),
        'the fake kernel to close',
      ).catch(() => {});
    }
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  test('the documented session, from the client side', async () => {
    const c = conn!;
    const k = kernelSide!;
    const reply = (name: string): void => {
      k.socket.write(vec(name));
    };
    const expectFrame = async (name: string): Promise<void> => {
      assertBytes(await k.next(name), vec(name), name);
    };
    assert.deepEqual(c.info, JSON.parse(JSON.stringify(docWelcomePayload)));

    const created = c.call<Record<string, unknown>>('create', { name: 'demo', mode: 0o666 });
    await expectFrame('call-create');
    reply('result-create');
    assert.deepEqual(await within(created, 'RESULT of create'), docMailboxDescription);

    const none = c.receive(DOC_MAILBOX, false, 0, { nowait: true });
    await expectFrame('receive-nowait');
    reply('empty');
    assert.equal(await within(none, 'EMPTY'), null);

    const sent = c.send(DOC_MAILBOX, false, 'hello', undefined);
    await expectFrame('send-hello');
    reply('ack');
    assert.deepEqual(await within(sent, 'ACK'), { outcome: 'queued' });

    const got = c.receive(DOC_MAILBOX, false, 0, undefined);
    await expectFrame('receive');
    reply('deliver');
    const m = await within(got, 'DELIVER');
    assert.ok(m !== null);
    assert.equal(m.body, 'hello');
    assert.equal(m.sender, DOC_PROCESS);
    assert.equal(m.seq, 1);
    await expectFrame('take');

    const missing = c.send(99, false, 'hello', undefined);
    await expectFrame('send-missing');
    reply('error-enoent');
    await assert.rejects(within(missing, 'ERROR ENOENT'), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.message, 'no mailbox #99');
      return true;
    });

    const receipt = c.send(DOC_MAILBOX, false, 'hello', { receipt: true });
    await expectFrame('send-receipt');
    const got2 = c.receive(DOC_MAILBOX, false, 0, undefined);
    await expectFrame('receive-2');
    reply('deliver-2');
    const m2 = await within(got2, 'DELIVER 2');
    assert.equal(m2?.seq, 2);
    await expectFrame('take-2');
    reply('sent-received');
    assert.deepEqual(await within(receipt, 'SENT'), { outcome: 'received', receiver: DOC_PROCESS, seq: 2 });

    const ac = new AbortController();
    const cancelled = c.receive(DOC_MAILBOX, false, 0, { signal: ac.signal });
    await expectFrame('receive-cancel');
    ac.abort();
    await expectFrame('cancel');
    reply('error-ecanceled');
    await assert.rejects(within(cancelled, 'ERROR ECANCELED'), (err: unknown) => {
      assert.ok(err instanceof AbortedError);
      assert.equal(err.mailbox, 'demo');
      return true;
    });

    const sink = { deliver: () => {}, fail: () => {}, end: () => {}, recall: () => false };
    const streamId = c.openStream(DOC_MAILBOX, false, 0, {}, 64, sink);
    assert.equal(streamId, 9);
    await expectFrame('receive-stream');
    c.take(streamId, 16, 16);
    await expectFrame('take-stream');

    const down = within(
      new Promise<Record<string, unknown>>((resolve) => onEvent(c, 1, resolve)),
      'the EVENT handler',
    );
    reply('pong'); // ignored by the client
    reply('event');
    assert.deepEqual(await down, { event: 'down', process: 3, name: 'worker', reason: 'crash' });
  });

  test('a BLOCKED send is not settled by a later ACK, only by its SENT', async () => {
    const c = conn!;
    const k = kernelSide!;
    let settled = false;
    const blocked = c.send(DOC_MAILBOX, false, 'hello', undefined).then((r) => {
      settled = true;
      return r;
    });
    const frame = await k.next('SEND');
    const id = frame.readUInt32LE(Off.REQUEST);
    assertBytes(frame, clientSend({ request: id, target: DOC_MAILBOX, body: 'hello' }), 'SEND');
    const next = c.send(DOC_MAILBOX, false, 'hello', undefined);
    const id2 = (await k.next('second SEND')).readUInt32LE(Off.REQUEST);
    assert.equal(id2, id + 1, 'request ids increase');
    k.socket.write(Buffer.concat([encodeHeadFrame(Op.BLOCKED, id), encodeHeadFrame(Op.ACK, id2)]));
    assert.deepEqual(await within(next, 'ACK of the second send'), { outcome: 'queued' });
    assert.equal(settled, false, 'the blocked send waits for its own answer');
    k.socket.write(kernelSent(id, Outcome.QUEUED, 0, 41));
    assert.deepEqual(await within(blocked, 'SENT'), { outcome: 'queued', seq: 41 });
  });

  test('an ERROR with request id 0 is fatal for the connection', async () => {
    const c = conn!;
    const k = kernelSide!;
    const pending = c.receive(DOC_MAILBOX, false, 0, undefined);
    await k.next('RECEIVE');
    k.socket.write(vec('error-fatal'));
    await assert.rejects(within(pending, 'the fatal error'), (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.message, 'frame length 2 is below the minimum of 8');
      return true;
    });
    assert.equal(c.closed, true);
  });
});

describe('a peer that is not a kernel', () => {
  test('bytes it sends before our HELLO is answered end the open with EPROTO, not a hang', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pb-notkernel-'));
    const path = join(dir, 's.sock');
    // An HTTP-ish greeting, sent the moment a client connects, as some other daemon might.
    const peers = new Set<Socket>();
    const server = createServer((s) => {
      peers.add(s);
      s.on('error', () => {});
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await assert.rejects(within(Connection.open({ socket: path }), 'the open'), (err: unknown) => {
        assert.ok(err instanceof ProtocolError, String(err));
        assert.equal(err.code, 'EPROTO');
        // Said as what it most likely is, a wrong address (another service's port, say): it was
        // "bad frame from the kernel: frame of 1347703884 bytes is over the limit", as if a
        // kernel had misbehaved.
        assert.match(
          err.message,
          /^what answers at .*s\.sock is not a Postbox kernel: it sent a bad frame before any WELCOME \(frame of \d+ bytes/,
        );
        return true;
      });
    } finally {
      for (const p of peers) p.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ── (a) the documented session against a real kernel, over a raw socket ──────────────────────

describe('the documented session replays against a real kernel', () => {
  let kernel: TestKernel | null = null;
  const sockets: Socket[] = [];
  let reader: FrameReader | null = null;
  // What the real kernel assigns, in place of the document's example ids.
  let processId = 0;
  let mailboxId = 0;
  let createResult: Fields | null = null;
  let statResult: Fields | null = null;

  before(async () => {
    kernel = await startTestKernel();
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    if (kernel !== null) await within(kernel.stop(), 'the kernel to stop', 10_000);
  });

  async function open(): Promise<FrameReader> {
    const s = await connectUnix(kernel!.socket);
    sockets.push(s);
    return new FrameReader(s);
  }

  /** A documented client frame with the document's mailbox 7 replaced by the real one. */
  function client(name: string): Buffer {
    const b = vec(name);
    const op = b[Off.OPCODE];
    if ((op === Op.SEND || op === Op.RECEIVE) && b.readUInt32LE(Off.TARGET) === DOC_MAILBOX) {
      b.writeUInt32LE(mailboxId, Off.TARGET);
    }
    return b;
  }

  test('HELLO … PING: every kernel frame is the documented one, kernel-assigned fields aside', async () => {
    const r = await open();
    reader = r;
    const write = (...names: string[]): void => {
      r.socket.write(Buffer.concat(names.map(client)));
    };

    write('hello');
    const welcome = await r.next('WELCOME');
    assertBytes(welcome.subarray(4, 12), vec('welcome').subarray(4, 12), 'WELCOME head after the length');
    const w = decodeJsonPayload(welcome, 0, welcome.length) as typeof docWelcomePayload;
    processId = w.process.id;
    assert.ok(processId > 0);
    assert.equal(w.kernel.pid, kernel!.proc.pid);
    assert.match(w.kernel.instance, /^[0-9a-f]{16}$/, 'WELCOME names this run of the kernel');
    assert.ok(Math.abs(w.kernel.time - Date.now()) < 60_000, 'WELCOME carries the kernel’s clock');
    assertBytes(
      welcome,
      encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, {
        ...docWelcomePayload,
        process: { id: processId, name: null },
        inbox: w.inbox,
        kernel: {
          pid: kernel!.proc.pid,
          instance: w.kernel.instance,
          version: KERNEL_VERSION,
          time: w.kernel.time,
        },
      }),
      'WELCOME',
    );

    write('call-create');
    const result = await r.next('RESULT of create');
    const desc = decodeJsonPayload(result, 0, result.length) as typeof docMailboxDescription & Fields;
    mailboxId = desc.id;
    assert.equal(desc.owner, processId);
    createResult = desc;
    assertBytes(result.subarray(4, 12), vec('result-create').subarray(4, 12), 'RESULT head after the length');
    const documented: Record<string, unknown> = { ...docMailboxDescription, id: mailboxId, owner: processId };
    // All of them: a field the kernel added and the document lacks fails here.
    assert.deepEqual(desc, documented, 'RESULT of create: the documented fields, and no others');

    write('receive-nowait');
    assertBytes(await r.next('EMPTY'), vec('empty'), 'EMPTY');

    const t0 = Date.now();
    write('send-hello');
    assertBytes(await r.next('ACK'), vec('ack'), 'ACK through 3');

    write('receive');
    const deliver = await r.next('DELIVER');
    const t1 = Date.now();
    const time = deliver.readDoubleLE(Off.TIME);
    assert.ok(time >= t0 - 1 && time <= t1 + 1, `time sent ${time} is between ${t0} and ${t1}`);
    assert.equal(deliver.readUInt32LE(Off.SENDER), processId, 'sender is filled in');
    assert.equal(readInt64(deliver, Off.SEQ), 1, 'sequence number is filled in');
    const want = vec('deliver');
    want.writeUInt32LE(mailboxId, Off.TARGET);
    want.writeUInt32LE(processId, Off.SENDER);
    want.writeDoubleLE(time, Off.TIME);
    assertBytes(deliver, want, 'DELIVER');

    // Delivered, not taken: still the mailbox's.
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 100, { op: 'stat', id: mailboxId }));
    const held = decodeJsonPayload(...frameRange(await r.next('RESULT of stat'))) as Record<string, unknown>;
    assert.deepEqual(pick(held, ['count', 'queued', 'inflight', 'received']), {
      count: 1,
      queued: 0,
      inflight: 1,
      received: 0,
    });

    write('take');
    write('send-missing');
    assertBytes(await r.next('ERROR ENOENT'), vec('error-enoent'), 'ERROR ENOENT');

    write('send-receipt');
    write('receive-2');
    const deliver2 = await r.next('DELIVER 2');
    assert.equal(readInt64(deliver2, Off.SEQ), 2);
    const want2 = vec('deliver-2');
    want2.writeUInt32LE(mailboxId, Off.TARGET);
    want2.writeUInt32LE(processId, Off.SENDER);
    want2.writeDoubleLE(deliver2.readDoubleLE(Off.TIME), Off.TIME);
    assertBytes(deliver2, want2, 'DELIVER 2');

    write('take-2');
    const sent = vec('sent-received');
    sent.writeUInt32LE(processId, Off.S_RECEIVER);
    assertBytes(await r.next('SENT'), sent, 'SENT received');

    write('receive-cancel', 'cancel');
    assertBytes(await r.next('ERROR ECANCELED'), vec('error-ecanceled'), 'ERROR ECANCELED');

    write('ping');
    assertBytes(await r.next('PONG'), vec('pong'), 'PONG');

    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 101, { op: 'stat', id: mailboxId }));
    const stat = decodeJsonPayload(...frameRange(await r.next('RESULT of stat'))) as Record<string, unknown>;
    statResult = stat;
    assert.deepEqual(pick(stat, ['count', 'inflight', 'sent', 'received', 'waitingReceivers']), {
      count: 0,
      inflight: 0,
      sent: 2,
      received: 2,
      waitingReceivers: [],
    });
    assert.equal(r.pending, 0, 'no frame beyond the documented ones');
  });

  test('every field of the mailbox description and stat the kernel returns is documented', () => {
    assert.ok(createResult !== null && statResult !== null, 'the session ran');
    const missing = [...new Set([...Object.keys(createResult), ...Object.keys(statResult)])].filter(
      (key) => !doc.includes(`\`${key}\``),
    );
    assert.deepEqual(missing, [], `docs/protocol.md does not document: ${missing.join(', ')}`);
  });

  test('malformed input: a fatal ERROR with request id 0, then the connection closes', async () => {
    // A length below 8: exactly the documented fatal error.
    const a = await open();
    a.socket.write(Buffer.from('02000000', 'hex'));
    assertBytes(await a.next('fatal ERROR'), vec('error-fatal'), 'fatal ERROR');
    await a.closedNow('the kernel to close the connection');

    // A frame over the kernel's limit, after a good HELLO.
    const b = await open();
    b.socket.write(vec('hello'));
    assert.equal((await b.next('WELCOME'))[Off.OPCODE], Op.WELCOME);
    const limit = MESSAGE_HEAD_BYTES + 65535 + defaultLimits.maxMessageSize;
    const head = Buffer.alloc(12);
    writeHead(head, 0, limit + 1, Op.SEND, 0, 0, 1);
    b.socket.write(head);
    const err = await b.next('fatal ERROR for an oversized frame');
    assert.deepEqual(pick(fieldsOf(err, 0, err.length), ['op', 'aux', 'request', 'payload']), {
      op: Op.ERROR,
      aux: WireErrorCode.EPROTO,
      request: 0,
      payload: { message: `frame of ${limit + 1} bytes is over the limit of ${limit}` },
    });
    await b.closedNow('the kernel to close the connection');

    // A first frame that is not HELLO.
    const c = await open();
    c.socket.write(vec('ping'));
    const err2 = await c.next('fatal ERROR for a missing HELLO');
    assert.deepEqual(pick(fieldsOf(err2, 0, err2.length), ['op', 'aux', 'request']), {
      op: Op.ERROR,
      aux: WireErrorCode.EPROTO,
      request: 0,
    });
    await c.closedNow('the kernel to close the connection');

    // The first connection is unharmed: the kernel carries on.
    const r = reader!;
    r.socket.write(vec('ping'));
    assertBytes(await r.next('PONG'), vec('pong'), 'PONG after others failed');
  });

  test('create refuses an argument it does not know, and makes nothing', async () => {
    const r = reader!;
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 21, { op: 'create', name: 'typo', capcity: 5 }));
    const err = await r.next('ERROR for a misspelt attribute');
    assert.deepEqual(pick(fieldsOf(err, 0, err.length), ['op', 'aux', 'request']), {
      op: Op.ERROR,
      aux: WireErrorCode.EINVAL,
      request: 21,
    });
    assert.match(
      (decodeJsonPayload(...frameRange(err)) as { message: string }).message,
      /create has no argument 'capcity'; it takes name, key, .*capacity/,
    );
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 22, { op: 'open', name: 'typo' }));
    const none = await r.next('ERROR: no such mailbox');
    assert.equal(fieldsOf(none, 0, none.length).aux, WireErrorCode.ENOENT, 'nothing was created');
  });

  test('a key names one mailbox: a create under another name with a key that is taken is EEXIST, makes nothing, and the key still leads to the first', async () => {
    const r = reader!;
    const key = 0x5151;
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 41, { op: 'create', name: 'keyed-first', key }));
    const first = decodeJsonPayload(...frameRange(await r.next('RESULT of create'))) as { id: number };
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 42, { op: 'create', name: 'keyed-second', key }));
    const taken = await r.next('ERROR: the key is taken');
    assert.deepEqual(pick(fieldsOf(...frameRange(taken)), ['op', 'aux', 'request']), {
      op: Op.ERROR,
      aux: WireErrorCode.EEXIST,
      request: 42,
    });
    assert.match(
      (decodeJsonPayload(...frameRange(taken)) as { message: string }).message,
      /^key 0x00005151 is taken by mailbox 'keyed-first'/,
    );
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 43, { op: 'stat', key }));
    const byKey = decodeJsonPayload(...frameRange(await r.next('RESULT of stat by key'))) as { id: number };
    assert.equal(byKey.id, first.id, 'the key leads to the first');
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 44, { op: 'open', name: 'keyed-second' }));
    const none = await r.next('ERROR: no such mailbox');
    assert.equal(fieldsOf(...frameRange(none)).aux, WireErrorCode.ENOENT, 'nothing was created');
  });

  test('unlink of a mailbox nobody holds a handle on removes it at once, not at a close that will never come', async () => {
    const r = reader!;
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 31, { op: 'create', name: 'unlink-unheld' }));
    const desc = decodeJsonPayload(...frameRange(await r.next('RESULT of create'))) as {
      id: number;
      handle: number;
    };
    // Its only handle closed, the mailbox stays (it was not unlinked), held by nobody.
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 32, { op: 'close', handle: desc.handle }));
    assert.equal(fieldsOf(...frameRange(await r.next('RESULT of close'))).op, Op.RESULT);
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 33, { op: 'stat', id: desc.id }));
    assert.equal(fieldsOf(...frameRange(await r.next('RESULT of stat'))).op, Op.RESULT, 'still there');
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 34, { op: 'unlink', name: 'unlink-unheld' }));
    assert.equal(fieldsOf(...frameRange(await r.next('RESULT of unlink'))).op, Op.RESULT);
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 35, { op: 'stat', id: desc.id }));
    const gone = await r.next('ERROR: removed');
    assert.deepEqual(pick(fieldsOf(...frameRange(gone)), ['op', 'aux', 'request']), {
      op: Op.ERROR,
      aux: WireErrorCode.ENOENT,
      request: 35,
    });
    assert.match(
      (decodeJsonPayload(...frameRange(gone)) as { message: string }).message,
      /mailbox 'unlink-unheld' \(#\d+\) was removed/,
    );
  });

  test('a rendezvous send that waits is told BLOCKED (so a later ACK does not settle it)', {}, async () => {
    const r = reader!;
    r.socket.write(encodeJsonFrame(Op.CALL, 0, 0, 11, { op: 'create', capacity: 0 }));
    const desc = decodeJsonPayload(...frameRange(await r.next('RESULT of create'))) as {
      id: number;
      capacity: number;
    };
    assert.equal(desc.capacity, 0);
    const send = clientSend({ request: 12, target: desc.id, body: 'hello' });
    r.socket.write(Buffer.concat([send, vec('ping')]));
    assertBytes(await r.next('BLOCKED'), vec('blocked'), 'BLOCKED 12');
    assertBytes(await r.next('PONG'), vec('pong'), 'PONG');
  });
});

type EventHandler = (event: Record<string, unknown>) => void;

/** Registers a kernel EVENT handler on a connection (the method is onEvent, formerly onMonitor). */
function onEvent(c: Connection, id: number, handler: EventHandler): void {
  const api = c as unknown as {
    onEvent?: (id: number, h: EventHandler) => void;
    onMonitor?: (id: number, h: EventHandler) => void;
  };
  const register = api.onEvent ?? api.onMonitor;
  assert.ok(register !== undefined, 'Connection has no way to register an EVENT handler');
  register.call(c, id, handler);
}

function frameRange(buf: Buffer): [Buffer, number, number] {
  return [buf, 0, buf.length];
}

// ── (b) FrameDecoder ──────────────────────────────────────────────────────────────────────────

describe('FrameDecoder', () => {
  const stream = Buffer.concat([...vectors.values()]);
  const whole = decodeAll(stream);

  test('decodes the documented examples, one after another, as they are', () => {
    assert.equal(whole.length, vectors.size);
    let i = 0;
    for (const [name, bytes] of vectors) assertBytes(whole[i++]!, bytes, name);
  });

  test('one byte at a time gives the same frames', () => {
    assert.deepEqual(decodeAll(stream, new Array<number>(stream.length).fill(1)), whole);
  });

  test('a split at every byte boundary gives the same frames', () => {
    for (let i = 0; i <= stream.length; i++) {
      const frames = decodeAll(stream, [i]);
      assert.equal(frames.length, whole.length, `split at ${i}`);
      assert.deepEqual(frames, whole, `split at ${i}`);
    }
  });

  test('a handler that pauses holds the frames after its own, whatever the splits, until resume', () => {
    const rand = prng(0xfa11);
    for (let round = 0; round < 200; round++) {
      const got: Buffer[] = [];
      // Pause after a random few frames each time; resume when the test says.
      let pauseAfter = 1 + Math.floor(rand() * 4);
      const decoder: FrameDecoder = new FrameDecoder(1 << 20, (buf, start, end) => {
        // Not one frame after a pause, even one that ends a frame begun in an earlier chunk.
        assert.ok(!decoder.paused, `round ${round}: a frame handed over while paused`);
        got.push(Buffer.from(buf.subarray(start, end)));
        if (--pauseAfter === 0) decoder.pause();
      });
      let at = 0;
      while (at < stream.length) {
        const n = Math.min(stream.length - at, 1 + Math.floor(rand() * 300));
        const before = got.length;
        decoder.push(stream.subarray(at, at + n));
        at += n;
        if (decoder.paused) {
          assert.ok(got.length - before <= 4, 'nothing handed over past the pause');
          pauseAfter = 1 + Math.floor(rand() * 4);
          while (decoder.paused) {
            const held = got.length;
            decoder.resume();
            if (held === got.length && !decoder.paused) break;
          }
        }
      }
      decoder.resume();
      assert.deepEqual(got, whole, `round ${round}`);
    }
  });

  test('random splits (seeded) give the same frames', () => {
    const rand = prng(0x5eed);
    for (let round = 0; round < 300; round++) {
      const chunks: number[] = [];
      let left = stream.length;
      const maxChunk = 1 + Math.floor(rand() * (round % 3 === 0 ? 8 : 200));
      while (left > 0) {
        const n = Math.min(left, Math.floor(rand() * (maxChunk + 1)));
        chunks.push(n);
        left -= n;
      }
      assert.deepEqual(
        decodeAll(stream, chunks),
        whole,
        `round ${round}: chunks ${chunks.slice(0, 20).join(',')}…`,
      );
    }
  });

  test('hands frames inside one chunk over in place, at their offsets', () => {
    const ranges: [number, number][] = [];
    let seen: Buffer | null = null;
    const d = new FrameDecoder(1 << 20, (buf, start, end) => {
      seen = buf;
      ranges.push([start, end]);
    });
    const two = Buffer.concat([vec('ack'), vec('send-hello')]);
    d.push(two);
    assert.equal(seen, two, 'no copy for frames inside one chunk');
    assert.deepEqual(ranges, [
      [0, 12],
      [12, 12 + 61],
    ]);
  });

  test('a handler may take the frames after its own (skipTo), within the limit it is given', () => {
    const seen: [number, number, number][] = [];
    const three = Buffer.concat([vec('ack'), vec('send-hello'), vec('ack')]);
    const d: FrameDecoder = new FrameDecoder(1 << 20, (_buf, start, end, limit) => {
      seen.push([start, end, limit]);
      // The first frame's handler takes the second with it.
      if (start === 0) d.skipTo(end + 61);
    });
    d.push(three);
    assert.deepEqual(seen, [
      [0, 12, three.length],
      [12 + 61, three.length, three.length],
    ]);
  });

  test('skipTo outside the bytes after the frame throws FrameError, not a silent loss of framing', () => {
    const two = Buffer.concat([vec('ack'), vec('ack')]);
    for (const bad of [two.length + 1, 5, 0]) {
      const d: FrameDecoder = new FrameDecoder(1 << 20, () => d.skipTo(bad));
      assert.throws(() => d.push(two), FrameError, `skipTo(${bad})`);
    }
    // Back to a frame boundary already handled: the bytes there frame well, so only the check
    // stops the same frame being handed over again (a command run twice).
    let handed = 0;
    const back: FrameDecoder = new FrameDecoder(1 << 20, (_b, start) => {
      if (++handed === 2) back.skipTo(start); // the second frame's start: after the first's end
    });
    assert.throws(() => back.push(two), FrameError, 'skipTo(its own start)');
    assert.equal(handed, 2, 'the second frame was handed over once');
  });

  /** A frame of `size` bytes (length field included) whose bytes after the length say `seed`. */
  function patterned(size: number, seed: number): Buffer {
    const f = Buffer.alloc(size);
    for (let i = 4; i < size; i++) f[i] = (i * 7 + seed) & 0xff;
    f.writeUInt32LE(size - 4, 0);
    return f;
  }

  test("a frame's start kept in place is joined with its end, whatever memory the end lies in", () => {
    // A start of 16 KiB or more is kept where it lies, not copied, and the frame is taken as it
    // lies when the end was read right after it. An end from the same memory but elsewhere (or
    // from other memory) must be joined: read as if it followed, the frame would be other bytes.
    const frame = patterned(40_000, 3);
    const after = patterned(100, 9);
    const startBytes = 20_000;
    const layouts = [
      'end before start',
      'end after a gap',
      'other memory',
      'other memory, lined up',
      'adjacent',
    ] as const;
    for (const layout of layouts) {
      const mem = Buffer.alloc(3 * frame.length);
      const endPart = Buffer.concat([frame.subarray(startBytes), after]);
      let start: Buffer;
      let end: Buffer;
      if (layout === 'end before start') {
        endPart.copy(mem, 0);
        frame.copy(mem, 2 * frame.length, 0, startBytes);
        start = mem.subarray(2 * frame.length, 2 * frame.length + startBytes);
        end = mem.subarray(0, endPart.length);
      } else if (layout === 'end after a gap') {
        frame.copy(mem, 0, 0, startBytes);
        endPart.copy(mem, startBytes + 1000);
        start = mem.subarray(0, startBytes);
        end = mem.subarray(startBytes + 1000, startBytes + 1000 + endPart.length);
      } else if (layout === 'other memory') {
        start = Buffer.from(frame.subarray(0, startBytes));
        end = Buffer.from(endPart);
      } else if (layout === 'other memory, lined up') {
        // At the offset in its memory where the start's end is in the start's own.
        start = Buffer.from(frame.subarray(0, startBytes));
        const other = Buffer.alloc(startBytes + endPart.length);
        endPart.copy(other, startBytes);
        end = other.subarray(startBytes);
      } else {
        frame.copy(mem, 0);
        after.copy(mem, frame.length);
        start = mem.subarray(0, startBytes);
        end = mem.subarray(startBytes, frame.length + after.length);
      }
      const got: Buffer[] = [];
      const d = new FrameDecoder(1 << 20, (buf, s, e) => got.push(Buffer.from(buf.subarray(s, e))));
      d.push(start);
      d.push(end);
      assert.equal(got.length, 2, layout);
      assert.ok(got[0]!.equals(frame), `${layout}: the frame's own bytes`);
      assert.ok(got[1]!.equals(after), `${layout}: the frame after it`);
    }
  });

  test('a joined frame whose handler skips to its own end (allowed) leaves the frames after it as they are', () => {
    // skipTo(end) is a handler saying it took nothing more; for a frame joined from two chunks,
    // its end is in the joined copy, not in the chunk the frames after it lie in.
    const frame = patterned(64, 1);
    const next = [patterned(30, 2), patterned(40, 3)];
    const rest = Buffer.concat([frame.subarray(20), ...next]);
    const got: Buffer[] = [];
    const d: FrameDecoder = new FrameDecoder(1 << 20, (buf, s, e) => {
      got.push(Buffer.from(buf.subarray(s, e)));
      if (got.length === 1) d.skipTo(e); // the joined frame only
    });
    d.push(frame.subarray(0, 20));
    d.push(rest);
    assert.deepEqual(got, [frame, ...next]);
  });

  test('buffered counts the bytes a pause holds back, as well as a frame begun', () => {
    // The kernel stops reading a congested process by this count: bytes held by a pause that it
    // left out would let a process that never reads its answers grow the kernel's input without
    // bound.
    const frames = [patterned(50, 1), patterned(50, 2), patterned(50, 3)];
    const d: FrameDecoder = new FrameDecoder(1 << 20, () => d.pause());
    d.push(Buffer.concat([...frames, frames[0]!.subarray(0, 10)]));
    assert.equal(d.buffered, 110, 'two frames and ten bytes held after the pausing one');
    d.resume();
    assert.equal(d.buffered, 60);
  });

  test('a length below 8 throws FrameError (EPROTO)', () => {
    for (let len = 0; len < 8; len++) {
      const b = Buffer.alloc(12);
      b.writeUInt32LE(len, 0);
      const d = new FrameDecoder(1 << 20, () => assert.fail('no frame'));
      assert.throws(
        () => d.push(b),
        (err: unknown) =>
          err instanceof FrameError && err.code === 'EPROTO' && /below the minimum of 8/.test(err.message),
        `length ${len}`,
      );
    }
    const ok: number[] = [];
    new FrameDecoder(1 << 20, (_b, s, e) => ok.push(e - s)).push(encodeHeadFrame(Op.PING, 0));
    assert.deepEqual(ok, [12], 'length 8 is the smallest frame');
  });

  test('an oversized length throws FrameError before the body is read', () => {
    const max = 100;
    const fits = Buffer.alloc(max);
    fits.writeUInt32LE(max - 4, 0);
    const got: number[] = [];
    new FrameDecoder(max, (_b, s, e) => got.push(e - s)).push(fits);
    assert.deepEqual(got, [max], 'a frame of exactly the limit is accepted');

    const head = Buffer.alloc(8);
    head.writeUInt32LE(max - 3, 0);
    const d = new FrameDecoder(max, () => assert.fail('no frame'));
    assert.throws(() => d.push(head), FrameError);

    // The length itself split across chunks.
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(0xffffffff, 0);
    const d2 = new FrameDecoder(max, () => assert.fail('no frame'));
    d2.push(huge.subarray(0, 2));
    assert.throws(
      () => d2.push(huge.subarray(2)),
      (err: unknown) => err instanceof FrameError && /over the limit of 100/.test(err.message),
    );
  });

  test('a large frame split across two reads into adjacent memory is handed over in place', () => {
    // As the client's ReadArena reads: the second read lands right after the first.
    const size = 64 * 1024 + 56;
    const memory = Buffer.allocUnsafe(size + 12);
    for (let i = 0; i < memory.length; i++) memory[i] = (i * 13 + 5) & 0xff;
    memory.writeUInt32LE(size - 4, 0);
    memory[4] = Op.SEND;
    vec('ack').copy(memory, size);
    const want = Buffer.from(memory.subarray(0, size));
    const got: Buffer[] = [];
    const d = new FrameDecoder(1 << 20, (buf, start, end) => got.push(buf.subarray(start, end)));
    d.push(memory.subarray(0, 40_000));
    assert.equal(d.buffered, 40_000);
    d.push(memory.subarray(40_000));
    assert.equal(got.length, 2);
    assert.ok(got[0]!.equals(want));
    assert.equal(got[0]!.buffer, memory.buffer, 'the frame is a view of the read memory, not a copy');
    assert.equal(got[0]!.byteOffset, memory.byteOffset);
    assertBytes(Buffer.from(got[1]!), vec('ack'), 'the frame after it');
    assert.equal(d.buffered, 0);
  });

  test('a large frame split across reads into separate memory is joined once, correctly', () => {
    const size = 64 * 1024 + 56;
    const input = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) input[i] = (i * 7 + 3) & 0xff;
    input.writeUInt32LE(size - 4, 0);
    input[4] = Op.SEND;
    for (const split of [4, 20_000, 40_000, size - 1]) {
      const got: Buffer[] = [];
      const d = new FrameDecoder(1 << 20, (buf, start, end) =>
        got.push(Buffer.from(buf.subarray(start, end))),
      );
      // Two separate allocations, as Node's own reads are.
      const a = Buffer.from(input.subarray(0, split));
      const b = Buffer.from(input.subarray(split));
      d.push(a);
      d.push(b);
      assert.equal(got.length, 1, `split at ${split}`);
      assert.ok(got[0]!.equals(input), `split at ${split}`);
    }
  });

  test('a large frame trickled in small chunks is assembled correctly', () => {
    const size = 1 << 20;
    const big = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) big[i] = (i * 31 + 7) & 0xff;
    big.writeUInt32LE(size - 4, 0);
    big[4] = Op.SEND;
    const input = Buffer.concat([big, vec('ack'), big, vec('pong')]);
    const rand = prng(42);
    const chunks: number[] = [4];
    for (let left = input.length - 4; left > 0; ) {
      const n = Math.min(left, 1 + Math.floor(rand() * 4096));
      chunks.push(n);
      left -= n;
    }
    const frames = decodeAll(input, chunks, size);
    assert.equal(frames.length, 4);
    assert.ok(frames[0]!.equals(big));
    assertBytes(frames[1]!, vec('ack'), 'ack after the big frame');
    assert.ok(frames[2]!.equals(big));
    assertBytes(frames[3]!, vec('pong'), 'pong');

    // Byte by byte after the length field, with the held bytes counted.
    const mid = Buffer.allocUnsafe(64 * 1024);
    mid.fill(0xab);
    mid.writeUInt32LE(mid.length - 4, 0);
    const out: Buffer[] = [];
    const d = new FrameDecoder(1 << 20, (b, s, e) => out.push(Buffer.from(b.subarray(s, e))));
    d.push(mid.subarray(0, 4));
    for (let i = 4; i < mid.length; i++) {
      d.push(mid.subarray(i, i + 1));
      if (i === 1000) assert.equal(d.buffered, 1001);
    }
    assert.equal(out.length, 1);
    assert.ok(out[0]!.equals(mid));
    assert.equal(d.buffered, 0);
  });

  test('trickling one byte at a time from the very first byte costs linear time', {}, () => {
    const size = 16 * 1024;
    const frame = Buffer.alloc(size);
    frame.writeUInt32LE(size - 4, 0);
    frame[4] = Op.PING;
    let n = 0;
    const d = new FrameDecoder(1 << 20, () => n++);
    const t0 = performance.now();
    for (let i = 0; i < size; i++) d.push(frame.subarray(i, i + 1));
    const ms = performance.now() - t0;
    assert.equal(n, 1);
    assert.ok(ms < 1000, `16 KiB one byte at a time took ${ms.toFixed(0)} ms`);
  });
});

// ── (c) errors ────────────────────────────────────────────────────────────────────────────────

describe('error codes', () => {
  type ErrorClass = new (message: string, subject?: ErrorSubject) => PostboxError;
  /** The classes the codes were born with; codes added later are checked through makeError alone. */
  const known: Partial<Record<ErrorCode, ErrorClass>> = {
    EPROTO: ProtocolError,
    ENOENT: NotFoundError,
    EEXIST: ExistsError,
    EAGAIN: WouldBlockError,
    EMSGSIZE: MessageSizeError,
    EACCES: PermissionError,
    EIDRM: RemovedError,
    ETIMEDOUT: TimeoutError,
    ECANCELED: AbortedError,
    EINVAL: InvalidArgumentError,
    EBUSY: BusyError,
    E2BIG: TooBigError,
    ENOMEM: OutOfMemoryError,
    ESHUTDOWN: ShutdownError,
    ECONNREFUSED: ConnectionRefusedError,
    ECONNRESET: ConnectionLostError,
    ENOTCONN: ClosedError,
    ENOMSG: NoMessageError,
    ESRCH: NoProcessError,
    EPIPE: BrokenPipeError,
  };
  const codes = Object.keys(WireErrorCode) as ErrorCode[];
  const classOf = (code: ErrorCode): ErrorClass => makeError(code, 'x').constructor as ErrorClass;

  test('wire numbers are distinct and run 1 … n', () => {
    const nums = Object.values(WireErrorCode).sort((a, b) => a - b);
    assert.deepEqual(
      nums,
      Array.from({ length: nums.length }, (_, i) => i + 1),
    );
    for (const [code, num] of Object.entries(WireErrorCode)) {
      if (code in known) assert.ok(num <= 20, `${code} keeps its number`);
    }
  });

  test('every code has its own exported class', () => {
    const seen = new Set<ErrorClass>();
    for (const code of codes) {
      const cls = classOf(code);
      const expected = known[code];
      if (expected !== undefined) assert.equal(cls, expected, `class of ${code}`);
      assert.notEqual(cls, PostboxError, `${code} has a class of its own`);
      assert.ok(!seen.has(cls), `${cls.name} is the class of one code only`);
      seen.add(cls);
      assert.equal((errorsModule as Record<string, unknown>)[cls.name], cls, `${cls.name} is exported`);
    }
  });

  test('every code round-trips through its wire number to its class', () => {
    const all = codes.map(classOf);
    for (const code of codes) {
      const num = WireErrorCode[code];
      const err = errorFromWire(num, `about ${code}`, { mailbox: 'jobs', process: 'bob' });
      const cls = classOf(code);
      assert.ok(err instanceof cls, `${code} → ${cls.name}`);
      assert.ok(err instanceof PostboxError, `${code} is a PostboxError`);
      assert.ok(err instanceof Error);
      assert.equal(err.code, code);
      assert.equal(WireErrorCode[err.code], num);
      assert.equal(err.name, cls.name);
      assert.equal(err.message, `about ${code}`);
      assert.equal(err.mailbox, 'jobs');
      assert.equal(err.process, 'bob');
      const direct = new cls('x', { mailbox: '#3' });
      assert.equal(direct.code, code);
      assert.equal(direct.mailbox, '#3');
      assert.ok(direct instanceof PostboxError);
      for (const other of all) {
        if (other !== cls) assert.ok(!(err instanceof other), `${code} is not a ${other.name}`);
      }
    }
  });

  test('unknown wire numbers become EPROTO, still naming the mailbox and process the kernel named', () => {
    const max = Math.max(...Object.values(WireErrorCode));
    for (const num of [0, max + 1, 999, 65535, -1, 1.5]) {
      const err = errorFromWire(num, 'strange', { mailbox: 'jobs', process: 'bob' });
      assert.ok(err instanceof ProtocolError, String(num));
      assert.equal(err.code, 'EPROTO');
      assert.match(err.message, new RegExp(`unknown error code ${String(num).replace('.', '\\.')}.*strange`));
      // A newer kernel's code: what it was about was dropped with the number.
      assert.equal(err.mailbox, 'jobs');
      assert.equal(err.process, 'bob');
    }
  });

  test('instanceof PostboxError recognises errors from another copy of the library', () => {
    const foreign = Object.assign(new Error('from elsewhere'), { code: 'ENOENT' });
    (foreign as unknown as Record<symbol, boolean>)[Symbol.for('postbox.error')] = true;
    assert.ok(foreign instanceof PostboxError);
    assert.ok(!(foreign instanceof NotFoundError), 'subclasses check their own prototype');
    assert.ok(!(new Error('plain') instanceof PostboxError));
    const others: unknown[] = [null, undefined, 'ENOENT', 42, { code: 'ENOENT' }];
    for (const v of others) assert.ok(!(v instanceof PostboxError), String(v));
  });

  test('subjects are optional', () => {
    const err = makeError('EIDRM', 'gone');
    assert.equal(err.mailbox, undefined);
    assert.equal(err.process, undefined);
  });
});

// ── (d) codecs ────────────────────────────────────────────────────────────────────────────────

describe('body codecs', () => {
  function roundTrip(value: unknown, codec?: CodecName): { code: number; value: unknown; bytes: Buffer } {
    const e = encodeBody(value, codec);
    const bytes = typeof e.bytes === 'string' ? Buffer.from(e.bytes, 'utf8') : e.bytes;
    return { code: e.code, value: decodeBody(e.code, bytes), bytes };
  }

  test('tags and names', () => {
    assert.deepEqual(Codec, { BYTES: 0, STRING: 1, JSON: 2, MSGPACK: 3 });
    assert.deepEqual([0, 1, 2, 3, 4].map(codecName), ['bytes', 'string', 'json', 'msgpack', undefined]);
  });

  test('strings are UTF-8 with the string tag', () => {
    for (const s of ['', 'hello', 'naïve ☃ 𝄞 日本語', 'x'.repeat(100_000)]) {
      const r = roundTrip(s);
      assert.equal(r.code, Codec.STRING);
      assert.equal(r.value, s);
      assert.ok(r.bytes.equals(Buffer.from(s, 'utf8')));
    }
  });

  test('bytes stay bytes, including a Uint8Array view at an offset', () => {
    const r = roundTrip(Buffer.from([0, 1, 2, 255]));
    assert.equal(r.code, Codec.BYTES);
    assert.ok(Buffer.isBuffer(r.value));
    assert.deepEqual([...(r.value as Buffer)], [0, 1, 2, 255]);
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
    const view = backing.subarray(2, 5);
    const v = roundTrip(view);
    assert.equal(v.code, Codec.BYTES);
    assert.deepEqual([...(v.value as Buffer)], [1, 2, 3]);
    assert.deepEqual([...roundTrip(new Uint8Array(0)).bytes], []);
  });

  test('json', () => {
    const value = { a: 1, b: [true, null, 'x'], c: { d: 1.5 } };
    const r = roundTrip(value, 'json');
    assert.equal(r.code, Codec.JSON);
    assert.deepEqual(r.value, value);
    assert.equal(r.bytes.toString('utf8'), JSON.stringify(value));
    assert.equal(roundTrip('text', 'json').value, 'text');
    assert.throws(() => encodeBody(undefined, 'json'), TypeError);
  });

  test('a named codec must fit the body', () => {
    assert.throws(() => encodeBody('text', 'bytes'), TypeError);
    assert.throws(() => encodeBody(42, 'string'), TypeError);
    assert.throws(() => encodeBody(1, 'yaml' as CodecName), TypeError);
  });

  test("msgpack's three documented differences from structuredClone", () => {
    // docs/protocol.md "Body codecs": if one of these starts to hold, the docs must say so.
    const lone = roundTrip({ s: 'ab\ud83d' }).value as { s: string };
    assert.ok(
      lone.s.startsWith('ab') &&
        lone.s
          .slice(2)
          .split('')
          .every((c) => c === '\ufffd'),
      lone.s,
    );
    const zero = (roundTrip([-0]).value as number[])[0];
    assert.ok(Object.is(zero, 0), '-0 arrives as 0');
    // biome-ignore lint/suspicious/noSparseArray: the hole is what is tested.
    const holes = roundTrip([1, , 3]).value as unknown[];
    assert.ok(1 in holes && holes[1] === undefined, 'a hole arrives as undefined');
    assert.equal(roundTrip('ab\ud83d').value, 'ab\ufffd', 'a string body (UTF-8) has one U+FFFD');
  });

  test('unknown tags give the raw bytes', () => {
    const raw = Buffer.from('abc');
    assert.equal(decodeBody(7, raw), raw);
    assert.equal(decodeBody(Codec.BYTES, raw), raw);
  });

  test('msgpack keeps JavaScript values exactly', () => {
    const cases: [string, unknown][] = [
      ['undefined', undefined],
      ['null', null],
      ['true', true],
      ['integer', 42],
      ['negative', -7],
      ['float', 1.25],
      ['2^60', 2 ** 60],
      ['string', 'héllo'],
      ['array', [1, 'two', [3]]],
      [
        'Map with mixed keys',
        new Map<unknown, unknown>([
          [1, 'a'],
          ['k', { x: 1 }],
          [true, null],
        ]),
      ],
      ['Set', new Set([1, 'a', 2])],
      ['Date', new Date(1_700_000_000_123)],
      ['bigint', 5n],
      ['negative bigint', -(2n ** 63n)],
      ['u64 bigint', 2n ** 64n - 1n],
      ['huge bigint', 2n ** 70n + 3n],
      ['Float64Array', new Float64Array([1.5, -0, Number.POSITIVE_INFINITY])],
      ['Int32Array', new Int32Array([-1, 2, 2 ** 31 - 1])],
      ['Uint16Array', new Uint16Array([0, 65535])],
      ['BigInt64Array', new BigInt64Array([1n, -1n])],
    ];
    for (const [what, value] of cases) {
      const r = roundTrip(value, 'msgpack');
      assert.equal(r.code, Codec.MSGPACK, what);
      if (typeof value !== 'string')
        assert.equal(encodeBody(value).code, Codec.MSGPACK, `${what}: msgpack by default`);
      assert.deepStrictEqual(r.value, value, what);
      if (value !== null && typeof value === 'object') {
        assert.equal((r.value as object).constructor, (value as object).constructor, `${what}: same class`);
      }
    }
  });

  test('msgpack: undefined and null stay distinct inside structures', () => {
    const r = roundTrip({ a: undefined, b: null, list: [undefined, null] });
    const v = r.value as { a?: unknown; b: unknown; list: unknown[] };
    assert.ok('a' in v, 'a key whose value is undefined is kept');
    assert.equal(v.a, undefined);
    assert.equal(v.b, null);
    assert.deepStrictEqual(v.list, [undefined, null]);
  });

  test('msgpack: nested objects, maps in objects, typed arrays in maps, shared and cyclic references', () => {
    const shared = { id: 1 };
    const value = {
      user: { name: 'ada', tags: new Set(['x']), born: new Date(0) },
      index: new Map<string, unknown>([
        ['bytes', new Uint8Array([1, 2, 3])],
        ['n', new Int16Array([-2])],
      ]),
      rows: Array.from({ length: 50 }, (_, i) => ({ i, sq: i * i, even: i % 2 === 0 })),
      a: shared,
      b: shared,
      deep: { l1: { l2: { l3: { l4: [{ big: 123n }] } } } },
    };
    const v = roundTrip(value).value as typeof value;
    assert.deepStrictEqual(v, value);
    assert.equal(v.a, v.b, 'a shared reference stays shared');
    const cyclic: { name: string; self?: unknown } = { name: 'c' };
    cyclic.self = cyclic;
    const c = roundTrip(cyclic).value as { name: string; self: unknown };
    assert.equal(c.self, c, 'a cycle stays a cycle');
  });

  test('msgpack bodies are self-describing: a fresh decoder reads any message', () => {
    // The second message of a shape must not depend on the first (another process may get it).
    encodeBody({ x: 1, y: 2 });
    const second = encodeBody({ x: 3, y: 4 });
    const bytes = second.bytes as Buffer;
    const fresh = new Unpackr({ structuredClone: true, mapsAsObjects: false, useRecords: true });
    assert.deepStrictEqual(fresh.unpack(bytes), { x: 3, y: 4 });
  });
});

test('what a structured body can carry: cycles, shared parts and large bodies are walked once; a fault is named', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  assert.equal(unsendable(cyclic, 'the body', 'plain'), null);
  // 2^40 paths through 41 arrays: a walk without its set of seen objects would never end.
  let shared: unknown[] = [];
  for (let i = 0; i < 40; i++) shared = [shared, shared];
  assert.equal(unsendable(shared, 'the body', 'plain'), null);
  shared.push(() => 1);
  assert.equal(unsendable(shared, 'the body', 'plain'), 'the body[2] is a function, which cannot be sent');
  // Past the budget of objects walked without a set, the fault is still found and named.
  const many: Record<string, unknown>[] = Array.from({ length: 1000 }, (_, i) => ({ i }));
  many[999]!.f = Symbol('s');
  assert.equal(unsendable(many, 'the body', 'plain'), 'the body[999].f is a symbol, which cannot be sent');
  // Class instances: plain objects in a body, refused where a caller would lose their methods.
  class Point {
    x = 1;
  }
  assert.equal(unsendable(new Point(), 'the body', 'plain'), null);
  assert.match(unsendable(new Point(), 'the result', 'refuse') ?? '', /the result is an instance of Point/);
});

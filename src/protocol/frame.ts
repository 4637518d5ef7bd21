/**
 * The wire format: every frame is a little-endian u32 length (bytes after the length field)
 * followed by a common 8-byte head, then the opcode's own fields.
 *
 * ```
 *  common head (12 bytes)            message frames, SEND and DELIVER (56 bytes, then headers, body)
 *  0  u32 length                      0  u32 length       24 u16 priority
 *  4  u8  opcode                      4  u8  opcode       26 u16 headers length
 *  5  u8  flags                       5  u8  flags        28 u32 reserved (0)
 *  6  u16 aux (opcode-specific)       6  u8  codec        32 i64 type
 *  8  u32 request id                  7  u8  on-full      40 u64 sequence number
 *                                     8  u32 request id   48 f64 time sent (ms since epoch)
 *                                    12  u32 target       56 headers, body
 *                                    16  u32 sender
 *                                    20  u32 timeout (ms)
 * ```
 *
 * SEND and DELIVER share one layout so the kernel can turn one into the other by rewriting a
 * few fields, without touching the body. docs/protocol.md is the full reference.
 */

export const PROTOCOL_VERSION = 1;

/** Bytes before the length field's count starts. */
export const LENGTH_BYTES = 4;
/** Size of the head every frame starts with. */
export const HEAD_BYTES = 12;
/** Size of the fixed part of a SEND or DELIVER frame. */
export const MESSAGE_HEAD_BYTES = 56;
/** Most bytes of user headers a message carries: their length is a 16-bit field. */
export const MAX_HEADERS_BYTES = 0xffff;
/**
 * Largest message size a kernel may allow: its frame (head, headers, body) must fit the 32-bit
 * length field, which is also as large as a Node buffer gets.
 */
export const MAX_MESSAGE_SIZE_LIMIT = 0xffffffff - MESSAGE_HEAD_BYTES - MAX_HEADERS_BYTES;
/**
 * The longest heartbeat a kernel may have: Node's longest timer, 2^31 − 1 ms. A longer one fires
 * at once, every millisecond, in the kernel and in each TCP client that heartbeats by it.
 */
export const MAX_HEARTBEAT_MS = 2_147_483_647;
/** RECEIVE max size meaning "no limit" (0 is a real limit: only empty bodies fit, as System V's msgsz 0). */
export const NO_MAX_SIZE = 0xffffffff;
/** Longest timeout a SEND or RECEIVE carries, in ms: the field is 32 bits (49.7 days). */
export const MAX_TIMEOUT_MS = 0xffffffff;
/** Size of a RECEIVE frame. */
export const RECEIVE_FRAME_BYTES = 44;
/** Size of a SENT frame. */
export const SENT_FRAME_BYTES = 28;
/** Size of a TAKE frame. */
export const TAKE_FRAME_BYTES = 20;
/** Size of a RECALL or RETURN frame (the head, then the message's u64 sequence number). */
export const RECALL_FRAME_BYTES = 20;

/** Opcodes: client to kernel below 0x80, kernel to client from 0x80. */
export const Op = {
  HELLO: 0x01,
  CALL: 0x02,
  SEND: 0x10,
  RECEIVE: 0x20,
  TAKE: 0x21,
  CANCEL: 0x22,
  PING: 0x23,
  RETURN: 0x24,
  DELIVER: 0x11,
  WELCOME: 0x81,
  RESULT: 0x82,
  ERROR: 0x83,
  ACK: 0x84,
  BLOCKED: 0x85,
  SENT: 0x86,
  EMPTY: 0x87,
  PONG: 0x88,
  EVENT: 0x89,
  END: 0x8a,
  RECALL: 0x8b,
} as const;
/** One of the {@link Op} values. */
export type Opcode = (typeof Op)[keyof typeof Op];

/** Field offsets within a frame (from the start of the length field). */
export const Off = {
  LENGTH: 0,
  OPCODE: 4,
  FLAGS: 5,
  AUX: 6,
  CODEC: 6,
  ON_FULL: 7,
  REQUEST: 8,
  TARGET: 12,
  SENDER: 16,
  TIMEOUT: 20,
  PRIORITY: 24,
  HEADERS_LENGTH: 26,
  RESERVED: 28,
  TYPE: 32,
  SEQ: 40,
  TIME: 48,
  BODY: 56,
  // RECEIVE
  R_TARGET: 12,
  R_FROM: 16,
  R_TIMEOUT: 20,
  R_MAX_SIZE: 24,
  R_CREDIT: 28,
  R_RESERVED: 32,
  R_TYPE: 36,
  // SENT
  S_RECEIVER: 12,
  S_RESERVED: 16,
  S_SEQ: 20,
  // TAKE
  T_TAKEN: 12,
  T_CREDIT: 16,
  // RECALL, RETURN
  C_SEQ: 12,
  // common payload start
  PAYLOAD: 12,
} as const;

/** SEND flags. */
export const SendFlag = {
  /** Complete the send only when a receiver has taken the message (SENT names it). */
  RECEIPT: 0x01,
  /** The target is a process id: deliver to that process's inbox. */
  TO_PROCESS: 0x02,
  /** Queue even if a requireReader mailbox has no reader yet (a call that waits for a server). */
  WITHOUT_READER: 0x04,
} as const;

/** RECEIVE flags. */
export const ReceiveFlag = {
  NOWAIT: 0x01,
  /** With a positive type: the first message not of that type (System V MSG_EXCEPT). */
  EXCEPT: 0x02,
  /** A message over max size is cut to it and consumed (System V MSG_NOERROR). */
  TRUNCATE: 0x04,
  /** Keep delivering within the credit until cancelled (an iterator). */
  STREAM: 0x08,
  /** Receive from the caller's own inbox; target is ignored. */
  INBOX: 0x10,
  /**
   * A single receive whose message, once taken, stays in the process's hands until a TAKE gives
   * its credit back (a `holdCredit` consumer that receives one message at a time, on a priority
   * mailbox): `postbox ps` shows it in hand, as a holdCredit stream's jobs are.
   */
  HOLD: 0x20,
} as const;

/** PING flags. */
export const PingFlag = {
  /** Answer with the kernel's clock: a PONG with this flag and an f64 payload (ms since epoch). */
  CLOCK: 0x01,
} as const;

/** What a send does when the mailbox is full: the header's control information. */
export const OnFull = {
  WAIT: 0,
  FAIL: 1,
  REPLACE_OLDEST: 2,
  DROP_NEW: 3,
} as const;
/** One of the {@link OnFull} values. */
export type OnFullCode = (typeof OnFull)[keyof typeof OnFull];

/** SENT outcomes. */
export const Outcome = {
  QUEUED: 1,
  REPLACED_OLDEST: 2,
  DROPPED: 3,
  RECEIVED: 4,
} as const;

/** Body codecs: how a reader decodes the body. */
export const Codec = {
  BYTES: 0,
  STRING: 1,
  JSON: 2,
  MSGPACK: 3,
} as const;
/** One of the {@link Codec} values. */
export type CodecCode = (typeof Codec)[keyof typeof Codec];

const TWO_32 = 2 ** 32;

// The hot paths read and write header fields byte by byte: Buffer's own methods check their
// arguments on every call, which costs more than the write itself. Callers stay in bounds.

/** Reads an unsigned 32-bit little-endian integer. */
export function getU32(buf: Buffer, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16)) + buf[off + 3]! * 0x1000000;
}

/** Writes an unsigned 32-bit little-endian integer. */
export function putU32(buf: Buffer, off: number, v: number): void {
  buf[off] = v;
  buf[off + 1] = v >>> 8;
  buf[off + 2] = v >>> 16;
  buf[off + 3] = v >>> 24;
}

/** Reads a signed 64-bit little-endian integer as a JS number (exact within ±2^53). */
export function readInt64(buf: Buffer, off: number): number {
  const lo = getU32(buf, off);
  const hi = buf[off + 4]! | (buf[off + 5]! << 8) | (buf[off + 6]! << 16) | (buf[off + 7]! << 24);
  return hi === 0 ? lo : hi * TWO_32 + lo;
}

/** Writes a JS integer as a signed 64-bit little-endian integer. */
export function writeInt64(buf: Buffer, value: number, off: number): void {
  if (value >= 0 && value < TWO_32) {
    putU32(buf, off, value);
    putU32(buf, off + 4, 0);
    return;
  }
  const hi = Math.floor(value / TWO_32);
  putU32(buf, off, value - hi * TWO_32);
  putU32(buf, off + 4, hi >>> 0);
}

/**
 * Turns the SEND frame at buf[off…] into the DELIVER of it for a receive `request` on mailbox
 * `target`, in place: the two share one layout, so only these fields differ.
 *
 * @example
 * ```ts
 * relabelAsDeliver(frame, 0, receiveRequestId, mailboxId);
 * frame[Off.OPCODE] === Op.DELIVER; // true; type, body, sender and sequence untouched
 * ```
 */
export function relabelAsDeliver(buf: Buffer, off: number, request: number, target: number): void {
  buf[off + Off.OPCODE] = Op.DELIVER;
  buf[off + Off.FLAGS] = 0;
  buf[off + Off.ON_FULL] = 0;
  putU32(buf, off + Off.REQUEST, request);
  putU32(buf, off + Off.TARGET, target);
  putU32(buf, off + Off.TIMEOUT, 0);
}

/** Writes the common 12-byte head. `length` is the whole frame's size including the length field. */
export function writeHead(
  buf: Buffer,
  off: number,
  size: number,
  op: number,
  flags: number,
  aux: number,
  request: number,
): void {
  putU32(buf, off, size - LENGTH_BYTES);
  buf[off + 4] = op;
  buf[off + 5] = flags;
  buf[off + 6] = aux;
  buf[off + 7] = aux >>> 8;
  putU32(buf, off + 8, request);
}

/** Encodes a frame with a JSON payload (HELLO, CALL, WELCOME, RESULT, ERROR, EVENT). */
export function encodeJsonFrame(
  op: number,
  flags: number,
  aux: number,
  request: number,
  payload: unknown,
): Buffer {
  const json = payload === undefined ? '' : JSON.stringify(payload);
  const len = Buffer.byteLength(json);
  const buf = Buffer.allocUnsafe(HEAD_BYTES + len);
  writeHead(buf, 0, HEAD_BYTES + len, op, flags, aux, request);
  buf.write(json, HEAD_BYTES, 'utf8');
  return buf;
}

/** Decodes the JSON payload of a frame occupying buf[start, end). */
export function decodeJsonPayload(buf: Buffer, start: number, end: number): unknown {
  if (end - start <= HEAD_BYTES) return undefined;
  return JSON.parse(buf.toString('utf8', start + HEAD_BYTES, end));
}

/** Encodes a frame that is only the common head (ACK, BLOCKED, EMPTY, CANCEL, PING, PONG). */
export function encodeHeadFrame(op: number, request: number): Buffer {
  const buf = Buffer.allocUnsafe(HEAD_BYTES);
  writeHead(buf, 0, HEAD_BYTES, op, 0, 0, request);
  return buf;
}

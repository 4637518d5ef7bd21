import { FrameError } from '../protocol/decoder.js';
import type { ErrorSubject, MeasuredSize } from '../protocol/errors.js';
import {
  decodeJsonPayload,
  HEAD_BYTES,
  MESSAGE_HEAD_BYTES,
  Off,
  Op,
  PingFlag,
  RECALL_FRAME_BYTES,
  SENT_FRAME_BYTES,
} from '../protocol/frame.js';

/** The kernel's frames of one size, by opcode (PONG: without the CLOCK flag). */
const FIXED_SIZE: ReadonlyMap<number, number> = new Map([
  [Op.ACK, HEAD_BYTES],
  [Op.BLOCKED, HEAD_BYTES],
  [Op.EMPTY, HEAD_BYTES],
  [Op.END, HEAD_BYTES],
  [Op.PONG, HEAD_BYTES],
  [Op.SENT, SENT_FRAME_BYTES],
  [Op.RECALL, RECALL_FRAME_BYTES],
]);

/**
 * Why a frame from the kernel cannot be read as its opcode says, or null if it can: a DELIVER
 * shorter than its message head or whose headers run past it, or a fixed-size frame of another
 * size. The decoder hands frames over in place, in the buffer of the read: read on trust, such a
 * frame's fields were the next frame's bytes, or past the buffer a RangeError, and a message's
 * headers failed the application's `m.headers` with a SyntaxError.
 */
export function badKernelFrame(buf: Buffer, start: number, end: number): string | null {
  const op = buf[start + Off.OPCODE]!;
  const size = end - start;
  if (op === Op.DELIVER) {
    if (size < MESSAGE_HEAD_BYTES)
      return `DELIVER of ${size} bytes is shorter than its ${MESSAGE_HEAD_BYTES}-byte head`;
    // Read by hand: this runs for every message delivered, and readUInt16LE checks bounds again.
    const at = start + Off.HEADERS_LENGTH;
    const headers = buf[at]! | (buf[at + 1]! << 8);
    if (MESSAGE_HEAD_BYTES + headers > size)
      return `DELIVER's headers length ${headers} runs past its ${size} bytes`;
    return null;
  }
  let want = FIXED_SIZE.get(op);
  if (want === undefined) return null;
  if (op === Op.PONG && (buf[start + Off.FLAGS]! & PingFlag.CLOCK) !== 0) want = HEAD_BYTES + 8;
  return size === want ? null : `${opName(op)} frame must be ${want} bytes, got ${size}`;
}

/**
 * The JSON payload of a kernel's frame (RESULT, ERROR, EVENT, WELCOME). One that is not JSON is a
 * bad frame, said so: the connection failed with only JSON.parse's words ("SyntaxError: … is
 * not valid JSON"), naming neither the frame nor the kernel.
 */
export function kernelPayload(buf: Buffer, start: number, end: number): unknown {
  try {
    return decodeJsonPayload(buf, start, end);
  } catch (err) {
    const op = opName(buf[start + Off.OPCODE]!);
    const request = buf.readUInt32LE(start + Off.REQUEST);
    throw new FrameError(`${op} for request ${request} is not JSON: ${(err as Error).message}`);
  }
}

/** An ERROR's payload as the client reads it: see {@link kernelErrorPayload}. */
export interface KernelErrorPayload {
  message: string;
  subject: ErrorSubject;
  measured: MeasuredSize | undefined;
  holders: readonly string[] | undefined;
}

/**
 * The payload of a kernel's ERROR: an object with a string `message`, and where present a string
 * `mailbox` and `process`, together whole-number `size` and `limit` (an EMSGSIZE the kernel
 * measured), and a list of strings `holders` (an EBUSY's). Anything else is a bad frame, said so: a message that is a number, or a subject that
 * is an object, reached the application as an error whose fields were not what their types say.
 * Members it does not know are left alone, for a newer kernel to add.
 */
export function kernelErrorPayload(buf: Buffer, start: number, end: number): KernelErrorPayload {
  const v = kernelPayload(buf, start, end);
  const why = badErrorPayload(v);
  if (why !== null) {
    const request = buf.readUInt32LE(start + Off.REQUEST);
    throw new FrameError(`ERROR for request ${request} is not an error: ${why}`);
  }
  const e = v as {
    message: string;
    mailbox?: string;
    process?: string;
    size?: number;
    limit?: number;
    holders?: string[];
  };
  const subject: ErrorSubject = {};
  if (e.mailbox !== undefined) subject.mailbox = e.mailbox;
  if (e.process !== undefined) subject.process = e.process;
  const measured = e.size === undefined ? undefined : { size: e.size, limit: e.limit! };
  return { message: e.message, subject, measured, holders: e.holders };
}

function badErrorPayload(v: unknown): string | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return `its payload is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`}, not an object`;
  const e = v as Record<string, unknown>;
  if (typeof e.message !== 'string') return `its message is ${shape(e.message)}, not a string`;
  for (const key of ['mailbox', 'process'])
    if (e[key] !== undefined && typeof e[key] !== 'string')
      return `its ${key} is ${shape(e[key])}, not a string`;
  for (const key of ['size', 'limit'])
    if (e[key] !== undefined && !(Number.isSafeInteger(e[key]) && (e[key] as number) >= 0))
      return `its ${key} is ${shape(e[key])}, not a whole number of bytes`;
  if (e.holders !== undefined && !(Array.isArray(e.holders) && e.holders.every((h) => typeof h === 'string')))
    return `its holders is ${shape(e.holders)}, not a list of strings`;
  if ((e.size === undefined) !== (e.limit === undefined))
    return 'it has a size without a limit, or a limit without a size';
  return null;
}

/** A value's kind as a bad frame's message names it: short, whatever the value's size. */
function shape(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  return String(v);
}

function opName(op: number): string {
  for (const [name, code] of Object.entries(Op)) if (code === op) return name;
  return `0x${op.toString(16)}`;
}

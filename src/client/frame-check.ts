import { FrameError } from '../protocol/decoder.js';
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

function opName(op: number): string {
  for (const [name, code] of Object.entries(Op)) if (code === op) return name;
  return `0x${op.toString(16)}`;
}

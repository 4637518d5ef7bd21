import { decodeBody, codecName, type CodecName } from '../protocol/codec.js';
import { MESSAGE_HEAD_BYTES, Off, readInt64 } from '../protocol/frame.js';

/**
 * A received message: its header, and its body as bytes (`data`) or decoded by its codec
 * (`body`).
 *
 * @example
 * ```ts
 * const m = await mailbox.receive();
 * console.log(m.sender, m.type, m.body);
 * ```
 */
export class Message<T = unknown> {
  /** Sequence number in its mailbox (1, 2, 3, … in order of acceptance). */
  readonly seq: number;
  /** Id of the process that sent it. */
  readonly sender: number;
  /** Message type, a positive integer (System V's mtype); default 1. */
  readonly type: number;
  /** Priority; higher first in priority mailboxes. */
  readonly priority: number;
  /** When the kernel accepted it, ms since the epoch. */
  readonly time: number;
  /** Id of the mailbox it came from. */
  readonly mailbox: number;
  /** Codec tag of the body. */
  readonly codec: CodecName | 'unknown';
  /** The body's bytes, undecoded (a view; copy it if you keep it long). */
  readonly data: Buffer;
  private readonly rawHeaders: Buffer | null;
  private decoded: { value: unknown } | null = null;

  /** @internal Built by the client from a DELIVER frame at buf[start, end). */
  constructor(buf: Buffer, start: number, end: number) {
    this.seq = readInt64(buf, start + Off.SEQ);
    this.sender = buf.readUInt32LE(start + Off.SENDER);
    this.type = readInt64(buf, start + Off.TYPE);
    this.priority = buf.readUInt16LE(start + Off.PRIORITY);
    this.time = buf.readDoubleLE(start + Off.TIME);
    this.mailbox = buf.readUInt32LE(start + Off.TARGET);
    this.codec = codecName(buf[start + Off.CODEC]!) ?? 'unknown';
    const headers = buf.readUInt16LE(start + Off.HEADERS_LENGTH);
    const bodyStart = start + MESSAGE_HEAD_BYTES + headers;
    this.rawHeaders = headers === 0 ? null : buf.subarray(start + MESSAGE_HEAD_BYTES, bodyStart);
    this.data = buf.subarray(bodyStart, end);
  }

  /** Body size in bytes. */
  get size(): number {
    return this.data.length;
  }

  /** The body decoded by its codec: a string, a JS value, or bytes. */
  get body(): T {
    if (this.decoded === null) this.decoded = { value: decodeBody(codecTag(this.codec), this.data) };
    return this.decoded.value as T;
  }

  /** The body as UTF-8 text, whatever its codec. */
  text(): string {
    return this.data.toString('utf8');
  }

  /** User headers sent with the message. */
  get headers(): Record<string, string> {
    if (this.rawHeaders === null) return {};
    return JSON.parse(this.rawHeaders.toString('utf8')) as Record<string, string>;
  }
}

function codecTag(name: CodecName | 'unknown'): number {
  switch (name) {
    case 'string':
      return 1;
    case 'json':
      return 2;
    case 'msgpack':
      return 3;
    default:
      return 0;
  }
}

import { type CodecName, codecName, decodeBody } from '../protocol/codec.js';
import { ProtocolError } from '../protocol/errors.js';
import { getU32, MESSAGE_HEAD_BYTES, Off, readInt64 } from '../protocol/frame.js';

/**
 * A received message: its header, and its body as bytes (`data`) or decoded by its codec
 * (`body`).
 *
 * @example
 * ```ts
 * const m = await mailbox.receive(); // null only with nowait, or at a pipe's end of file
 * if (m !== null) console.log(m.sender, m.type, m.body);
 * ```
 */
export class Message<T = unknown> {
  // The frame it came in, read on demand: a receiver that looks only at the body pays for no
  // header field it does not use.
  private readonly buf: Buffer;
  private readonly start: number;
  private readonly end: number;
  private view: Buffer | null = null;
  private decoded: { value: unknown } | null = null;

  /** @internal Built by the client from a DELIVER frame at buf[start, end). */
  constructor(buf: Buffer, start: number, end: number) {
    this.buf = buf;
    this.start = start;
    this.end = end;
  }

  /** Sequence number in its mailbox (1, 2, 3, … in order of acceptance). */
  get seq(): number {
    return readInt64(this.buf, this.start + Off.SEQ);
  }
  /** Id of the process that sent it. */
  get sender(): number {
    return getU32(this.buf, this.start + Off.SENDER);
  }
  /** Message type, a positive integer (System V's mtype); default 1. */
  get type(): number {
    return readInt64(this.buf, this.start + Off.TYPE);
  }
  /** Priority; higher first in priority mailboxes. */
  get priority(): number {
    return this.buf.readUInt16LE(this.start + Off.PRIORITY);
  }
  /**
   * When the kernel accepted it, ms since the epoch by the kernel's clock (on another machine,
   * add {@link PostboxProcess.kernelClockOffset} to `Date.now()` to compare with it).
   */
  get time(): number {
    return this.buf.readDoubleLE(this.start + Off.TIME);
  }
  /** Id of the mailbox it came from. */
  get mailbox(): number {
    return getU32(this.buf, this.start + Off.TARGET);
  }
  /** Codec tag of the body. */
  get codec(): CodecName | 'unknown' {
    return codecName(this.buf[this.start + Off.CODEC]!) ?? 'unknown';
  }

  /** The body's bytes, undecoded (a view; copy it if you keep it long). */
  get data(): Buffer {
    if (this.view === null) {
      const bodyStart =
        this.start + MESSAGE_HEAD_BYTES + this.buf.readUInt16LE(this.start + Off.HEADERS_LENGTH);
      this.view = this.buf.subarray(bodyStart, this.end);
    }
    return this.view;
  }

  /** Body size in bytes. */
  get size(): number {
    return (
      this.end - this.start - MESSAGE_HEAD_BYTES - this.buf.readUInt16LE(this.start + Off.HEADERS_LENGTH)
    );
  }

  /**
   * The body decoded by its codec: a string, a JS value, or bytes. EPROTO if the bytes are not
   * valid in their codec (a structured body cut short by `truncate`, or another sender's bytes).
   */
  get body(): T {
    if (this.decoded === null) {
      const code = this.buf[this.start + Off.CODEC]!;
      try {
        this.decoded = { value: decodeBody(code, this.data) };
      } catch (err) {
        throw new ProtocolError(
          `the ${this.size}-byte body is not valid ${codecName(code) ?? 'data'}: ${(err as Error).message}` +
            ' (read it whole, or as bytes with message.data)',
        );
      }
    }
    return this.decoded.value as T;
  }

  /** The body as UTF-8 text, whatever its codec. */
  text(): string {
    return this.data.toString('utf8');
  }

  /**
   * User headers sent with the message. EPROTO if they are not JSON (the kernel lets through only
   * a JSON object of strings: these came from something else), as for a body not valid in its codec.
   */
  get headers(): Record<string, string> {
    const n = this.buf.readUInt16LE(this.start + Off.HEADERS_LENGTH);
    if (n === 0) return {};
    const at = this.start + MESSAGE_HEAD_BYTES;
    try {
      return JSON.parse(this.buf.toString('utf8', at, at + n)) as Record<string, string>;
    } catch (err) {
      throw new ProtocolError(
        `the message's ${n} bytes of user headers are not JSON: ${(err as Error).message}`,
      );
    }
  }

  /** A plain object of the header fields, for logging. */
  toJSON(): Record<string, unknown> {
    return {
      seq: this.seq,
      sender: this.sender,
      type: this.type,
      priority: this.priority,
      time: this.time,
      mailbox: this.mailbox,
      codec: this.codec,
      size: this.size,
    };
  }
}

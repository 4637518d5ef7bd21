import type { CodecName } from '../protocol/codec.js';
import { InvalidArgumentError, type PostboxError } from '../protocol/errors.js';
import { MAX_TIMEOUT_MS, Off, OnFull, type OnFullCode, Op } from '../protocol/frame.js';
import { describeValue, type OptionNames } from './option-names.js';

/** Options shared by sends, as on the command line. */
export interface SendOptions {
  /** Message type, a positive integer (default 1). */
  type?: number | undefined;
  /** Priority 0…32767 (default 0); orders delivery in priority mailboxes. */
  priority?: number | undefined;
  /** Fail at once with EAGAIN if the mailbox is full, queueing nothing. Same as onFull 'fail'. */
  nowait?: boolean | undefined;
  /** Give up after this many ms (ETIMEDOUT); the message is then never delivered. */
  timeout?: number | undefined;
  /** Give up when aborted (ECANCELED); the message is then never delivered. */
  signal?: AbortSignal | undefined;
  /** Complete only when a receiver has taken the message; the result names it. */
  receipt?: boolean | undefined;
  /** What to do when the mailbox is full: wait (default), fail (EAGAIN), replace the oldest, or drop this one. */
  onFull?: 'wait' | 'fail' | 'replace-oldest' | 'drop' | undefined;
  /** Body codec; default by the body's kind (bytes, string, else msgpack). */
  codec?: CodecName | undefined;
  /** User headers, string to string. */
  headers?: Record<string, string> | undefined;
  /** Queue even when a requireReader mailbox has no reader yet (wait for a server). */
  withoutReader?: boolean | undefined;
}

/** The names {@link SendOptions} has, to refuse a misspelt one. */
export const SEND_OPTIONS: OptionNames<SendOptions> = {
  type: true,
  priority: true,
  nowait: true,
  timeout: true,
  signal: true,
  receipt: true,
  onFull: true,
  codec: true,
  headers: true,
  withoutReader: true,
};

const onFullCodes: Record<NonNullable<SendOptions['onFull']>, OnFullCode> = {
  wait: OnFull.WAIT,
  fail: OnFull.FAIL,
  'replace-oldest': OnFull.REPLACE_OLDEST,
  drop: OnFull.DROP_NEW,
};

/** A send's options, checked once and in the form the SEND head carries them. */
export class SendPlan {
  constructor(
    readonly flags: number,
    readonly onFull: OnFullCode,
    readonly timeout: number,
    readonly priority: number,
    readonly type: number,
    readonly headers: string | null,
    readonly headLen: number,
  ) {}
}

/** Writes the 56-byte head of a SEND frame of `size` bytes at b[off]. */
export function writeSendHead(
  v: DataView,
  off: number,
  size: number,
  id: number,
  target: number,
  flags: number,
  codec: number,
  onFull: number,
  timeout: number,
  priority: number,
  type: number,
  headLen: number,
): void {
  // Word stores: OPCODE, FLAGS, CODEC and ON_FULL are one little-endian word, PRIORITY and
  // HEADERS_LENGTH another; SEQ and TIME (the kernel stamps them) are zeroed as two doubles.
  v.setUint32(off, size - 4, true);
  v.setUint32(off + Off.OPCODE, Op.SEND | (flags << 8) | (codec << 16) | (onFull << 24), true);
  v.setUint32(off + Off.REQUEST, id, true);
  v.setUint32(off + Off.TARGET, target, true);
  v.setUint32(off + Off.SENDER, 0, true);
  v.setUint32(off + Off.TIMEOUT, timeout, true);
  v.setUint32(off + Off.PRIORITY, (priority & 0xffff) | (headLen << 16), true);
  v.setUint32(off + Off.RESERVED, 0, true);
  if (type < TWO_32) {
    v.setUint32(off + Off.TYPE, type, true);
    v.setUint32(off + Off.TYPE + 4, 0, true);
  } else {
    const hi = Math.floor(type / TWO_32);
    v.setUint32(off + Off.TYPE, type - hi * TWO_32, true);
    v.setUint32(off + Off.TYPE + 4, hi, true);
  }
  v.setFloat64(off + Off.SEQ, 0, true);
  v.setFloat64(off + Off.TIME, 0, true);
}

/** Types are whole numbers from 1 up (planSend), so the head's 64-bit TYPE splits at 2^32. */
const TWO_32 = 2 ** 32;

/** Checks a send's options; the error names the first bad one. */
export function planSend(o: SendOptions, toProcess: boolean): SendPlan | PostboxError {
  let headers: string | null = null;
  try {
    if (o.headers !== undefined) headers = JSON.stringify(o.headers);
  } catch (err) {
    return new InvalidArgumentError(
      `cannot encode the headers: ${(err as Error).message}`,
      {},
      { cause: err },
    );
  }
  const type = o.type ?? 1;
  const priority = o.priority ?? 0;
  if (!Number.isSafeInteger(type) || type < 1)
    return new InvalidArgumentError(`type must be a positive integer, not ${describeValue(type)}`);
  if (!Number.isInteger(priority) || priority < 0 || priority > 32767)
    return new InvalidArgumentError(
      `priority must be an integer from 0 to 32767, not ${describeValue(priority)}`,
    );
  const timeout = o.timeout ?? 0;
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > MAX_TIMEOUT_MS)
    return new InvalidArgumentError(
      `timeout must be a whole number of ms up to ${MAX_TIMEOUT_MS} (49.7 days), not ${describeValue(timeout)}`,
    );
  let onFull: OnFullCode = o.nowait === true ? OnFull.FAIL : OnFull.WAIT;
  if (o.onFull !== undefined) {
    // Own keys only: 'toString' found Object.prototype's function, which went out as 0, 'wait'.
    const code = Object.hasOwn(onFullCodes, o.onFull) ? onFullCodes[o.onFull] : undefined;
    if (code === undefined)
      return new InvalidArgumentError(`onFull must be wait, fail, replace-oldest or drop, not '${o.onFull}'`);
    onFull = code;
  }
  const headLen = headers === null ? 0 : Buffer.byteLength(headers);
  if (headLen > 65535) return new InvalidArgumentError('user headers are over 65535 bytes');
  const flags = (o.receipt === true ? 1 : 0) | (toProcess ? 2 : 0) | (o.withoutReader === true ? 4 : 0);
  return new SendPlan(flags, onFull, timeout, priority, type, headers, headLen);
}

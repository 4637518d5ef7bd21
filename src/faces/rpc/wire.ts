/**
 * The RPC face's wire shapes: mailbox names, message types and bodies. Every body travels with
 * the msgpack codec (structured-clone fidelity); docs/rpc.md documents them for other languages.
 */
import { inspect } from 'node:util';
import { InvalidArgumentError } from '../../protocol/errors.js';

/** A service `S` is served from the system-owned mailbox `rpc:S`. */
export const SERVICE_PREFIX = 'rpc:';
/** Each server process reads cancels and stream starts from its own mailbox `rpc:ctl:<process id>`. */
export const CONTROL_PREFIX = 'rpc:ctl:';
/** Default capacity of a streaming call's mailbox: how far a server may run ahead of its caller. */
export const STREAM_CAPACITY = 16;
/** Default number of requests a server takes (and handlers it runs) at once. */
export const DEFAULT_CONCURRENCY = 64;

/** Types of the messages in a caller's reply mailbox. */
export const ReplyType = { REPLY: 1, FENCE: 2 } as const;
/** Types of the messages in a server's control mailbox. */
export const ControlType = { CANCEL: 1, START: 2 } as const;
/** Types of the messages in a streaming call's mailbox. */
export const StreamType = { ITEM: 1, END: 2, ERROR: 3, FENCE: 4 } as const;

/** What a caller sends to `rpc:<service>`. */
export interface RequestBody {
  /** Call id, unique per caller process, never reused. */
  id: number;
  method: string;
  args: unknown[];
  /** Mailbox id of the caller's reply mailbox. */
  reply: number;
  /** When the caller gives up, ms since the epoch by the kernel's clock (not the caller's). */
  deadline?: number;
}

/**
 * An error as it crosses the wire, from a server's handler to its caller: what a
 * {@link RemoteError} is made of.
 *
 * @example
 * ```ts
 * const remote: WireError = { name: 'RangeError', message: 'division by zero', code: 'E_DIV' };
 * ```
 */
export interface WireError {
  name: string;
  message: string;
  /** The error's own `code` (any string), if it had one. */
  code?: string;
  stack?: string;
  /** Raised by the RPC layer (unknown method, unsendable result…), not by the handler: `code` is a Postbox code. */
  rpc?: boolean;
  /**
   * With `limit`, on an RPC-layer EMSGSIZE: the answer's or item's size in bytes, as the server
   * measured it (the caller's `MessageSizeError` has them).
   */
  size?: number;
  /** With `size`: the limit it is over, in bytes. */
  limit?: number;
  /** The error's own `cause`, in the same form, up to {@link MAX_CAUSES} deep. */
  cause?: WireError;
}

/** How deep a chain of causes crosses: deeper ones (or a cycle) are cut there. */
export const MAX_CAUSES = 8;

/** What a server sends back to the reply mailbox (type REPLY). */
export type ReplyBody =
  | { id: number; ok: unknown }
  | { id: number; error: WireError }
  /** The handler returned an async iterable: the caller is to open a stream mailbox and START it. */
  | { id: number; stream: true };

// Requests and answers, the messages of every call, travel as arrays: msgpack writes an object
// as a record with its keys (it has no structures shared between processes), which here doubled
// the time to pack and unpack each one. The rare messages (errors, control, fences) stay objects.

/** A request on the wire: `[id, method, args, reply]` or `[id, method, args, reply, deadline]`. */
export function requestToWire(r: RequestBody): unknown[] {
  return r.deadline === undefined
    ? [r.id, r.method, r.args, r.reply]
    : [r.id, r.method, r.args, r.reply, r.deadline];
}

/** A request off the wire, its fields not yet checked; null if it is not one at all. */
export function requestFromWire(v: unknown): Partial<Record<keyof RequestBody, unknown>> | null {
  if (!Array.isArray(v) || v.length < 4 || v.length > 5) return null;
  return { id: v[0], method: v[1], args: v[2], reply: v[3], deadline: v[4] };
}

/** Answer kinds, the second element of an answer on the wire. */
const AnswerKind = { OK: 0, ERROR: 1, STREAM: 2 } as const;

/** An answer on the wire: `[id, 0, value]`, `[id, 1, error]` or `[id, 2]` (a stream is offered). */
export function replyToWire(r: ReplyBody): unknown[] {
  if ('ok' in r) return [r.id, AnswerKind.OK, r.ok];
  if ('error' in r) return [r.id, AnswerKind.ERROR, r.error];
  return [r.id, AnswerKind.STREAM];
}

/** An answer off the wire, or null if it is not one. */
export function replyFromWire(v: unknown): ReplyBody | null {
  if (!Array.isArray(v) || typeof v[0] !== 'number') return null;
  const id = v[0];
  switch (v[1]) {
    case AnswerKind.OK:
      return v.length === 3 ? { id, ok: v[2] } : null;
    case AnswerKind.ERROR:
      return { id, error: wireErrorFrom(v[2]) };
    case AnswerKind.STREAM:
      return { id, stream: true };
    default:
      return null;
  }
}

/**
 * An error off the wire (an answer's, or a stream's ERROR), its fields made what they claim to
 * be: a server that sends a malformed one (another client, another language) fails the call
 * with what could be read, rather than leaving it waiting or throwing a TypeError at the caller.
 */
export function wireErrorFrom(v: unknown, depth = 0): WireError {
  if (typeof v !== 'object' || v === null)
    return { name: 'Error', message: `a malformed error: ${text(v, '')}` };
  const e = v as Record<string, unknown>;
  const out: WireError = { name: text(e.name, 'Error'), message: text(e.message, '') };
  if (e.code !== undefined) out.code = text(e.code, '');
  if (typeof e.stack === 'string') out.stack = e.stack;
  if (e.rpc === true) out.rpc = true;
  // Both or neither, whole numbers: a size that is not one says nothing worth passing on.
  if (isByteCount(e.size) && isByteCount(e.limit)) {
    out.size = e.size;
    out.limit = e.limit;
  }
  if (e.cause !== undefined && depth < MAX_CAUSES) out.cause = wireErrorFrom(e.cause, depth + 1);
  return out;
}

function isByteCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Control messages, to `rpc:ctl:<server>`: CANCEL `{ id }`, START `{ id, to }`. */
export interface ControlBody {
  id: number;
  /** START: the mailbox id the items go to. */
  to?: number;
}

/** Checks a service name and gives its mailbox name. */
export function serviceMailbox(service: unknown): string {
  if (typeof service !== 'string' || service.length === 0 || service.length > 255 - SERVICE_PREFIX.length) {
    throw new InvalidArgumentError(
      `a service name is a string of 1 to ${255 - SERVICE_PREFIX.length} characters, not ${JSON.stringify(service)}`,
    );
  }
  return SERVICE_PREFIX + service;
}

/** Name of a server process's control mailbox. */
export function controlMailbox(process: number): string {
  return CONTROL_PREFIX + process;
}

/**
 * Turns anything thrown by a handler into its wire form. It never throws, and every field is a
 * string: an answer the caller could not read (a message that is an object, say) or an error
 * whose getter throws would leave the call with no answer at all.
 */
export function toWireError(err: unknown, rpc = false): WireError {
  try {
    if (err instanceof Error) {
      const out = errorToWire(err, 0);
      if (rpc) out.rpc = true;
      return out;
    }
    // A handler that throws a non-Error (a string, say) still gets a clear error at the caller;
    // an object's own `code` (`throw { code: 'E_BUSY', … }`) crosses as the remote code.
    const out: WireError = {
      name: 'Error',
      message: `the handler threw a non-Error value: ${text(err, '')}`,
    };
    const code = typeof err === 'object' && err !== null ? codeOf(err) : undefined;
    if (code !== undefined) out.code = code;
    return out;
  } catch {
    return { name: 'Error', message: 'the handler threw a value that could not be read' };
  }
}

/**
 * An Error's fields and its chain of causes (`new Error('…', { cause })`), which callers of
 * other RPC systems find in an error's details: a cause that is not an Error crosses described
 * as text, as a thrown non-Error does.
 */
function errorToWire(err: Error, depth: number): WireError {
  const out: WireError = {
    name: text(field(err, 'name'), 'Error'),
    message: text(field(err, 'message'), ''),
  };
  const code = codeOf(err);
  if (code !== undefined) out.code = code;
  const stack = field(err, 'stack');
  if (typeof stack === 'string') out.stack = stack;
  const cause = field(err, 'cause');
  if (cause !== undefined && depth < MAX_CAUSES) {
    if (cause instanceof Error) out.cause = errorToWire(cause, depth + 1);
    else {
      out.cause = { name: 'Error', message: text(cause, '') };
      const causeCode = typeof cause === 'object' && cause !== null ? codeOf(cause) : undefined;
      if (causeCode !== undefined) out.cause.code = causeCode;
    }
  }
  return out;
}

/** A property of a thrown value, or undefined if reading it throws (a getter, a Proxy). */
function field(v: object, key: string): unknown {
  try {
    return (v as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

function codeOf(v: object): string | undefined {
  const code = field(v, 'code');
  return typeof code === 'string' || typeof code === 'number' ? String(code) : undefined;
}

function text(v: unknown, fallback: string): string {
  if (typeof v === 'string') return v;
  if (v === undefined && fallback !== '') return fallback;
  return inspect(v, { depth: 2, breakLength: Number.POSITIVE_INFINITY });
}

/** How much of an error's name, code and message is kept when the whole is over the size limit. */
const SHORT_NAME = 100;
const SHORT_MESSAGE = 1000;
const CUT_NOTE = ' (cut: the error was over the message size limit)';
/** The longest message a shrunk error has: shrinking it again changes nothing. */
const SHRUNK_MESSAGE = SHORT_MESSAGE + 1 + CUT_NOTE.length;

/**
 * A smaller form of an error that was over the kernel's message size limit: its name and code,
 * the start of its message, its sizes, no stack, no cause. Null when it is that small already (nothing
 * more to cut).
 */
export function shrinkWireError(e: WireError): WireError | null {
  const long = (s: string | undefined, n: number): boolean => s !== undefined && s.length > n;
  if (
    e.stack === undefined &&
    e.cause === undefined &&
    !long(e.name, SHORT_NAME) &&
    !long(e.code, SHORT_NAME) &&
    !long(e.message, SHRUNK_MESSAGE)
  )
    return null;
  const out: WireError = {
    name: e.name.slice(0, SHORT_NAME),
    message: long(e.message, SHRUNK_MESSAGE) ? `${e.message.slice(0, SHORT_MESSAGE)}…${CUT_NOTE}` : e.message,
  };
  if (e.code !== undefined) out.code = e.code.slice(0, SHORT_NAME);
  if (e.rpc === true) out.rpc = true;
  if (e.size !== undefined && e.limit !== undefined) {
    out.size = e.size;
    out.limit = e.limit;
  }
  return out;
}

/** Whether a value is something a handler streams (an async iterable, not a string or bytes). */
export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

/**
 * Whether a value is a synchronous generator's (`function*`): streamed as an async one would be.
 * Only generators: an array or a Set is an iterable too, but a value, sent whole.
 */
export function isGenerator(v: unknown): v is Generator<unknown, unknown, unknown> {
  return typeof v === 'object' && v !== null && Object.prototype.toString.call(v) === '[object Generator]';
}

/** A synchronous generator as an async iterable; return() reaches it, so its `finally` runs. */
export async function* streamOfGenerator<T>(
  g: Generator<T, unknown, unknown>,
): AsyncGenerator<T, void, undefined> {
  yield* g;
}

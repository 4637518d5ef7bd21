/**
 * The RPC face's wire shapes: mailbox names, message types and bodies. Every body travels with
 * the msgpack codec (structured-clone fidelity); docs/rpc.md documents them for other languages.
 */
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

/** An error as it crosses the wire. */
export interface WireError {
  name: string;
  message: string;
  /** The error's own `code` (any string), if it had one. */
  code?: string;
  stack?: string;
  /** Raised by the RPC layer (unknown method, unsendable result…), not by the handler: `code` is a Postbox code. */
  rpc?: boolean;
}

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
    case AnswerKind.ERROR: {
      const e = v[2] as WireError | null | undefined;
      if (typeof e !== 'object' || e === null || typeof e.message !== 'string') return null;
      return { id, error: e };
    }
    case AnswerKind.STREAM:
      return { id, stream: true };
    default:
      return null;
  }
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

/** Turns anything thrown by a handler into its wire form. */
export function toWireError(err: unknown, rpc = false): WireError {
  if (err instanceof Error) {
    const out: WireError = { name: err.name, message: err.message };
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out.code = String(code);
    if (typeof err.stack === 'string') out.stack = err.stack;
    if (rpc) out.rpc = true;
    return out;
  }
  // A handler that throws a non-Error (a string, say) still gets a clear error at the caller.
  let text: string;
  try {
    text = typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err));
  } catch {
    text = String(err);
  }
  return { name: 'Error', message: `the handler threw a non-Error value: ${text}` };
}

/** Whether a value is something a handler streams (an async iterable, not a string or bytes). */
export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

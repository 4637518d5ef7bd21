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
  /** When the caller gives up, ms since the epoch (the caller's clock). */
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

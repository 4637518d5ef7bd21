/**
 * Errors of the RPC face. Every error a call rejects with carries the caller's own stack, so a
 * timeout, a dead server or a remote exception points at the line that made the call. By default
 * that stack is taken when the failure reaches the caller, from V8's async stack trace: the
 * functions awaiting the call, each at the line of its await. Nothing is captured for a call
 * that succeeds (a synchronous capture costs about 3 µs, a third of a small call's client time).
 * With `captureStack` the stack is captured at the call, before anything is sent: for code that
 * does not await its calls.
 */
import {
  BusyError,
  ClosedError,
  ConnectionLostError,
  type ErrorCode,
  MessageSizeError,
  makeError,
  NotFoundError,
  PostboxError,
  ProtocolError,
  RemoteFailureError,
} from '../../protocol/errors.js';
import type { WireError } from './wire.js';

/**
 * The code every {@link RemoteError} has: EREMOTE, the handler in another process failed.
 * The handler's own error code is `err.remoteCode`.
 */
export const REMOTE_ERROR_CODE = 'EREMOTE' satisfies ErrorCode;

/**
 * Where a call was made: a stack captured before anything was sent (`captureStack`), or null
 * when the stack is to come from the functions awaiting the call ({@link atAwaiters}).
 */
export type CallSite = { stack?: string } | null;

/** Captures the caller's stack, leaving out `above` and everything it called. */
export function captureSite(above: (...args: never[]) => unknown): CallSite {
  const site: CallSite = {};
  Error.captureStackTrace(site, above);
  return site;
}

/**
 * Gives `err` the stack of the async functions awaiting now, leaving out `above` and everything
 * it called. Called where a failure surfaces inside an async function the caller awaits, V8's
 * async stack trace names the caller's own functions and the lines of their awaits.
 */
export function atAwaiters<E extends Error>(err: E, above: (...args: never[]) => unknown): E {
  Error.captureStackTrace(err, above);
  return err;
}

/**
 * Gives `err` the caller's stack when one was captured at the call: its own header line, then
 * the call site's frames. Without a captured site it is left for {@link atAwaiters}.
 */
export function atSite<E extends Error>(err: E, site: CallSite): E {
  if (site === null) return err;
  const stack = site.stack;
  if (stack !== undefined) {
    const nl = stack.indexOf('\n');
    const frames = nl < 0 ? '' : stack.slice(nl);
    Object.defineProperty(err, 'stack', {
      value: `${err.name}: ${err.message}${frames}`,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  return err;
}

/**
 * The same error with the caller's stack (a fresh object of the same class and code), the error
 * it was made from as its `cause`. Anything not a Postbox error (a body that cannot be decoded)
 * is a `ProtocolError`: the class of its code, so `instanceof ProtocolError` holds as for any
 * EPROTO.
 */
export function rethrownAt(err: unknown, site: CallSite, prefix: string): PostboxError {
  let again: PostboxError;
  if (err instanceof PostboxError) {
    const subject: { mailbox?: string; process?: string } = {};
    if (err.mailbox !== undefined) subject.mailbox = err.mailbox;
    if (err.process !== undefined) subject.process = err.process;
    // A request measured over a limit keeps the measure, as a send's does.
    const measured =
      err instanceof MessageSizeError && err.size !== undefined && err.limit !== undefined
        ? { size: err.size, limit: err.limit }
        : undefined;
    const holders = err instanceof BusyError ? err.holders : undefined;
    again = makeError(err.code, `${prefix}: ${err.message}`, subject, measured, holders);
  } else again = new ProtocolError(`${prefix}: ${err instanceof Error ? err.message : String(err)}`);
  // As `new Error(message, { cause })` sets it: an own property, not enumerable.
  Object.defineProperty(again, 'cause', {
    value: err,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  return atSite(again, site);
}

/**
 * What a call still open gets when its own process closes under it: ENOTCONN in the words a
 * call made after the close gets from the connection.
 */
export function processClosed(): ClosedError {
  return new ClosedError('the process closed its connection to the kernel');
}

/** The remote error as an Error of this process, with its name, code, stack and causes. */
function rebuilt(remote: WireError): Error {
  const err: Error & { code?: string } =
    remote.cause === undefined
      ? new Error(remote.message)
      : new Error(remote.message, { cause: rebuilt(remote.cause) });
  Object.defineProperty(err, 'name', { value: remote.name, configurable: true });
  if (remote.stack !== undefined) err.stack = remote.stack;
  if (remote.code !== undefined) err.code = remote.code;
  return err;
}

/**
 * A handler threw: code EREMOTE, a `RemoteFailureError` as every error of that code is, so one
 * `instanceof` matches it from `postbox` or `postbox/rpc`. Carries the remote error's name, message, code and stack, and the caller's
 * own stack; `cause` is the remote error rebuilt, so `util.inspect` shows both stacks, with the
 * remote error's own chain of causes as its `cause`.
 *
 * @example
 * ```ts
 * try { await calc.divide(1, 0); }
 * catch (err) {
 *   if (err instanceof RemoteError) console.log(err.remoteName, err.remoteCode, err.remoteStack);
 * }
 * ```
 */
export class RemoteError extends RemoteFailureError {
  declare readonly code: typeof REMOTE_ERROR_CODE;
  readonly service: string;
  readonly method: string;
  /** Process id of the server whose handler threw. */
  readonly server: number;
  /** The remote error's class name, e.g. 'RangeError'. */
  readonly remoteName: string;
  readonly remoteMessage: string;
  /** The remote error's own `code`, if it had one (any string). */
  readonly remoteCode: string | undefined;
  /** The remote error's stack, as the server printed it. */
  readonly remoteStack: string | undefined;

  /**
   * Made by a stub when a server's handler threw; a test of code that handles remote failures
   * can make one the same way, from the error as it crossed the wire.
   *
   * @example
   * ```ts
   * const err = new RemoteError('calc', 'divide', 7, { name: 'RangeError', message: 'division by zero' });
   * err.remoteName; // 'RangeError'
   * ```
   */
  constructor(service: string, method: string, server: number, remote: WireError) {
    const cause = rebuilt(remote);
    super(
      `${service}.${method} failed in server process ${server}: ${remote.name}: ${remote.message}`,
      { process: String(server), mailbox: `rpc:${service}` },
      { cause },
    );
    this.service = service;
    this.method = method;
    this.server = server;
    this.remoteName = remote.name;
    this.remoteMessage = remote.message;
    this.remoteCode = remote.code;
    this.remoteStack = remote.stack;
  }
}

/**
 * Nobody serves the service: its mailbox does not exist or no server reads it. Code ENOENT.
 * Call with `{ waitForServer: true }` to queue the call until a server starts instead.
 */
export class NoServerError extends NotFoundError {
  readonly service: string;
  constructor(service: string, method: string) {
    super(
      `no server for '${service}' (calling ${service}.${method}): nobody serves mailbox 'rpc:${service}'; start a server, or call with { waitForServer: true }`,
      { mailbox: `rpc:${service}` },
    );
    this.service = service;
  }
}

/**
 * The server process that took the call terminated before answering. Code ECONNRESET. The
 * request was taken, so it is not retried: the handler may or may not have run.
 */
export class ServerDownError extends ConnectionLostError {
  readonly service: string;
  /** Process id of the server that terminated. */
  readonly server: number;
  /** How it ended: 'exit', 'crash', 'timeout', 'shutdown', 'protocol' or 'noproc'. */
  readonly reason: string;
  constructor(service: string, method: string, server: number, name: string | null, reason: string) {
    const who = name === null ? `server process ${server}` : `server process ${server} ('${name}')`;
    super(`${service}.${method}: ${who} terminated (${reason}) before it answered the call`, {
      process: name ?? String(server),
      mailbox: `rpc:${service}`,
    });
    this.service = service;
    this.server = server;
    this.reason = reason;
  }
}

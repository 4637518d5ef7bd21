/**
 * Postbox errors: one class per stable code, the same on both sides of the wire.
 *
 * The kernel sends a numeric code (see {@link WireErrorCode}); the client turns it back into the
 * class with {@link errorFromWire}. Applications match on `err.code`, never on messages.
 *
 * @example
 * ```ts
 * try { await mailbox.send('x', { nowait: true }); }
 * catch (err) { if (err instanceof PostboxError && err.code === 'EAGAIN') retryLater(); }
 * ```
 */

/** The stable string codes, named after their POSIX errno where one fits. */
export type ErrorCode =
  | 'EPROTO'
  | 'ENOENT'
  | 'EEXIST'
  | 'EAGAIN'
  | 'EMSGSIZE'
  | 'EACCES'
  | 'EIDRM'
  | 'ETIMEDOUT'
  | 'ECANCELED'
  | 'EINVAL'
  | 'EBUSY'
  | 'E2BIG'
  | 'ENOMEM'
  | 'ESHUTDOWN'
  | 'ECONNREFUSED'
  | 'ECONNRESET'
  | 'ENOTCONN'
  | 'ENOMSG'
  | 'ESRCH'
  | 'EPIPE'
  | 'EPERM'
  | 'EBADF'
  | 'ENAMETOOLONG'
  | 'EREMOTE'
  | 'EIO';

/** Wire numbers for each code: stable forever, documented in docs/protocol.md. */
export const WireErrorCode = {
  EPROTO: 1,
  ENOENT: 2,
  EEXIST: 3,
  EAGAIN: 4,
  EMSGSIZE: 5,
  EACCES: 6,
  EIDRM: 7,
  ETIMEDOUT: 8,
  ECANCELED: 9,
  EINVAL: 10,
  EBUSY: 11,
  E2BIG: 12,
  ENOMEM: 13,
  ESHUTDOWN: 14,
  ECONNREFUSED: 15,
  ECONNRESET: 16,
  ENOTCONN: 17,
  ENOMSG: 18,
  ESRCH: 19,
  EPIPE: 20,
  EPERM: 21,
  EBADF: 22,
  ENAMETOOLONG: 23,
  EREMOTE: 24,
  EIO: 25,
} as const satisfies Record<ErrorCode, number>;

const codeByWire: ErrorCode[] = [];
for (const [name, num] of Object.entries(WireErrorCode)) codeByWire[num] = name as ErrorCode;

/** What an error is about, so messages and handlers can name it. */
export interface ErrorSubject {
  /** Mailbox name or `#id` concerned, if any. */
  mailbox?: string;
  /** Process name or id concerned, if any. */
  process?: string;
}

const brand = Symbol.for('postbox.error');

/** Base class of every error Postbox raises. `code` is stable; `message` is for people. */
export class PostboxError extends Error {
  readonly code: ErrorCode;
  readonly mailbox: string | undefined;
  readonly process: string | undefined;

  constructor(code: ErrorCode, message: string, subject: ErrorSubject = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.mailbox = subject.mailbox;
    this.process = subject.process;
    (this as unknown as Record<symbol, boolean>)[brand] = true;
  }

  override get name(): string {
    return this.constructor.name;
  }

  /** Recognises errors from another copy of this library too. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // `this` is the class `instanceof` asks about: subclasses check normally, the base by brand.
    // biome-ignore lint/complexity/noThisInStatic: the receiver is the subclass being tested
    if (this !== PostboxError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** The peer broke the protocol (bad frame, unknown opcode, bad handshake). */
export class ProtocolError extends PostboxError {
  declare readonly code: 'EPROTO';
  constructor(message: string, subject?: ErrorSubject) {
    super('EPROTO', message, subject);
  }
}
/** No such mailbox or process (or it has terminated). */
export class NotFoundError extends PostboxError {
  declare readonly code: 'ENOENT';
  constructor(message: string, subject?: ErrorSubject) {
    super('ENOENT', message, subject);
  }
}
/** A name is taken. */
export class ExistsError extends PostboxError {
  declare readonly code: 'EEXIST';
  constructor(message: string, subject?: ErrorSubject) {
    super('EEXIST', message, subject);
  }
}
/** A non-blocking operation would have had to wait. Nothing was queued. */
export class WouldBlockError extends PostboxError {
  declare readonly code: 'EAGAIN';
  constructor(message: string, subject?: ErrorSubject) {
    super('EAGAIN', message, subject);
  }
}
/** A message's size and the limit it is over, in bytes: see {@link MessageSizeError}. */
export interface MeasuredSize {
  size: number;
  limit: number;
}

/**
 * A message is larger than the mailbox or kernel allows, or not the size a fixed-size mailbox
 * (`messageSize`, a System V or POSIX style ring) takes. Where it was measured (by the client
 * against the kernel's limit before sending, or by the kernel against the mailbox's), `size` and
 * `limit` say by how much, so a layer above can say it in its own words (an RPC answer, a stream
 * item) without reading the message. For a fixed-size mailbox `limit` is the size every message
 * must have, exactly: a shorter message is refused too, so there `size` may be under `limit`.
 *
 * @example
 * ```ts
 * try { await box.send(Buffer.alloc(2 ** 21)); }
 * catch (err) { if (err instanceof MessageSizeError) console.log(`${err.size} bytes; at most ${err.limit}`); }
 * ```
 */
export class MessageSizeError extends PostboxError {
  declare readonly code: 'EMSGSIZE';
  /** The message's size in bytes (body and headers), where it was measured. */
  readonly size: number | undefined;
  /**
   * The largest message the kernel or mailbox takes, in bytes, where it was measured against it;
   * for a fixed-size mailbox, the one size it takes.
   */
  readonly limit: number | undefined;
  constructor(message: string, subject?: ErrorSubject, measured?: MeasuredSize) {
    super('EMSGSIZE', message, subject);
    this.size = measured?.size;
    this.limit = measured?.limit;
  }
}
/**
 * The process lacks a right on the mailbox. Refused an operation only the mailbox's owner may do
 * (change its mode, grant, revoke, transfer, set limits, delete), `process` names that owner; a
 * send or receive the mode withholds names no process: no one else is in the way.
 */
export class PermissionError extends PostboxError {
  declare readonly code: 'EACCES';
  constructor(message: string, subject?: ErrorSubject, options?: { cause?: unknown }) {
    super('EACCES', message, subject, options);
  }
}
/** The mailbox was removed while the operation waited, or before it. */
export class RemovedError extends PostboxError {
  declare readonly code: 'EIDRM';
  constructor(message: string, subject?: ErrorSubject) {
    super('EIDRM', message, subject);
  }
}
/** The operation's timeout passed; the kernel guarantees it did not and will not happen. */
export class TimeoutError extends PostboxError {
  declare readonly code: 'ETIMEDOUT';
  constructor(message: string, subject?: ErrorSubject) {
    super('ETIMEDOUT', message, subject);
  }
}
/**
 * The operation was aborted; the kernel guarantees it did not and will not happen. Stopped by an
 * `AbortSignal`, its `cause` is the signal's `reason`: the `TimeoutError` DOMException of
 * `AbortSignal.timeout()`, an `AbortError` DOMException for `abort()`, or what was passed to
 * `abort(reason)`; so a timeout can be told from a shutdown.
 *
 * @example
 * ```ts
 * try {
 *   await me.receive({ signal: AbortSignal.timeout(1000) });
 * } catch (err) {
 *   if (err instanceof AbortedError && err.cause instanceof DOMException && err.cause.name === 'TimeoutError')
 *     console.log('nothing came within a second');
 *   else throw err;
 * }
 * ```
 */
export class AbortedError extends PostboxError {
  declare readonly code: 'ECANCELED';
  constructor(message: string, subject?: ErrorSubject, options?: { cause?: unknown }) {
    super('ECANCELED', message, subject, options);
  }
}
/** An argument is invalid. Where another error said why (Node's own check of it), that is its `cause`. */
export class InvalidArgumentError extends PostboxError {
  declare readonly code: 'EINVAL';
  constructor(message: string, subject?: ErrorSubject, options?: { cause?: unknown }) {
    super('EINVAL', message, subject, options);
  }
}
/**
 * Another process holds what was wanted: an exclusive mailbox's receive right, a place in a pair
 * (a pair already links two processes), a `notify` registration. Refused by the kernel, `holders`
 * names every process holding it, each by its name if it has one, else its id: one, or a pair's
 * two in the order they joined; `process` is the first of them, so a handler that reads one
 * process for any error has one to read.
 *
 * @example
 * ```ts
 * try { await box.receive(); }
 * catch (err) { if (err instanceof BusyError) console.log(`held by ${err.holders?.join(' and ')}`); }
 * ```
 */
export class BusyError extends PostboxError {
  declare readonly code: 'EBUSY';
  /** Every process holding what was wanted, where the kernel said so (see above). */
  readonly holders: readonly string[] | undefined;
  constructor(message: string, subject?: ErrorSubject, holders?: readonly string[]) {
    super('EBUSY', message, subject);
    this.holders = holders;
  }
}
/** The selected message is larger than the receiver's maximum size. */
export class TooBigError extends PostboxError {
  declare readonly code: 'E2BIG';
  constructor(message: string, subject?: ErrorSubject) {
    super('E2BIG', message, subject);
  }
}
/** The kernel's global memory limit is reached. */
export class OutOfMemoryError extends PostboxError {
  declare readonly code: 'ENOMEM';
  constructor(message: string, subject?: ErrorSubject) {
    super('ENOMEM', message, subject);
  }
}
/** The kernel is shutting down. */
export class ShutdownError extends PostboxError {
  declare readonly code: 'ESHUTDOWN';
  constructor(message: string, subject?: ErrorSubject) {
    super('ESHUTDOWN', message, subject);
  }
}
/** The kernel could not be reached, or refused the connection (e.g. a bad token). */
export class ConnectionRefusedError extends PostboxError {
  declare readonly code: 'ECONNREFUSED';
  constructor(message: string, subject?: ErrorSubject) {
    super('ECONNREFUSED', message, subject);
  }
}
/** A connection was lost: the one to the kernel, or a connection's peer process (it terminated or reset). */
export class ConnectionLostError extends PostboxError {
  declare readonly code: 'ECONNRESET';
  constructor(message: string, subject?: ErrorSubject) {
    super('ECONNRESET', message, subject);
  }
}
/** The handle was closed. */
export class ClosedError extends PostboxError {
  declare readonly code: 'ENOTCONN';
  constructor(message: string, subject?: ErrorSubject) {
    super('ENOTCONN', message, subject);
  }
}
/** No message of the requested kind (System V's ENOMSG). */
export class NoMessageError extends PostboxError {
  declare readonly code: 'ENOMSG';
  constructor(message: string, subject?: ErrorSubject) {
    super('ENOMSG', message, subject);
  }
}
/** The named process has terminated or never existed. */
export class NoProcessError extends PostboxError {
  declare readonly code: 'ESRCH';
  constructor(message: string, subject?: ErrorSubject) {
    super('ESRCH', message, subject);
  }
}
/** Nobody will ever read: the read end is gone. */
export class BrokenPipeError extends PostboxError {
  declare readonly code: 'EPIPE';
  constructor(message: string, subject?: ErrorSubject) {
    super('EPIPE', message, subject);
  }
}

/** The operation is not permitted to this process (System V's owner-only msgctl). */
export class NotPermittedError extends PostboxError {
  declare readonly code: 'EPERM';
  constructor(message: string, subject?: ErrorSubject) {
    super('EPERM', message, subject);
  }
}
/** Not an open descriptor, or not open for this direction (POSIX mq). */
export class BadDescriptorError extends PostboxError {
  declare readonly code: 'EBADF';
  constructor(message: string, subject?: ErrorSubject) {
    super('EBADF', message, subject);
  }
}
/** A name is too long. */
export class NameTooLongError extends PostboxError {
  declare readonly code: 'ENAMETOOLONG';
  constructor(message: string, subject?: ErrorSubject) {
    super('ENAMETOOLONG', message, subject);
  }
}

/**
 * A remote procedure failed: the error was raised by the handler in another process. The RPC
 * face's `RemoteError` is one, with the remote error rebuilt as its `cause`.
 */
export class RemoteFailureError extends PostboxError {
  declare readonly code: 'EREMOTE';
  constructor(message: string, subject?: ErrorSubject, options?: { cause?: unknown }) {
    super('EREMOTE', message, subject, options);
  }
}

/**
 * The kernel failed at its own work: a bug in the kernel, not a fault of the request, which did
 * not happen. The kernel logged it and carries on; its log line is worth a bug report. Met while
 * answering a CALL, only that call fails; met while handling any other frame, the process is
 * ended with it (its operations may have been half done), and its monitors see a `crash` with
 * `kernelFault: true`.
 */
export class KernelFaultError extends PostboxError {
  declare readonly code: 'EIO';
  constructor(message: string, subject?: ErrorSubject) {
    super('EIO', message, subject);
  }
}

/**
 * Some messages of a `sendMany` were not sent. Its `code` is the first failure's, so a handler
 * that matches on `code` works as for one send; `failures` says which messages failed and why,
 * in message order. The others were sent: each message of a batch stands on its own, as separate
 * sends do.
 *
 * @example
 * ```ts
 * try { await box.sendMany(bodies, { nowait: true }); }
 * catch (err) { if (err instanceof SendManyError) retry(err.failures.map((f) => bodies[f.index])); }
 * ```
 */
export class SendManyError extends PostboxError {
  /** Messages in the batch. */
  readonly total: number;
  /** The messages that failed: their index in the batch and their own error. */
  readonly failures: readonly { index: number; error: PostboxError }[];

  constructor(target: string, total: number, failures: { index: number; error: PostboxError }[]) {
    const first = failures[0]!;
    super(
      first.error.code,
      `${failures.length} of ${total} messages to ${target} were not sent; message ${first.index}: ${first.error.message}`,
      first.error.process !== undefined
        ? { mailbox: first.error.mailbox ?? target, process: first.error.process }
        : { mailbox: first.error.mailbox ?? target },
      { cause: first.error },
    );
    this.total = total;
    this.failures = failures;
  }
}

const classByCode: Record<ErrorCode, new (message: string, subject?: ErrorSubject) => PostboxError> = {
  EPROTO: ProtocolError,
  ENOENT: NotFoundError,
  EEXIST: ExistsError,
  EAGAIN: WouldBlockError,
  EMSGSIZE: MessageSizeError,
  EACCES: PermissionError,
  EIDRM: RemovedError,
  ETIMEDOUT: TimeoutError,
  ECANCELED: AbortedError,
  EINVAL: InvalidArgumentError,
  EBUSY: BusyError,
  E2BIG: TooBigError,
  ENOMEM: OutOfMemoryError,
  ESHUTDOWN: ShutdownError,
  ECONNREFUSED: ConnectionRefusedError,
  ECONNRESET: ConnectionLostError,
  ENOTCONN: ClosedError,
  ENOMSG: NoMessageError,
  ESRCH: NoProcessError,
  EPIPE: BrokenPipeError,
  EPERM: NotPermittedError,
  EBADF: BadDescriptorError,
  ENAMETOOLONG: NameTooLongError,
  EREMOTE: RemoteFailureError,
  EIO: KernelFaultError,
};

/**
 * Builds the error class for a code; an EMSGSIZE keeps the sizes, where they were measured, and
 * an EBUSY its holders, where they were named.
 */
export function makeError(
  code: ErrorCode,
  message: string,
  subject?: ErrorSubject,
  measured?: MeasuredSize,
  holders?: readonly string[],
): PostboxError {
  if (measured !== undefined && code === 'EMSGSIZE') return new MessageSizeError(message, subject, measured);
  if (holders !== undefined && code === 'EBUSY') return new BusyError(message, subject, holders);
  return new classByCode[code](message, subject);
}

/**
 * Turns a wire error (number, message, subject, an EMSGSIZE's sizes and an EBUSY's holders) back
 * into its class; unknown numbers (a newer kernel's) are EPROTO, still about the mailbox or
 * process the kernel named.
 */
export function errorFromWire(
  num: number,
  message: string,
  subject?: ErrorSubject,
  measured?: MeasuredSize,
  holders?: readonly string[],
): PostboxError {
  const code = codeByWire[num];
  if (code === undefined)
    return new ProtocolError(`unknown error code ${num} from the kernel: ${message}`, subject);
  return makeError(code, message, subject, measured, holders);
}

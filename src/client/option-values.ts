import { AbortedError, InvalidArgumentError } from '../protocol/errors.js';
import { MAX_TIMEOUT_MS } from '../protocol/frame.js';
import { describeValue, unknownOption } from './option-names.js';

// Checks of option values that several calls share, made before anything is written: a bad
// value found later would leave an operation half done in the kernel.

/**
 * The `signal` option, checked before anything is written: a value that is not an AbortSignal
 * would otherwise fail only when the operation is already in the kernel, with a TypeError from
 * deep inside the client and the operation left running.
 *
 * @example
 * ```ts
 * const bad = badSignal(options.signal, 'receive()');
 * if (bad !== null) return Promise.reject(bad); // EINVAL: "receive(): signal must be an AbortSignal, not 5"
 * ```
 */
export function badSignal(signal: unknown, what: string): InvalidArgumentError | null {
  if (signal === undefined || signal instanceof AbortSignal) return null;
  return new InvalidArgumentError(`${what}: signal must be an AbortSignal, not ${describeValue(signal)}`);
}

/**
 * What refuses a send, sendMany or receive before anything is written: an option the call does
 * not take, a `signal` that is not an AbortSignal, or one already aborted (ECANCELED, with the
 * signal's reason as its cause).
 *
 * @example
 * ```ts
 * const refused = refusedAtStart(options, RECEIVE_OPTIONS, 'receive');
 * if (refused !== null) return Promise.reject(refused); // "receive aborted before it started"
 * ```
 */
export function refusedAtStart(
  options: { signal?: unknown } | undefined,
  names: Readonly<Record<string, true>>,
  call: 'send' | 'sendMany' | 'receive',
): InvalidArgumentError | AbortedError | null {
  const unknown = unknownOption(options, names, `${call}()`);
  if (unknown !== null) return unknown;
  const signal = options?.signal;
  const badSig = badSignal(signal, `${call}()`);
  if (badSig !== null) return badSig;
  if ((signal as AbortSignal | undefined)?.aborted === true)
    return new AbortedError(
      `${call} aborted before it started`,
      {},
      { cause: (signal as AbortSignal).reason },
    );
  return null;
}

/**
 * The `from` option of a mailbox's receive or iterator: a process id. (The inbox's `receive()`
 * also takes a name, looked up first; see PostboxProcess.receive.) A name here used to be
 * written as 0, "from anyone", and so took another sender's message.
 *
 * @example
 * ```ts
 * badFrom('bob', 'receive()'); // EINVAL: "receive(): from takes a process id here, not the name 'bob' …"
 * ```
 */
export function badFrom(from: unknown, what: string): InvalidArgumentError | null {
  if (from === undefined) return null;
  if (typeof from === 'number' && Number.isSafeInteger(from) && from >= 1 && from <= 0xffffffff) return null;
  if (typeof from === 'string')
    return new InvalidArgumentError(
      `${what}: from takes a process id here, not the name '${from}' (look it up with lookup(), or receive({ from }) on the inbox)`,
    );
  return new InvalidArgumentError(
    `${what}: from must be a process id (a positive integer), not ${describeValue(from)}`,
  );
}

/** The longest timer Node keeps: a longer `setTimeout` fires after 1 ms, with a warning. */
export const MAX_TIMER_MS = 0x7fffffff;

/**
 * A time limit in ms, as every call takes it: a whole number from 0 (no limit, as leaving it
 * out; `nowait` is the one that does not wait) up to `max`, which is the kernel's longest
 * timeout where the kernel keeps the time, and Node's longest timer where this process does.
 * Unchecked, a negative or non-numeric limit ran out at once or was sent on as another call's
 * option, and one past Node's longest timer ran out after 1 ms.
 *
 * @example
 * ```ts
 * const bad = badTimeout(options.timeout, 'timeout', 'accept()');
 * if (bad !== null) throw bad; // EINVAL: "accept(): timeout must be a whole number of ms …, not -1"
 * ```
 */
export function badTimeout(
  value: unknown,
  option: string,
  what: string,
  max: number = MAX_TIMEOUT_MS,
): InvalidArgumentError | null {
  if (value === undefined) return null;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max) return null;
  const days = (max / 86_400_000).toFixed(1);
  return new InvalidArgumentError(
    `${what}: ${option} must be a whole number of ms up to ${max} (${days} days; 0 is no limit), not ${describeValue(value)}`,
  );
}

/** Ids of processes and mailboxes are 32 bits on the wire: a larger one was cut to another. */
const MAX_ID = 0xffffffff;

/**
 * A process named by its id or its name, checked before anything is sent. A number that cannot
 * be an id (0, -1, 1.5) was looked up as one, and reported as a process that had terminated, or
 * watched by monitor() as one already gone; one past 32 bits was cut to another id.
 *
 * @example
 * ```ts
 * badProcessRef(1.5); // EINVAL: "a process id is a positive integer, not 1.5"
 * ```
 */
export function badProcessRef(ref: unknown): InvalidArgumentError | null {
  if (typeof ref === 'number') {
    if (Number.isSafeInteger(ref) && ref >= 1 && ref <= MAX_ID) return null;
    return new InvalidArgumentError(`a process id is a positive integer, not ${describeValue(ref)}`);
  }
  if (typeof ref === 'string')
    return ref.length > 0 ? null : new InvalidArgumentError('a process name cannot be empty');
  return new InvalidArgumentError(`name a process by its name or id, not ${describeValue(ref)}`);
}

/**
 * A mailbox id, checked before anything is sent: 0, -1 or 1.5 was reported as a mailbox that
 * was removed, and one past 32 bits was cut to another id.
 *
 * @example
 * ```ts
 * badMailboxId(0); // EINVAL: "a mailbox id is a positive integer, not 0"
 * ```
 */
export function badMailboxId(id: unknown): InvalidArgumentError | null {
  if (typeof id === 'number' && Number.isSafeInteger(id) && id >= 1 && id <= MAX_ID) return null;
  return new InvalidArgumentError(`a mailbox id is a positive integer, not ${describeValue(id)}`);
}

/**
 * A face's first argument, checked where the face is entered: a value that is not a connected
 * process (`posix()` with none, a mailbox passed by mistake) failed later, deep inside the face,
 * with a TypeError such as "proc.createMailbox is not a function". Its shape is checked, not its
 * class, so a process made by another copy of this library is still one.
 *
 * @example
 * ```ts
 * const bad = badProcess(proc, 'posix()');
 * if (bad !== null) throw bad; // EINVAL: "posix(): the first argument must be a process from connect(), not undefined"
 * ```
 */
export function badProcess(proc: unknown, what: string): InvalidArgumentError | null {
  const p = proc as { openMailbox?: unknown; createMailbox?: unknown } | null | undefined;
  if (typeof p?.openMailbox === 'function' && typeof p.createMailbox === 'function') return null;
  return new InvalidArgumentError(
    `${what}: the first argument must be a process from connect(), not ${describeValue(proc)}`,
  );
}

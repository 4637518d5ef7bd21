import { InvalidArgumentError } from '../protocol/errors.js';
import { MAX_TIMEOUT_MS } from '../protocol/frame.js';
import { describeValue } from './option-names.js';

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

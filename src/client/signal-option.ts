import { InvalidArgumentError } from '../protocol/errors.js';

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
  return new InvalidArgumentError(`${what}: signal must be an AbortSignal, not ${describe(signal)}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value)})`;
  if (typeof value === 'function') return 'a function';
  return `${typeof value} ${String(value)}`;
}

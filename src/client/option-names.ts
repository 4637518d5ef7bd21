import { InvalidArgumentError } from '../protocol/errors.js';

/**
 * The option names a call takes, as a record so that the compiler checks the list against the
 * options type: a name missing from the list, or one the type does not have, fails the build.
 */
export type OptionNames<O> = { readonly [K in keyof Required<O>]: true };

/**
 * EINVAL for an option name the call does not know, or null. A misspelt option would otherwise
 * be ignored without a word (`receive({ wait: false })` waits; `createMailbox('m', { capcity:
 * 5 })` makes an unbounded mailbox), which TypeScript catches and JavaScript does not.
 *
 * @example
 * ```ts
 * const bad = unknownOption({ wait: false }, RECEIVE_OPTIONS, 'receive()');
 * // InvalidArgumentError: receive() has no option 'wait' (did you mean 'nowait'?)
 * ```
 */
export function unknownOption(
  options: unknown,
  names: Readonly<Record<string, true>>,
  call: string,
): InvalidArgumentError | null {
  if (options === undefined) return null;
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    return new InvalidArgumentError(`${call} takes an options object, not ${describeValue(options)}`);
  for (const key of Object.keys(options)) {
    if (Object.hasOwn(names, key)) continue;
    const near = nearest(key, Object.keys(names));
    return new InvalidArgumentError(
      `${call} has no option '${key}'${near === null ? '' : ` (did you mean '${near}'?)`}; it takes ${Object.keys(names).join(', ')}`,
    );
  }
  return null;
}

/** Throws what {@link unknownOption} finds (for the calls that throw rather than reject). */
export function checkOptions(options: unknown, names: Readonly<Record<string, true>>, call: string): void {
  const err = unknownOption(options, names, call);
  if (err !== null) throw err;
}

/**
 * A value as an error message names it, so the user recognises what they passed: the string
 * 'x', NaN, a function, an object's JSON.
 *
 * @example
 * ```ts
 * describeValue('0644'); // "the string '0644'"
 * ```
 */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'bigint') return `the bigint ${v}n`;
  if (typeof v === 'symbol') return `a symbol (${String(v)})`;
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string '${v}'`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') {
    try {
      return `the object ${JSON.stringify(v)}`;
    } catch {
      return `an object (${Object.prototype.toString.call(v)})`;
    }
  }
  // A number or boolean reads as itself ("not -3"); a string is quoted as one above.
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `${typeof v} ${String(v)}`;
}

/** The known name closest to a misspelt one: one contains the other, or two edits apart at most. */
function nearest(key: string, names: string[]): string | null {
  const k = key.toLowerCase();
  let best: string | null = null;
  let bestCost = 3;
  for (const name of names) {
    const n = name.toLowerCase();
    const cost = k.length >= 3 && (n.includes(k) || k.includes(n)) ? 1 : editDistance(k, n);
    if (cost < bestCost) {
      best = name;
      bestCost = cost;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

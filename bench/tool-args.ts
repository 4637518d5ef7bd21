// The command line of a measuring tool run by hand (bystander.js, owner-end.js): `--help` prints
// the usage and exits 0; a bad argument is said in one line with the usage, exit 2, as the CLI does.

import { type ParseArgsConfig, parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** A tool's parsed options, and how to read a whole number from one of them. */
export interface ToolArgs<T extends Options> {
  values: ReturnType<typeof parseArgs<{ options: T }>>['values'];
  /** `value` (of `--name`) as a whole number of at least `min`, or exit 2 saying what is wrong. */
  count(value: string, name: string, min?: number): number;
}

/**
 * Parses this process's arguments for `tool`, whose one-line usage is `usage`; `options` should
 * have `help`.
 *
 * @example
 * ```ts
 * const { values, count } = toolArgs('owner-end', USAGE, {
 *   runs: { type: 'string', default: '3' },
 *   help: { type: 'boolean', default: false },
 * });
 * const runs = count(values.runs, 'runs');
 * ```
 */
export function toolArgs<T extends Options>(tool: string, usage: string, options: T): ToolArgs<T> {
  const fail = (problem: string): never => {
    console.error(`${tool}: ${problem}\nusage: ${usage}`);
    process.exit(2);
  };
  let values: ToolArgs<T>['values'];
  try {
    values = parseArgs({ options }).values;
  } catch (err) {
    return fail((err as Error).message);
  }
  if ((values as { help?: boolean }).help === true) {
    console.log(usage);
    process.exit(0);
  }
  const count = (value: string, name: string, min = 1): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min)
      fail(`--${name} must be a whole number >= ${min}, not '${value}'`);
    return n;
  };
  return { values, count };
}

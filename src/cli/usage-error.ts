/** A command-line mistake: printed with a hint, exit code 2, no stack trace. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/**
 * node:util parseArgs refuses a command line in its own words, written for programmers (three
 * lines about '--' and 'ambiguous' arguments). Says the same in one line, in the command line's
 * words; null if `err` is not one of parseArgs' refusals. `argv` is the command line, to name
 * the argument an unknown short option came from.
 */
export function parseArgsUsageError(err: unknown, argv: readonly string[] = []): UsageError | null {
  if (!(err instanceof Error)) return null;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return null;
  // The option or argument is the first quoted word of node's message; a value placeholder
  // ('--type <value>') is not part of it.
  const quoted = /'([^']*)'/.exec(err.message)?.[1]?.replace(/ <value>$/, '');
  if (quoted === undefined) return new UsageError(err.message.split('\n')[0]!);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${quoted}${dashedArgument(quoted, argv)}`);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument '${quoted}'`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(err.message)) return new UsageError(`${quoted} takes no value`);
      if (/ambiguous/.test(err.message))
        return new UsageError(`${quoted} needs a value (one that starts with '-' is written ${quoted}=-…)`);
      return new UsageError(`${quoted} needs a value`);
    default:
      return new UsageError(err.message.split('\n')[0]!);
  }
}

/**
 * For an unknown short option, the argument it came from and how to pass that as TEXT or NAME:
 * parseArgs reads `-hello` as the options -h -e -l -l -o and names only `-e`, and `send q -5`
 * (a text that starts with '-') is refused without saying that `--` ends the options.
 */
function dashedArgument(option: string, argv: readonly string[]): string {
  if (!/^-[^-]$/.test(option)) return '';
  const end = argv.indexOf('--');
  const token = (end === -1 ? argv : argv.slice(0, end)).find(
    (a) => /^-[^-]/.test(a) && a.slice(1).includes(option.slice(1)),
  );
  if (token === undefined) return '';
  const where = token === option ? '' : ` in '${token}'`;
  return `${where} (an argument that starts with '-' goes after --, as in: -- '${token}')`;
}

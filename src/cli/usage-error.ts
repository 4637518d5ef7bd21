/** A command-line mistake: printed with a hint, exit code 2, no stack trace. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

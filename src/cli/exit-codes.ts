import { PostboxError } from '../protocol/errors.js';

/** Exit codes scripts can rely on (docs/cli.md). */
export const Exit = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  /** Empty, or would block: a nowait receive found nothing, a nowait send found the mailbox full. */
  EMPTY: 3,
  /** No such mailbox or process, or it was removed. */
  NOT_FOUND: 4,
  /** Permission denied, or another process holds the right. */
  DENIED: 5,
  TIMEOUT: 6,
  /** Stopped by Ctrl-C (128 + SIGINT). */
  INTERRUPTED: 130,
  /**
   * `send` stopped because its standard output was closed, with input left unsent: 128 +
   * SIGPIPE, what a shell reports for a Unix tool a closed pipe ended.
   */
  BROKEN_PIPE: 141,
} as const;

const byCode: Record<string, number> = {
  EAGAIN: Exit.EMPTY,
  ENOMSG: Exit.EMPTY,
  ENOENT: Exit.NOT_FOUND,
  ESRCH: Exit.NOT_FOUND,
  EIDRM: Exit.NOT_FOUND,
  EACCES: Exit.DENIED,
  EPERM: Exit.DENIED,
  EBUSY: Exit.DENIED,
  ETIMEDOUT: Exit.TIMEOUT,
  // An argument the kernel refused is a usage mistake on the command line.
  EINVAL: Exit.USAGE,
  ENAMETOOLONG: Exit.USAGE,
};

/** The exit code for an error a command could not handle itself. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof PostboxError) return byCode[err.code] ?? Exit.ERROR;
  return Exit.ERROR;
}

/** The exit code table, as every command's --help ends. */
export const exitCodesHelp = `Exit codes:
  0  ok                              4  no such mailbox or process, or removed (ENOENT, ESRCH, EIDRM)
  1  error                           5  permission denied or right held by another (EACCES, EBUSY)
  2  usage: bad option or argument   6  timed out (ETIMEDOUT)
  3  empty, or would block (EAGAIN)  130  interrupted (Ctrl-C; 143 by SIGTERM)
`;

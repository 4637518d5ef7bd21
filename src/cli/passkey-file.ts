import { closeSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { MailboxStat } from '../client/mailbox.js';
import { PostboxError } from '../protocol/errors.js';
import { UsageError } from './usage-error.js';

/**
 * A mailbox's passkey as the command line holds it. Never an argument: the command lines of
 * every process are there for any user to read (`ps`, /proc). A file of the user's own, or
 * `$POSTBOX_PASSKEY`, which only the process and its user see.
 */

/** The option that names the file. */
export const passkeyFileOption = { 'passkey-file': { type: 'string' } } as const;

/** The help line of {@link passkeyFileOption}, for a command that opens a mailbox. */
export const passkeyFileHelp = `  --passkey-file FILE  present the passkey in FILE (its first line) when opening the mailbox:
                       its holders are let in (default: $POSTBOX_PASSKEY, presented only to a
                       mailbox that has a passkey)
`;

const ENV = 'POSTBOX_PASSKEY';
/** As the kernel makes them: 128 bits in hex. */
const PASSKEY = /^[0-9a-f]{32}$/;
/** More than a passkey's line could be: a file past it is not one (or is /dev/zero). */
const MOST_READ = 4096;

/**
 * The passkey to present when opening `mb`: the file's, whatever the mailbox (asked for by name,
 * a wrong one is the kernel's refusal to say), else `$POSTBOX_PASSKEY`'s where the mailbox has a
 * passkey, so that one set for some mailbox does not stop the user's others from opening.
 */
export function passkeyFor(file: string | undefined, mb: MailboxStat): string | undefined {
  if (file !== undefined) return readPasskeyFile(file);
  const env = process.env[ENV];
  if (env === undefined || env === '' || mb.hasPasskey !== true) return undefined;
  const key = env.trim();
  if (!PASSKEY.test(key))
    throw new UsageError(`$${ENV} is not a passkey (32 hex digits, as create --passkey prints)`);
  return key;
}

/** The passkey on the first line of `file`. */
function readPasskeyFile(file: string): string {
  if (file === '') throw new UsageError('--passkey-file needs a path, not an empty string');
  const buf = Buffer.alloc(MOST_READ);
  let got = 0;
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new UsageError(`--passkey-file: cannot read '${file}' (${(err as NodeJS.ErrnoException).code})`);
  }
  try {
    for (let n = 1; n > 0 && got < MOST_READ; got += n) n = readSync(fd, buf, got, MOST_READ - got, null);
  } catch (err) {
    throw new UsageError(`--passkey-file: cannot read '${file}' (${(err as NodeJS.ErrnoException).code})`);
  } finally {
    closeSync(fd);
  }
  const key = buf.toString('utf8', 0, got).split('\n', 1)[0]!.trim();
  if (!PASSKEY.test(key))
    throw new UsageError(
      `--passkey-file: '${file}' does not hold a passkey (a first line of 32 hex digits, as create --passkey-file writes)`,
    );
  return key;
}

/** Where a new passkey will be kept: made before the kernel makes the passkey, filled after. */
export interface PasskeyKeeper {
  /** Writes the passkey and puts the file in place, mode 0600. */
  keep(passkey: string): void;
  /** Removes what was made: the passkey was not made after all. */
  discard(): void;
}

/**
 * Makes room for a passkey in `file`, before it exists: a file that cannot be written is said
 * before the kernel makes a passkey (a create's mailbox, a renewal that would leave the old one
 * dead and the new one nowhere). Written beside it and renamed over it, so that a reader of the
 * file sees the old passkey or the new, and the file is the user's alone (0600) whatever it was.
 */
export function passkeyKeeper(file: string): PasskeyKeeper {
  if (file === '') throw new UsageError('--passkey-file needs a path, not an empty string');
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o600);
  } catch (err) {
    throw new UsageError(
      `--passkey-file: cannot write beside '${file}' (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  let open = true;
  const close = (): void => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    keep(passkey) {
      try {
        writeSync(fd, `${passkey}\n`);
        close();
        renameSync(temp, file);
      } catch (err) {
        // The kernel has made it: it must not be lost with the error.
        throw new PostboxError(
          'EIO',
          `the new passkey could not be put in '${file}' (${(err as NodeJS.ErrnoException).code}); it is ${passkey}`,
        );
      }
    },
    discard() {
      close();
      rmSync(temp, { force: true });
    },
  };
}

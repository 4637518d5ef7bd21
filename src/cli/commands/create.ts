import { parseArgs } from 'node:util';
import type { Mailbox } from '../../client/mailbox.js';
import type { MailboxOptions } from '../../client/process.js';
import { InvalidArgumentError, ProtocolError } from '../../protocol/errors.js';
import {
  connectionHelp,
  connectionOptions,
  joinDashedValues,
  parseBytes,
  parseCapacity,
  parseChoice,
  parseInteger,
  parseMode,
  positionals,
  printJson,
  withProcess,
} from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { passkeyFileOption, passkeyKeeper } from '../passkey-file.js';
import { formatMode } from '../table.js';
import { UsageError } from '../usage-error.js';

export const createHelp = `Usage: postbox create NAME [options]

Creates a mailbox. A mailbox made from the command line is system-owned: it outlives the command
and lives until \`postbox rm\`; once the command's process has ended it is unowned, so any process
may act as its owner (with --passkey, any that presents its passkey). Fails (exit 1, EEXIST) if
the name is taken.

Options:
  --capacity N         messages it holds: N, 0 (rendezvous: a send waits for a receiver), or
                       'unbounded' (default)
  --max-size BYTES     largest message (default: the kernel's --max-message-size); 64K, 1M work
  --max-bytes BYTES    bytes it holds at most, System V msg_qbytes, or 'unbounded' (default:
                       the kernel's --max-mailbox-bytes with a capacity, none if unbounded)
  --message-size BYTES every message exactly this size, kept in a preallocated ring (needs --capacity)
  --order ORDER        fifo (default) or priority (highest priority first, fifo within)
  --policy POLICY      how receivers share it: first (default), round-robin, exclusive, pair
  --mode MODE          three octal digits owner/group/others, 4 receive, 2 send (default 0666,
                       or 0660 with --passkey). Once this command exits the mailbox has no
                       owner: with 0662, only processes granted the right (\`postbox grant\`)
                       receive
  --key KEY            System V key, decimal or 0x hex, shown by \`postbox ls\`
  --passkey            have the kernel make a passkey, and print it. A process that opens the
                       mailbox with it ($POSTBOX_PASSKEY or --passkey-file) joins its group: at
                       mode 0660, the default with --passkey, only such processes send and
                       receive, and once this command exits only they may act as its owner
                       (\`postbox rm\`; \`postbox passkey\` replaces it)
  --passkey-file FILE  --passkey, written to FILE (mode 0600) instead of printed
  --json               the new mailbox's description as JSON (with --passkey, its passkey too)
${connectionHelp}
Examples:
  postbox create jobs --capacity 10
  postbox create urgent --order priority --max-size 8K
  postbox create meet --capacity 0 --policy pair
  postbox create crew --key 0x1234 --mode 0662
  postbox create private --passkey-file ~/.private.key

${exitCodesHelp}`;

export async function createCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    // A negative number is refused by the number's own check, in one line, not by parseArgs.
    args: joinDashedValues(argv, ['capacity', 'max-size', 'max-bytes', 'message-size', 'key', 'mode']),
    options: {
      ...connectionOptions,
      capacity: { type: 'string' },
      'max-size': { type: 'string' },
      'max-bytes': { type: 'string' },
      'message-size': { type: 'string' },
      order: { type: 'string' },
      policy: { type: 'string' },
      mode: { type: 'string' },
      key: { type: 'string' },
      passkey: { type: 'boolean' },
      ...passkeyFileOption,
      json: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(createHelp);
    return 0;
  }
  const [name] = positionals(rest, ['NAME']);
  if (/^#/.test(name!))
    throw new UsageError(`a mailbox name cannot start with '#' (that means an id): '${name}'`);
  if (/^\d+$/.test(name!))
    throw new UsageError(`a mailbox name cannot be only digits (that reads as an id): '${name}'`);
  const options: MailboxOptions = { system: true };
  const capacity = parseCapacity(values.capacity);
  if (capacity !== undefined) options.capacity = capacity;
  const maxSize = parseBytes(values['max-size'], 'max-size');
  if (maxSize !== undefined) options.maxMessageSize = maxSize;
  if (values['max-bytes'] === 'unbounded') options.maxBytes = 'unbounded';
  else {
    // 0 is allowed, as System V's msg_qbytes 0 is: a mailbox that holds nothing.
    const maxBytes = parseBytes(values['max-bytes'], 'max-bytes', 0);
    if (maxBytes !== undefined) options.maxBytes = maxBytes;
  }
  const messageSize = parseBytes(values['message-size'], 'message-size');
  if (messageSize !== undefined) {
    // Said here in the command line's words (the kernel would name the API's messageSize).
    if (typeof capacity !== 'number' || capacity < 1)
      throw new UsageError('--message-size needs --capacity N of at least 1: the ring is preallocated');
    options.messageSize = messageSize;
  }
  const order = parseChoice(values.order, 'order', ['fifo', 'priority'] as const);
  if (order !== undefined) options.order = order;
  const policy = parseChoice(values.policy, 'policy', ['first', 'round-robin', 'exclusive', 'pair'] as const);
  if (policy !== undefined) options.policy = policy;
  const keyFile = values['passkey-file'];
  if (values.passkey || keyFile !== undefined) options.passkey = true;
  // A passkey keeps out only what the mode's last digit denies: at the command line's 0666 it
  // would let in no one who was not in already.
  const mode = parseMode(values.mode) ?? (options.passkey ? PASSKEY_MODE : undefined);
  if (mode !== undefined) options.mode = mode;
  if (values.key !== undefined) {
    const key = /^0x[0-9a-f]+$/i.test(values.key)
      ? Number.parseInt(values.key, 16)
      : parseInteger(values.key, 'key', 1, 0xffffffff);
    if (key === undefined || key < 1 || key > 0xffffffff)
      throw new UsageError(`--key must be a number from 1 to 0xffffffff, not '${values.key}'`);
    options.key = key;
  }
  return withProcess(values, async (proc) => {
    // Before the mailbox: a file that cannot be written stops the command with nothing made.
    const keeper = keyFile === undefined ? null : passkeyKeeper(keyFile);
    let mb: Mailbox;
    try {
      mb = await proc.createMailbox(name!, options).catch((err: unknown) => {
        throw err instanceof InvalidArgumentError
          ? new InvalidArgumentError(
              inFlagWords(err.message),
              err.mailbox === undefined ? undefined : { mailbox: err.mailbox },
            )
          : err;
      });
    } catch (err) {
      keeper?.discard();
      throw err;
    }
    mb.close();
    const passkey = mb.info.passkey;
    if (options.passkey && passkey === undefined) {
      keeper?.discard();
      throw new ProtocolError(`the kernel made mailbox '${name}' without the passkey it was asked for`, {
        mailbox: name!,
      });
    }
    if (passkey !== undefined) keeper?.keep(passkey);
    if (values.json) {
      // Its owner is this command's process, which ends now: what ls and stat will show is none.
      const { handle: _handle, passkey: _passkey, ...info } = mb.info;
      printJson({ ...info, owner: null, ...(passkey !== undefined && keeper === null ? { passkey } : {}) });
    } else {
      const cap = mb.info.capacity === null ? 'unbounded' : `capacity ${mb.info.capacity}`;
      const kept =
        passkey === undefined
          ? ''
          : keeper === null
            ? `\npasskey ${passkey}`
            : `; its passkey is in ${keyFile}`;
      process.stdout.write(
        `created mailbox '${mb.name}' (#${mb.id}): ${cap}, ${mb.info.order}, ${mb.info.policy}, mode ${formatMode(mb.info.mode)}${kept}\n`,
      );
    }
    return 0;
  });
}

/** The mode of a mailbox made with a passkey unless one is given: its holders' alone, as a pipe's. */
const PASSKEY_MODE = 0o660;

/** The library's option names, as the kernel says them, and the flags that set them here. */
const FLAG_OF_OPTION: [RegExp, string][] = [
  [/\bmaxMessageSize\b/g, '--max-size'],
  [/\bmessageSize\b/g, '--message-size'],
  [/\bmaxBytes\b/g, '--max-bytes'],
  [/\bcapacity\b/g, '--capacity'],
];

/** A refusal of the kernel's in the command line's words: `--max-size`, not `maxMessageSize`. */
function inFlagWords(message: string): string {
  let out = message;
  for (const [option, flag] of FLAG_OF_OPTION) out = out.replace(option, flag);
  return out;
}

import { parseArgs } from 'node:util';
import { connectionHelp, connectionOptions, findMailbox, positionals, withProcess } from '../common.js';
import { printDiagnostic } from '../diagnostic.js';
import { exitCodesHelp } from '../exit-codes.js';
import { passkeyFileOption, passkeyFor, passkeyKeeper } from '../passkey-file.js';
import { formatMode } from '../table.js';

export const passkeyHelp = `Usage: postbox passkey NAME [options]

Gives a mailbox a new passkey and prints it, alone on a line. The old one opens nothing from now
on; the processes it let in stay in the mailbox's group, as those inside stay when a lock is
changed. A mailbox without a passkey gets its first: a process that opens it with it joins its
group. Only its owner may. A mailbox made by \`postbox create\` has none once that command has
ended: then any process may, or, if it has a passkey, one that presents it. NAME may be #ID or
an id.

Options:
  --passkey-file FILE  present the passkey in FILE (its first line), and put the new one there
                       (mode 0600) instead of printing it (default: present $POSTBOX_PASSKEY;
                       a mailbox without a passkey needs none)
${connectionHelp}
Examples:
  postbox passkey jobs --passkey-file ~/.jobs.key
  POSTBOX_PASSKEY=$(postbox passkey jobs) postbox recv jobs   # a mailbox that had none

${exitCodesHelp}`;

/** What the mode's last digit lets every process do. */
const OTHERS: Record<number, string> = { 2: 'send', 4: 'receive', 6: 'send and receive' };

export async function passkeyCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, ...passkeyFileOption },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(passkeyHelp);
    return 0;
  }
  const [ref] = positionals(rest, ['NAME']);
  const file = values['passkey-file'];
  return withProcess(values, async (proc) => {
    const found = await findMailbox(proc, ref!);
    // The file of a mailbox that has no passkey yet is where its first goes, not one to read.
    const current = found.hasPasskey === true ? passkeyFor(file, found) : undefined;
    // Made before the passkey is replaced: a file that cannot be written leaves the old one.
    const keeper = file === undefined ? null : passkeyKeeper(file);
    let fresh: string;
    try {
      // Presented, the passkey makes this process one of the group, which acts as the owner of
      // an unowned mailbox that has one.
      const mb = await proc.openMailbox(found.id, { role: 'none', passkey: current });
      fresh = await mb.renewPasskey().finally(() => mb.close());
    } catch (err) {
      keeper?.discard();
      throw err;
    }
    if (keeper === null) process.stdout.write(`${fresh}\n`);
    else {
      keeper.keep(fresh);
      const what = found.name === null ? `mailbox #${found.id}` : `mailbox '${found.name}' (#${found.id})`;
      process.stdout.write(`renewed the passkey of ${what}: it is in ${file}\n`);
    }
    // A passkey keeps out only what the mode's last digit denies.
    if ((found.mode & 0o006) !== 0)
      printDiagnostic(
        'passkey',
        `mode ${formatMode(found.mode)} lets any process ${OTHERS[found.mode & 0o006]} without the passkey`,
      );
    return 0;
  });
}

import type { MailboxStat } from '../../client/mailbox.js';
import { connectionHelp, mailboxLabel, printJson, processLabel, runListing } from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { formatKey, formatMode, formatTable, NAME_WIDTH } from '../table.js';

export const lsHelp = `Usage: postbox ls [options]

Lists the mailboxes, like \`ipcs -q\`: System V key, id, name, owner, mode, bytes and messages
held (of the capacity, if bounded), and how many processes wait to send and to receive.
Processes' inboxes are not listed; an unlinked FIFO is listed until its last end closes.

Options:
  --json               the kernel's stat of each mailbox, as a JSON array (fields: docs/api.md)
${connectionHelp}
Examples:
  postbox ls
  postbox ls --json | jq -r '.[] | select(.count > 0) | .name'

${exitCodesHelp}`;

export async function lsCommand(argv: string[]): Promise<number> {
  return runListing(argv, lsHelp, async (proc, json) => {
    const [list, processes] = await Promise.all([proc.mailboxes(), proc.processes()]);
    list.sort((a, b) => a.id - b.id);
    if (json) {
      printJson(list);
      return 0;
    }
    const names = new Map(processes.map((p) => [p.id, p.name]));
    process.stdout.write(lsTable(list, names));
    return 0;
  });
}

/** The `ls` table. */
export function lsTable(list: MailboxStat[], names: Map<number, string | null>): string {
  return formatTable(
    [
      { header: 'KEY' },
      { header: 'ID', align: 'right' },
      { header: 'NAME' },
      { header: 'OWNER' },
      { header: 'MODE' },
      { header: 'USED-BYTES', align: 'right' },
      { header: 'MESSAGES', align: 'right' },
      { header: 'SENDERS', align: 'right' },
      { header: 'RECEIVERS', align: 'right' },
    ],
    list.map((mb) => [
      formatKey(mb.key),
      String(mb.id),
      mailboxLabel(mb, NAME_WIDTH),
      mb.owner === null ? '-' : processLabel(mb.owner, names, NAME_WIDTH),
      formatMode(mb.mode),
      String(mb.bytes),
      mb.capacity === null ? String(mb.count) : `${mb.count}/${mb.capacity}`,
      waitingProcesses(
        [...mb.waitingSenders, ...mb.waitingReceipts],
        mb.waitingSendersCount + mb.waitingReceiptsCount,
      ),
      waitingProcesses(mb.waitingReceivers, mb.waitingReceiversCount),
    ]),
  );
}

/**
 * The processes among the waiting operations listed, each once; with a `+` when the kernel
 * listed only the first of a line's operations, whose other processes it does not name.
 */
function waitingProcesses(ids: readonly number[], total: number): string {
  const processes = String(new Set(ids).size);
  return total > ids.length ? `${processes}+` : processes;
}

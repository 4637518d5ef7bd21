import type { ProcessStat } from '../../client/process.js';
import { connectionHelp, printJson, runListing } from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { cut, formatTable, NAME_WIDTH, namesCell } from '../table.js';

export const psHelp = `Usage: postbox ps [options]

Lists the connected processes: id, name, OS pid, host, transport (unix or tcp), the mailboxes
each owns, the messages waiting in its inbox (INBOX), what its loops hold (HOLDS: jobs in hand,
messages pushed ahead and not yet taken), and what each is blocked on (a receive, a send waiting
for room, a send waiting for its receipt). The command's own short-lived process is left out.

Options:
  --json               the kernel's process list as a JSON array
${connectionHelp}
Examples:
  postbox ps
  postbox ps --json | jq -r '.[] | select(.blockedOn | length > 0) | .name'

${exitCodesHelp}`;

export type ProcessRow = ProcessStat;

export async function psCommand(argv: string[]): Promise<number> {
  return runListing(argv, psHelp, async (proc, json) => {
    const list = (await proc.processes()).filter((p) => p.id !== proc.id).sort((a, b) => a.id - b.id);
    if (json) printJson(list);
    else process.stdout.write(psTable(list));
    return 0;
  });
}

/** The `ps` table. */
export function psTable(list: ProcessRow[]): string {
  return formatTable(
    [
      { header: 'ID', align: 'right' },
      { header: 'NAME' },
      { header: 'PID', align: 'right' },
      { header: 'HOST' },
      { header: 'TRANSPORT' },
      { header: 'OWNS' },
      { header: 'INBOX', align: 'right' },
      { header: 'HOLDS' },
      { header: 'BLOCKED-ON' },
    ],
    list.map((p) => [String(p.id), p.name === null ? '-' : cut(p.name, NAME_WIDTH), ...processCells(p)]),
  );
}

/** A process's cells from PID to what it is blocked on, as `ps` and `watch` show them. */
export function processCells(p: ProcessRow): string[] {
  return [
    p.pid === 0 ? '-' : String(p.pid),
    p.host === '' ? '-' : p.host,
    p.transport,
    namesCell(p.owns, p.ownsCount),
    String(p.inboxMessages),
    p.holds.length === 0 ? '-' : p.holds.join('; '),
    p.blockedOn.length === 0 ? '-' : p.blockedOn.join('; '),
  ];
}

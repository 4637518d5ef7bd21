import type { ProcessStat } from '../../client/process.js';
import { connectionHelp, printJsonPages, runListing, writeOut } from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { type Column, cut, NAME_WIDTH, namesCell, TableStream } from '../table.js';

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
    // A page at a time, as `ls`: written as it comes, and stopped once nobody reads.
    const others = async function* (): AsyncGenerator<ProcessStat[]> {
      for await (const page of proc.processPages()) yield page.filter((p) => p.id !== proc.id);
    };
    if (json) {
      await printJsonPages(others());
      return 0;
    }
    const table = new TableStream(PS_COLUMNS, writeOut);
    for await (const page of others()) if (!(await table.add(page.map(psRow)))) return 0;
    await table.end();
    return 0;
  });
}

const PS_COLUMNS: Column[] = [
  { header: 'ID', align: 'right' },
  { header: 'NAME' },
  { header: 'PID', align: 'right' },
  { header: 'HOST' },
  { header: 'TRANSPORT' },
  { header: 'OWNS' },
  { header: 'INBOX', align: 'right' },
  { header: 'HOLDS' },
  { header: 'BLOCKED-ON' },
];

/** One process's line of the `ps` table. */
function psRow(p: ProcessRow): string[] {
  return [String(p.id), p.name === null ? '-' : cut(p.name, NAME_WIDTH), ...processCells(p)];
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

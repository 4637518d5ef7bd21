import type { MailboxStat } from '../../client/mailbox.js';
import type { PostboxProcess } from '../../client/process.js';
import {
  connectionHelp,
  type KnownProcesses,
  lookupProcesses,
  mailboxLabel,
  printJson,
  printJsonPages,
  processLabel,
  runListing,
  writeOut,
} from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { type Column, formatKey, formatMode, formatTable, NAME_WIDTH, TableStream } from '../table.js';

export const lsHelp = `Usage: postbox ls [options]

Lists the mailboxes, like \`ipcs -q\`: System V key, id, name, owner, mode, bytes and messages
held (of the capacity, if bounded), and how many processes wait to send and to receive.
Processes' inboxes are not listed; an unlinked FIFO is listed until its last end closes.

Options:
  --top N              only the N busiest (1 to 1,000): most messages held and processes
                       waiting, busiest first; the kernel picks them without listing them all
  --json               the kernel's stat of each mailbox, as a JSON array (fields: docs/api.md)
${connectionHelp}
Examples:
  postbox ls
  postbox ls --top 10
  postbox ls --json | jq -r '.[] | select(.count > 0) | .name'

${exitCodesHelp}`;

export async function lsCommand(argv: string[]): Promise<number> {
  return runListing(
    argv,
    lsHelp,
    async (proc, json, top) => {
      if (top !== undefined) return showBusiest(proc, json, top);
      return showAll(proc, json);
    },
    { top: true },
  );
}

/** Every mailbox, in id order, a page at a time. */
async function showAll(proc: PostboxProcess, json: boolean): Promise<number> {
  if (json) {
    await printJsonPages(proc.mailboxPages());
    return 0;
  }
  // Each page's stats become the table's cells at once (the stats of a million mailboxes took
  // 1.5 GB), and past the first rows the cells are written as they come (their text took 925 MB).
  // Owners are looked up as they first appear.
  const table = new TableStream(LS_COLUMNS, writeOut);
  const known: KnownProcesses = { names: new Map(), pids: new Map(), ended: new Set() };
  for await (const page of proc.mailboxPages()) {
    await lookupProcesses(
      proc,
      page.map((mb) => mb.owner),
      known,
    );
    // Nobody reads on (`postbox ls | head`): the listing stops instead of fetching the rest.
    if (!(await table.add(page.map((mb) => lsRow(mb, known.names))))) return 0;
  }
  await table.end();
  return 0;
}

/** `--top N`: the N busiest, busiest first, as the kernel ranks them (`watch` shows the same). */
async function showBusiest(proc: PostboxProcess, json: boolean, top: number): Promise<number> {
  const { mailboxes } = await proc.busiestMailboxes(top);
  if (json) {
    printJson(mailboxes);
    return 0;
  }
  const known: KnownProcesses = { names: new Map(), pids: new Map(), ended: new Set() };
  await lookupProcesses(
    proc,
    mailboxes.map((mb) => mb.owner),
    known,
  );
  await writeOut(lsTable(mailboxes, known.names));
  return 0;
}

const LS_COLUMNS: Column[] = [
  { header: 'KEY' },
  { header: 'ID', align: 'right' },
  { header: 'NAME' },
  { header: 'OWNER' },
  { header: 'MODE' },
  { header: 'USED-BYTES', align: 'right' },
  { header: 'MESSAGES', align: 'right' },
  { header: 'SENDERS', align: 'right' },
  { header: 'RECEIVERS', align: 'right' },
];

/** The `ls` table of mailboxes held at once. */
export function lsTable(list: readonly MailboxStat[], names: Map<number, string | null>): string {
  return formatTable(
    LS_COLUMNS,
    list.map((mb) => lsRow(mb, names)),
  );
}

/** One mailbox's line of the `ls` table. */
function lsRow(mb: MailboxStat, names: Map<number, string | null>): string[] {
  return [
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
  ];
}

/**
 * The processes among the waiting operations listed, each once; with a `+` when the kernel
 * listed only the first of a line's operations, whose other processes it does not name.
 */
function waitingProcesses(ids: readonly number[], total: number): string {
  const processes = String(new Set(ids).size);
  return total > ids.length ? `${processes}+` : processes;
}

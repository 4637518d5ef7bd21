import { parseArgs } from 'node:util';
import type { MailboxStat } from '../../client/mailbox.js';
import type { PostboxProcess } from '../../client/process.js';
import {
  connectionHelp,
  connectionOptions,
  findMailbox,
  type KnownProcesses,
  lookupProcesses,
  positionals,
  printJson,
  processLabel,
  waitersLabel,
  withOperatorProcess,
} from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { formatCount, formatFields, formatKey, formatMode, formatTime } from '../table.js';

export const statHelp = `Usage: postbox stat NAME [options]

Shows one mailbox's state, like System V's msqid_ds (IPC_STAT): messages and bytes held, limits,
order and receiver policy, owner and mode, who waits, counters, and the last send and receive
(time and process), creation and change time. NAME may also be #ID or an id number.

Options:
  --json               the kernel's stat object (fields: docs/api.md); times are ms since the epoch
${connectionHelp}
Examples:
  postbox stat jobs
  postbox stat '#12'
  postbox stat jobs --json | jq .count

${exitCodesHelp}`;

export async function statCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(statHelp);
    return 0;
  }
  const [ref] = positionals(rest, ['NAME']);
  return withOperatorProcess(values, async (proc) => {
    const mb = await findMailbox(proc, ref!);
    if (values.json) {
      printJson(mb);
      return 0;
    }
    const { names, pids } = await namedProcesses(proc, mb);
    // The times are the kernel's: "how long ago" is by its clock, wherever this process runs.
    const total = (proc.limits as Record<string, number | undefined>).maxTotalBytes;
    process.stdout.write(statText(mb, names, pids, Date.now() + proc.kernelClockOffset, total));
    return 0;
  });
}

/**
 * The processes a stat names (owner, group, waiters, holders, the last sender and receiver), each
 * looked up alone: the kernel's whole list of processes was fetched for a handful of names.
 */
function namedProcesses(proc: PostboxProcess, mb: MailboxStat): Promise<KnownProcesses> {
  return lookupProcesses(proc, [
    mb.owner,
    mb.lastSendProcess,
    mb.lastReceiveProcess,
    ...mb.group,
    ...mb.waitingSenders,
    ...mb.waitingReceipts,
    ...mb.waitingReceivers,
    ...mb.holders,
  ]);
}

function statText(
  mb: MailboxStat,
  names: Map<number, string | null>,
  pids: Map<number, number>,
  now: number,
  totalBytesLimit: number | undefined,
): string {
  const who = (ids: number[]): string =>
    ids.length === 0 ? '-' : ids.map((id) => processLabel(id, names)).join(', ');
  const last = (time: number, id: number, pid: number): string => {
    if (time === 0) return 'never';
    const gone = names.has(id) ? '' : ', since terminated';
    return `${formatTime(time, now)} by process ${processLabel(id, names)}${pid !== 0 ? ` (OS pid ${pid}${gone})` : gone}`;
  };
  const owner =
    mb.owner === null
      ? mb.hasPasskey === true
        ? 'none: its owner terminated; its group (the processes its passkey let in) may act as owner'
        : 'none: its owner terminated; any process may act as owner'
      : `process ${processLabel(mb.owner, names)}${pids.has(mb.owner) ? ` (OS pid ${pids.get(mb.owner)})` : ''}`;
  const capacity =
    mb.capacity === null
      ? 'unbounded'
      : mb.capacity === 0
        ? // Under System V admission capacity 0 is msg_qbytes 0: a receiver waiting lets nothing
          // in (Linux's msg_fits_inqueue), so it is no rendezvous.
          mb.admission === 'fits'
          ? '0 (holds nothing: a send waits for room even with a receiver waiting, as msg_qbytes 0)'
          : '0 (rendezvous)'
        : `${formatCount(mb.capacity)} messages`;
  const fields: [string, string][] = [
    ['key', formatKey(mb.key)],
    ['owner', owner],
    ['lifetime', mb.system ? 'system-owned: lives until deleted' : 'process-owned: removed with its owner'],
    ['mode', `${formatMode(mb.mode)} (owner/group/others; 4 receive, 2 send)`],
    ['group', who(mb.group)],
  ];
  if (mb.hasPasskey === true)
    fields.push(['passkey', 'yes: a process that opens it with its passkey joins its group']);
  fields.push(
    [
      'messages',
      `${formatCount(mb.count)} (${formatCount(mb.queued)} queued, ${formatCount(mb.inflight)} delivered not yet taken)`,
    ],
    [
      'bytes',
      // A mailbox with no byte limit of its own reports the kernel's limit on all of them.
      totalBytesLimit !== undefined && mb.maxBytes >= totalBytesLimit
        ? `${formatCount(mb.bytes)} (no limit of its own; all mailboxes together: ${formatCount(totalBytesLimit)})`
        : `${formatCount(mb.bytes)} of ${formatCount(mb.maxBytes)} (msg_qbytes)`,
    ],
    ['capacity', capacity],
    ['max message size', `${formatCount(mb.maxMessageSize)} bytes`],
  );
  if (mb.messageSize !== 0) fields.push(['fixed message size', `${formatCount(mb.messageSize)} bytes`]);
  fields.push(
    ['order', mb.order === 'priority' ? 'priority (highest first, fifo within)' : 'fifo'],
    ['receivers', mb.policy],
    ['waiting senders', waitersLabel(mb.waitingSenders, mb.waitingSendersCount, names)],
    ['waiting for receipt', waitersLabel(mb.waitingReceipts, mb.waitingReceiptsCount, names)],
    ['waiting receivers', waitersLabel(mb.waitingReceivers, mb.waitingReceiversCount, names)],
  );
  if (mb.holders.length > 0) fields.push(['holders', who(mb.holders)]);
  if (mb.endOnLastWriter)
    fields.push([
      'ends',
      `FIFO/pipe: ${mb.readers} reading, ${mb.writers} writing${mb.unlinked ? '; unlinked' : ''}`,
    ]);
  else if (mb.unlinked) fields.push(['unlinked', 'yes: removed at its last close']);
  fields.push(
    ['open handles', String(mb.opens)],
    ['sent', formatCount(mb.sent)],
    ['received', formatCount(mb.received)],
  );
  if (mb.replaced !== 0) fields.push(['replaced', formatCount(mb.replaced)]);
  if (mb.dropped !== 0) fields.push(['dropped', formatCount(mb.dropped)]);
  fields.push(
    ['last send', last(mb.lastSendTime, mb.lastSendProcess, mb.lastSendPid)],
    ['last receive', last(mb.lastReceiveTime, mb.lastReceiveProcess, mb.lastReceivePid)],
    ['changed', formatTime(mb.changeTime, now)],
    ['created', formatTime(mb.createTime, now)],
  );
  const title = mb.name === null ? `mailbox #${mb.id}` : `mailbox '${mb.name}' (#${mb.id})`;
  return `${title}\n${formatFields(fields)}`;
}

import { connectionHelp, printJson, runListing } from '../common.js';
import { exitCodesHelp } from '../exit-codes.js';
import { formatCount, formatTable } from '../table.js';

export const limitsHelp = `Usage: postbox limits [options]

Shows the running kernel's limits, like \`ipcs -l\`, what is in use, and the \`postbox kernel\`
flag that changes each (limits are fixed when the kernel starts: restart it with the flag), and
the connections its file descriptors allow (\`ulimit -n\` when it started).

Options:
  --json               { limits: {...}, inUse: {...}, flags: {...} }
${connectionHelp}
Examples:
  postbox limits
  postbox limits --json | jq .limits.maxMessageSize

${exitCodesHelp}`;

interface LimitRow {
  key: string;
  label: string;
  unit: string;
  flag: string | null;
}

const rows: LimitRow[] = [
  { key: 'maxMessageSize', label: 'max message size', unit: 'bytes', flag: '--max-message-size BYTES' },
  {
    key: 'maxMailboxBytes',
    label: 'max bytes per mailbox (default)',
    unit: 'bytes',
    flag: '--max-mailbox-bytes BYTES',
  },
  { key: 'maxTotalBytes', label: 'max bytes queued in all', unit: 'bytes', flag: '--max-total-bytes BYTES' },
  {
    key: 'maxWaitingBytes',
    label: 'max bytes waiting per process',
    unit: 'bytes',
    flag: '--max-waiting-bytes BYTES',
  },
  {
    key: 'maxPartialBytes',
    label: 'max bytes of frames arriving',
    unit: 'bytes',
    flag: '--max-partial-bytes BYTES',
  },
  { key: 'maxMailboxes', label: 'max mailboxes (inboxes too)', unit: '', flag: '--max-mailboxes N' },
  { key: 'maxProcesses', label: 'max processes', unit: '', flag: '--max-processes N' },
  {
    key: 'maxPerProcess',
    label: 'max handles per process',
    unit: '',
    flag: '--max-per-process N',
  },
  { key: 'heartbeatMs', label: 'TCP heartbeat', unit: 'ms', flag: '--heartbeat-ms MS' },
  { key: 'maxCredit', label: 'prefetch credit per receiver', unit: 'messages', flag: null },
  { key: 'outputHighWater', label: 'output backlog per process', unit: 'bytes', flag: null },
];

export async function limitsCommand(argv: string[]): Promise<number> {
  return runListing(argv, limitsHelp, async (proc, json) => {
    const limits = proc.limits as Record<string, number | undefined>;
    // Inboxes count toward the mailbox limit. This command's own process and inbox are left
    // out, as ps leaves it out: at the limit it is let in by the operators' reserve, and
    // counting it would show one more in use than the limit allows.
    const usage = await proc.usage();
    const inUse: Record<string, number> = {
      maxMailboxes: usage.mailboxes - 1,
      maxProcesses: usage.processes - 1,
      maxTotalBytes: usage.totalBytes,
      maxPartialBytes: usage.partialBytes,
    };
    // The most any one process holds (an older kernel does not say).
    if (usage.mostWaitingBytes !== undefined) inUse.maxWaitingBytes = usage.mostWaitingBytes;
    // Not a flag of the kernel's but its file descriptors: past them connections are refused
    // ENOMEM, and an operator should see how near that is before it happens. This command's own
    // connection is left out, as its process is.
    if (usage.connections !== undefined) inUse.maxConnections = usage.connections - 1;
    const room = usage.connectionRoom;
    const descriptors =
      usage.openFiles === undefined
        ? null
        : usage.openFiles === null || room === null || room === undefined
          ? ['max connections', 'unknown', formatCount(inUse.maxConnections!), '(not read on this OS)']
          : [
              'max connections',
              formatCount(room),
              formatCount(inUse.maxConnections!),
              `ulimit -n (${formatCount(usage.openFiles)} open files), then restart`,
            ];
    if (json) {
      printJson({
        limits: room === undefined ? limits : { ...limits, maxConnections: room, openFiles: usage.openFiles },
        inUse,
        flags: Object.fromEntries(
          rows.filter((r) => r.flag !== null).map((r) => [r.key, r.flag!.split(' ')[0]]),
        ),
      });
      return 0;
    }
    process.stdout.write(
      formatTable(
        [
          { header: 'LIMIT' },
          { header: 'VALUE', align: 'right' },
          { header: 'IN USE', align: 'right' },
          { header: 'CHANGE WITH' },
        ],
        rows
          .map((r) => {
            const v = limits[r.key];
            return [
              r.label,
              v === undefined ? '?' : `${formatCount(v)}${r.unit === '' ? '' : ` ${r.unit}`}`,
              inUse[r.key] === undefined ? '' : formatCount(inUse[r.key]!),
              r.flag === null ? '(fixed)' : `postbox kernel ${r.flag}`,
            ];
          })
          .concat(descriptors === null ? [] : [descriptors]),
      ),
    );
    return 0;
  });
}

import { parseArgs } from 'node:util';
import type { MailboxStat } from '../../client/mailbox.js';
import type { PostboxProcess } from '../../client/process.js';
import {
  connectionHelp,
  connectionOptions,
  mailboxLabel,
  parseInteger,
  positionals,
  processLabel,
  waitersLabel,
  withOperatorProcess,
  writeOut,
} from '../common.js';
import { Exit, exitCodesHelp } from '../exit-codes.js';
import { interruptSignal } from '../interrupt.js';
import { bar, formatTable, NAME_WIDTH, namesCell } from '../table.js';
import type { ProcessRow } from './ps.js';

export const watchHelp = `Usage: postbox watch [options]

A live view of the kernel: every mailbox with a depth bar (how full it is), its messages and
bytes, and who waits to send to it and to receive from it; every process with what it owns, the
messages in its inbox, what its loops hold (as ps shows it) and what it is blocked on. It asks
the kernel every --interval ms and redraws only when something changed. On a terminal the screen
is cleared for each frame; otherwise frames follow each other, separated by a blank line. Ctrl-C
quits (exit 0).

Options:
  --interval MS        how often to ask the kernel (default 250)
  --once               print one frame and exit
  --json               one JSON line per change: { time, mailboxes, processes }
${connectionHelp}
Examples:
  postbox watch
  postbox watch --once
  postbox watch --json | jq -c '.mailboxes[] | {name, count}'

${exitCodesHelp}`;

export async function watchCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: {
      ...connectionOptions,
      interval: { type: 'string' },
      once: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(watchHelp);
    return 0;
  }
  positionals(rest, []);
  const interval = parseInteger(values.interval, 'interval', 10, 3_600_000) ?? 250;
  const signal = interruptSignal();
  const tty = process.stdout.isTTY === true && values.once !== true && values.json !== true;
  return withOperatorProcess(values, async (proc) => {
    let last = '';
    let first = true;
    try {
      while (!signal.aborted) {
        const snap = await snapshot(proc);
        const body = values.json ? JSON.stringify(snap) : frame(snap);
        if (body !== last) {
          last = body;
          let text: string;
          if (values.json) text = `${JSON.stringify({ time: Date.now(), ...snap })}\n`;
          else if (tty) text = `\x1b[H\x1b[2J${heading(snap, interval, true)}${body}`;
          else text = `${first ? '' : '\n'}${heading(snap, interval, false)}${body}`;
          first = false;
          if (!(await writeOut(text))) return Exit.OK;
        }
        if (values.once) return Exit.OK;
        await sleep(interval, signal);
      }
    } catch (err) {
      if (signal.aborted) return Exit.OK;
      throw err;
    }
    return Exit.OK;
  });
}

interface Snapshot {
  mailboxes: MailboxStat[];
  processes: ProcessRow[];
}

async function snapshot(proc: PostboxProcess): Promise<Snapshot> {
  const [mailboxes, processes] = await Promise.all([proc.mailboxes(), proc.processes()]);
  mailboxes.sort((a, b) => a.id - b.id);
  return {
    mailboxes,
    processes: processes.filter((p) => p.id !== proc.id).sort((a, b) => a.id - b.id),
  };
}

function heading(s: Snapshot, interval: number, tty: boolean): string {
  const now = new Date().toLocaleTimeString('en-GB');
  const counts = `${s.mailboxes.length} mailbox${s.mailboxes.length === 1 ? '' : 'es'}, ${s.processes.length} process${s.processes.length === 1 ? '' : 'es'}`;
  return `postbox watch  ${now}  ${counts}${tty ? `  (every ${interval} ms; Ctrl-C quits)` : ''}\n\n`;
}

/** One frame, without the time: two frames are equal when nothing changed. */
export function frame(s: Snapshot): string {
  const names = new Map(s.processes.map((p) => [p.id, p.name]));
  // Unbounded mailboxes have no "full": their bars are scaled to the deepest one on screen.
  const deepest = Math.max(1, ...s.mailboxes.filter((m) => m.capacity === null).map((m) => m.count));
  const mailboxes =
    s.mailboxes.length === 0
      ? 'no mailboxes\n'
      : formatTable(
          [
            { header: 'MAILBOX' },
            { header: 'ID', align: 'right' },
            { header: 'DEPTH' },
            { header: 'MESSAGES', align: 'right' },
            { header: 'BYTES', align: 'right' },
            { header: 'WAITING TO SEND' },
            { header: 'WAITING TO RECEIVE' },
          ],
          s.mailboxes.map((mb) => {
            const byBytes = mb.maxBytes > 0 ? mb.bytes / mb.maxBytes : 0;
            const byCount =
              mb.capacity === null ? mb.count / deepest : mb.capacity === 0 ? 0 : mb.count / mb.capacity;
            return [
              mailboxLabel(mb, NAME_WIDTH),
              String(mb.id),
              bar(Math.max(byBytes, byCount), 20),
              mb.capacity === null ? String(mb.count) : `${mb.count}/${mb.capacity}`,
              String(mb.bytes),
              // A send waiting for its receipt is still in its sender's send().
              waitersLabel(
                [...mb.waitingSenders, ...mb.waitingReceipts],
                mb.waitingSendersCount + mb.waitingReceiptsCount,
                names,
                NAME_WIDTH,
              ),
              waitersLabel(mb.waitingReceivers, mb.waitingReceiversCount, names, NAME_WIDTH),
            ];
          }),
        );
  const processes =
    s.processes.length === 0
      ? 'no processes\n'
      : formatTable(
          [
            { header: 'PROCESS' },
            { header: 'PID', align: 'right' },
            { header: 'HOST' },
            { header: 'TRANSPORT' },
            { header: 'OWNS' },
            { header: 'INBOX', align: 'right' },
            { header: 'HOLDS' },
            { header: 'BLOCKED ON' },
          ],
          s.processes.map((p) => [
            processLabel(p.id, names, NAME_WIDTH),
            p.pid === 0 ? '-' : String(p.pid),
            p.host === '' ? '-' : p.host,
            p.transport,
            namesCell(p.owns),
            String(p.inboxMessages),
            p.holds.length === 0 ? '-' : p.holds.join('; '),
            p.blockedOn.length === 0 ? '-' : p.blockedOn.join('; '),
          ]),
        );
  return `${mailboxes}\n${processes}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

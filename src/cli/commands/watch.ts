import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { type MailboxStat, mailboxBusyness } from '../../client/mailbox.js';
import type { PostboxProcess } from '../../client/process.js';
import {
  connectionHelp,
  connectionOptions,
  joinDashedValues,
  mailboxLabel,
  parseInteger,
  positionals,
  processLabel,
  waitersLabel,
  withOperatorProcess,
  writeOut,
} from '../common.js';
import { cutToWidth } from '../display-width.js';
import { Exit, exitCodesHelp } from '../exit-codes.js';
import { interruptSignal } from '../interrupt.js';
import { bar, formatTable, NAME_WIDTH } from '../table.js';
import { type ProcessRow, processCells } from './ps.js';

export const watchHelp = `Usage: postbox watch [options]

A live view of the kernel: every mailbox with a depth bar (how full it is), its messages and
bytes, and who waits to send to it and to receive from it; every process with what it owns, the
messages in its inbox, what its loops hold (as ps shows it) and what it is blocked on. It asks
the kernel every --interval ms, or four times as long as the last asking took if that is longer
(so that it takes at most a fifth of the kernel's time), and redraws only when something
changed. On a terminal the screen is cleared for each frame, and a frame fits the screen, as
top's does: if not every row fits, the busiest mailboxes (most messages and waiters) and
processes (blocked, holding, with most in their inbox) are shown, in id order, and a line counts
the rest; the kernel itself picks those mailboxes, so that a kernel of 100,000 is not listed
whole for a screenful. Otherwise (a pipe, --once, --json) frames have every row, and follow each other,
separated by a blank line. Ctrl-C quits (exit 0).

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
    args: joinDashedValues(argv, ['interval']),
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
        const asked = performance.now();
        const snap = await snapshot(proc, tty ? screenRows() : null);
        const wait = pace(interval, performance.now() - asked);
        // A --json line is compared by a digest of its pieces: held whole, a million mailboxes'
        // stats are one string longer than V8 makes.
        const pieces = values.json ? jsonPieces(snap) : null;
        const body = pieces !== null ? digest(pieces) : tty ? fitted(snap) : frame(snap);
        if (body !== last) {
          last = body;
          if (pieces !== null) {
            pieces.unshift(`{"time":${Date.now()},`);
            for (const piece of pieces) if (!(await writeOut(piece))) return Exit.OK;
          } else {
            const text = tty
              ? `\x1b[H\x1b[2J${heading(snap, wait, true)}${body}`
              : `${first ? '' : '\n'}${heading(snap, wait, false)}${body}`;
            first = false;
            if (!(await writeOut(text))) return Exit.OK;
          }
        }
        if (values.once) return Exit.OK;
        await sleep(wait, signal);
      }
    } catch (err) {
      if (signal.aborted) return Exit.OK;
      throw err;
    }
    return Exit.OK;
  });
}

/** What one frame shows. */
export interface Snapshot {
  /** Every mailbox, in id order; or, asked for a screen, the busiest that could fit on it. */
  mailboxes: MailboxStat[];
  /** How many mailboxes there are: more than {@link mailboxes} holds when only the busiest came. */
  mailboxCount: number;
  processes: ProcessRow[];
}

/**
 * Asks the kernel. With `fit`, the rows a screen has, only the `fit` busiest mailboxes are asked
 * for: a frame shows no more, and chooses them by the same sum (see {@link frame}). Listing
 * 100,000 mailboxes took the kernel 2 s each time; choosing them, a pass over its table.
 */
async function snapshot(proc: PostboxProcess, fit: number | null): Promise<Snapshot> {
  const [listed, processes] = await Promise.all([
    fit === null
      ? proc.mailboxes().then((all) => ({ total: all.length, mailboxes: all }))
      : proc.busiestMailboxes(fit),
    proc.processes(),
  ]);
  return {
    mailboxes: listed.mailboxes.sort((a, b) => a.id - b.id),
    mailboxCount: listed.total,
    processes: processes.filter((p) => p.id !== proc.id).sort((a, b) => a.id - b.id),
  };
}

/** Mailboxes or processes to a piece of a --json line. */
const JSON_PIECE = 1000;

/**
 * A --json line without its time, in pieces of {@link JSON_PIECE} items: put after
 * `{"time":T,` they are `JSON.stringify({ time, mailboxes, processes })` and a newline, written a
 * piece at a time. One string of 990,000 mailboxes' stats failed ("Invalid string length").
 *
 * @example
 * ```ts
 * `{"time":${Date.now()},${jsonPieces(snap).join('')}`; // one line of JSON
 * ```
 */
export function jsonPieces(snap: Pick<Snapshot, 'mailboxes' | 'processes'>): string[] {
  const pieces = ['"mailboxes":['];
  const add = (items: readonly unknown[]): void => {
    for (let i = 0; i < items.length; i += JSON_PIECE) {
      const page = JSON.stringify(items.slice(i, i + JSON_PIECE));
      pieces.push(`${i === 0 ? '' : ','}${page.slice(1, -1)}`);
    }
  };
  add(snap.mailboxes);
  pieces.push('],"processes":[');
  add(snap.processes);
  pieces.push(']}\n');
  return pieces;
}

/** What two frames' pieces are compared by. */
function digest(pieces: readonly string[]): string {
  const hash = createHash('sha256');
  for (const piece of pieces) hash.update(piece);
  return hash.digest('hex');
}

/** The rows a frame has on this terminal: its own less the heading's two and the cursor's. */
function screenRows(): number {
  return Math.max(1, (process.stdout.rows ?? 24) - 3);
}

/** The frame for the terminal, as it is now: cut to its rows and to its columns (a wrapped line takes two rows). */
function fitted(snap: Snapshot): string {
  return frame(snap, { rows: screenRows(), columns: process.stdout.columns ?? 80 });
}

/**
 * How long to wait before asking again: --interval, or four times what the last asking took if
 * that is longer. Every mailbox is listed each time, a page a CALL: with 100,000 of them a
 * snapshot took 2 s, so at 250 ms watch asked without pause and held 38 % of the kernel's CPU;
 * paced, it asks for a fifth of the time at most.
 */
export function pace(interval: number, took: number): number {
  return Math.max(interval, Math.ceil(PACE * took));
}

const PACE = 4;

function heading(s: Snapshot, wait: number, tty: boolean): string {
  const now = new Date().toLocaleTimeString('en-GB');
  const counts = `${s.mailboxCount} mailbox${s.mailboxCount === 1 ? '' : 'es'}, ${s.processes.length} process${s.processes.length === 1 ? '' : 'es'}`;
  const line = `postbox watch  ${now}  ${counts}${tty ? `  (every ${wait < 10_000 ? `${wait} ms` : `${(wait / 1000).toFixed(0)} s`}; Ctrl-C quits)` : ''}`;
  // On a terminal the heading is cut to its width as the frame's lines are: wrapped, it took a
  // second row, and pushed the frame's last row off the screen.
  return `${tty ? cutToWidth(line, process.stdout.columns ?? 80) : line}\n\n`;
}

/** The room a frame has on a terminal: its lines, and the width of each. */
export interface Screen {
  rows: number;
  columns: number;
}

/**
 * One frame, without the time: two frames are equal when nothing changed. On a `screen`, the
 * frame fits it: a view that scrolls its first rows away is no view (100 mailboxes on a
 * 40-row terminal showed only the processes).
 */
export function frame(s: Snapshot, screen?: Screen): string {
  const names = new Map(s.processes.map((p) => [p.id, p.name]));
  const whole = (mailboxes: MailboxStat[], processes: ProcessRow[]): string =>
    `${mailboxTable(mailboxes, names)}\n${processTable(processes, names)}`;
  if (screen === undefined) return whole(s.mailboxes, s.processes);
  // Each table is its header and a row per item, and a blank line comes between them.
  const room = screen.rows - 3;
  const need = s.mailboxCount + s.processes.length;
  if (need <= room || room < 2) return cutLines(whole(s.mailboxes, s.processes), screen);
  // Rows less the lines that count what is left out: half the rows to each table, or what one
  // needs of its half to the other.
  const rows = room - 2;
  let forProcesses = Math.min(s.processes.length, Math.floor(rows / 2));
  const forMailboxes = Math.min(s.mailboxCount, rows - forProcesses);
  forProcesses = Math.min(s.processes.length, rows - forMailboxes);
  const mailboxes = busiest(s.mailboxes, forMailboxes, mailboxBusyness);
  const processes = busiest(s.processes, forProcesses, processBusyness);
  const more = (left: number, what: string, all: string): string =>
    left === 0 ? '' : `… ${left} more ${what}, quieter (postbox ${all} shows them all)\n`;
  const text =
    `${mailboxTable(mailboxes, names)}${more(s.mailboxCount - mailboxes.length, 'mailboxes', 'ls')}\n` +
    `${processTable(processes, names)}${more(s.processes.length - processes.length, 'processes', 'ps')}`;
  return cutLines(text, screen);
}

/** The `count` items most busy, in id order (an order that does not jump about as they change). */
function busiest<T extends { id: number }>(items: T[], count: number, busyness: (item: T) => number): T[] {
  if (count >= items.length) return items;
  const chosen = [...items].sort((a, b) => busyness(b) - busyness(a) || a.id - b.id).slice(0, count);
  return chosen.sort((a, b) => a.id - b.id);
}

/** Blocked or holding jobs first (what someone watching looks for), then by inbox depth. */
function processBusyness(p: ProcessRow): number {
  return (p.blockedOn.length > 0 || p.holds.length > 0 ? 2 ** 40 : 0) + p.inboxMessages;
}

/** The text's first `rows` lines, each cut to `columns`. */
function cutLines(text: string, screen: Screen): string {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return `${lines
    .slice(0, screen.rows)
    .map((line) => cutToWidth(line, screen.columns))
    .join('\n')}\n`;
}

function mailboxTable(list: MailboxStat[], names: Map<number, string | null>): string {
  // Unbounded mailboxes have no "full": their bars are scaled to the deepest one on screen.
  // A loop, not a spread into Math.max: past about 125,000 arguments the stack overflowed, and
  // `watch --once` of such a kernel failed.
  let deepest = 1;
  for (const m of list) if (m.capacity === null && m.count > deepest) deepest = m.count;
  return list.length === 0
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
        list.map((mb) => {
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
}

function processTable(list: ProcessRow[], names: Map<number, string | null>): string {
  return list.length === 0
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
        list.map((p) => [processLabel(p.id, names, NAME_WIDTH), ...processCells(p)]),
      );
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

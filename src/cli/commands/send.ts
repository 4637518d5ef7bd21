import { parseArgs } from 'node:util';
import type { Mailbox, MailboxStat } from '../../client/mailbox.js';
import type { PostboxProcess } from '../../client/process.js';
import type { SendOptions } from '../../client/send-options.js';
import type { SendResult } from '../../client/send-result.js';
import { waitForReader } from '../../faces/fifo.js';
import { MessageSizeError, PostboxError, TimeoutError, WouldBlockError } from '../../protocol/errors.js';
import {
  connectionHelp,
  connectionOptions,
  findMailbox,
  joinDashedValues,
  parseInteger,
  positionals,
  processOperand,
  withProcess,
} from '../common.js';
import { printDiagnostic } from '../diagnostic.js';
import { Exit, exitCodeFor, exitCodesHelp } from '../exit-codes.js';
import { interruptExitCode, interruptedBy, interruptSignal } from '../interrupt.js';
import { inputLines } from '../lines.js';
import { passkeyFileHelp, passkeyFileOption, passkeyFor } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

export const sendHelp = `Usage: postbox send NAME [TEXT] [options]
       postbox send --process PROCESS [TEXT] [options]

Sends TEXT to a mailbox as one message (with --process, to a process's inbox: direct naming);
with no TEXT, reads standard input and sends one message per line (empty lines too); to a FIFO,
each with its newline, as \`postbox fifo write\` sends it and \`echo TEXT > fifo\` writes it. Input is
read as UTF-8 text: bytes that are not UTF-8 arrive as U+FFFD; for binary data use
\`postbox fifo write --chunks\`. The sends are pipelined, not awaited one by one; the first
that fails stops the command (withdrawing the sends still waiting), and its error decides the
exit code.
A send waits while a bounded mailbox is full (and, at capacity 0, until a receiver takes it)
unless --nowait or --timeout; to a FIFO, it first waits until a process has it open for reading,
as \`echo TEXT > fifo\` does. Ctrl-C withdraws every send still waiting: none of them is
delivered later.

Options:
  --type T             message type, a positive integer (System V mtype; default 1)
  --typed              read lines of 'TYPE TEXT' from standard input: each line's own type
  --priority P         0 to 32767 (default 0); priority mailboxes deliver the highest first
  --nowait             fail at once if the mailbox is full, or a FIFO has no reader (exit 3,
                       EAGAIN); nothing is queued
  --timeout MS         give up after MS ms (exit 6, ETIMEDOUT); the message is then never
                       delivered. 0, the default, waits for ever
  --receipt            complete only when a receiver has taken each message, and say which process
  --process            the operand is a process (its name or id, as \`postbox ps\` shows): send to
                       its inbox, which only it receives from
  --json               one JSON line per message: { line, outcome, seq?, receiver? } (seq when the
                       kernel gave one: a received message, or one that waited for room; a line
                       queued at once has none), or { line, outcome: 'failed', code, error }
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox send jobs 'resize photo.jpg'
  cat foo.c | postbox send code
  postbox send crew --typed < msgsnd.txt        # lines like '2 Spock'
  postbox send urgent 'disk full' --priority 10 --receipt
  postbox send --process worker 'reload'        # to the process named worker

${exitCodesHelp}  141  standard output closed (\`postbox send q --json | head -1\`) with input left unsent
`;

/** Sends in flight at once, at most: enough to keep the pipe full, bounded for memory. */
const WINDOW = 4096;

/**
 * Waits until a process has the FIFO open for reading; answers the time left of the send's
 * --timeout (which bounds the wait and the sends together), or 'interrupted' on Ctrl-C.
 * With --nowait, a FIFO nobody reads fails at once, as open(2) with O_NONBLOCK does.
 */
async function awaitFifoReader(
  proc: PostboxProcess,
  fifo: Mailbox,
  found: MailboxStat,
  interrupt: AbortSignal,
  nowait: boolean,
  timeout: number | undefined,
): Promise<number | 'interrupted'> {
  if (interrupt.aborted) return 'interrupted';
  const where = found.name === null ? `pipe #${found.id}` : `FIFO '${found.name}'`;
  if (nowait) {
    if (found.readers === 0) throw new WouldBlockError(`nobody has ${where} open for reading`);
    return 0;
  }
  const started = performance.now();
  // One signal for both ends of the wait (AbortSignal.any is newer than Node 20.0).
  const stop = new AbortController();
  const onInterrupt = (): void => stop.abort();
  interrupt.addEventListener('abort', onInterrupt, { once: true });
  let expired = false;
  const timer =
    timeout === undefined || timeout === 0
      ? undefined
      : setTimeout(() => {
          expired = true;
          stop.abort();
        }, timeout);
  try {
    await waitForReader(proc, fifo, stop.signal);
  } catch (err) {
    if (interrupt.aborted) return 'interrupted';
    if (expired)
      throw new TimeoutError(`nobody opened ${where} for reading within ${timeout} ms; nothing was sent`);
    throw err;
  } finally {
    clearTimeout(timer);
    interrupt.removeEventListener('abort', onInterrupt);
  }
  if (timeout === undefined || timeout === 0) return timeout ?? 0;
  // A send whose time ran out in the wait still gets a moment, not a timeout of 0 (for ever).
  return Math.max(1, Math.ceil(timeout - (performance.now() - started)));
}

/** Room for a --typed line's TYPE and the blank after it, on top of the message size limit. */
const TYPE_ROOM = 64;

export async function sendCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: joinDashedValues(argv, ['type', 'priority', 'timeout']),
    options: {
      ...connectionOptions,
      type: { type: 'string' },
      typed: { type: 'boolean' },
      priority: { type: 'string' },
      nowait: { type: 'boolean' },
      timeout: { type: 'string' },
      receipt: { type: 'boolean' },
      process: { type: 'boolean' },
      json: { type: 'boolean' },
      ...passkeyFileOption,
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(sendHelp);
    return 0;
  }
  const [ref, text] = positionals(rest, [values.process ? 'PROCESS' : 'NAME', 'TEXT'], 1);
  const processRef = values.process ? processOperand(ref!, 'PROCESS') : undefined;
  const type = parseInteger(values.type, 'type', 1);
  const priority = parseInteger(values.priority, 'priority', 0, 32767);
  const timeout = parseInteger(values.timeout, 'timeout', 0, 0xffffffff);
  if (values.typed && text !== undefined)
    throw new UsageError('--typed reads standard input; give no TEXT with it');
  if (values.typed && type !== undefined)
    throw new UsageError('--typed takes each type from its line; drop --type');
  if (values.nowait && timeout !== undefined) throw new UsageError('give --nowait or --timeout, not both');
  if (values.process && values['passkey-file'] !== undefined)
    throw new UsageError("--passkey-file opens a mailbox; a process's inbox takes none");

  const signal = interruptSignal();
  // Every send carries the pipeline's stop signal, not only a single one: on Ctrl-C, or at the
  // first failed line, each pending send is withdrawn and answered for (ECANCELED, or its
  // outcome if it got in first), so the command can say which lines went. Closing the process
  // would withdraw them too, but unanswered. One signal for all: the client keeps one listener
  // per signal, where a signal per line made a million lines take six times as long.
  const stop = new AbortController();
  const base: SendOptions = { signal: stop.signal };
  if (type !== undefined) base.type = type;
  if (priority !== undefined) base.priority = priority;
  if (values.nowait) base.nowait = true;
  if (timeout !== undefined) base.timeout = timeout;
  if (values.receipt) base.receipt = true;

  return withProcess(values, async (proc) => {
    let target: SendTarget;
    let where: string;
    /** The largest message the target takes, in bytes. */
    let limit = proc.limits.maxMessageSize;
    /**
     * What ends each line's message: nothing, but a newline for a FIFO or pipe, whose reader
     * sees a stream of bytes (`fifo read`), where lines without theirs would run together; so
     * `postbox send temp hello` writes what `echo hello > temp` and `postbox fifo write` do.
     */
    let lineEnd = '';
    if (processRef !== undefined) {
      // Looked up once: a name could be taken by another process while the lines are sent.
      const to = await proc.lookup(processRef);
      target = { send: (body, options) => proc.send(to.id, body, options) };
      where =
        to.name === null ? `the inbox of process ${to.id}` : `the inbox of process ${to.id} (${to.name})`;
    } else {
      const found = await findMailbox(proc, ref!);
      const mailbox = await proc.openMailbox(found.id, {
        role: 'write',
        passkey: passkeyFor(values['passkey-file'], found),
      });
      target = mailbox;
      where = describe(found);
      limit = Math.min(limit, found.maxMessageSize);
      if (found.endOnLastWriter) {
        lineEnd = '\n';
        // As `echo TEXT > fifo` and `postbox fifo write` do (open(2) for writing waits): lines
        // sent with nobody reading would sit in the FIFO for whoever opens it next.
        const waited = await awaitFifoReader(proc, mailbox, found, signal, values.nowait === true, timeout);
        if (waited === 'interrupted') return interruptExitCode();
        if (timeout !== undefined) base.timeout = waited;
      }
    }
    const sender = new Pipeline(
      target,
      stop,
      signal,
      values.json === true,
      values.receipt === true,
      text === undefined,
    );
    // Whether every line of the input was read and handed to a send.
    let inputDone = true;
    if (text !== undefined) {
      sender.send(text + lineEnd, base);
    } else {
      if (process.stdin.isTTY) printDiagnostic('send', `one message per line to ${where}; end with Ctrl-D`);
      // A line longer than this is over the limit, whatever it holds (a character is a byte at
      // least); the reader stops holding it there. A --typed line has its TYPE in front too.
      const longest = limit + (values.typed ? TYPE_ROOM : 0);
      // The sends in flight are withdrawn through their signal; this stops the reading.
      const stopReading = (): void => {
        process.stdin.destroy();
      };
      signal.addEventListener('abort', stopReading, { once: true });
      // The kernel gone, no line can be sent: the command ends now, not at the next line of an
      // input that may not come for hours (`tail -f log | postbox send q` under a supervisor).
      let kernelGone: PostboxError | null = null;
      void proc.closed.then((err) => {
        if (err === null) return;
        kernelGone = err;
        process.stdin.destroy();
      });
      const stopped = (): boolean => signal.aborted || kernelGone !== null;
      inputDone = false;
      try {
        reading: for await (const batch of inputLines(process.stdin, longest, stopped)) {
          for (const { text: line, end } of batch) {
            // Lines read ahead before the interrupt are not sent: the command is stopping.
            if (sender.failed || stopped()) break reading;
            const flag = limit === proc.limits.maxMessageSize ? ' (postbox kernel --max-message-size)' : '';
            if (!end) {
              sender.refuse(
                new MessageSizeError(
                  `the line is longer than the ${limit}-byte message size limit of ${where}${flag}`,
                ),
                Exit.ERROR,
              );
              break reading;
            }
            let body = line;
            let options = base;
            if (values.typed) {
              if (line.trim() === '') {
                sender.skip();
                continue;
              }
              const m = /^\s*(\d+)(?:[ \t](.*))?$/.exec(line);
              const t = m === null ? Number.NaN : Number(m[1]);
              if (m === null || !Number.isSafeInteger(t) || t < 1) {
                sender.refuse(
                  new UsageError(`expected 'TYPE TEXT' with a positive whole TYPE, got '${line}'`),
                  Exit.USAGE,
                );
                break reading;
              }
              body = m[2] ?? '';
              options = { ...base, type: t };
            }
            body += lineEnd;
            // A whole line over the limit is refused here, before it is sent: the kernel's refusal
            // came back only once the lines after it were in flight, and they were delivered.
            // A UTF-16 unit is at most 3 UTF-8 bytes: a line that short needs no count.
            const bytes = body.length * 3 > limit ? Buffer.byteLength(body) : body.length;
            if (bytes > limit) {
              sender.refuse(
                new MessageSizeError(
                  `a ${bytes}-byte message is over the ${limit}-byte limit of ${where}${flag}`,
                ),
                Exit.ERROR,
              );
              break reading;
            }
            sender.send(body, options);
            if (sender.inFlight >= WINDOW) await sender.room();
          }
        }
        // The loop also ends when the interrupt closed the reader: then input was left.
        inputDone = !stopped() && !sender.failed;
        if (kernelGone !== null && !sender.failed) sender.refuse(kernelGone, exitCodeFor(kernelGone));
      } finally {
        signal.removeEventListener('abort', stopReading);
        process.stdin.destroy();
      }
    }
    // Each send settles with the kernel's final answer, withdrawn ones included.
    await sender.settled();
    const why = interruptedBy();
    const withdrawn =
      signal.aborted &&
      sender.error instanceof PostboxError &&
      (sender.error.code === 'ECANCELED' || sender.error.code === 'ENOTCONN');
    // Standard output closed (`send --json | head -1`): stopping quietly is not finishing, so
    // input left unsent is not success. 141 is what a shell reports for a command SIGPIPE ended.
    if (why === 'EPIPE' && (withdrawn || !inputDone)) return Exit.BROKEN_PIPE;
    // Stopped part way through its input: say how far it got, as --json does line by line;
    // otherwise a user could not tell what to send again.
    if ((why === 'SIGINT' || why === 'SIGTERM') && text === undefined && !values.json)
      printDiagnostic(
        'send',
        `interrupted: ${lineCount(sender.sent)} sent, ${lineCount(sender.withdrawn)} withdrawn (never delivered)`,
      );
    if (sender.error !== null) {
      if (withdrawn) return interruptExitCode();
      const where = sender.errorLine === null ? '' : `line ${sender.errorLine}: `;
      const code = sender.error instanceof PostboxError ? ` (${sender.error.code})` : '';
      const hint = sender.exitCode === Exit.USAGE ? "\nRun 'postbox send --help' for usage." : '';
      // Every line before the failed one was sent, but for those the failure withdrew; lines
      // after it that were already in flight may have been sent too. Without saying how many, a
      // script that sends again from the failed line would send those twice.
      const line = sender.errorLine;
      const after =
        line === null ? 0 : sender.sent - (line - 1 - sender.errorSkipped - sender.withdrawnBefore(line));
      const also =
        (after > 0
          ? `; ${lineCount(after)} after it, already in flight, ${after === 1 ? 'was' : 'were'} sent`
          : '') +
        (sender.withdrawnByFailure.size > 0
          ? `; ${lineCount(sender.withdrawnByFailure.size)} still waiting ${sender.withdrawnByFailure.size === 1 ? 'was' : 'were'} withdrawn (never delivered)`
          : '');
      printDiagnostic('send', `${where}${sender.error.message}${code}${also}${hint}`);
      return sender.exitCode;
    }
    // A single message that was sent is sent, however late the interrupt came (the kernel's
    // answer is final); stopping a stream of lines early is what 130 / 143 report.
    if (why !== null && why !== 'EPIPE' && text === undefined) return interruptExitCode();
    return Exit.OK;
  });
}

function lineCount(n: number): string {
  return n === 1 ? '1 line' : `${n} lines`;
}

function describe(mb: { id: number; name: string | null }): string {
  return mb.name === null ? `mailbox #${mb.id}` : `mailbox '${mb.name}'`;
}

/** Where the command sends: a mailbox handle, or a process's inbox. */
interface SendTarget {
  send(body: string, options: SendOptions): Promise<SendResult>;
}

/**
 * Pipelined sends: many in flight, the earliest failure (by line) kept, results reported. The
 * first failure withdraws every send still waiting: one waiting for room in a mailbox no one
 * empties would otherwise hold the command for ever after its error was known.
 */
class Pipeline {
  lines = 0;
  inFlight = 0;
  /** Sends the kernel accepted (queued, received, dropped or replaced). */
  sent = 0;
  /** Sends withdrawn by an interrupt: the kernel will never deliver them. */
  withdrawn = 0;
  error: Error | null = null;
  errorLine: number | null = null;
  private errorAt = Number.POSITIVE_INFINITY;
  exitCode: number = Exit.OK;
  private drained: (() => void) | null = null;
  private roomWaiter: (() => void) | null = null;
  /** Lines the first failure withdrew (no more than were in flight then). */
  readonly withdrawnByFailure = new Set<number>();
  /** Whether a failure, not an interrupt, stopped the sends in flight. */
  private stoppedByFailure = false;
  /** Lines `--typed` skipped (blank): counted in `lines`, never sent. */
  private skipped = 0;
  /** Of those, the ones before the failed line. */
  errorSkipped = 0;

  constructor(
    private readonly target: SendTarget,
    /** Every send's signal: aborted, it withdraws the sends in flight. */
    private readonly stop: AbortController,
    /** The interrupt: Ctrl-C or SIGTERM stops the pipeline too. */
    interrupt: AbortSignal,
    private readonly json: boolean,
    private readonly receipt: boolean,
    private readonly numbered: boolean,
  ) {
    if (interrupt.aborted) stop.abort(interrupt.reason);
    else interrupt.addEventListener('abort', () => stop.abort(interrupt.reason), { once: true });
  }

  /** How many lines before `line` the failure withdrew. */
  withdrawnBefore(line: number): number {
    let n = 0;
    for (const l of this.withdrawnByFailure) if (l < line) n++;
    return n;
  }

  get failed(): boolean {
    return this.error !== null;
  }

  send(body: string, options: SendOptions): void {
    const line = ++this.lines;
    const skipped = this.skipped;
    this.inFlight++;
    this.target.send(body, options).then(
      (r) => this.done(line, skipped, r, null),
      (err: Error) => this.done(line, skipped, null, err),
    );
  }

  /**
   * An input line that is not a message (a blank line under --typed): it still counts, so every
   * `line` said (in errors, --json, --receipt) is the line's number in the input.
   */
  skip(): void {
    this.lines++;
    this.skipped++;
  }

  /**
   * Records a failure at input line `line`, after `skipped` blank lines (the earliest line's
   * failure is the one reported).
   */
  fail(err: Error, code: number, line = this.lines + 1, skipped = this.skipped): void {
    if (line >= this.errorAt) return;
    this.errorAt = line;
    this.errorSkipped = skipped;
    this.error = err;
    this.exitCode = code;
    this.errorLine = this.numbered && err instanceof PostboxError ? line : null;
    if (!this.stop.signal.aborted) {
      this.stoppedByFailure = true;
      this.stop.abort(err);
    }
  }

  /**
   * Refuses the next input line before any send (a malformed `--typed` line, one over the size
   * limit): it stops the input as a failed send would, and with --json it gets its `failed` line
   * too, or a script matching lines to outcomes would never learn what became of it.
   */
  refuse(err: Error, code: number): void {
    const line = this.lines + 1;
    if (this.json) {
      const errorCode = err instanceof PostboxError ? err.code : 'EINVAL';
      process.stdout.write(
        `${JSON.stringify({ line, outcome: 'failed', code: errorCode, error: err.message })}\n`,
      );
    }
    this.fail(err instanceof UsageError ? new UsageError(`line ${line}: ${err.message}`) : err, code, line);
  }

  /** Resolves when fewer than the window are in flight. */
  room(): Promise<void> {
    if (this.inFlight < WINDOW) return Promise.resolve();
    return new Promise((resolve) => {
      this.roomWaiter = resolve;
    });
  }

  /** Resolves when every send has settled. */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = resolve;
    });
  }

  private done(line: number, skipped: number, r: SendResult | null, err: Error | null): void {
    this.inFlight--;
    const withdrawn = err instanceof PostboxError && (err.code === 'ECANCELED' || err.code === 'ENOTCONN');
    if (withdrawn) this.withdrawn++;
    else if (err === null) this.sent++;
    if (err !== null) {
      // Keep the earliest line's error: that is where the input stopped being delivered. A send
      // the failure withdrew is not a failure of its own.
      if (withdrawn && this.stoppedByFailure) this.withdrawnByFailure.add(line);
      else this.fail(err, exitCodeFor(err), line, skipped);
      // One line per message with --json, failures included: a script matches them by line.
      if (this.json) {
        const code = err instanceof PostboxError ? err.code : 'ERROR';
        process.stdout.write(`${JSON.stringify({ line, outcome: 'failed', code, error: err.message })}\n`);
      }
    } else if (r !== null) {
      if (this.json) {
        const out: Record<string, unknown> = { line, outcome: r.outcome };
        if (r.seq !== undefined) out.seq = r.seq;
        if (r.receiver !== undefined) out.receiver = r.receiver;
        process.stdout.write(`${JSON.stringify(out)}\n`);
      } else if (this.receipt) {
        const what = this.numbered ? `line ${line}` : 'message';
        const by = r.receiver !== undefined ? `received by process ${r.receiver}` : r.outcome;
        process.stdout.write(`${what}${r.seq !== undefined ? ` (seq ${r.seq})` : ''}: ${by}\n`);
      } else if (r.outcome === 'dropped' || r.outcome === 'replaced') {
        printDiagnostic('send', `line ${line}: ${r.outcome}`);
      }
    }
    if (this.roomWaiter !== null && this.inFlight < WINDOW) {
      const w = this.roomWaiter;
      this.roomWaiter = null;
      w();
    }
    if (this.inFlight === 0 && this.drained !== null) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }
}

import { parseArgs } from 'node:util';
import type { Mailbox } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import type { ReceiveOptions } from '../../client/receive-options.js';
import { PostboxError } from '../../protocol/errors.js';
import {
  connectionHelp,
  connectionOptions,
  findMailbox,
  joinDashedValues,
  parseInteger,
  positionals,
  processOperand,
  withProcess,
  writeOut,
} from '../common.js';
import { printDiagnostic } from '../diagnostic.js';
import { Exit, exitCodesHelp } from '../exit-codes.js';
import { interruptExitCode, interruptSignal } from '../interrupt.js';
import { toJsonValue } from '../json-value.js';
import { passkeyFileHelp, passkeyFileOption, passkeyFor } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

export const recvHelp = `Usage: postbox recv NAME [options]

Receives messages from a mailbox and writes each body to standard output, one per line: its
bytes as they came (a binary body too), a newline added unless the body ends with one. By default it takes one message, waiting
for it. NAME may also be #ID or an id.

Selection (System V msgrcv):
  --type T             0 any (default); T > 0 the first of type T; T < 0 the first of the
                       lowest type <= |T|
  --except             with T > 0: the first message NOT of type T (MSG_EXCEPT)
  --from P             only messages sent by process P (a name or an id)

How many:
  (default)            one message, waiting for it
  --count N            N messages, waiting for each
  --all                every message queued now (that matches), then exit 0, even if none
  --follow             keep receiving as messages come, like tail -f, until Ctrl-C or the end of
                       a FIFO (the kernel pushes messages ahead: no round trip per message)

Waiting:
  --nowait             do not wait: exit 3 (EAGAIN) if nothing matches (with --count, if fewer
                       than N were there; those are printed)
  --timeout MS         give up waiting after MS ms per message: exit 6 (ETIMEDOUT); 0, the
                       default, waits for ever

Output:
  --verbose            put the header before each body: seq=S type=T priority=P sender=ID, a tab
  --json               one JSON object per line: { seq, sender, type, priority, time, size, codec, body }
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox recv jobs
  postbox recv code --all | grep factorial
  postbox recv crew --type 2 --nowait            # exit 3 once no type-2 message is left
  postbox recv events --follow --verbose
  postbox recv replies --from server --timeout 5000

${exitCodesHelp}`;

export async function recvCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: joinDashedValues(argv, ['type', 'from', 'count', 'timeout']),
    options: {
      ...connectionOptions,
      type: { type: 'string' },
      except: { type: 'boolean' },
      from: { type: 'string' },
      nowait: { type: 'boolean' },
      timeout: { type: 'string' },
      count: { type: 'string' },
      all: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      verbose: { type: 'boolean', short: 'v' },
      json: { type: 'boolean' },
      ...passkeyFileOption,
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(recvHelp);
    return 0;
  }
  const [ref] = positionals(rest, ['NAME']);
  const type = parseInteger(values.type, 'type');
  const count = parseInteger(values.count, 'count', 1);
  const timeout = parseInteger(values.timeout, 'timeout', 0, 0xffffffff);
  const modes = [count !== undefined, values.all === true, values.follow === true].filter(Boolean).length;
  if (modes > 1) throw new UsageError('give one of --count, --all and --follow');
  if (values.except && (type === undefined || type <= 0))
    throw new UsageError('--except needs --type T with T > 0');
  if (values.nowait && timeout !== undefined) throw new UsageError('give --nowait or --timeout, not both');
  if (values.follow && (values.nowait || timeout !== undefined))
    throw new UsageError('--follow waits for messages as they come; drop --nowait and --timeout');
  if (values.all && timeout !== undefined)
    throw new UsageError('--all takes what is queued without waiting; drop --timeout');

  const fromRef = values.from === undefined ? undefined : processOperand(values.from, '--from');
  const signal = interruptSignal();
  const out = new Output(values.verbose === true, values.json === true);
  return withProcess(values, async (proc) => {
    const found = await findMailbox(proc, ref!);
    const from = typeof fromRef === 'string' ? (await proc.lookup(fromRef)).id : fromRef;
    const mb = await proc.openMailbox(found.id, {
      role: 'read',
      passkey: passkeyFor(values['passkey-file'], found),
    });
    out.putBack = (m) =>
      proc.sendTo(found.id, sameBody(m), {
        type: m.type,
        priority: m.priority,
        codec: m.codec === 'unknown' ? 'bytes' : m.codec,
        ...(Object.keys(m.headers).length > 0 ? { headers: m.headers } : {}),
        timeout: 5000,
      });
    const select: ReceiveOptions & { from?: number } = {};
    if (type !== undefined) select.type = type;
    if (values.except) select.except = true;
    if (from !== undefined) select.from = from;
    try {
      if (values.follow) return await follow(mb, select, signal, out);
      if (values.all) {
        await takeQueued(mb, select, Number.POSITIVE_INFINITY, out, signal);
        return signal.aborted ? interruptExitCode() : Exit.OK;
      }
      const n = count ?? 1;
      if (values.nowait) {
        const got = await takeQueued(mb, select, n, out, signal);
        if (signal.aborted) return interruptExitCode();
        if (got < n && !out.closed) {
          // Exit 3 alone would not say whether anything was printed, or how much was missing.
          printDiagnostic(
            'recv',
            got === 0
              ? `no message in ${describe(found, select)}`
              : `only ${got} of ${n} messages were in ${describe(found, select)}`,
          );
          return Exit.EMPTY;
        }
        return Exit.OK;
      }
      for (let i = 0; i < n; i++) {
        const m = await mb.receive({ ...select, signal, ...(timeout !== undefined ? { timeout } : {}) });
        if (m === null) {
          // End of a FIFO: its last writer closed and nothing is left.
          printDiagnostic('recv', `end of ${describe(found, {})}: no writer is left`);
          return Exit.EMPTY;
        }
        if (!(await out.write([m]))) break;
      }
      return Exit.OK;
    } catch (err) {
      if (err instanceof PostboxError && err.code === 'ECANCELED' && signal.aborted)
        return interruptExitCode();
      throw err;
    } finally {
      mb.close();
    }
  });
}

/** `--follow`: iterate with prefetch until interrupted, the stream ends, or stdout goes away. */
async function follow(
  mb: Mailbox,
  select: ReceiveOptions & { from?: number },
  signal: AbortSignal,
  out: Output,
): Promise<number> {
  const it = mb.messages({ ...select, signal });
  try {
    for await (const m of it) if (!(await out.write([m]))) break;
  } catch (err) {
    if (err instanceof PostboxError && err.code === 'ECANCELED' && signal.aborted) return Exit.OK;
    throw err;
  }
  return Exit.OK;
}

/**
 * Takes up to max queued messages with non-blocking receives, pipelined in growing batches (the
 * kernel answers them in order, so the output is in order). Stops at the first empty answer, or
 * at an interrupt once the batch it has taken is written: none of these receives waits, so the
 * signal aborts none of them, and a mailbox that a producer keeps filling would otherwise take a
 * second Ctrl-C (exit at once) to end the command.
 */
async function takeQueued(
  mb: Mailbox,
  select: ReceiveOptions & { from?: number },
  max: number,
  out: Output,
  signal: AbortSignal,
): Promise<number> {
  let got = 0;
  let batch = 1;
  while (got < max && !signal.aborted) {
    const k = Math.min(batch, max - got);
    const answers = await Promise.all(
      Array.from({ length: k }, () => mb.receive({ ...select, nowait: true })),
    );
    const messages = answers.filter((m): m is Message => m !== null);
    got += messages.length;
    if (messages.length > 0 && !(await out.write(messages))) return got;
    if (messages.length < k) return got;
    batch = Math.min(batch * 2, 1024);
  }
  return got;
}

function describe(
  mb: { id: number; name: string | null },
  select: ReceiveOptions & { from?: number },
): string {
  const what = mb.name === null ? `mailbox #${mb.id}` : `mailbox '${mb.name}'`;
  const parts: string[] = [];
  if (select.type !== undefined && select.type !== 0)
    parts.push(
      select.except
        ? `not of type ${select.type}`
        : select.type > 0
          ? `of type ${select.type}`
          : `of type <= ${-select.type}`,
    );
  if (select.from !== undefined) parts.push(`from process ${select.from}`);
  return parts.length === 0 ? what : `${what} ${parts.join(' ')}`;
}

/**
 * Writes received messages: text lines, optionally with headers, or JSON lines. Messages are
 * taken before they are written; those whose write fails because standard output has gone
 * (`| head -1`, a closed descriptor) are sent back to the mailbox (`putBack`), not dropped.
 */
class Output {
  closed = false;
  /** Sends a message whose write failed back to its mailbox; set once the mailbox is known. */
  putBack: ((m: Message) => Promise<unknown>) | null = null;

  constructor(
    private readonly verbose: boolean,
    private readonly json: boolean,
  ) {}

  /** Writes messages; false once stdout's reader is gone. */
  async write(messages: Message[]): Promise<boolean> {
    if (this.closed) {
      await this.giveBack(messages);
      return false;
    }
    const out = this.json
      ? Buffer.from(messages.map(jsonLine).join(''))
      : Buffer.concat(messages.flatMap((m) => this.textLine(m)));
    if (!(await writeOut(out))) {
      this.closed = true;
      await this.giveBack(messages);
    }
    return !this.closed;
  }

  /** Back to the mailbox (at its end, sent by this process): better late than lost. */
  private async giveBack(messages: Message[]): Promise<void> {
    for (const m of messages) {
      try {
        await this.putBack?.(m);
      } catch (err) {
        printDiagnostic(
          'recv',
          `standard output closed; message seq ${m.seq} could not be put back: ${(err as Error).message}`,
        );
      }
    }
  }

  /** A body's line: its bytes as they came (as `fifo read` writes them), with a newline. */
  private textLine(m: Message): Uint8Array[] {
    const body = bodyBytes(m);
    const parts: Uint8Array[] = [];
    if (this.verbose)
      parts.push(Buffer.from(`seq=${m.seq} type=${m.type} priority=${m.priority} sender=${m.sender}\t`));
    parts.push(body);
    if (body.at(-1) !== 0x0a) parts.push(NEWLINE);
    return parts;
  }
}

const NEWLINE = Buffer.from('\n');

/** The body to send again so that it arrives as it came: the same bytes, or the same value. */
function sameBody(m: Message): unknown {
  if (m.codec === 'string') return m.text();
  if (m.codec === 'json' || m.codec === 'msgpack') return m.body;
  return Buffer.from(m.data);
}

/**
 * The bytes to write for a body: text and bytes as they are (decoding them as UTF-8 turned the
 * bytes of a binary body that are not UTF-8 into U+FFFD, so `recv --all > file` lost them), a
 * structured body as JSON.
 */
function bodyBytes(m: Message): Uint8Array {
  if (m.codec === 'string' || m.codec === 'bytes' || m.codec === 'json' || m.codec === 'unknown')
    return m.data;
  const body = m.body;
  if (typeof body === 'string') return Buffer.from(body);
  // A body of undefined has no JSON; written as null, as JSON.stringify writes it in an array.
  return Buffer.from(JSON.stringify(toJsonValue(body) ?? null));
}

function jsonLine(m: Message): string {
  const o: Record<string, unknown> = {
    seq: m.seq,
    sender: m.sender,
    type: m.type,
    priority: m.priority,
    time: m.time,
    size: m.size,
    codec: m.codec,
  };
  if (m.codec === 'json' || m.codec === 'msgpack') {
    // Without `?? null` an undefined body would drop the field, and `.body` would be missing.
    o.body = toJsonValue(m.body) ?? null;
  } else {
    const text = m.text();
    if (Buffer.from(text, 'utf8').equals(m.data)) o.body = text;
    else {
      o.body = m.data.toString('base64');
      o.encoding = 'base64';
    }
  }
  const headers = m.headers;
  if (Object.keys(headers).length > 0) o.headers = headers;
  return `${JSON.stringify(o)}\n`;
}

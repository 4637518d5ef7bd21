import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { PostboxProcess } from '../../client/process.js';
import { waitForReader } from '../../faces/fifo.js';
import { PipeReader, PipeWriter } from '../../faces/pipe-end.js';
import { PostboxError } from '../../protocol/errors.js';
import {
  connectionHelp,
  connectionOptions,
  findMailbox,
  positionals,
  withProcess,
  writeOut,
} from '../common.js';
import { Exit, exitCodesHelp } from '../exit-codes.js';
import { interruptExitCode, interruptSignal } from '../interrupt.js';
import { inputLines } from '../lines.js';
import { passkeyFileHelp, passkeyFileOption, passkeyFor } from '../passkey-file.js';
import { UsageError } from '../usage-error.js';

export const fifoHelp = `Usage: postbox fifo read NAME [options]
       postbox fifo write NAME [options]

The two ends of a FIFO made by \`postbox mkfifo NAME\`, like \`cat < fifo\` and \`cat > fifo\`.

  read    writes what it reads to standard output; exits 0 at end of file, when the last writer
          has closed. Like opening a FIFO for reading, it first waits for a writer (unless data
          is already there).
  write   copies standard input into the FIFO, one message per line (or per chunk with
          --chunks), and closes its end at the end of standard input. Like opening a FIFO for
          writing, it first waits for a reader. If every reader has gone: exit 1 (EPIPE).

Options:
  --chunks             (write) send standard input as it comes in chunks, not line by line
${passkeyFileHelp}${connectionHelp}
Examples:
  postbox mkfifo temp
  postbox fifo read temp                    # terminal 1
  postbox fifo write temp                   # terminal 2: type lines; Ctrl-D ends, and the
                                            # reader exits
  ls -l | postbox fifo write temp

${exitCodesHelp}`;

/** The most of one line `fifo write` holds before it writes it on: a pipe's 64 KiB. */
const LINE_PIECE = 65536;

export async function fifoCommand(argv: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: argv,
    options: { ...connectionOptions, chunks: { type: 'boolean' }, ...passkeyFileOption },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(fifoHelp);
    return 0;
  }
  const [action, name] = positionals(rest, ['read or write', 'NAME']);
  if (action !== 'read' && action !== 'write')
    throw new UsageError(`the first argument must be 'read' or 'write', not '${action}'`);
  if (action === 'read' && values.chunks) throw new UsageError('--chunks is for fifo write');
  const signal = interruptSignal();
  return withProcess(values, async (proc) => {
    const found = await findMailbox(proc, name!);
    if (!found.endOnLastWriter)
      throw new UsageError(
        `mailbox '${name}' is not a FIFO (make one with postbox mkfifo); use postbox send / recv for it`,
      );
    const passkey = passkeyFor(values['passkey-file'], found);
    try {
      return action === 'read'
        ? await readEnd(proc, found.id, passkey, signal)
        : await writeEnd(proc, found.id, passkey, values.chunks === true, signal);
    } catch (err) {
      if (
        signal.aborted &&
        (!(err instanceof PostboxError) || err.code === 'ECANCELED' || err.code === 'ENOTCONN')
      )
        return interruptExitCode();
      throw err;
    }
  });
}

async function readEnd(
  proc: PostboxProcess,
  id: number,
  passkey: string | undefined,
  signal: AbortSignal,
): Promise<number> {
  const reader = new PipeReader(await proc.openMailbox(id, { role: 'read', passkey }));
  const stop = (): void => {
    reader.destroy();
  };
  signal.addEventListener('abort', stop, { once: true });
  try {
    // As open(2) of a FIFO for reading, the stream waits until a writer has had it open: the
    // kernel ends it only once one has come and gone with nothing left (Mailbox.ended). It used
    // to be polled for here, which missed a writer that opened and closed between two looks
    // and then waited for ever.
    for await (const chunk of reader) if (!(await writeOut(chunk as Buffer))) break;
    if (signal.aborted) return interruptExitCode();
    return Exit.OK;
  } catch (err) {
    if (signal.aborted) return interruptExitCode();
    throw err;
  } finally {
    signal.removeEventListener('abort', stop);
    reader.destroy();
  }
}

async function writeEnd(
  proc: PostboxProcess,
  id: number,
  passkey: string | undefined,
  chunks: boolean,
  signal: AbortSignal,
): Promise<number> {
  const writer = new PipeWriter(await proc.openMailbox(id, { role: 'write', passkey }));
  let failure: Error | null = null;
  writer.on('error', (err) => {
    failure ??= err;
  });
  // As open(2) of a FIFO for writing: wait until a reader has it open.
  try {
    await waitForReader(proc, writer.mailbox, signal);
  } catch (err) {
    writer.destroy();
    if (signal.aborted) return interruptExitCode();
    throw err;
  }
  // A line is sent as it comes, a long one in pieces: the reader of a FIFO sees bytes, and a
  // line without an end must not be held whole (see inputLines).
  // The kernel gone, nothing can be written: the command ends now, not at the next line of an
  // input that may not come for hours.
  let kernelGone = false;
  void proc.closed.then((err) => {
    if (err === null) return;
    kernelGone = true;
    failure ??= err;
    process.stdin.destroy();
  });
  const stopped = (): boolean => signal.aborted || kernelGone;
  const input: AsyncIterable<(string | Buffer)[]> = chunks
    ? (async function* () {
        try {
          for await (const chunk of process.stdin) yield [chunk as Buffer];
        } catch (err) {
          if (!stopped()) throw err;
        }
      })()
    : (async function* () {
        for await (const batch of inputLines(process.stdin, LINE_PIECE, stopped))
          yield batch.map(({ text, end }) => (end ? `${text}\n` : text));
      })();
  const stop = (): void => {
    process.stdin.destroy();
  };
  signal.addEventListener('abort', stop, { once: true });
  try {
    reading: for await (const pieces of input) {
      for (const data of pieces) {
        if (failure !== null || writer.destroyed || kernelGone) break reading;
        if (!writer.write(data)) await drainOrClose(writer);
      }
    }
  } finally {
    signal.removeEventListener('abort', stop);
    process.stdin.destroy();
  }
  if (!writer.destroyed) {
    writer.end();
    try {
      await finished(writer);
    } catch (err) {
      failure ??= err as Error;
    }
  }
  if (failure !== null) throw failure;
  return signal.aborted ? interruptExitCode() : Exit.OK;
}

/**
 * Resolves when the writer drains or closes, leaving no listener behind. A race of two once()s
 * left the loser's listeners on the writer at every wait: a large input piled them up, and Node
 * warned of a leak (MaxListenersExceededWarning) on standard error.
 */
function drainOrClose(writer: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      writer.off('drain', done);
      writer.off('close', done);
      resolve();
    };
    writer.on('drain', done);
    writer.on('close', done);
  });
}

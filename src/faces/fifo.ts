import { AnnouncedEvent } from '../client/call-events.js';
import type { Mailbox } from '../client/mailbox.js';
import { checkOptions, type OptionNames } from '../client/option-names.js';
import { badProcess, badSignal } from '../client/option-values.js';
import type { PostboxProcess } from '../client/process.js';
import { AbortedError, InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import { PIPE_BYTES, PipeReader, PipeWriter } from './pipe-end.js';

export { PipeReader, PipeWriter };

/**
 * Creates a FIFO (named pipe): a system-owned mailbox that unrelated processes open by name.
 * Readers see end of file when the last writer closes; unlinking the name does not disturb
 * ends already open. Unlike Linux, which discards them, bytes left unread when every end has
 * closed (a reader that died) stay in the FIFO for the next reader; `postbox rm` removes it.
 *
 * @example
 * ```ts
 * await mkfifo(proc, 'temp');
 * // As on Linux, opening the write end waits for a reader (`postbox fifo read temp`).
 * const w = await openFifo(proc, 'temp', 'w');
 * w.end('hello\n');
 * ```
 */
export async function mkfifo(proc: PostboxProcess, name: string, mode = 0o666): Promise<void> {
  const badProc = badProcess(proc, 'mkfifo()');
  if (badProc !== null) throw badProc;
  checkName(name, 'mkfifo');
  // Bounded in bytes as a Linux FIFO is (its pipe buffer), so a writer waits for a slow reader.
  const mb = await proc.createMailbox(name, {
    endOnLastWriter: true,
    system: true,
    mode,
    role: 'none',
    maxBytes: PIPE_BYTES,
  });
  mb.close();
}

/** Options of {@link openFifo}. */
export interface OpenFifoOptions {
  /** Stop waiting for a reader (`'w'`): the open fails with ECANCELED. */
  signal?: AbortSignal | undefined;
}

const OPEN_FIFO_OPTIONS: OptionNames<OpenFifoOptions> = { signal: true };

/**
 * Opens a FIFO's read end (`'r'`) or write end (`'w'`). As with open(2) on a FIFO, the write end
 * waits until a reader has the FIFO open (the read end needs no wait: it sees end of file only
 * once a writer has come and gone).
 *
 * @example
 * ```ts
 * const w = await openFifo(proc, 'temp', 'w', { signal: AbortSignal.timeout(5000) }); // waits for a reader
 * w.end('hello\n');
 * ```
 */
export async function openFifo(
  proc: PostboxProcess,
  name: string,
  mode: 'r',
  options?: OpenFifoOptions,
): Promise<PipeReader>;
export async function openFifo(
  proc: PostboxProcess,
  name: string,
  mode: 'w',
  options?: OpenFifoOptions,
): Promise<PipeWriter>;
export async function openFifo(
  proc: PostboxProcess,
  name: string,
  mode: 'r' | 'w',
  options: OpenFifoOptions = {},
): Promise<PipeReader | PipeWriter> {
  const badProc = badProcess(proc, 'openFifo()');
  if (badProc !== null) throw badProc;
  checkName(name, 'openFifo');
  checkOptions(options, OPEN_FIFO_OPTIONS, 'openFifo()');
  if (mode !== 'r' && mode !== 'w')
    throw new InvalidArgumentError(`openFifo: mode must be 'r' or 'w', not ${JSON.stringify(mode)}`);
  const badSig = badSignal(options.signal, 'openFifo()');
  if (badSig !== null) throw badSig;
  const mb = await proc.openMailbox(name, { role: mode === 'r' ? 'read' : 'write' });
  if (!mb.info.endOnLastWriter) {
    mb.close();
    throw new InvalidArgumentError(`openFifo: '${name}' is a mailbox but not a FIFO (make one with mkfifo)`);
  }
  if (mode === 'r') return new PipeReader(mb);
  try {
    await waitForReader(proc, mb, options.signal);
  } catch (err) {
    mb.close();
    throw err;
  }
  return new PipeWriter(mb);
}

/**
 * Waits until a reader has the FIFO open, as open(2) for writing does; ECANCELED if `signal`
 * aborts first. Bytes written with nobody reading would otherwise sit in the FIFO for whoever
 * opens it next. The kernel tells the writer with one event when a reader opens.
 *
 * `beyond` counts readers the caller knows of already (its own read handle): it waits for more
 * than that many, or for the next reader to open.
 *
 * @example
 * ```ts
 * const w = await proc.openMailbox('jobs.fifo', { role: 'write' });
 * await waitForReader(proc, w, AbortSignal.timeout(5000));
 * ```
 */
export async function waitForReader(
  proc: PostboxProcess,
  fifo: Mailbox,
  signal?: AbortSignal,
  beyond = 0,
): Promise<void> {
  const label = fifo.info.name === null ? `#${fifo.id}` : `'${fifo.info.name}'`;
  const aborted = (): AbortedError =>
    new AbortedError(`stopped waiting for a reader of FIFO ${label}`, {}, { cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  const conn = proc.conn;
  // The event can come in the same read as the answer (a reader opened in the same kernel turn):
  // the connection registers its handler as the answer is read.
  const told = new AnnouncedEvent();
  const r = await conn.call<{ readers?: number; event?: number }>(
    'awaitReader',
    beyond === 0 ? { id: fifo.id } : { id: fifo.id, beyond },
    { idOf: (result) => result.event, handler: told.handler },
  );
  const id = r.event;
  if (id === undefined) return;
  const event =
    told.arrived ??
    (await new Promise<Record<string, unknown>>((resolve, reject) => {
      const onClose = (err: Error): void => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        conn.onClose.delete(onClose);
        conn.offEvent(id);
        conn.call('awaitReader', { id: fifo.id, event: id, on: false }).catch(() => {});
        reject(aborted());
      };
      // Aborted while the kernel's answer was on its way: a listener added now is never called,
      // and the open waited for good, the kernel holding the FIFO, the handle and the wait.
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      conn.whenEnded(onClose);
      told.onArrival((e) => {
        conn.onClose.delete(onClose);
        signal?.removeEventListener('abort', onAbort);
        resolve(e);
      });
    }));
  // Removed while waiting: the error is the one any call on it now gets.
  if (event.event === 'removed') await proc.stat(fifo.id);
}

/** Removes a FIFO's name; ends already open keep working, and it goes when the last closes. */
export async function unlinkFifo(proc: PostboxProcess, name: string): Promise<void> {
  checkName(name, 'unlinkFifo');
  const mb: Mailbox = await proc.openMailbox(name, { role: 'none' });
  try {
    // Only a FIFO: an ordinary mailbox of the same name is not this call's to remove.
    if (!mb.info.endOnLastWriter)
      throw new NotFoundError(`unlinkFifo: '${name}' is a mailbox but not a FIFO`, { mailbox: name });
    await mb.unlink();
  } finally {
    mb.close();
  }
}

/** A FIFO has a name: without one, mkfifo would make a nameless FIFO nobody could open. */
function checkName(name: unknown, fn: string): void {
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidArgumentError(`${fn}: a FIFO is named by a non-empty string, not ${String(name)}`);
}

import type { Mailbox } from '../client/mailbox.js';
import type { PostboxProcess } from '../client/process.js';
import { InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import { PipeReader, PipeWriter } from './pipe-end.js';

/**
 * Creates a FIFO (named pipe): a system-owned mailbox that unrelated processes open by name.
 * Readers see end of file when the last writer closes; unlinking the name does not disturb
 * ends already open.
 *
 * @example
 * ```ts
 * await mkfifo(proc, 'temp');
 * const w = await openFifo(proc, 'temp', 'w');
 * w.end('hello\n');
 * ```
 */
export async function mkfifo(proc: PostboxProcess, name: string, mode = 0o666): Promise<void> {
  checkName(name, 'mkfifo');
  const mb = await proc.createMailbox(name, { endOnLastWriter: true, system: true, mode, role: 'none' });
  mb.close();
}

/** Opens a FIFO's read end (`'r'`) or write end (`'w'`). */
export async function openFifo(proc: PostboxProcess, name: string, mode: 'r'): Promise<PipeReader>;
export async function openFifo(proc: PostboxProcess, name: string, mode: 'w'): Promise<PipeWriter>;
export async function openFifo(
  proc: PostboxProcess,
  name: string,
  mode: 'r' | 'w',
): Promise<PipeReader | PipeWriter> {
  checkName(name, 'openFifo');
  if (mode !== 'r' && mode !== 'w')
    throw new InvalidArgumentError(`openFifo: mode must be 'r' or 'w', not ${JSON.stringify(mode)}`);
  const mb = await proc.openMailbox(name, { role: mode === 'r' ? 'read' : 'write' });
  if (!mb.info.endOnLastWriter) {
    mb.close();
    throw new InvalidArgumentError(`openFifo: '${name}' is a mailbox but not a FIFO (make one with mkfifo)`);
  }
  return mode === 'r' ? new PipeReader(mb) : new PipeWriter(mb);
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

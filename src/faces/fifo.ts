import type { PostboxProcess } from '../client/process.js';
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
  const mb = await proc.openMailbox(name, { role: mode === 'r' ? 'read' : 'write' });
  return mode === 'r' ? new PipeReader(mb) : new PipeWriter(mb);
}

/** Removes a FIFO's name; ends already open keep working, and it goes when the last closes. */
export async function unlinkFifo(proc: PostboxProcess, name: string): Promise<void> {
  const mb = await proc.openMailbox(name, { role: 'none' });
  try {
    await mb.unlink();
  } finally {
    mb.close();
  }
}

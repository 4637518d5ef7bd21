/**
 * What a program did in its last turn reaches the kernel when it exits in that turn.
 *
 * A connection gathers the frames of a turn (sends, takes, `close()`'s goodbye) and writes them
 * at its end, from `setImmediate`. `process.exit()` in that turn, or an uncaught exception,
 * ends the program before then, and a `send()` it made without awaiting was silently never
 * sent: the loss users of Node's IPC, node-ipc and Bun report (a message sent just before exit).
 * Node emits `'exit'` in both cases (in a worker thread, for the worker's own `process.exit()`),
 * and a socket write made then is tried at once, so the gathered frames are written there. They
 * go as far as the socket takes them without waiting (its buffer, some hundreds of KB on a Unix
 * socket): a program that sent more than that in its last turn still loses the rest, and a kill
 * by a signal or `worker.terminate()` emits no `'exit'` at all.
 *
 * One listener for all of a program's connections, there only while one is open: a module that
 * adds listeners when imported, or one per connection (past ten, Node warns of a leak), would be
 * a side effect of using Postbox that a program did not ask for.
 */

/** A connection whose gathered output can be written now. */
export interface ExitFlushable {
  flushIfScheduled(): void;
}

const open = new Set<ExitFlushable>();

function writeGathered(): void {
  for (const conn of open) {
    try {
      conn.flushIfScheduled();
    } catch {
      // A socket that cannot take it now is past helping; the others still may be.
    }
  }
}

/** Writes conn's gathered output if the program exits before its turn's flush. */
export function flushAtExit(conn: ExitFlushable): void {
  if (open.size === 0) process.on('exit', writeGathered);
  open.add(conn);
}

/** Forgets conn: it has ended. */
export function noFlushAtExit(conn: ExitFlushable): void {
  if (open.delete(conn) && open.size === 0) process.off('exit', writeGathered);
}

import { chmodSync, linkSync, lstatSync, renameSync, type Stats, unlinkSync } from 'node:fs';
import { createConnection, type Server } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { socketPathTooLong } from '../transport/address.js';
import { LISTEN_BACKLOG } from './limits.js';
import { KernelRunningError, SocketPathTakenError } from './socket-errors.js';

/**
 * How many times a claim looks again after the path changed under it (a stale file another
 * starting kernel removed first): each turn either ends or saw another kernel act.
 */
const CLAIM_TURNS = 20;

/** The kernel's hold on its socket path, from {@link claimSocketPath}. */
export interface SocketClaim {
  /** Removes the socket file if it is still this kernel's (never one a later kernel put there). */
  release(): void;
  /** Whether a dead kernel's socket was at the path and was removed to take its place. */
  readonly replacedDead: boolean;
}

/**
 * Makes `server` listen at `socketPath`, or refuses because a kernel answers there, safely when
 * kernels start at once: exactly one of them gets the path, and a live kernel's socket is never
 * removed. The server listens first on a name of its own in the same folder (mode 0600 before
 * anyone can reach it) and is then hard-linked to `socketPath`: a link never replaces a file, and
 * a socket found at the path is always one that was listening when it got there, so one that
 * does not answer is a dead kernel's. Binding at the path itself left a moment between bind and
 * listen in which a second kernel took the new socket for a stale one, removed it and ran too,
 * with no socket file at all, or told the operator only `EADDRINUSE`.
 *
 * @example
 * ```ts
 * const claim = await claimSocketPath(createServer(), '/tmp/pb.sock');
 * claim.release(); // at shutdown
 * ```
 */
export async function claimSocketPath(server: Server, socketPath: string): Promise<SocketClaim> {
  // Windows' named pipes are no files: there is nothing to link, and the OS refuses a second listener.
  if (process.platform === 'win32') {
    await listen(server, socketPath);
    return { release() {}, replacedDead: false };
  }
  const own = ownName(socketPath);
  // Left by a kernel of this pid killed while it started (the pid is this process's now).
  if (statIfAny(own)?.isSocket() === true) unlinkQuietly(own);
  await listen(server, own);
  try {
    chmodSync(own, 0o600);
    const mine = lstatSync(own);
    const replacedDead = await linkIntoPlace(own, socketPath);
    // The server's own name goes; the socket stays reachable at the path (libuv's unlink of it at
    // close then finds nothing).
    unlinkSync(own);
    return {
      release() {
        const now = statIfAny(socketPath);
        if (now !== null && now.ino === mine.ino && now.dev === mine.dev) unlinkQuietly(socketPath);
      },
      replacedDead,
    };
  } catch (err) {
    server.close();
    unlinkQuietly(own);
    throw err;
  }
}

/**
 * Links `own` to `socketPath`, taking the place of a dead kernel's socket only; true when it
 * removed one.
 */
async function linkIntoPlace(own: string, socketPath: string): Promise<boolean> {
  let replacedDead = false;
  for (let turn = 0; turn < CLAIM_TURNS; turn++) {
    try {
      linkSync(own, socketPath);
      return replacedDead;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const found = statIfAny(socketPath);
    if (found === null) continue; // removed meanwhile: try again
    // Only a socket left by a kernel that died may be removed; anything else is someone's file.
    if (!found.isSocket()) throw new SocketPathTakenError(socketPath);
    if ((await probe(socketPath)) !== 'dead') throw new KernelRunningError(socketPath);
    // Moved aside under a name of this kernel's before it is removed: another kernel starting now
    // may have put its live socket at the path since the probe, and an unlink would take that.
    const aside = `${own}~`;
    try {
      renameSync(socketPath, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    if ((await probe(aside)) === 'dead') {
      unlinkQuietly(aside);
      replacedDead = true;
      continue;
    }
    // It was the other kernel's, and it answers: back where its processes look for it.
    try {
      linkSync(aside, socketPath);
    } finally {
      unlinkQuietly(aside);
    }
    throw new KernelRunningError(socketPath);
  }
  throw new KernelRunningError(socketPath);
}

/**
 * The name the server listens on before it is linked to the path: in the same folder (a hard
 * link cannot cross file systems), unique to this OS process, and no longer than the path when
 * the path is near the OS's limit.
 */
function ownName(socketPath: string): string {
  const dir = dirname(socketPath);
  const pid = process.pid.toString(36);
  const named = join(dir, `.${basename(socketPath)}.${pid}`);
  if (socketPathTooLong(named) === null) return named;
  return join(dir, `.${pid}`);
}

/**
 * Whether anything answers at `path`: `'dead'` only when the OS says no one listens there
 * (ECONNREFUSED, or gone); any other failure (EAGAIN from a full backlog, EACCES) may be a live
 * kernel's, which is never taken over.
 */
function probe(path: string): Promise<'live' | 'dead' | 'unsure'> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve('live');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'dead' : 'unsure');
    });
  });
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    server.listen({ path, backlog: LISTEN_BACKLOG });
  });
}

function statIfAny(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

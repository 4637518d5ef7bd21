import { lstatSync, mkdirSync, type Stats, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { InvalidArgumentError } from '../protocol/errors.js';

/**
 * Where the kernel listens and clients look, by one rule for both: `--socket` / `socket` option,
 * else `POSTBOX_SOCKET`, else `$XDG_RUNTIME_DIR/postbox/kernel.sock`, else
 * `<tmpdir>/postbox-<user>/kernel.sock`. The folder is created with mode 0700 so other users
 * cannot reach the socket.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POSTBOX_SOCKET) return env.POSTBOX_SOCKET;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'postbox', 'kernel.sock');
  return sharedTmpSocketPath();
}

/** `<tmpdir>/postbox-<user>/kernel.sock`: the last choice of {@link defaultSocketPath}. */
function sharedTmpSocketPath(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = String(process.getuid?.() ?? 'user');
  }
  return join(tmpdir(), `postbox-${user}`, 'kernel.sock');
}

/**
 * Why a process should not trust the kernel at `socketPath`, or null. Only the path in the
 * shared temporary folder is judged: a name anyone can guess in a folder anyone can write to,
 * so another user may have made `postbox-<user>` first, or put a socket of theirs in it, and
 * would then be sent everything this user's processes send. (The kernel refuses such a folder
 * and would not start there; a client did not look and joined whoever listened.) A path the user
 * chose, or one under `$XDG_RUNTIME_DIR`, is theirs to judge: a kernel shared between users on
 * purpose lives in another user's folder.
 */
export function untrustedDefaultSocket(socketPath: string): string | null {
  const uid = process.getuid?.();
  if (uid === undefined || socketPath !== sharedTmpSocketPath()) return null;
  const dir = dirname(socketPath);
  const folder = statIfAny(dir, statSync);
  if (folder === null) return null; // no kernel there: the join says so
  const why =
    folder.uid !== uid && folder.uid !== 0
      ? `the folder ${dir} belongs to another user (uid ${folder.uid})`
      : (folder.mode & 0o002) !== 0 && (folder.mode & 0o1000) === 0
        ? `the folder ${dir} may be written by any user`
        : null;
  const socket = why === null ? statIfAny(socketPath, lstatSync) : null;
  const socketWhy =
    socket !== null && socket.uid !== uid && socket.uid !== 0
      ? `the socket ${socketPath} belongs to another user (uid ${socket.uid})`
      : null;
  const found = why ?? socketWhy;
  if (found === null) return null;
  return `${found}: a kernel there may not be yours, and would be sent what this process sends; remove it, or use a socket of your own (--socket PATH, $POSTBOX_SOCKET)`;
}

function statIfAny(path: string, stat: (p: string) => Stats): Stats | null {
  try {
    return stat(path);
  } catch {
    return null;
  }
}

/**
 * The longest Unix socket path the OS takes, in bytes: `sun_path` holds 108 bytes on Linux and
 * 104 on macOS and the BSDs, the terminating NUL included.
 */
export const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/**
 * Why `path` cannot be a Unix socket's, or null if it can. Node does not refuse a longer path: it
 * cuts it to fit (nodejs/node#13670), so a kernel would listen, and a client look, at another
 * path than the one asked for, and the kernel then failed on a file that was not there.
 */
export function socketPathTooLong(path: string): string | null {
  // Windows has named pipes, whose names are not held to sun_path.
  if (process.platform === 'win32') return null;
  const bytes = Buffer.byteLength(path);
  if (bytes <= MAX_SOCKET_PATH_BYTES) return null;
  return `the socket path ${path} is ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES} a Unix socket path may have; choose a shorter one (--socket PATH, $POSTBOX_SOCKET)`;
}

/** Creates the socket's folder, private to this user, if missing. */
export function ensureSocketDir(socketPath: string): void {
  const dir = dirname(socketPath);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
}

/** A parsed `tcp://HOST:PORT` address. */
export interface TcpAddress {
  host: string;
  port: number;
}

/**
 * Parses `tcp://HOST:PORT` (port 0 picks a free port). Anything else is EINVAL, as every bad
 * argument is: `startKernel({ listen })` passed on a plain TypeError.
 */
export function parseTcpUrl(url: string): TcpAddress {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(url);
  if (m === null) throw new InvalidArgumentError(`'${url}' is not a tcp://HOST:PORT address`);
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(`port ${port} in '${url}' is out of range`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * The `tcp://HOST:PORT` that {@link parseTcpUrl} reads back: an IPv6 address goes in brackets,
 * since its own colons would hide where the port starts (`tcp://::1:7420` is refused).
 */
export function formatTcpUrl(addr: TcpAddress): string {
  return `tcp://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
}

/**
 * A TCP token as both ends compare it: without the line end a text file gives it. The kernel
 * writes its token file as a line, so the file's contents as a program reads them
 * (`readFileSync(file, 'utf8')`) end with a newline that is not part of the token; taken as
 * part of it, the right token was refused as a wrong one.
 */
export function withoutLineEnd(token: string): string {
  return token.replace(/\r?\n$/, '');
}

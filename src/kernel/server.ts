import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { InvalidArgumentError } from '../protocol/errors.js';
import {
  defaultSocketPath,
  ensureSocketDir,
  parseTcpUrl,
  socketPathTooLong,
  withoutLineEnd,
} from '../transport/address.js';
import { Kernel } from './kernel.js';
import { type KernelLimits, LISTEN_BACKLOG } from './limits.js';
import { claimSocketPath } from './socket-claim.js';
import {
  SocketFolderNotPrivateError,
  SocketPathIsFolderError,
  SocketPathTooLongError,
} from './socket-errors.js';

export {
  KernelRunningError,
  KernelSocketError,
  SocketFolderNotPrivateError,
  SocketPathIsFolderError,
  SocketPathTakenError,
  SocketPathTooLongError,
} from './socket-errors.js';

/** Options of {@link startKernel}. */
export interface StartKernelOptions {
  /** Unix socket path; default by the rule of {@link defaultSocketPath}. */
  socket?: string | undefined;
  /** TCP listeners, `tcp://HOST:PORT`. */
  listen?: string[] | undefined;
  /** Token TCP processes must present; default `POSTBOX_TOKEN`, else a new random one saved to a file. */
  token?: string | undefined;
  limits?: Partial<KernelLimits> | undefined;
  log?: ((line: string) => void) | undefined;
}

/** A running kernel and its listeners. */
export interface RunningKernel {
  readonly kernel: Kernel;
  readonly socketPath: string;
  /** Bound TCP addresses (with the real port when 0 was asked). */
  readonly tcp: { host: string; port: number }[];
  /** Where the TCP token was written, if the kernel made one. */
  readonly tokenFile: string | null;
  readonly token: string | null;
  /** Shuts down: waiters get ESHUTDOWN, connections close, the socket file is removed. */
  close(): Promise<void>;
  /**
   * Shuts the kernel down when an `await using` block ends, as `close()` does, so a program or
   * test that throws still removes its socket and token files.
   *
   * @example
   * ```ts
   * import { startKernel } from 'postbox/kernel';
   * await using k = await startKernel({ socket: '/tmp/pb.sock' });
   * // … connect({ socket: '/tmp/pb.sock' }) …
   * ```
   */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a kernel in this process: listens on the Unix socket (and TCP if asked). Refuses to
 * start over a live kernel; replaces a stale socket file.
 *
 * @example
 * ```ts
 * import { startKernel } from 'postbox/kernel';
 * const k = await startKernel({ socket: '/tmp/pb.sock' });
 * // … connect({ socket: '/tmp/pb.sock' }) from anywhere …
 * await k.close();
 * ```
 */
export async function startKernel(options: StartKernelOptions = {}): Promise<RunningKernel> {
  const socketPath = options.socket ?? defaultSocketPath();
  const tooLong = socketPathTooLong(socketPath);
  if (tooLong !== null) throw new SocketPathTooLongError(socketPath, tooLong);
  // Before the folder is made: `--socket /run/pb/` would make /run and fail to listen with EACCES.
  if (socketPath.endsWith('/')) throw new SocketPathIsFolderError(socketPath);
  ensureSocketDir(socketPath);
  checkSocketFolder(socketPath);
  const tcpUrls = options.listen ?? [];
  // Checked before the socket is claimed, as the other refusals are: nothing is left behind.
  // A single string was read letter by letter ("'t' is not a tcp://HOST:PORT address").
  if (!Array.isArray(tcpUrls))
    throw new InvalidArgumentError(
      `startKernel(): listen must be an array of tcp://HOST:PORT addresses, not ${typeof tcpUrls === 'string' ? `the string '${tcpUrls}'` : String(tcpUrls)}`,
    );
  const tcpAddrs = tcpUrls.map((url) => {
    try {
      return parseTcpUrl(url);
    } catch (err) {
      throw new InvalidArgumentError(`startKernel(): listen: ${(err as Error).message}`, {}, { cause: err });
    }
  });
  let token: string | null = null;
  if (tcpUrls.length > 0) {
    token = options.token ?? process.env.POSTBOX_TOKEN ?? null;
    // Read from a file, a token ends with a newline the clients drop too (withoutLineEnd).
    if (token !== null) token = withoutLineEnd(token);
    // An empty token would let in every TCP client that sends none: no authentication at all.
    if (token === '') throw new EmptyTokenError(options.token !== undefined ? 'the token' : 'POSTBOX_TOKEN');
  }
  const kernelOptions: ConstructorParameters<typeof Kernel>[0] = {};
  if (options.limits !== undefined) kernelOptions.limits = options.limits;
  const log = options.log;
  if (log !== undefined) kernelOptions.log = log;

  const servers: Server[] = [];
  // The kernel is made once the path is this one's (in the same turn: no connection comes first).
  let kernel: Kernel | null = null;
  const accept = (socket: Socket, transport: 'unix' | 'tcp'): void => {
    if (kernel === null) socket.destroy();
    else kernel.accept(socket, transport);
  };
  // Paused until the kernel takes each connection over with reads of its own (readIntoArena).
  const unix = createServer({ pauseOnConnect: true }, (socket) => accept(socket, 'unix'));
  // The socket path is this kernel's before anything else is done in its name: a kernel started
  // at the same moment that loses it must not have written the token file over the winner's.
  const claim = await claimSocketPath(unix, socketPath);
  // Said, because the operator may be looking for why the kernel before this one stopped.
  if (claim.replacedDead)
    log?.(`removed the socket a kernel that is no longer running left at ${socketPath}`);
  servers.push(unix);
  let tokenFile: string | null = null;
  const tcp: { host: string; port: number }[] = [];
  // From here a failure closes what listens: a kernel that did not start must not keep its
  // process alive with a listener nobody will ever close.
  try {
    if (tcpUrls.length > 0 && token === null) {
      token = randomBytes(24).toString('base64url');
      tokenFile = tokenFileFor(socketPath);
      writeTokenFile(tokenFile, token);
    }
    if (token !== null) kernelOptions.token = token;
    kernel = new Kernel(kernelOptions);
    for (const addr of tcpAddrs) {
      const server = createServer({ pauseOnConnect: true }, (socket) => accept(socket, 'tcp'));
      await listen(server, () =>
        server.listen({ port: addr.port, host: addr.host, backlog: LISTEN_BACKLOG }),
      );
      servers.push(server);
      const bound = server.address();
      if (bound !== null && typeof bound === 'object') tcp.push({ host: addr.host, port: bound.port });
    }
  } catch (err) {
    claim.release();
    for (const s of servers) s.close();
    // A kernel that did not start leaves nothing behind: no socket, no token to find.
    removeTokenFile(tokenFile, token);
    throw err;
  }
  const running = kernel;

  let closed: Promise<void> | null = null;
  const handle: RunningKernel = {
    kernel: running,
    socketPath,
    tcp,
    tokenFile,
    token,
    [Symbol.asyncDispose]: () => handle.close(),
    close() {
      closed ??= (async () => {
        // The listeners no longer count connections (the kernel took them over), so their
        // close does not wait for them: wait here until every process's socket has closed.
        // The path goes first: a process that looks for a kernel now finds none, not one that is
        // going, and a kernel started next takes the path without having to find this one dead.
        claim.release();
        const sockets = [...running.connections].map((p) => p.socket).filter((s) => !s.closed);
        const socketsClosed = sockets.map(
          (s) => new Promise<void>((resolve) => s.once('close', () => resolve())),
        );
        running.shutdown();
        // A peer that never reads would hold its connection half-closed for good.
        const timer = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 1000);
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        await Promise.all(socketsClosed);
        clearTimeout(timer);
        removeTokenFile(tokenFile, token);
      })();
      return closed;
    },
  };
  return handle;
}

function listen(server: Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    start();
  });
}

/**
 * The token file of the kernel on `socketPath`: beside it, named after it (`kernel.sock` →
 * `kernel.token`), so kernels whose sockets share a folder each have their own.
 */
export function tokenFileFor(socketPath: string): string {
  return join(dirname(socketPath), `${basename(socketPath).replace(/\.sock$/, '')}.token`);
}

/**
 * Writes the token file afresh, readable only by this user. Whatever is at the path (the file of a
 * kernel that died) is removed first, and the file is made with O_EXCL, which follows no symlink:
 * a symlink planted there, in a folder others may write to such as /tmp, had the token written
 * through it over the file it pointed to, and a file someone else made kept their mode.
 */
function writeTokenFile(file: string, token: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  // The mode given at creation is narrowed by the umask, never widened: this makes it exactly 0600.
  chmodSync(file, 0o600);
}

/** Removes the token file this kernel wrote, unless another kernel has written its own there since. */
function removeTokenFile(file: string | null, token: string | null): void {
  if (file === null) return;
  try {
    if (readFileSync(file, 'utf8').trim() === token) unlinkSync(file);
  } catch {
    // Already gone.
  }
}

/**
 * Refuses a socket folder that another user controls: one who may write to it can remove the
 * kernel's socket and listen there in its place, and every client would then talk to them. A
 * folder made by someone else before the kernel (`<tmp>/postbox-<user>` made by another user
 * with mode 0777) was used as it was. Root's folders and sticky ones such as /tmp are fine:
 * there no one else may remove the kernel's socket.
 */
function checkSocketFolder(socketPath: string): void {
  const uid = process.getuid?.();
  if (uid === undefined) return; // Windows: named pipes, no folder
  const dir = dirname(socketPath);
  const st = statSync(dir);
  const sticky = (st.mode & 0o1000) !== 0;
  if (st.uid !== uid && st.uid !== 0)
    throw new SocketFolderNotPrivateError(dir, `belongs to another user (uid ${st.uid})`);
  if ((st.mode & 0o002) !== 0 && !sticky)
    throw new SocketFolderNotPrivateError(dir, 'may be written by any user and is not sticky');
}

/** A TCP token that is empty: every client would be let in (EINVAL). */
export class EmptyTokenError extends InvalidArgumentError {
  constructor(source: string) {
    super(
      `${source} is empty, which would let any TCP client in; set a token, or unset POSTBOX_TOKEN to have one made`,
    );
  }
}

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { defaultSocketPath, ensureSocketDir, parseTcpUrl } from '../transport/address.js';
import { Kernel } from './kernel.js';
import type { KernelLimits } from './limits.js';

/** Options of {@link startKernel}. */
export interface StartKernelOptions {
  /** Unix socket path; default by the rule of {@link defaultSocketPath}. */
  socket?: string;
  /** TCP listeners, `tcp://HOST:PORT`. */
  listen?: string[];
  /** Token TCP processes must present; default `POSTBOX_TOKEN`, else a new random one saved to a file. */
  token?: string;
  limits?: Partial<KernelLimits>;
  log?: (line: string) => void;
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
  ensureSocketDir(socketPath);
  await clearStaleSocket(socketPath);
  const tcpUrls = options.listen ?? [];
  let token: string | null = null;
  let tokenFile: string | null = null;
  if (tcpUrls.length > 0) {
    token = options.token ?? process.env.POSTBOX_TOKEN ?? null;
    if (token === null) {
      token = randomBytes(24).toString('base64url');
      tokenFile = join(dirname(socketPath), 'kernel.token');
      writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
      chmodSync(tokenFile, 0o600);
    }
  }
  const kernelOptions: ConstructorParameters<typeof Kernel>[0] = {};
  if (options.limits !== undefined) kernelOptions.limits = options.limits;
  if (token !== null) kernelOptions.token = token;
  if (options.log !== undefined) kernelOptions.log = options.log;
  const kernel = new Kernel(kernelOptions);

  const servers: Server[] = [];
  // Paused until the kernel takes each connection over with reads of its own (readIntoArena).
  const unix = createServer({ pauseOnConnect: true }, (socket) => kernel.accept(socket, 'unix'));
  await listen(unix, () => unix.listen(socketPath));
  chmodSync(socketPath, 0o600);
  servers.push(unix);
  const tcp: { host: string; port: number }[] = [];
  try {
    for (const url of tcpUrls) {
      const addr = parseTcpUrl(url);
      const server = createServer({ pauseOnConnect: true }, (socket) => kernel.accept(socket, 'tcp'));
      await listen(server, () => server.listen(addr.port, addr.host));
      servers.push(server);
      const bound = server.address();
      if (bound !== null && typeof bound === 'object') tcp.push({ host: addr.host, port: bound.port });
    }
  } catch (err) {
    for (const s of servers) s.close();
    // A kernel that did not start leaves nothing behind: no socket, no token to find.
    if (tokenFile !== null && existsSync(tokenFile)) unlinkSync(tokenFile);
    throw err;
  }

  let closed: Promise<void> | null = null;
  return {
    kernel,
    socketPath,
    tcp,
    tokenFile,
    token,
    close() {
      closed ??= (async () => {
        // The listeners no longer count connections (the kernel took them over), so their
        // close does not wait for them: wait here until every process's socket has closed.
        const sockets = [...kernel.connections].map((p) => p.socket).filter((s) => !s.closed);
        const socketsClosed = sockets.map(
          (s) => new Promise<void>((resolve) => s.once('close', () => resolve())),
        );
        kernel.shutdown();
        // A peer that never reads would hold its connection half-closed for good.
        const timer = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, 1000);
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
        await Promise.all(socketsClosed);
        clearTimeout(timer);
        if (tokenFile !== null && existsSync(tokenFile)) unlinkSync(tokenFile);
      })();
      return closed;
    },
  };
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

/** A socket file nobody answers on is stale and removed; one with a live kernel is an error. */
async function clearStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new KernelRunningError(path);
  unlinkSync(path);
}

/** Another kernel already answers on the socket. */
export class KernelRunningError extends Error {
  readonly code = 'EADDRINUSE';
  constructor(readonly socketPath: string) {
    super(
      `a kernel is already running on ${socketPath}; stop it first, or start this one with --socket PATH`,
    );
  }
}

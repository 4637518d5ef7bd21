import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';
import { defaultLimits, type KernelLimits } from '../kernel/limits.js';
import {
  EmptyTokenError,
  KernelRunningError,
  SocketFolderNotPrivateError,
  SocketPathIsFolderError,
  SocketPathTakenError,
  SocketPathTooLongError,
  startKernel,
} from '../kernel/server.js';
import { MAX_HEARTBEAT_MS, MAX_MESSAGE_SIZE_LIMIT } from '../protocol/frame.js';
import { formatTcpUrl, parseTcpUrl } from '../transport/address.js';
import { joinDashedValues, parseBytes, parseInteger } from './common.js';
import { printDiagnostic } from './diagnostic.js';
import { exitCodesHelp } from './exit-codes.js';
import { UsageError } from './usage-error.js';

export const kernelHelp = `Usage: postbox kernel [options]

Starts the kernel: the daemon that owns processes and mailboxes. It listens on a Unix
socket (private to this user) and, with --listen, on TCP for processes on other machines.
SIGINT (Ctrl-C), SIGTERM or SIGHUP shuts it down (exit 0): every process is told (ESHUTDOWN),
and the socket and the token file it wrote are removed. A second signal ends it at once.

Options:
  --socket PATH              Unix socket path (default: $POSTBOX_SOCKET, else
                             $XDG_RUNTIME_DIR/postbox/kernel.sock, else <tmp>/postbox-<user>/kernel.sock)
  --listen tcp://HOST:PORT   also accept TCP processes (repeatable); they must present the token
                             ($POSTBOX_TOKEN, else a new one written to a file the kernel prints)
  --max-message-size BYTES   largest message (default ${defaultLimits.maxMessageSize})
  --max-mailbox-bytes BYTES  default byte limit of a mailbox (default ${defaultLimits.maxMailboxBytes})
  --max-total-bytes BYTES    bytes queued in all mailboxes together, waiting sends included (default ${defaultLimits.maxTotalBytes})
                             (BYTES may end in K, M or G, powers of 1024: 64K, 4M, 8G)
  --max-waiting-bytes BYTES  what one process's sends that wait (for room, a receiver or their
                             receipt) may hold; past it its sends that would wait fail (default a
                             quarter of --max-total-bytes: ${defaultLimits.maxWaitingBytes})
  --max-partial-bytes BYTES  room for large frames still arriving, all together; a process whose
                             frame finds none is not read until it does (default ${defaultLimits.maxPartialBytes})
  --max-mailboxes N          mailboxes at once (default ${defaultLimits.maxMailboxes})
  --max-processes N          connected processes at once (default ${defaultLimits.maxProcesses})
  --max-per-process N        open handles, monitors, waits for a reader and waiting receives of
                             one process, each (default ${defaultLimits.maxPerProcess})
  --heartbeat-ms MS          TCP heartbeat interval; silent for 3 intervals = terminated (default ${defaultLimits.heartbeatMs},
                             at most 2147483647, a timer's longest)
  --quiet                    print only where it listens (errors still go to standard error)
  -h, --help                 this help

Examples:
  postbox kernel
  postbox kernel --socket /tmp/pb.sock --listen tcp://0.0.0.0:7420
  postbox kernel --max-message-size 4M --max-total-bytes 8G

${exitCodesHelp}`;

/** Each limit's flag, and how its value is read: sizes like `postbox create`'s, counts as numbers. */
const limitFlags: Record<string, { key: keyof KernelLimits; bytes: boolean; max?: number }> = {
  'max-message-size': { key: 'maxMessageSize', bytes: true },
  'max-mailbox-bytes': { key: 'maxMailboxBytes', bytes: true },
  'max-total-bytes': { key: 'maxTotalBytes', bytes: true },
  'max-waiting-bytes': { key: 'maxWaitingBytes', bytes: true },
  'max-partial-bytes': { key: 'maxPartialBytes', bytes: true },
  'max-mailboxes': { key: 'maxMailboxes', bytes: false },
  'max-processes': { key: 'maxProcesses', bytes: false },
  'max-per-process': { key: 'maxPerProcess', bytes: false },
  'heartbeat-ms': { key: 'heartbeatMs', bytes: false, max: MAX_HEARTBEAT_MS },
};

/** Runs the kernel until SIGINT, SIGTERM or SIGHUP. */
export async function kernelCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    // A negative limit is refused by the number's own check, in one line, not by parseArgs.
    args: joinDashedValues(argv, Object.keys(limitFlags)),
    options: {
      socket: { type: 'string' },
      listen: { type: 'string', multiple: true },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(Object.keys(limitFlags).map((k) => [k, { type: 'string' as const }])),
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(kernelHelp);
    return 0;
  }
  if (values.socket === '') throw new UsageError('--socket needs a path, not an empty string');
  const limits: Partial<KernelLimits> = {};
  for (const [flag, { key, bytes, max }] of Object.entries(limitFlags)) {
    const v = (values as Record<string, string | undefined>)[flag];
    if (v !== undefined) limits[key] = bytes ? parseBytes(v, flag)! : parseInteger(v, flag, 1, max)!;
  }
  // 5G of --max-message-size was taken, and shown by `postbox limits`, though no frame can carry it.
  if (limits.maxMessageSize !== undefined && limits.maxMessageSize > MAX_MESSAGE_SIZE_LIMIT)
    throw new UsageError(
      `--max-message-size is at most ${MAX_MESSAGE_SIZE_LIMIT} bytes (just under 4G: a frame's length is 32 bits), not ${limits.maxMessageSize}`,
    );
  for (const url of values.listen ?? []) {
    try {
      parseTcpUrl(url);
    } catch (err) {
      throw new UsageError(`--listen: ${(err as Error).message}`);
    }
  }
  const quiet = values.quiet === true;
  const log = quiet ? undefined : (line: string) => printDiagnostic('kernel', line);
  let running: Awaited<ReturnType<typeof startKernel>>;
  try {
    running = await startKernel({
      ...(values.socket !== undefined ? { socket: values.socket } : {}),
      ...(values.listen !== undefined ? { listen: values.listen } : {}),
      limits,
      ...(log !== undefined ? { log } : {}),
    });
  } catch (err) {
    if (
      err instanceof KernelRunningError ||
      err instanceof SocketPathTakenError ||
      err instanceof SocketPathTooLongError ||
      err instanceof SocketPathIsFolderError ||
      err instanceof SocketFolderNotPrivateError ||
      err instanceof EmptyTokenError
    ) {
      printDiagnostic('kernel', err.message);
      return 1;
    }
    // The socket or the port could not be had (EADDRINUSE, EACCES, a folder that is not
    // there): one line that says which, as for every other error of the command line.
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
      printDiagnostic('kernel', `cannot listen: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
  // The signals are handled before the kernel says where it listens: a supervisor that stops it
  // as soon as it read that line must find it ready to shut down, not killed mid-start.
  const stopped = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: 'SIGINT' | 'SIGTERM' | 'SIGHUP'): void => {
      // A second signal is someone who will not wait for the shutdown (a peer that never reads
      // holds it up to a second): end now, as a shell would report the signal.
      if (stopping) process.exit(128 + osConstants.signals[signal]);
      stopping = true;
      if (!quiet) process.stdout.write(`postbox kernel: ${signal}, shutting down\n`);
      // The last line: a supervisor's log shows the shutdown finished, not only that it began.
      void running.close().then(() => {
        if (!quiet) process.stdout.write('postbox kernel: stopped\n');
        resolve(0);
      });
    };
    // SIGHUP too: the terminal it was started from closed, or a supervisor stops it so. By default
    // SIGHUP killed it where it stood, leaving its socket and token file behind, and its processes
    // were told only that the connection was lost.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  });
  process.stdout.write(`postbox kernel ${process.pid} listening on unix:${running.socketPath}\n`);
  // A line to copy into POSTBOX_URL or --url as it is: an IPv6 host in brackets.
  for (const t of running.tcp) process.stdout.write(`postbox kernel listening on ${formatTcpUrl(t)}\n`);
  if (running.tokenFile !== null)
    process.stdout.write(
      `postbox kernel: TCP token written to ${running.tokenFile} (readable only by you)\n`,
    );
  else if (running.token !== null)
    process.stdout.write('postbox kernel: TCP token taken from POSTBOX_TOKEN\n');
  return stopped;
}

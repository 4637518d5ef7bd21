// The bench's long-lived Postbox kernel. The NATS server is started once per bench run and
// serves every NATS row; the Postbox kernel is a daemon in the same way, so it is treated the
// same: one kernel (Unix socket and TCP loopback) serves the Postbox rows, with fresh client
// processes and fresh mailboxes in every run.
//
// A fresh Node kernel spends its first few million messages warming up: V8 compiles the hot path
// on helper threads (about 250 ms of CPU) and runs it slower until then, and every new kind of
// client connection costs a few deoptimizations more (docs/performance.md, "A kernel's first
// millions"). A daemon pays that once; so does the bench, before anything is timed: the warm-up
// moves messages through the kernel with the same client processes the rows use. The one-way
// section keeps a row with a fresh kernel per run, so the cold figure stays visible.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, removeDir, stop, tempDir } from './harness.js';
import { type RunningKernel, runPostboxPump } from './postbox.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export interface LaunchedKernel {
  child: Child;
  /** Its Unix socket path. */
  socket: string;
  /** tcp://HOST:PORT when asked to listen on TCP loopback too, else null. */
  tcp: string | null;
}

/**
 * How long a kernel may take to say it listens. It says so within a second even on a busy
 * machine; the limit is there because startSharedKernel runs outside any session's time limit,
 * so a kernel that never gets there would otherwise hang the whole bench.
 */
const LAUNCH_TIMEOUT_MS = 30_000;

/**
 * Starts `postbox kernel` on a socket in `dir` (and on TCP loopback with `withTcp`) and waits
 * until it listens, at most `timeoutMs`; a kernel that does not get there is stopped before this
 * throws, with what it waited for and the kernel's last stderr lines.
 */
export async function launchKernel(
  dir: string,
  env: NodeJS.ProcessEnv,
  withTcp: boolean,
  timeoutMs = LAUNCH_TIMEOUT_MS,
): Promise<LaunchedKernel> {
  const socket = join(dir, 'k.sock');
  const args = [CLI, 'kernel', '--socket', socket, '--quiet'];
  if (withTcp) args.push('--listen', 'tcp://127.0.0.1:0');
  // teeStderr: its stderr still shows as it comes, and its tail goes into the error below.
  const child = new Child('kernel', process.execPath, args, { env, teeStderr: true });
  let waitingFor = '"listening on unix:"';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const tail = child.stderr === '' ? 'nothing' : child.stderr.split('\n').slice(-3).join(' / ');
      reject(
        new Error(
          `the kernel did not say ${waitingFor} within ${timeoutMs / 1000} s (pid ${child.pid}, stopped); its stderr: ${tail}`,
        ),
      );
    }, timeoutMs);
  });
  const within = (what: string, match: (l: string) => boolean): Promise<string> => {
    waitingFor = `"${what}"`;
    const line = child.waitFor(waitingFor, match);
    // Once the timeout wins the race, stopping the kernel ends this wait with an error nobody
    // awaits any more: it must not become an unhandled rejection.
    line.catch(() => {});
    return Promise.race([line, timeout]);
  };
  try {
    await within('listening on unix:', (l) => l.includes('listening on unix:'));
    if (!withTcp) return { child, socket, tcp: null };
    const line = await within('listening on tcp://', (l) => l.includes('listening on tcp://'));
    return { child, socket, tcp: /listening on (tcp:\/\/\S+)/.exec(line)![1]! };
  } catch (err) {
    await stop([child.proc]);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export interface SharedKernel extends RunningKernel {
  /** Messages moved through it before the first timed run, and the time that took. */
  warmedBy: { messages: number; ms: number };
  stop(): Promise<void>;
}

/**
 * Starts a kernel listening on a Unix socket and TCP loopback, then moves `warmup` rounds of
 * `messages` 100-byte messages through it (alternating `send()` and `sendMany()` clients), untimed.
 */
export async function startSharedKernel(warmup = { rounds: 3, messages: 1_000_000 }): Promise<SharedKernel> {
  const dir = tempDir('postbox-bench-shared-');
  const env = { ...process.env, POSTBOX_TOKEN: randomBytes(16).toString('hex') };
  let launched: LaunchedKernel;
  try {
    launched = await launchKernel(dir, env, true);
  } catch (err) {
    removeDir(dir);
    throw err;
  }
  const { child, socket } = launched;
  const tcp = launched.tcp!;
  // Any end of the shared kernel during a run is a failure of that run, even a clean exit.
  const failed = child.exited.then((code): never => {
    throw new Error(
      `the shared kernel exited (code ${code})${child.stderr === '' ? '' : `: ${child.stderr}`}`,
    );
  });
  failed.catch(() => {});
  const kernel: SharedKernel = {
    socket,
    tcp,
    pid: child.pid,
    env,
    failed,
    warmedBy: { messages: 0, ms: 0 },
    stop: async () => {
      await stop([child.proc]);
      removeDir(dir);
    },
  };
  const t0 = performance.now();
  try {
    for (let i = 0; i < warmup.rounds; i++) {
      await runPostboxPump({
        messages: warmup.messages,
        size: 100,
        transport: 'unix',
        api: i % 2 === 0 ? 'each' : 'batch',
        window: 1024,
        prefetch: 4096,
        kernel,
      });
      kernel.warmedBy.messages += warmup.messages;
    }
  } catch (err) {
    await kernel.stop();
    throw err;
  }
  kernel.warmedBy.ms = performance.now() - t0;
  return kernel;
}

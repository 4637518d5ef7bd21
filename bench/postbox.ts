// The Postbox pump: a kernel, a receiver and a sender, each its own OS process, moving
// `messages` messages of `size` bytes one way through one mailbox. Comparable with runRawPump:
// same message count and size, and the figure is the receiver's, first message to last.

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { removeDir, spawnTracked, tempDir } from './harness.js';
import type { CpuMs, PumpApi, ReceiverResult, SenderResult, SendScheme } from './postbox-pump.js';
import type { PumpResult } from './pump.js';

export interface PostboxPumpOptions {
  messages: number;
  size: number;
  transport: 'unix' | 'tcp';
  /** Receiver's credit (kernel push-ahead); the kernel caps it at its maxCredit (16,384). */
  prefetch?: number;
  /** Mailbox capacity; default unbounded. */
  capacity?: number | 'unbounded';
  /** Have the receiver sample the mailbox's stat (peak count, blocked senders). */
  watch?: boolean;
  /** Client calls used (see PumpApi); default each. */
  api?: PumpApi;
  /** Most sends unacknowledged at once. */
  window?: number;
  /** With the checkpoint scheme: await every this many sends. */
  every?: number;
  scheme?: SendScheme;
  /** Run every process with --cpu-prof into this folder (and stop the kernel gracefully). */
  profileDir?: string;
  /** Extra node flags for every child (e.g. --perf-basic-prof for Linux perf). */
  nodeArgs?: string[];
  /** Told each child's role and pid as it starts (to attach a profiler, say). */
  onSpawn?: (role: 'kernel' | 'receiver' | 'sender', pid: number) => void;
  /**
   * A kernel already running (the bench's long-lived one, see shared-kernel.ts): the clients
   * connect to it instead of a kernel of their own, and its CPU is read over the run.
   */
  kernel?: RunningKernel;
  timeoutMs?: number;
}

/** A kernel started elsewhere: where to connect, its pid, the env with its token. */
export interface RunningKernel {
  /** Unix socket path. */
  socket: string;
  /** tcp://HOST:PORT. */
  tcp: string;
  pid: number;
  env: NodeJS.ProcessEnv;
  /** Rejects when the kernel ends. */
  failed: Promise<never>;
}

export interface PostboxPumpResult extends PumpResult {
  /** The sender's own time, first send to last acknowledgement. */
  senderMs: number;
  /** With `watch`: the most messages held and senders blocked, as sampled. */
  peak?: ReceiverResult['peak'];
  /** CPU time each process spent while the messages moved (kernel: from Linux /proc, else NaN). */
  cpu: { kernel: CpuMs; sender: CpuMs; receiver: CpuMs };
}

/** CPU time of a process so far, from /proc (Linux); NaN elsewhere. */
export async function processCpu(pid: number | undefined): Promise<CpuMs> {
  try {
    if (pid === undefined) throw new Error('no pid');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      user: (Number(fields[11]) * 1000) / CLOCK_TICKS,
      system: (Number(fields[12]) * 1000) / CLOCK_TICKS,
    };
  } catch {
    return { user: Number.NaN, system: Number.NaN };
  }
}
// sysconf(_SC_CLK_TCK) is 100 on every Linux Node supports.
const CLOCK_TICKS = 100;

// Resolved next to this file so it works from dist/bench/ without knowing the repo layout.
const PUMP = fileURLToPath(new URL('./postbox-pump.js', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** A child process whose stdout is read line by line. */
class Child {
  readonly proc: ChildProcess;
  private readonly lines: AsyncIterator<string>;
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.proc = spawnTracked(process.execPath, args, { env, stdin: 'ignore' });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
    this.exited = once(this.proc, 'exit').then(([code]) => code as number | null);
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The next stdout line that matches, skipping others; fails if the process ends first. */
  async waitFor(what: string, match: (line: string) => boolean): Promise<string> {
    for (;;) {
      const r = await this.lines.next();
      if (r.done) {
        const code = await this.exited;
        throw new Error(`${this.name} exited (code ${code}) before ${what} (see its stderr above)`);
      }
      if (match(r.value)) return r.value;
    }
  }

  /** Rejects if the process exits with an error; never resolves otherwise. */
  failure(): Promise<never> {
    return this.exited.then((code) => {
      if (code !== 0) throw new Error(`${this.name} exited with code ${code}`);
      return new Promise<never>(() => {});
    });
  }
}

/**
 * Starts a kernel, then a receiver (which creates the mailbox), then a sender; returns the
 * receiver's throughput. Every process and the temp folder are gone when it returns or throws.
 */
export async function runPostboxPump(opts: PostboxPumpOptions): Promise<PostboxPumpResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // Registered with the harness: removed on Ctrl-C too.
  const dir = tempDir('postbox-bench-');
  const socket = join(dir, 'k.sock');
  const token = randomBytes(16).toString('hex');
  const env = opts.kernel?.env ?? { ...process.env, POSTBOX_TOKEN: token };
  const prof = opts.profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`];
  const children: Child[] = [];
  const start = (name: string, args: string[], nameProfile?: string): Child => {
    const profArgs =
      prof.length > 0 && nameProfile !== undefined
        ? [...prof, `--cpu-prof-name=${nameProfile}-${process.pid}-${children.length}.cpuprofile`]
        : [];
    const child = new Child(name, [...(opts.nodeArgs ?? []), ...profArgs, ...args], env);
    children.push(child);
    if (child.proc.pid !== undefined)
      opts.onSpawn?.(name as 'kernel' | 'receiver' | 'sender', child.proc.pid);
    return child;
  };

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`postbox pump (${opts.transport}) timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });

  const run = async (): Promise<PostboxPumpResult> => {
    let address: string;
    let kernelPid: number | undefined;
    let kernelFailed: Promise<never>;
    let kernel: Child | null = null;
    if (opts.kernel !== undefined) {
      address = opts.transport === 'tcp' ? opts.kernel.tcp : opts.kernel.socket;
      kernelPid = opts.kernel.pid;
      kernelFailed = opts.kernel.failed;
    } else {
      const kernelArgs = [CLI, 'kernel', '--socket', socket, '--quiet'];
      if (opts.transport === 'tcp') kernelArgs.push('--listen', 'tcp://127.0.0.1:0');
      kernel = start('kernel', kernelArgs, 'kernel');
      address = socket;
      if (opts.transport === 'tcp') {
        const line = await kernel.waitFor('listening on tcp', (l) => l.includes('listening on tcp://'));
        address = /listening on (tcp:\/\/\S+)/.exec(line)![1]!;
      } else {
        await kernel.waitFor('listening', (l) => l.includes('listening on unix:'));
      }
      kernelPid = kernel.proc.pid;
      kernelFailed = kernel.failure();
    }

    const mailbox = `pump-${randomBytes(4).toString('hex')}`;
    const common = [address, mailbox, String(opts.messages), String(opts.size), '--api', opts.api ?? 'each'];
    const receiver = start(
      'receiver',
      [
        PUMP,
        'receiver',
        ...common,
        '--prefetch',
        String(opts.prefetch ?? 16384),
        '--capacity',
        String(opts.capacity ?? 'unbounded'),
        ...(opts.watch === true ? ['--watch'] : []),
      ],
      'receiver',
    );
    await Promise.race([receiver.waitFor('ready', (l) => l === 'ready'), kernelFailed]);

    const senderArgs = [
      PUMP,
      'sender',
      ...common,
      '--window',
      String(opts.window ?? 4096),
      '--every',
      String(opts.every ?? 256),
      '--scheme',
      opts.scheme ?? 'checkpoint',
    ];
    const kernelCpuBefore = await processCpu(kernelPid);
    const sender = start('sender', senderArgs, 'sender');
    const isJson = (l: string): boolean => l.startsWith('{');
    const [rLine, sLine] = await Promise.race([
      Promise.all([receiver.waitFor('its result', isJson), sender.waitFor('its result', isJson)]),
      kernelFailed,
      sender.failure(),
      receiver.failure(),
    ]);
    const kernelCpuAfter = await processCpu(kernelPid);
    const kernelCpu = {
      user: kernelCpuAfter.user - kernelCpuBefore.user,
      system: kernelCpuAfter.system - kernelCpuBefore.system,
    };
    const r = JSON.parse(rLine) as ReceiverResult;
    const s = JSON.parse(sLine) as SenderResult;
    if (r.received !== opts.messages) throw new Error(`receiver counted ${r.received}/${opts.messages}`);
    if (opts.profileDir !== undefined || opts.onSpawn !== undefined) {
      // Profiles are written on a clean exit only: let the clients finish, then stop the kernel.
      await Promise.all([receiver.exited, sender.exited]);
      if (kernel !== null) {
        kernel.proc.kill('SIGTERM');
        await kernel.exited;
      }
    }
    return {
      ms: r.ms,
      msgsPerSec: (r.received / r.ms) * 1000,
      senderMs: s.ms,
      cpu: { kernel: kernelCpu, sender: s.cpu, receiver: r.cpu },
      ...(r.peak !== undefined ? { peak: r.peak } : {}),
    };
  };

  try {
    return await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
    // Reap before returning so a dying process can't steal CPU from the next measured run.
    const alive = children.filter((c) => c.alive);
    for (const c of alive) c.proc.kill('SIGKILL');
    await Promise.all(alive.map((c) => c.exited));
    removeDir(dir);
  }
}

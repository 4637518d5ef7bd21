import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type PostboxProcess } from '../../src/client/mod.js';

/** The compiled command-line entry point. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** util-linux's `setpriv`, where there is one (CI installs it; see .ci/run). */
const SETPRIV: string | null =
  (process.env.PATH ?? '')
    .split(delimiter)
    .map((dir) => join(dir, 'setpriv'))
    .find((path) => existsSync(path)) ?? null;

/** A kernel running in its own OS process, for one test file. */
export interface TestKernel {
  readonly socket: string;
  /** `tcp://127.0.0.1:PORT` when started with tcp. */
  readonly tcpUrl: string | null;
  readonly token: string;
  readonly proc: ChildProcess;
  /** What the kernel wrote to stderr (its log). */
  readonly log: string[];
  /** Environment for child processes so they find this kernel. */
  readonly env: NodeJS.ProcessEnv;
  /** SIGTERM, wait for exit (SIGKILL after 5 s), remove the temp folder it made. Returns the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `postbox kernel` as a child process on a private socket (and TCP on a free loopback
 * port if asked), and resolves once it says where it listens.
 */
export async function startTestKernel(
  options: { tcp?: boolean; tcpPort?: number; args?: string[]; socket?: string; nofile?: number } = {},
): Promise<TestKernel> {
  // With `tcpPort`, TCP on that port (a kernel started again where its clients knew it).
  const tcp = options.tcp === true || options.tcpPort !== undefined;
  // With `socket`, the caller owns its folder (a kernel started again on the same path): stop()
  // leaves it.
  const dir = options.socket === undefined ? mkdtempSync(join(tmpdir(), 'pbt-')) : null;
  const socket = options.socket ?? join(dir!, 'k.sock');
  const token = 'test-token-0123456789';
  const args = [
    CLI,
    'kernel',
    '--socket',
    socket,
    ...(tcp ? ['--listen', `tcp://127.0.0.1:${options.tcpPort ?? 0}`] : []),
    ...(options.args ?? []),
  ];
  // With `nofile`, under that limit of open files (soft and hard, so Node cannot raise it).
  const limited =
    options.nofile === undefined
      ? [process.execPath, ...args]
      : ['prlimit', `--nofile=${options.nofile}:${options.nofile}`, '--', process.execPath, ...args];
  // A test process that dies before its after() hooks (a crash, a timeout's kill, a mutant that
  // hangs it) would leave its kernels running for good: the kernel is told SIGTERM when its
  // parent ends, and stops as an operator's SIGTERM stops it.
  const [command, ...commandArgs] =
    SETPRIV === null ? limited : [SETPRIV, '--pdeathsig', 'TERM', '--', ...limited];
  const proc = spawn(command!, commandArgs, {
    env: { ...process.env, POSTBOX_TOKEN: token, POSTBOX_SOCKET: socket },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (line) => log.push(line));
  let tcpUrl: string | null = null;
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    // Generous: on two cores beside other builds a node process can take over 10 s to start.
    // One that never listens is killed, not left running with its folder.
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      if (dir !== null) rmSync(dir, { recursive: true, force: true });
      reject(new Error(`kernel did not start in 30 s; log:\n${log.join('\n')}`));
    }, 30_000);
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      const listening = /listening on (tcp:\/\/\S+)/.exec(line);
      if (listening !== null) tcpUrl = listening[1]!;
      if (line.includes('listening on unix:') && !tcp) done();
      if (tcpUrl !== null && tcp) done();
    });
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kernel exited with ${code} before listening; log:\n${log.join('\n')}`));
    });
  });
  return {
    socket,
    tcpUrl,
    token,
    proc,
    log,
    env: { ...process.env, POSTBOX_SOCKET: socket, POSTBOX_TOKEN: token },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        const code = await exited;
        clearTimeout(t);
        if (dir !== null) rmSync(dir, { recursive: true, force: true });
        return code;
      }
      if (dir !== null) rmSync(dir, { recursive: true, force: true });
      return proc.exitCode;
    },
  };
}

/**
 * A kernel for the file or suite this is called in (started before its tests, stopped after),
 * and `join()` to connect processes to it that are closed after.
 */
export function kernelForTests(kernelOptions: { args?: string[] } = {}): {
  join(options?: { name?: string; inboxCapacity?: number }): Promise<PostboxProcess>;
  /** Environment for child processes (agents) so they find this kernel. */
  env(): NodeJS.ProcessEnv;
} {
  let kernel: TestKernel | null = null;
  const procs: PostboxProcess[] = [];
  before(async () => {
    kernel = await startTestKernel(kernelOptions);
  });
  after(async () => {
    for (const p of procs) await p.close();
    await kernel?.stop();
  });
  return {
    async join(options = {}) {
      if (kernel === null) throw new Error('join() before the kernel started (call it inside a test)');
      const p = await connect({ ...options, socket: kernel.socket });
      procs.push(p);
      return p;
    },
    env() {
      if (kernel === null) throw new Error('env() before the kernel started (call it inside a test)');
      return kernel.env;
    },
  };
}

/**
 * A loopback port nobody listens on, below the range Linux picks connections' own ports from:
 * while no kernel listens there, a client retrying it could otherwise connect to itself.
 */
export async function freePortBelowEphemeral(): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  for (let tries = 0; tries < 100; tries++) {
    const port = 10_000 + Math.floor(Math.random() * (Math.min(low, 32_768) - 10_000));
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (bound) {
      await new Promise((resolve) => server.close(resolve));
      return port;
    }
  }
  throw new Error('no free loopback port found in 100 tries');
}

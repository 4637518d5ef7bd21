// What every benchmark runner shares: child processes that are always reaped (on success, on
// failure, on a time limit, on Ctrl-C or SIGTERM), temp folders that are always removed, line-based
// talk with a child, and readings of a process from Linux /proc.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Every child still running, and every temp folder still there. */
const live = new Set<ChildProcess>();
const dirs = new Set<string>();

/**
 * `setpriv --pdeathsig TERM` makes the kernel signal a child when this process dies, even by
 * SIGKILL, so no server or queue outlives the harness. It execs the program, so the pid is the
 * program's own (the kernel's RSS is read from /proc/<pid>).
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/** Spawns a child that is tracked until it exits; stdin is a pipe unless told otherwise. */
export function spawnTracked(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdin?: 'pipe' | 'ignore'; stderr?: 'inherit' | 'pipe' } = {},
): ChildProcess {
  const [cmd, argv] =
    SETPRIV !== undefined ? [SETPRIV, ['--pdeathsig', 'TERM', '--', command, ...args]] : [command, args];
  const child = spawn(cmd, argv, {
    env: opts.env ?? process.env,
    stdio: [opts.stdin ?? 'pipe', 'pipe', opts.stderr ?? 'inherit'],
  });
  track(child);
  // A child that exits while we still write to its stdin must not crash the harness.
  child.stdin?.on('error', () => {});
  return child;
}

/** Tracks a child spawned elsewhere (pump.ts, postbox.ts) so that it is reaped on Ctrl-C too. */
export function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** SIGTERM (lets a C program remove its queue, a server close), then SIGKILL after `graceMs`. */
export async function stop(children: Iterable<ChildProcess>, graceMs = 1500): Promise<void> {
  const list = [...children].filter(alive);
  if (list.length === 0) return;
  for (const c of list) c.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const c of list) if (alive(c)) c.kill('SIGKILL');
  }, graceMs);
  await Promise.all(list.map((c) => (alive(c) ? once(c, 'exit').catch(() => {}) : undefined)));
  clearTimeout(timer);
}

export async function stopAll(): Promise<void> {
  await stop(live);
  for (const d of [...dirs]) removeDir(d);
}

let interrupted = false;
/** Installs the Ctrl-C / SIGTERM / exit handlers once. */
export function installCleanup(): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, stopping ${live.size} child process(es)\n`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    // SIGTERM, not SIGKILL: a C program still has to remove its System V queue.
    for (const c of live) if (alive(c)) c.kill('SIGTERM');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
}

/** A child process whose stdout is read line by line, and whose stdin takes lines. */
export class Child {
  readonly proc: ChildProcess;
  private readonly lines: AsyncIterator<string>;
  readonly exited: Promise<number | null>;
  private stderrTail = '';

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; quietStderr?: boolean; teeStderr?: boolean } = {},
  ) {
    this.proc = spawnTracked(command, args, {
      ...(opts.env !== undefined ? { env: opts.env } : {}),
      stderr: opts.quietStderr || opts.teeStderr ? 'pipe' : 'inherit',
    });
    if (opts.quietStderr || opts.teeStderr)
      this.proc.stderr!.on('data', (d: Buffer) => {
        // teeStderr: still shown as it comes (as with inherit), and kept for error messages.
        if (opts.teeStderr) process.stderr.write(d);
        this.stderrTail = (this.stderrTail + d.toString()).slice(-2000);
      });
    this.lines = createInterface({ input: this.proc.stdout! })[Symbol.asyncIterator]();
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => resolve(code ?? (signal !== null ? -1 : null)));
      this.proc.once('error', () => resolve(-1));
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return alive(this.proc);
  }

  /** What the child said on stderr lately (with quietStderr or teeStderr). */
  get stderr(): string {
    return this.stderrTail.trim();
  }

  /** The next stdout line that matches, skipping others; fails if the process ends first. */
  async waitFor(what: string, match: (line: string) => boolean): Promise<string> {
    for (;;) {
      const r = await this.lines.next();
      if (r.done) {
        const code = await this.exited;
        const err = this.stderr === '' ? '' : `: ${this.stderr.split('\n').slice(-3).join(' / ')}`;
        throw new Error(`${this.name} exited (code ${code}) before ${what}${err}`);
      }
      if (match(r.value)) return r.value;
    }
  }

  /** The next JSON line. */
  async json<T>(what = 'its result'): Promise<T> {
    return JSON.parse(await this.waitFor(what, (l) => l.startsWith('{'))) as T;
  }

  private readyLine: Promise<string> | undefined;
  /** The `ready` line; asking again gives the same answer (it is said once). */
  ready(): Promise<string> {
    this.readyLine ??= this.waitFor('ready', (l) => l === 'ready');
    return this.readyLine;
  }

  send(line: string): void {
    this.proc.stdin?.write(`${line}\n`);
  }

  /** Rejects if the process exits with an error; never resolves otherwise. */
  failure(): Promise<never> {
    return this.exited.then((code) => {
      if (code !== 0) {
        const err = this.stderr === '' ? '' : `: ${this.stderr.split('\n').slice(-3).join(' / ')}`;
        throw new Error(`${this.name} exited with code ${code}${err}`);
      }
      return new Promise<never>(() => {});
    });
  }
}

/** A node child running one of the compiled bench scripts (dist/bench/NAME.js). */
export function nodeChild(name: string, script: string, args: string[], env?: NodeJS.ProcessEnv): Child {
  const path = fileURLToPath(new URL(`./${script}.js`, import.meta.url));
  return new Child(name, process.execPath, [path, ...args], env !== undefined ? { env } : {});
}

/**
 * Runs `body` with the children it starts, under a time limit; stops every child it registered
 * and removes its folders whatever happens.
 */
export async function session<T>(
  label: string,
  timeoutMs: number,
  body: (s: { add: (c: Child) => Child; dir: (prefix: string) => string }) => Promise<T>,
): Promise<T> {
  const children: Child[] = [];
  const folders: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([
      body({
        add: (c) => {
          children.push(c);
          return c;
        },
        dir: (prefix) => {
          const d = tempDir(prefix);
          folders.push(d);
          return d;
        },
      }),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    await stop(children.map((c) => c.proc));
    for (const d of folders) removeDir(d);
  }
}

/** Rejects as soon as any child exits with an error. */
export function anyFailure(children: Child[]): Promise<never> {
  return Promise.race(children.map((c) => c.failure()));
}

/** VmRSS (and VmHWM) of a process in bytes, from /proc. */
export function rssOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

/** CPU time (user + system) of a process so far in ms, from /proc. */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime, in clock ticks (sysconf(_SC_CLK_TCK) is 100 on every Linux Node supports).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs a command to completion (setup steps), with a time limit; returns its status and output. */
export function runSync(
  command: string,
  args: string[],
  timeoutMs: number,
  env?: NodeJS.ProcessEnv,
): { ok: boolean; output: string } {
  const r = spawnSync(command, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: env ?? process.env,
    maxBuffer: 16 * 1024 * 1024,
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error !== undefined ? String(r.error) : ''}`;
  return { ok: r.status === 0, output };
}

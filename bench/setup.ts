// Brings the peers in on first use, so the root install stays lean: the npm packages from
// bench/package.json (npm ci --prefix bench), nats-server and gcc from Debian's packages (only as
// root, only when missing), and the C programs built into a temp folder. Each peer that cannot be
// had is reported with the reason, never skipped in silence.

import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSync, spawnTracked, tempDir } from './harness.js';

/** Where bench/ is in the source tree (this file runs from dist/bench/). */
export const BENCH_DIR = fileURLToPath(new URL('../../bench/', import.meta.url));

export interface Availability {
  ok: boolean;
  /** What it is (version), or why it is not there. */
  detail: string;
}

const log = (line: string): void => void process.stderr.write(`setup: ${line}\n`);

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    const p = join(dir, cmd);
    if (dir !== '' && existsSync(p)) return p;
  }
  return undefined;
}

let aptUpdated = false;
/** apt-get install, as root only; `apt-get update` once per run. */
function aptInstall(pkgs: string[]): Availability {
  if (process.getuid?.() !== 0)
    return { ok: false, detail: `not root: apt-get install ${pkgs.join(' ')} by hand` };
  if (which('apt-get') === undefined) return { ok: false, detail: 'no apt-get on this machine' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log('apt-get update');
    const u = runSync('apt-get', ['update', '-qq'], 180_000, env);
    if (!u.ok) return { ok: false, detail: `apt-get update failed: ${lastLine(u.output)}` };
    aptUpdated = true;
  }
  log(`apt-get install -y ${pkgs.join(' ')}`);
  // A package with a service (nats-server) must not start it: the harness runs its own on
  // loopback. policy-rc.d saying 101 is Debian's way to say "start no service now".
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy)
    runSync('sh', ['-c', `printf '#!/bin/sh\\nexit 101\\n' > ${policy} && chmod 755 ${policy}`], 5000);
  try {
    const r = runSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], 300_000, env);
    if (!r.ok)
      return { ok: false, detail: `apt-get install ${pkgs.join(' ')} failed: ${lastLine(r.output)}` };
    return { ok: true, detail: 'installed by the harness' };
  } finally {
    if (ownPolicy) runSync('rm', ['-f', policy], 5000);
  }
}

const lastLine = (s: string): string =>
  s
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-1)[0]
    ?.slice(0, 200) ?? '';

/**
 * Why npm failed, from its output. Its last line is only where the log went ("npm error A
 * complete log of this run can be found in …"); the cause is nearer the top: the `npm error
 * code` line (ENOTCACHED, E404, …) and the first error line that says what failed. npm before
 * v10 writes `npm ERR!`. Output without either falls back to the last line.
 */
export function npmFailure(output: string): string {
  const errors = output
    .split('\n')
    .map((l) => /^npm (?:error|ERR!)(?:\s+(.*))?$/.exec(l.trim())?.[1]?.trim())
    .filter((l): l is string => l !== undefined && l !== '');
  const code = errors.find((l) => l.startsWith('code '))?.slice('code '.length);
  const what = errors.find(
    (l) =>
      !/^(?:code|errno|syscall|path|dest) /.test(l) &&
      !/^(?:A complete log of this run|Log files were not written|You can rerun)/.test(l),
  );
  if (code === undefined && what === undefined) return lastLine(output);
  return [code, what]
    .filter((x) => x !== undefined)
    .join(': ')
    .slice(0, 300);
}

/** The bench's npm packages: installed with `npm ci --prefix bench` when missing. */
export function ensureNpmPeers(): Record<'nats' | 'zeromq', Availability> {
  const need = ['nats', 'zeromq'] as const;
  const missing = need.filter((n) => !existsSync(join(BENCH_DIR, 'node_modules', n, 'package.json')));
  let installNote = '';
  if (missing.length > 0) {
    const hasLock = existsSync(join(BENCH_DIR, 'package-lock.json'));
    const args = [hasLock ? 'ci' : 'install', '--prefix', BENCH_DIR, '--no-audit', '--no-fund'];
    log(`npm ${args.join(' ')}`);
    const r = runSync('npm', args, 300_000);
    if (!r.ok) installNote = `npm ${args[0]} --prefix bench failed: ${npmFailure(r.output)}`;
  }
  const req = createRequire(join(BENCH_DIR, 'package.json'));
  const out = {} as Record<'nats' | 'zeromq', Availability>;
  for (const name of need) {
    try {
      const version = (req(`${name}/package.json`) as { version: string }).version;
      // zeromq is a native addon: loading it is the real test (a prebuilt binary for this platform).
      req(name);
      out[name] = { ok: true, detail: `npm ${name} ${version}` };
    } catch (err) {
      out[name] = {
        ok: false,
        detail: installNote || `npm ${name} does not load: ${String((err as Error).message).split('\n')[0]}`,
      };
    }
  }
  return out;
}

export function ensureNatsServer(): Availability & { path?: string } {
  let path = which('nats-server');
  if (path === undefined) {
    const r = aptInstall(['nats-server']);
    if (!r.ok) return r;
    path = which('nats-server');
    if (path === undefined) return { ok: false, detail: 'apt installed nats-server but it is not on PATH' };
  }
  const v = runSync(path, ['--version'], 10_000);
  return {
    ok: v.ok,
    detail: v.ok ? v.output.trim() : `nats-server --version failed: ${lastLine(v.output)}`,
    path,
  };
}

/** Builds bench/native/osipc.c (System V, POSIX mq, pipe) with gcc into a temp folder. */
export function buildOsIpc(): Availability & { path?: string } {
  if (which('gcc') === undefined) {
    const r = aptInstall(['gcc', 'libc6-dev']);
    if (!r.ok) return r;
  }
  const out = join(tempDir('postbox-bench-c-'), 'osipc');
  const src = join(BENCH_DIR, 'native', 'osipc.c');
  const r = runSync('gcc', ['-O2', '-Wall', '-o', out, src, '-lrt'], 120_000);
  if (!r.ok) return { ok: false, detail: `gcc failed: ${lastLine(r.output)}` };
  const v = runSync('gcc', ['-dumpfullversion'], 10_000);
  return { ok: true, detail: `C, gcc ${v.output.trim()}`, path: out };
}

/** The OS's message-size limits, which decide which sizes the System V and POSIX rows can run. */
export function osLimits(): { msgmax: number; mqMsgsizeMax: number; mqMsgMax: number } {
  const read = (p: string, dflt: number): number => {
    const r = runSync('cat', [p], 5000);
    const n = Number(r.output.trim());
    return r.ok && Number.isFinite(n) ? n : dflt;
  };
  return {
    msgmax: read('/proc/sys/kernel/msgmax', 8192),
    mqMsgsizeMax: read('/proc/sys/fs/mqueue/msgsize_max', 8192),
    mqMsgMax: read('/proc/sys/fs/mqueue/msg_max', 10),
  };
}

export interface NatsServer {
  url: string;
  proc: ChildProcess;
}

/** Starts nats-server on 127.0.0.1 with a port the OS picks; the caller stops it (or the exit handler). */
export async function startNatsServer(path: string): Promise<NatsServer> {
  // -p -1: a random free port, which it logs (to stderr) as "Listening for client connections on …".
  const proc = spawnTracked(path, ['-a', '127.0.0.1', '-p', '-1'], { stderr: 'pipe', stdin: 'ignore' });
  let text = '';
  proc.stderr!.on('data', (d: Buffer) => {
    // Keep only the tail: the pipe is drained for as long as it runs, so it never blocks.
    text = (text + d.toString()).slice(-4000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`nats-server did not start: ${text.slice(-300)}`)),
      15_000,
    );
    const check = (): void => {
      const m = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(text);
      if (m === null) return;
      clearTimeout(timer);
      proc.stderr!.off('data', check);
      resolve(Number(m[1]));
    };
    proc.stderr!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (code ${code}): ${text.slice(-300)}`));
    });
  });
  return { url: `nats://127.0.0.1:${port}`, proc };
}

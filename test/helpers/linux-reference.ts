/**
 * What the differential tests share: they run a small C program against Linux's own queues (the
 * reference) as an unprivileged user, and the same script against a Postbox face.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

/** uid and gid of `nobody`: Linux's permission and limit checks bind it as they bind everyone. */
export const NOBODY = 65534;

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h;
}

/** A message text as both sides print it: short ones whole, long ones as a prefix and a hash. */
export function summary(text: Buffer): string {
  if (text.length <= 24) return text.toString('latin1');
  return `${text.toString('latin1', 0, 12)}~${fnv1a(text).toString(16).padStart(8, '0')}`;
}

/** A finished program's output. */
export interface Run {
  stdout: string;
  stderr: string;
  code: number | null;
}

/**
 * Runs argv with `input` on its stdin and collects its output; SIGTERM after `timeoutMs` (the
 * fixtures clean up their queues when terminated).
 */
export function run(argv: string[], input: string, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('latin1');
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** The command line that runs a binary as `nobody` (when we are root; as ourselves otherwise). */
export function unprivileged(binary: string, ...args: string[]): string[] {
  if (process.getuid?.() !== 0) return [binary, ...args];
  return ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', binary, ...args];
}

/** Fails clearly if setpriv (util-linux) is missing. */
export function requireSetpriv(): void {
  if (process.getuid?.() !== 0) return;
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'pipe' });
  } catch {
    throw new Error('setpriv (util-linux) is needed to run the C side as an unprivileged user');
  }
}

/** Compiles test/fixtures/NAME.c with gcc into dir; returns the binary's path. */
export function compileFixture(dir: string, name: string, flags: string[] = []): string {
  const out = join(dir, name);
  try {
    execFileSync('gcc', ['-O1', '-Wall', '-o', out, join(FIXTURES, `${name}.c`), ...flags], {
      stdio: 'pipe',
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') {
      throw new Error(
        `gcc is not installed: this test compiles test/fixtures/${name}.c to run Linux's own queues (apt-get install gcc)`,
      );
    }
    throw new Error(`gcc could not compile test/fixtures/${name}.c:\n${e.stderr?.toString() ?? e.message}`);
  }
  chmodSync(out, 0o755);
  return out;
}

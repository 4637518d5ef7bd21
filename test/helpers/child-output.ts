import type { ChildProcess } from 'node:child_process';

/**
 * A child process's standard output, gathered as it comes, with a way to wait for a line it
 * prints to say where it has got to ("ready", "busy"): an event, not a sleep.
 */
export class ChildOutput {
  /** Everything printed so far. */
  text = '';
  private exited = false;
  private readonly waiters = new Set<() => void>();

  constructor(child: ChildProcess) {
    child.stdout!.on('data', (b: Buffer) => {
      this.text += b;
      for (const w of [...this.waiters]) w();
    });
    child.once('close', () => {
      this.exited = true;
      for (const w of [...this.waiters]) w();
    });
  }

  /** Resolves once `line` has been printed; rejects if the child exits first. */
  line(line: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.text.includes(`${line}\n`)) {
          this.waiters.delete(check);
          resolve();
        } else if (this.exited) {
          this.waiters.delete(check);
          reject(new Error(`the child exited before printing '${line}'; it printed: ${this.text}`));
        }
      };
      this.waiters.add(check);
      check();
    });
  }
}

/**
 * Waits for a child to end, with what it printed to stdout and stderr; kills it past
 * `timeoutMs` and rejects, naming `what`.
 */
export function childResult(
  child: ChildProcess,
  timeoutMs: number,
  what: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d;
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish in ${timeoutMs} ms; it printed: ${stdout}${stderr}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { removeDir, spawnTracked, tempDir } from './harness.js';

export interface PumpResult {
  msgsPerSec: number;
  ms: number;
}

// Resolved next to this file so it works from dist/bench/ without knowing the repo layout.
const SCRIPT = fileURLToPath(new URL('./raw-pump.js', import.meta.url));
const TIMEOUT_MS = 60_000;

/**
 * Moves `messages` frames of `size` bytes between two separate node processes over a Unix socket.
 * Separate processes (not worker threads) so the figure is comparable with Postbox, whose client
 * and kernel never share a heap or an event loop.
 */
export async function runRawPump(opts: { messages: number; size: number }): Promise<PumpResult> {
  // In a folder registered with the harness, so that Ctrl-C removes it too.
  const dir = tempDir('postbox-raw-');
  const socketPath = join(dir, 'raw.sock');
  const args = (role: string) => [SCRIPT, role, socketPath, String(opts.messages), String(opts.size)];
  const children: ChildProcess[] = [];
  const start = (role: string) => {
    const child = spawnTracked(process.execPath, args(role), { stdin: 'ignore' });
    children.push(child);
    return child;
  };

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`raw pump timed out after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });

  const run = async (): Promise<PumpResult> => {
    const receiver = start('receiver');
    const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
    const nextLine = async (what: string): Promise<string> => {
      const r = await lines.next();
      if (r.done) throw new Error(`receiver exited before ${what} (see its stderr above)`);
      return r.value;
    };

    const ready = await nextLine('listening');
    if (ready !== 'listening') throw new Error(`unexpected receiver output: ${ready}`);

    const sender = start('sender');
    // A sender that dies early would otherwise leave us waiting for the timeout.
    const senderFailed = once(sender, 'exit').then(([code]) => {
      if (code !== 0) throw new Error(`sender exited with code ${code}`);
      return new Promise<never>(() => {});
    });

    const line = await Promise.race([nextLine('result'), senderFailed]);
    const { received, ms } = JSON.parse(line) as { received: number; ms: number };
    if (received !== opts.messages) throw new Error(`receiver counted ${received}/${opts.messages}`);
    return { ms, msgsPerSec: (received / ms) * 1000 };
  };

  try {
    return await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
    // Reap before returning so a dying process can't steal CPU from the next measured run.
    const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
    for (const child of alive) child.kill('SIGKILL');
    await Promise.all(alive.map((c) => once(c, 'exit')));
    removeDir(dir);
  }
}

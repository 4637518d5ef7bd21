// Selective receive in deep queues, and fixed-size vs variable-size mailboxes, through a real
// kernel process.
//
//   node dist/bench/selection.js [--quick]
//
// Selection: a mailbox holds N messages of types 1–9 from two senders; each probe receives (by
// type, by "lowest type ≤ t", by sender) one message that sits behind nearly all of them, then
// puts one back so the depth stays N. If selection scanned the queue, time per probe would grow
// with N; indexed, it stays one round trip.
//
// Fixed vs variable: fill a mailbox with N 100-byte messages and drain it, once with a fixed
// message size (a preallocated ring) and once variable (slabs), and read the kernel's RSS when
// full.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Kernel {
  socket: string;
  pid: number;
  stop(): Promise<void>;
}

async function startKernel(): Promise<Kernel> {
  const dir = await mkdtemp(join(tmpdir(), 'pb-sel-'));
  const socket = join(dir, 'k.sock');
  const child = spawn(
    process.execPath,
    [CLI, 'kernel', '--socket', socket, '--quiet', '--max-mailbox-bytes', String(2 ** 31 - 1)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('kernel did not start')), 10_000);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.includes('listening on unix:')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error('kernel exited')));
  });
  return {
    socket,
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? Number.NaN : Number(m[1]) / 1024;
}

async function fill(
  mb: Mailbox,
  n: number,
  body: (i: number) => Buffer,
  type: (i: number) => number,
): Promise<void> {
  const window = 4096;
  let pending: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    pending.push(mb.send(body(i), { type: type(i) }));
    if (pending.length === window) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
}

export interface SelectionRow {
  depth: number;
  /** µs per selective receive, median of the probes. */
  byType: number;
  byLowestType: number;
  bySender: number;
}

/** Time per selective receive at each depth. */
export async function runSelectionBench(depths: number[], probes = 300): Promise<SelectionRow[]> {
  const rows: SelectionRow[] = [];
  for (const depth of depths) {
    const kernel = await startKernel();
    const a = await connect({ socket: kernel.socket });
    const b = await connect({ socket: kernel.socket });
    try {
      const mb = await a.createMailbox('deep', { mode: 0o666 });
      const mbB = await b.openMailbox('deep');
      const body = Buffer.alloc(100, 1);
      // Bulk of types 2–9 from process a; the rare type 1 and process b's messages at the end.
      await fill(
        mb,
        depth - probes * 2,
        () => body,
        (i) => 2 + (i % 8),
      );
      await fill(
        mb,
        probes,
        () => body,
        () => 1,
      );
      await fill(
        mbB,
        probes,
        () => body,
        () => 5,
      );
      const time = async (op: () => Promise<unknown>): Promise<number> => {
        const samples: number[] = [];
        for (let i = 0; i < probes; i++) {
          const t0 = process.hrtime.bigint();
          await op();
          samples.push(Number(process.hrtime.bigint() - t0) / 1000);
        }
        samples.sort((x, y) => x - y);
        return samples[samples.length >> 1]!;
      };
      const byType = await time(async () => {
        await mb.receive({ type: 1, nowait: true });
        await mb.send(body, { type: 1 }); // keep the depth: the next probe finds one again
      });
      const byLowestType = await time(async () => {
        await mb.receive({ type: -1, nowait: true });
        await mb.send(body, { type: 1 });
      });
      const bySender = await time(async () => {
        await mb.receive({ from: b.id, nowait: true });
        await mbB.send(body, { type: 5 });
      });
      // Each probe is a receive plus a send: two round trips.
      rows.push({ depth, byType: byType / 2, byLowestType: byLowestType / 2, bySender: bySender / 2 });
    } finally {
      await a.close();
      await b.close();
      await kernel.stop();
    }
  }
  return rows;
}

export interface FixedRow {
  kind: 'fixed (ring)' | 'variable (slabs)';
  messages: number;
  fillMsPerSec: number;
  drainMsgPerSec: number;
  kernelRssMB: number;
}

/** Fill and drain a mailbox of N 100-byte messages, fixed-size and variable-size. */
export async function runFixedBench(n: number): Promise<FixedRow[]> {
  const rows: FixedRow[] = [];
  for (const fixed of [true, false]) {
    const kernel = await startKernel();
    const p: PostboxProcess = await connect({ socket: kernel.socket });
    try {
      const before = rssMB(kernel.pid);
      const mb = await p.createMailbox('box', fixed ? { capacity: n, messageSize: 100 } : { capacity: n });
      const body = Buffer.alloc(100, 7);
      let t0 = performance.now();
      await fill(
        mb,
        n,
        () => body,
        () => 1,
      );
      const fillMs = performance.now() - t0;
      const rss = rssMB(kernel.pid) - before;
      t0 = performance.now();
      let got = 0;
      for await (const _ of mb.messages({ prefetch: 4096 })) if (++got === n) break;
      const drainMs = performance.now() - t0;
      rows.push({
        kind: fixed ? 'fixed (ring)' : 'variable (slabs)',
        messages: n,
        fillMsPerSec: Math.round(n / (fillMs / 1000)),
        drainMsgPerSec: Math.round(n / (drainMs / 1000)),
        kernelRssMB: Math.round(rss),
      });
    } finally {
      await p.close();
      await kernel.stop();
    }
  }
  return rows;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const depths = quick ? [1_000, 100_000] : [1_000, 100_000, 1_000_000];
  const sel = await runSelectionBench(depths);
  console.log('| queued | µs per receive by type | by lowest type ≤ t | by sender |');
  console.log('|--:|--:|--:|--:|');
  for (const r of sel)
    console.log(
      `| ${r.depth.toLocaleString('en')} | ${r.byType.toFixed(1)} | ${r.byLowestType.toFixed(1)} | ${r.bySender.toFixed(1)} |`,
    );
  const fixed = await runFixedBench(quick ? 100_000 : 1_000_000);
  console.log('\n| 100-byte messages | count | fill msg/s | drain msg/s | kernel RSS growth (MB) |');
  console.log('|---|--:|--:|--:|--:|');
  for (const r of fixed) {
    console.log(
      `| ${r.kind} | ${r.messages.toLocaleString('en')} | ${r.fillMsPerSec.toLocaleString('en')} | ${r.drainMsgPerSec.toLocaleString('en')} | ${r.kernelRssMB} |`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}

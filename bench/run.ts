// Entry point for `npm run bench`. Each row is a Series of msg/s figures from repeated runs;
// rows are compared to the raw Unix-socket pump, the best any Node IPC design could hope for here.

import { mkdir, writeFile } from 'node:fs/promises';
import { arch, cpus, loadavg, platform, release } from 'node:os';
import { type PostboxPumpOptions, type PostboxPumpResult, runPostboxPump } from './postbox.js';
import { runRawPump } from './pump.js';

interface Series {
  name: string;
  runs: number[]; // msg/s, one per run
  /** Postbox rows: each run's timings and per-process CPU, for looking into a figure. */
  details?: Omit<PostboxPumpResult, 'msgsPerSec'>[];
}

interface Stats {
  median: number;
  min: number;
  max: number;
}

const quick = process.argv.includes('--quick');
const RUNS = 3;
const SIZE = 100;
const MESSAGES = quick ? 300_000 : 1_000_000;
const CEILING = 'raw Unix socket (ceiling)';

function stats(runs: number[]): Stats {
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

/** Markdown table; the first series is the ceiling that the ratio column is relative to. */
function formatTable(series: Series[]): string {
  const ceiling = stats(series[0]?.runs ?? [0]).median;
  const rows = series.map((s) => {
    const { median, min, max } = stats(s.runs);
    const ratio = ceiling > 0 ? `${(median / ceiling).toFixed(2)}×` : 'n/a';
    return `| ${s.name} | ${fmt(median)} | ${fmt(min)} – ${fmt(max)} | ${ratio} |`;
  });
  return [
    `| ${SIZE} B messages | median msg/s | min – max msg/s | vs ceiling |`,
    '|---|--:|--:|--:|',
    ...rows,
  ].join('\n');
}

interface Row {
  name: string;
  measure: () => Promise<{ msgsPerSec: number; detail?: Omit<PostboxPumpResult, 'msgsPerSec'> }>;
}

/**
 * Runs every row RUNS times, interleaved (row 1, row 2, …, row 1, …) so that a slow spell of the
 * machine spreads over all rows instead of sinking one of them.
 */
async function measureAll(rows: Row[]): Promise<Series[]> {
  const series: Series[] = rows.map((r) => ({ name: r.name, runs: [] }));
  for (let i = 0; i < RUNS; i++) {
    for (const [k, row] of rows.entries()) {
      const r = await row.measure();
      process.stderr.write(`  ${row.name} run ${i + 1}/${RUNS}: ${fmt(r.msgsPerSec)} msg/s\n`);
      const s = series[k]!;
      s.runs.push(r.msgsPerSec);
      if (r.detail !== undefined) {
        s.details ??= [];
        s.details.push(r.detail);
      }
    }
  }
  return series;
}

// Each sender keeps at most `window` sends unacknowledged and awaits every 256th (acks are
// cumulative). Windows were picked by sweeping 512 to 16384 on this machine (bench/explore.ts):
// a window much larger than the receiver's credit only lets the kernel's queue grow, which costs
// it a second copy per message; TCP, with its longer round trip, wants a little more.
const postbox = (name: string, opts: Omit<PostboxPumpOptions, 'messages' | 'size'>): Row => ({
  name,
  measure: async () => {
    const { msgsPerSec, ...detail } = await runPostboxPump({ messages: MESSAGES, size: SIZE, ...opts });
    return { msgsPerSec, detail };
  },
});

const rows: Row[] = [
  { name: CEILING, measure: () => runRawPump({ messages: MESSAGES, size: SIZE }) },
  postbox('Postbox (kernel, unix)', { transport: 'unix', window: 1024, every: 256, prefetch: 4096 }),
  postbox('Postbox (kernel, tcp)', { transport: 'tcp', window: 2048, every: 256, prefetch: 4096 }),
  // Backpressure at work: the mailbox holds 10,000 at most and the sender may have 4096 sends
  // unacknowledged, so once the receiver falls behind, sends block in the kernel (BLOCKED, then
  // SENT when admitted) instead of the queue growing. The receiver samples stat() to show it.
  postbox('Postbox (kernel, unix, capacity 10,000)', {
    transport: 'unix',
    window: 4096,
    every: 256,
    prefetch: 4096,
    capacity: 10_000,
    watch: true,
  }),
];

async function main(): Promise<void> {
  // Other work on the machine moves these figures a lot (three busy processes per Postbox run);
  // the load average is recorded with the results so a noisy run can be recognised.
  const loadBefore = loadavg();
  process.stderr.write(`${MESSAGES.toLocaleString('en-US')} messages of ${SIZE} B, ${RUNS} runs each\n`);
  const series = await measureAll(rows);

  console.log(formatTable(series));
  const ceilingMedian = stats(series[0]!.runs).median;

  const cpu = cpus();
  const results = {
    date: new Date().toISOString(),
    quick,
    messages: MESSAGES,
    size: SIZE,
    env: {
      node: process.version,
      platform: `${platform()} ${release()} ${arch()}`,
      cpu: cpu[0]?.model ?? 'unknown',
      cores: cpu.length,
      loadavg: { before: loadBefore, after: loadavg() },
    },
    series: series.map((s) => {
      const st = stats(s.runs);
      return { ...s, ...st, vsCeiling: ceilingMedian > 0 ? st.median / ceilingMedian : null };
    }),
  };
  // Relative to this file (dist/bench/run.js), so the results land in the source tree's bench/.
  const dir = new URL('../../bench/results/', import.meta.url);
  await mkdir(dir, { recursive: true });
  await writeFile(new URL('latest.json', dir), `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

// Entry point for `npm run bench`. Each row is a Series of msg/s figures from repeated runs;
// rows are compared to the raw Unix-socket pump, the best any Node IPC design could hope for here.

import { mkdir, writeFile } from 'node:fs/promises';
import { arch, cpus, platform, release } from 'node:os';
import { runRawPump } from './pump.js';

interface Series {
  name: string;
  runs: number[]; // msg/s, one per run
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
    const ratio = ceiling > 0 ? `${((median / ceiling) * 100).toFixed(1)} %` : 'n/a';
    return `| ${s.name} | ${fmt(median)} | ${fmt(min)} – ${fmt(max)} | ${ratio} |`;
  });
  return [
    `| ${SIZE} B messages | median msg/s | min – max msg/s | vs ceiling |`,
    '|---|--:|--:|--:|',
    ...rows,
  ].join('\n');
}

async function repeat(name: string, measure: () => Promise<number>): Promise<Series> {
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await measure();
    process.stderr.write(`  ${name} run ${i + 1}/${RUNS}: ${fmt(r)} msg/s\n`);
    runs.push(r);
  }
  return { name, runs };
}

// One function per row; Postbox over Unix socket and over TCP will be added alongside this.
const rawSocket = () =>
  repeat(CEILING, async () => (await runRawPump({ messages: MESSAGES, size: SIZE })).msgsPerSec);

async function main(): Promise<void> {
  process.stderr.write(`${MESSAGES.toLocaleString('en-US')} messages of ${SIZE} B, ${RUNS} runs each\n`);
  const series: Series[] = [await rawSocket()];

  console.log(formatTable(series));

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
    },
    series: series.map((s) => ({ ...s, ...stats(s.runs) })),
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

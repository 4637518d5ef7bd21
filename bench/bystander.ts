// A bystander's round trip while another process sends in bulk through the same kernel: how long
// a busy kernel makes everyone else wait (docs/performance.md, "A queue growing"). A tool, like
// explore.js; not part of `npm run bench`.
//
//   node dist/bench/bystander.js [--messages N] [--batch N] [--rounds N] [--warmup N] [--runs N]
//
// Each run starts a kernel (with loop-delay.js preloaded), an echo and a pinger (pb-peer.js,
// `for await` at both ends, 100 B), and, in the "with bulk" runs, a producer sending N messages
// of 100 B with sendMany in batches of --batch and a consumer taking them with batches(). The
// queue builds up when the consumer falls behind, which is what makes the kernel's store grow.
// Runs alone and with bulk alternate; medians are printed.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Child, installCleanup, nodeChild, session, stop } from './harness.js';
import type { LoopDelay } from './loop-delay.js';
import type { RoundTripResult, SendReport } from './peer-common.js';
import { stats } from './report.js';
import { launchKernel } from './shared-kernel.js';
import { toolArgs } from './tool-args.js';

const USAGE = 'node dist/bench/bystander.js [--messages N] [--batch N] [--rounds N] [--warmup N] [--runs N]';

const { values, count } = toolArgs('bystander', USAGE, {
  messages: { type: 'string', default: '1000000' },
  batch: { type: 'string', default: '200000' },
  rounds: { type: 'string', default: '4000' },
  warmup: { type: 'string', default: '200' },
  runs: { type: 'string', default: '3' },
  help: { type: 'boolean', default: false },
});
const messages = count(values.messages, 'messages', 1);
const batch = count(values.batch, 'batch', 1);
const rounds = count(values.rounds, 'rounds', 1);
const runs = count(values.runs, 'runs', 1);
const warmup = count(values.warmup, 'warmup', 0);

const LOOP_DELAY = new URL('./loop-delay.js', import.meta.url).href;

interface RunResult {
  rtt: RoundTripResult;
  loop: LoopDelay;
  /** The producer's messages per second (with bulk). */
  bulkRate: number | null;
}

function run(withBulk: boolean): Promise<RunResult> {
  return session('bystander run', 120_000, async ({ add, dir }) => {
    const d = dir('postbox-bystander-');
    const loopFile = join(d, 'loop-delay.json');
    const env = { ...process.env, NODE_OPTIONS: `--import ${LOOP_DELAY}`, POSTBOX_LOOP_DELAY_FILE: loopFile };
    const kernel = await launchKernel(d, env, false);
    add(kernel.child);
    const peer = (name: string, args: string[]): Child =>
      add(nodeChild(name, 'pb-peer', [args[0]!, kernel.socket, ...args.slice(1)]));
    const echo = peer('echo', ['echo', '--box', 'ping,pong']);
    await echo.ready();
    const ping = peer('ping', ['ping', '--box', 'ping,pong', String(rounds), '100', String(warmup)]);
    await ping.ready();
    let producer: Child | null = null;
    if (withBulk) {
      const consumer = peer('consumer', [
        'consumer',
        '--box',
        'bulk',
        '--expect',
        String(messages),
        '--api',
        'batch',
      ]);
      await consumer.ready();
      const window = String(2 * batch);
      producer = peer('producer', [
        'producer',
        '--box',
        'bulk',
        String(messages),
        '100',
        '--api',
        'batch',
        '--every',
        String(batch),
        '--window',
        window,
      ]);
      await producer.ready();
    }
    // Everyone is connected: the kernel's loop delay counts from here.
    kernel.child.proc.kill('SIGUSR2');
    producer?.send('go');
    ping.send('go');
    const rtt = await ping.json<RoundTripResult>('its round trips');
    const sent = producer === null ? null : await producer.json<SendReport>('its report');
    // The clients first, so that none is told the kernel is shutting down.
    await stop([echo.proc, ping.proc, ...(producer === null ? [] : [producer.proc])]);
    await stop([kernel.child.proc]);
    const loop = JSON.parse(readFileSync(loopFile, 'utf8')) as LoopDelay;
    return { rtt, loop, bulkRate: sent === null ? null : (sent.sent / sent.ms) * 1000 };
  });
}

const span = (xs: number[], digits: number): string => {
  const { median, min, max } = stats(xs);
  return `${median.toFixed(digits)} (${min.toFixed(digits)}–${max.toFixed(digits)})`;
};

async function main(): Promise<void> {
  installCleanup();
  const alone: RunResult[] = [];
  const bulk: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    alone.push(await run(false));
    bulk.push(await run(true));
  }
  console.log(
    `bystander round trips, ${rounds} rounds of 100 B; bulk: ${messages} messages in sendMany batches of ${batch}; ${runs} runs each, median (min–max)\n`,
  );
  console.log(
    '| | round trip p50 ms | p99 ms | p99.9 ms | max ms | kernel loop delay p99 ms | p99.9 ms | max ms | bulk msg/s |',
  );
  console.log('|---|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const [label, rs] of [
    ['alone', alone],
    ['with bulk', bulk],
  ] as const) {
    const rates = rs.map((r) => r.bulkRate).filter((r): r is number => r !== null);
    console.log(
      `| ${label} | ${span(
        rs.map((r) => r.rtt.p50us / 1000),
        3,
      )} | ${span(
        rs.map((r) => r.rtt.p99us / 1000),
        2,
      )} | ${span(
        rs.map((r) => r.rtt.p999us / 1000),
        2,
      )} | ${span(
        rs.map((r) => r.rtt.maxUs / 1000),
        2,
      )} | ${span(
        rs.map((r) => r.loop.p99ms),
        2,
      )} | ${span(
        rs.map((r) => r.loop.p999ms),
        2,
      )} | ${span(
        rs.map((r) => r.loop.maxMs),
        2,
      )} | ${rates.length > 0 ? span(rates, 0) : '—'} |`,
    );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);

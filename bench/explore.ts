// Runs the Postbox pump with chosen knobs, for tuning and profiling (not part of `npm run bench`).
//
//   node dist/bench/explore.js [--transport unix|tcp] [--messages N] [--size B] [--runs N]
//     [--prefetch N] [--capacity N|unbounded] [--window N] [--every N] [--scheme checkpoint|all]
//     [--api each|batch] [--raw] [--watch] [--profile DIR] [--perf DIR] [--node-arg FLAG]...
//     [--same-kernel]
//
// With --profile DIR every process runs with --cpu-prof into DIR, and the top self-time
// functions of each profile are printed afterwards. V8's profiler samples wall time, so on a
// busy machine a function that wakes another process (a socket write) collects the time this
// one spent descheduled. With --perf DIR each process is instead sampled on-CPU by Linux perf
// (perf record -e cpu-clock; needs perf and perf_event_paranoid <= 2); see DIR/*.txt.
// With --same-kernel every run goes through one kernel started once (fresh clients and mailbox
// each run), to watch the kernel warm up run by run (docs/performance.md); its CPU is per run.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { summariseProfile } from './cpuprofile-summary.js';
import { runPostboxPump } from './postbox.js';
import type { PumpApi, SendScheme } from './postbox-pump.js';
import { runRawPump } from './pump.js';
import { startSharedKernel } from './shared-kernel.js';

const { values } = parseArgs({
  options: {
    transport: { type: 'string', default: 'unix' },
    messages: { type: 'string', default: '1000000' },
    size: { type: 'string', default: '100' },
    runs: { type: 'string', default: '1' },
    prefetch: { type: 'string', default: '16384' },
    capacity: { type: 'string', default: 'unbounded' },
    window: { type: 'string', default: '4096' },
    every: { type: 'string', default: '256' },
    scheme: { type: 'string', default: 'checkpoint' },
    raw: { type: 'boolean', default: false },
    api: { type: 'string', default: 'each' },
    watch: { type: 'boolean', default: false },
    profile: { type: 'string' },
    perf: { type: 'string' },
    'node-arg': { type: 'string', multiple: true },
    top: { type: 'string', default: '25' },
    'same-kernel': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(`Runs the Postbox pump with chosen knobs, for tuning and profiling (not part of npm run bench).

  node dist/bench/explore.js [--transport unix|tcp] [--messages N] [--size B] [--runs N]
    [--prefetch N] [--capacity N|unbounded] [--window N] [--every N] [--scheme checkpoint|all]
    [--api each|batch] [--raw] [--watch] [--profile DIR] [--perf DIR] [--node-arg FLAG]...
    [--same-kernel] [--top N]`);
  process.exit(0);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const messages = Number(values.messages);
  const size = Number(values.size);
  const transport = values.transport as 'unix' | 'tcp';
  if (values.profile !== undefined) await mkdir(values.profile, { recursive: true });
  const perfDir = values.perf;
  if (perfDir !== undefined) await mkdir(perfDir, { recursive: true });
  const perfs: { role: string; proc: ChildProcess; file: string }[] = [];
  const onSpawn = (role: string, pid: number): void => {
    const file = join(perfDir!, `${role}-${pid}.data`);
    const proc = spawn(
      'perf',
      ['record', '-q', '-g', '-e', 'cpu-clock', '-F', '1999', '-p', String(pid), '-o', file],
      {
        stdio: 'ignore',
      },
    );
    perfs.push({ role, proc, file });
  };
  const kernel = values['same-kernel'] ? await startSharedKernel({ rounds: 0, messages: 0 }) : null;
  for (let i = 0; i < Number(values.runs); i++) {
    if (values.raw) {
      const raw = await runRawPump({ messages, size });
      console.log(`raw: ${fmt(raw.msgsPerSec)} msg/s`);
    }
    const r = await runPostboxPump({
      messages,
      size,
      transport,
      prefetch: Number(values.prefetch),
      capacity: values.capacity === 'unbounded' ? 'unbounded' : Number(values.capacity),
      window: Number(values.window),
      every: Number(values.every),
      scheme: values.scheme as SendScheme,
      watch: values.watch === true,
      api: values.api as PumpApi,
      ...(values.profile !== undefined ? { profileDir: values.profile } : {}),
      ...(perfDir !== undefined ? { onSpawn } : {}),
      ...(kernel !== null ? { kernel } : {}),
      // --perf-basic-prof writes /tmp/perf-PID.map for perf to name JIT code, and a V8 log,
      // kept in the perf folder rather than the working directory.
      nodeArgs: [
        ...(perfDir !== undefined
          ? ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(perfDir, 'v8-%p.log')}`]
          : []),
        ...(values['node-arg'] ?? []),
      ],
    });
    const cpu = (c: { user: number; system: number }) => `${c.user.toFixed(0)}+${c.system.toFixed(0)}`;
    console.log(
      `postbox ${transport}: ${fmt(r.msgsPerSec)} msg/s (receiver ${r.ms.toFixed(0)} ms, sender ${r.senderMs.toFixed(0)} ms; ` +
        `CPU user+sys ms: kernel ${cpu(r.cpu.kernel)}, sender ${cpu(r.cpu.sender)}, receiver ${cpu(r.cpu.receiver)})` +
        (r.peak === undefined ? '' : ` peak ${JSON.stringify(r.peak)}`),
    );
  }
  await kernel?.stop();
  for (const p of perfs) {
    if (p.proc.exitCode === null) await once(p.proc, 'exit');
    const report = spawn(
      'perf',
      ['report', '-i', p.file, '--no-children', '--sort', 'symbol', '--stdio', '-q', '-g', 'none'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    let text = '';
    report.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    await once(report, 'exit');
    const top = text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(0, Number(values.top));
    await writeFile(`${p.file}.txt`, text);
    console.log(`\n## ${p.role} (perf, on-CPU samples)\n${top.join('\n')}`);
  }
  if (values.profile !== undefined) {
    for (const file of (await readdir(values.profile)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
      console.log(`\n## ${file}\n`);
      console.log(await summariseProfile(join(values.profile, file), Number(values.top)));
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

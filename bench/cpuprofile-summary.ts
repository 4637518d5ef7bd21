// Summarises a V8 .cpuprofile (from node --cpu-prof) by self time: which functions the CPU was
// actually in, with their file and line, and how much was idle, GC or native.
//
//   node dist/bench/cpuprofile-summary.js FILE.cpuprofile [TOP]

import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (µs), from sample deltas, which is more exact than hit counts. */
export async function summariseProfile(file: string, top = 25): Promise<string> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample's delta is the time until the next sample; attribute it to the sampled node.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const byFunction = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === '(idle)') idle += us;
    const where = f.url === '' ? '' : ` ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    const key = `${f.functionName || '(anonymous)'}${where}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = [...byFunction.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  const pct = (us: number, of: number) => `${((us / of) * 100).toFixed(1).padStart(5)} %`;
  const lines = [
    `${basename(file)}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy (${pct(busy, total).trim()})`,
    '  self ms   of busy  function',
    ...rows.map(
      ([name, us]) =>
        `${(us / 1000).toFixed(1).padStart(9)} ${name === '(idle)' ? '    —  ' : pct(us, busy)}  ${name}`,
    ),
  ];
  return lines.join('\n');
}

function shortUrl(url: string): string {
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 6);
  return url.replace(/^file:\/\//, '').replace(/^node:/, 'node:');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, top] = process.argv.slice(2);
  if (file === undefined) {
    console.error('usage: cpuprofile-summary.js FILE.cpuprofile [TOP]');
    process.exitCode = 2;
  } else {
    summariseProfile(file, top === undefined ? 25 : Number(top)).then(console.log, (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
  }
}

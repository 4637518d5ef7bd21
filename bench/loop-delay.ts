// Preloaded into a kernel by bystander.ts (NODE_OPTIONS=--import): how late the kernel's event
// loop ran its callbacks, that is, how long it kept every process waiting. SIGUSR2 starts the
// count again (once the processes are connected); the figures go to $POSTBOX_LOOP_DELAY_FILE as
// the kernel exits.

import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

/** What the file holds, in ms. */
export interface LoopDelay {
  p50ms: number;
  p99ms: number;
  p999ms: number;
  maxMs: number;
}

const file = process.env.POSTBOX_LOOP_DELAY_FILE;
if (file !== undefined) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  process.on('SIGUSR2', () => h.reset());
  process.on('exit', () => {
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    const d: LoopDelay = {
      p50ms: ms(h.percentile(50)),
      p99ms: ms(h.percentile(99)),
      p999ms: ms(h.percentile(99.9)),
      maxMs: ms(h.max),
    };
    writeFileSync(file, JSON.stringify(d));
  });
}

// A process owning many mailboxes: what they cost the kernel's memory while they sit idle, and
// what the process's end costs everyone else: the kernel removes them all in one turn (so that
// what others see of the end is exact; docs/performance.md, "What an operation costs as things
// grow"), and every other process waits for that turn. A tool, like bystander.js; not part of
// `npm run bench`.
//
//   node dist/bench/owner-end.js [--mailboxes N,N…] [--runs N]
//
// Each run starts a kernel; an owner creates N mailboxes and closes its handles on them (so that
// `--max-per-process` does not bound them: they stay its own until it ends); a bystander pair
// (a pinger and an echo, `for await`, in this process) keeps round trips going; the owner closes.
// Printed: the kernel's resident memory per mailbox created (its RSS grown, over the mailboxes),
// how long the owner's close took, the kernel's CPU meanwhile, and the bystander's longest round
// trip, against its longest in the moment before. Medians of the runs, sizes alternating.

import { connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';
import { cpuMsOf, installCleanup, rssOf, session } from './harness.js';
import { stats } from './report.js';
import { launchKernel } from './shared-kernel.js';
import { toolArgs } from './tool-args.js';

const USAGE = 'node dist/bench/owner-end.js [--mailboxes N,N…] [--runs N]';

const { values, count } = toolArgs('owner-end', USAGE, {
  mailboxes: { type: 'string', default: '5000,50000' },
  runs: { type: 'string', default: '3' },
  help: { type: 'boolean', default: false },
});
const sizes = values.mailboxes.split(',').map((v) => count(v.trim(), 'mailboxes'));
const runs = count(values.runs, 'runs');

/** Mailboxes created at once: enough to keep the kernel busy, few enough to stay in its limits. */
const CREATES_IN_FLIGHT = 1000;
/** The bystander's round trips before the owner closes, to know its usual longest. */
const ROUNDS_BEFORE = 500;

interface RunResult {
  /** The kernel's RSS grown while the mailboxes were made, over their number. */
  bytesEach: number;
  closeMs: number;
  kernelCpuMs: number;
  worstMs: number;
  worstBeforeMs: number;
}

function run(mailboxes: number): Promise<RunResult> {
  return session(`owner-end run of ${mailboxes}`, 600_000, async ({ add, dir }) => {
    const kernel = await launchKernel(dir('postbox-owner-end-'), process.env, false);
    add(kernel.child);
    const clients: PostboxProcess[] = [];
    const join = async (name: string): Promise<PostboxProcess> => {
      const p = await connect({ socket: kernel.socket, name });
      clients.push(p);
      return p;
    };
    try {
      const owner = await join('owner');
      const pinger = await join('pinger');
      const echo = await join('echo');
      const rssBefore = rssOf(kernel.child.pid).rss;
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < mailboxes; i++) {
        inFlight.push(owner.createMailbox(null).then((m) => m.close()));
        if (inFlight.length === CREATES_IN_FLIGHT) {
          await Promise.all(inFlight);
          inFlight.length = 0;
        }
      }
      await Promise.all(inFlight);
      const bytesEach = (rssOf(kernel.child.pid).rss - rssBefore) / mailboxes;

      const pongs = await pinger.createMailbox<string>(null);
      const pings = await echo.createMailbox<string>(null);
      const toEcho = await pinger.openMailbox<string>(pings.id);
      const toPinger = await echo.openMailbox<string>(pongs.id);
      const echoing = (async () => {
        for await (const m of pings) {
          if (m.body === 'stop') break;
          await toPinger.send(m.body);
        }
      })();
      let worst = 0;
      let rounds = 0;
      let stopping = false;
      const roundTrip = async (box: Mailbox<string>): Promise<void> => {
        const start = performance.now();
        await toEcho.send('ping');
        await box.receive();
        worst = Math.max(worst, performance.now() - start);
        rounds++;
      };
      let reachedBefore: () => void = () => {};
      const before = new Promise<void>((resolve) => {
        reachedBefore = resolve;
      });
      const pinging = (async () => {
        while (!stopping) {
          await roundTrip(pongs);
          if (rounds === ROUNDS_BEFORE) reachedBefore();
        }
      })();
      await before;
      const worstBeforeMs = worst;
      worst = 0;
      const cpuBefore = cpuMsOf(kernel.child.pid);
      const start = performance.now();
      // close() resolves once the kernel has ended the process: its mailboxes are gone by then.
      await owner.close();
      const closeMs = performance.now() - start;
      const kernelCpuMs = cpuMsOf(kernel.child.pid) - cpuBefore;
      // The round trip that waited out the end may still be on its way back: the loop ends after it.
      stopping = true;
      await pinging;
      await toEcho.send('stop');
      await echoing;
      return { bytesEach, closeMs, kernelCpuMs, worstMs: worst, worstBeforeMs };
    } finally {
      await Promise.allSettled(clients.map((c) => c.close()));
    }
  });
}

const span = (xs: number[]): string => {
  const { median, min, max } = stats(xs);
  return `${median.toFixed(0)} (${min.toFixed(0)}–${max.toFixed(0)})`;
};

async function main(): Promise<void> {
  installCleanup();
  const results = new Map<number, RunResult[]>(sizes.map((n) => [n, []]));
  for (let i = 0; i < runs; i++) for (const n of sizes) results.get(n)!.push(await run(n));
  console.log(`a process owning mailboxes, then ending; ${runs} runs each, median (min–max)\n`);
  console.log(
    "| mailboxes owned | kernel RSS each, bytes | owner's close ms | kernel CPU ms | bystander's longest round trip ms | before it ms |",
  );
  console.log('|--:|--:|--:|--:|--:|--:|');
  for (const [n, rs] of results) {
    console.log(
      `| ${n.toLocaleString('en-US')} | ${span(rs.map((r) => r.bytesEach))} | ${span(rs.map((r) => r.closeMs))} | ${span(rs.map((r) => r.kernelCpuMs))} | ${span(
        rs.map((r) => r.worstMs),
      )} | ${span(rs.map((r) => r.worstBeforeMs))} |`,
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

// Entry point for `npm run bench`: Postbox next to the raw Unix-socket ceiling and its peers — the
// OS's own message passing (System V, POSIX mq, pipe), NATS, ZeroMQ and Node's child_process IPC —
// each between separate OS processes, in one run, so every ratio compares figures measured on the
// same machine minutes apart.
//
//   npm run bench [-- --quick] [--only SECTION,…] [--runs N] [--docs] [--save-baseline]
//                 [--baseline FILE] [--fail-on-regression]
//
// Every row is measured `runs` times (at least three), interleaved with the other rows of its
// section so that a slow spell of the machine spreads over all of them; the table shows the median
// and min–max, and each median's ratio to the raw ceiling's median. Results go to
// bench/results/latest.json and are compared with bench/results/baseline.json by those ratios.
// A full run also writes docs/benchmarks.md and docs/bench-throughput.svg.

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { installCleanup, runSync, stop, stopAll } from './harness.js';
import {
  barChart,
  type Change,
  type Column,
  compare,
  comparisonTable,
  formatValue,
  fullReport,
  peersTable,
  type Results,
  type RowResult,
  ratio,
  type SectionResult,
  sectionTable,
  stats,
  targetsTable,
  workloadDiffers,
} from './report.js';
import type { RpcBenchOptions } from './rpc.js';
import {
  type Availability,
  buildOsIpc,
  ensureNatsServer,
  ensureNpmPeers,
  type NatsServer,
  osLimits,
  startNatsServer,
} from './setup.js';
import { type SharedKernel, startSharedKernel } from './shared-kernel.js';
import { MIN_JUDGED, targets } from './targets.js';
import {
  latencyOf,
  nats,
  nodeIpc,
  type OsKind,
  os,
  postbox,
  raw,
  type Sample,
  sharedKernel,
  useSharedKernel,
  zmq,
} from './workloads.js';

/** Every section's id, in the order a full run measures them. */
const SECTION_IDS = [
  'oneway-100',
  'oneway-1k',
  'oneway-64k',
  'rtt',
  'fanout',
  'fanin',
  'rendezvous',
  'rpc',
  'memory',
  'connections',
] as const;

const HELP = `Usage: npm run bench [-- options]

  --quick               a short subset (about a minute): one-way 100 B, round trip, 1 → 4,
                        RPC 64 in flight, 1M queued messages
  --only A,B            only these sections (ids: ${SECTION_IDS.join(' ')})
  --runs N              runs per row (default 3; a target is judged only when 3 or more runs
                        of each row it is made of succeeded)
  --docs                write docs/benchmarks.md and the chart (a full run does by default)
  --no-docs             don't
  --save-baseline       also write the results to bench/results/baseline.json
  --baseline FILE       compare with FILE (default bench/results/baseline.json)
  --fail-on-regression  exit 1 if a Postbox row's ratio fell by more than 20% against the
                        baseline, or a Postbox row that the baseline has failed (the other
                        systems' changes are shown, not judged, and so are all of them when
                        the run and the baseline differ in --quick or --fresh-kernel); needs
                        a baseline
  --from FILE           measure nothing: print saved results (latest.json), and write the docs
                        if they are a full run's (not with --quick, --only, --runs, --fresh-kernel)
  --fresh-kernel        every Postbox run starts a kernel of its own (default: one kernel for
                        the whole run, warmed up first, as the NATS server is; see
                        bench/shared-kernel.ts)
`;

const BENCH = new URL('../../bench/', import.meta.url);
const RESULTS = new URL('results/', BENCH);
const DOCS = new URL('../docs/', BENCH);

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  only: { type: 'string' },
  runs: { type: 'string' },
  docs: { type: 'boolean' },
  'no-docs': { type: 'boolean', default: false },
  'save-baseline': { type: 'boolean', default: false },
  baseline: { type: 'string' },
  'fail-on-regression': { type: 'boolean', default: false },
  from: { type: 'string' },
  'fresh-kernel': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** A mistake on the command line: said in one line, exit 2, nothing measured. */
function usage(message: string): never {
  process.stderr.write(`npm run bench: ${message}\nRun 'npm run bench -- --help' for usage.\n`);
  process.exit(2);
}

const { values: opt } = (() => {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (err) {
    return usage((err as Error).message);
  }
})();
if (opt.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const quick = opt.quick === true;
const RUNS = opt.runs === undefined ? 3 : Number(opt.runs);
if (!Number.isSafeInteger(RUNS) || RUNS < 1)
  usage(`--runs must be a whole number of at least 1, not '${opt.runs}'`);
const only = opt.only
  ?.split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');
if (only !== undefined) {
  const unknown = only.filter((id) => !(SECTION_IDS as readonly string[]).includes(id));
  if (unknown.length > 0 || only.length === 0)
    usage(
      `${unknown.length === 0 ? '--only names no section' : `unknown section${unknown.length === 1 ? '' : 's'} ${unknown.map((u) => `'${u}'`).join(', ')} in --only`}; the sections are ${SECTION_IDS.join(', ')}`,
    );
}
if (opt.docs === true && opt['no-docs'] === true)
  usage('--docs and --no-docs contradict each other: give one');
if (opt.docs === true && (quick || only !== undefined))
  usage('--docs writes the docs of a full run; drop --quick / --only, or use --from with a full run');
if (opt.from !== undefined) {
  // These choose what to measure, and --from measures nothing: ignoring them would print
  // something other than what was asked for.
  const measuring = (['quick', 'only', 'runs', 'fresh-kernel'] as const).filter(
    (k) => opt[k] !== undefined && opt[k] !== false,
  );
  if (measuring.length > 0)
    usage(
      `--from measures nothing, so ${measuring.map((k) => `--${k}`).join(', ')} would do nothing: drop ${measuring.length === 1 ? 'it' : 'them'}`,
    );
}

/**
 * A results file (latest.json, baseline.json) read and checked before anything is measured: a
 * bad path or file is a usage error said in one line, not a stack trace or a lost run.
 */
function readResults(file: URL, what: string): Results {
  const path = fileURLToPath(file);
  if (!existsSync(file)) usage(`there is no ${what} at ${path}`);
  let r: unknown;
  try {
    r = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    usage(`the ${what} ${path} is not a results file: ${(err as Error).message}`);
  }
  const x = r as Partial<Results> | null;
  const ok =
    typeof x === 'object' &&
    x !== null &&
    typeof x.date === 'string' &&
    typeof x.quick === 'boolean' &&
    typeof x.env === 'object' &&
    x.env !== null &&
    typeof x.peers === 'object' &&
    x.peers !== null &&
    Array.isArray(x.targets) &&
    Array.isArray(x.sections) &&
    x.sections.every((s) => typeof s?.id === 'string' && Array.isArray(s.rows) && Array.isArray(s.columns));
  if (!ok)
    usage(
      `the ${what} ${path} is not a results file: it lacks the date, env, peers, sections or targets a bench run writes`,
    );
  return r as Results;
}

const cwd = `file://${process.cwd()}/`;
/** --from's results, read first: what they are decides whether --docs may write them. */
const fromFile = opt.from !== undefined ? new URL(opt.from, cwd) : null;
const fromResults = fromFile !== null ? readResults(fromFile, '--from file') : null;
if (
  fromResults !== null &&
  opt.docs === true &&
  (fromResults.quick || (fromResults.env.only ?? null) !== null)
)
  usage(
    `--docs writes the docs of a full run, and ${opt.from} holds a ${fromResults.quick ? 'quick' : 'partial (--only)'} run: its figures must not replace the docs`,
  );
/** The baseline, read before anything is measured: a bad path or file must not cost a run. */
const baselineFile =
  opt.baseline !== undefined ? new URL(opt.baseline, cwd) : new URL('baseline.json', RESULTS);
let baseline: Results | null = null;
if (existsSync(baselineFile) || opt.baseline !== undefined) baseline = readResults(baselineFile, 'baseline');
else if (opt['fail-on-regression'] === true && opt['save-baseline'] !== true)
  usage(`--fail-on-regression needs a baseline, and there is none at ${fileURLToPath(baselineFile)}`);

const SIZE = 100;

/** Message counts: every loop is bounded by these and by each measurement's time limit. */
const N = {
  oneWay: { 100: quick ? 150_000 : 1_000_000, 1024: 400_000, 65536: 20_000 } as Record<number, number>,
  /** ZeroMQ (one awaited send per message) and Node IPC are slower: fewer messages, same rate. */
  slowShare: 0.25,
  rounds: quick ? 1_500 : 10_000,
  warmup: quick ? 200 : 1_000,
  /**
   * Untimed round trips before the timed ones. A process that runs more JavaScript per message
   * takes longer to reach V8's optimized code: Postbox's p50 kept falling until about 5,000
   * (61-66 µs after 1,000, 59-60 after 5,000) while the raw socket's and the relay's did not move
   * (23.1-24.1 and 48.4-50.4 µs after either); every system gets the same warm-up.
   */
  rttWarmup: 5_000,
  fanOut: quick ? 150_000 : 1_000_000,
  fanIn: quick ? 200_000 : 500_000,
  rendezvous1: quick ? 2_000 : 10_000,
  rendezvous64: quick ? 20_000 : 100_000,
  rpcRaw: quick ? 30_000 : 200_000,
  rpc: quick ? 10_000 : 100_000,
  rpcSequential: quick ? 1_000 : 5_000,
  /**
   * Untimed calls before the timed ones, with as many in flight as the timed ones. A quick run's
   * 10,000 calls came out at 36 k calls/s for Postbox against 65 k in a full run's 100,000
   * (NATS: 18.8 k and 20.2 k), a warm-up of 200 calls one at a time having left the pipelined
   * path to be compiled on the clock; every system gets the same warm-up.
   */
  rpcWarmup: quick ? 5_000 : 10_000,
  queued: 1_000_000,
  connections: { processes: 5, each: 200, idleMs: quick ? 2_000 : 6_000 },
};
const QUICK_SECTIONS = ['oneway-100', 'rtt', 'fanout', 'rpc', 'memory'];

interface RowDef {
  id: string;
  system: string;
  /** Set when the row cannot run here: the reason. */
  unavailable?: string;
  measure: () => Promise<Sample>;
}

interface SectionDef {
  id: string;
  title: string;
  detail: string;
  better: 'higher' | 'lower';
  columns: Column[];
  ceiling?: string;
  runs: number;
  rows: RowDef[];
}

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

// ---------------------------------------------------------------- peers

interface Peers {
  osipc: Availability & { path?: string };
  nats: Availability;
  natsServer?: NatsServer;
  zeromq: Availability;
  rpc: Availability & { run?: RunRpcBench };
  limits: ReturnType<typeof osLimits>;
  table: Results['peers'];
}

/** bench/rpc.ts (another module, run if present): Postbox RPC calls per second. */
type RunRpcBench = (o: RpcBenchOptions) => Promise<{
  inFlight1: number;
  inFlight64: number;
}>;

async function loadRpc(): Promise<Availability & { run?: RunRpcBench }> {
  const file = new URL('./rpc.js', import.meta.url);
  if (!existsSync(file)) return { ok: false, detail: 'bench/rpc.ts (runRpcBench) is not in this tree yet' };
  try {
    const mod = (await import(file.href)) as { runRpcBenchApart?: RunRpcBench };
    if (typeof mod.runRpcBenchApart !== 'function')
      return { ok: false, detail: 'bench/rpc.ts has no runRpcBenchApart()' };
    return { ok: true, detail: 'bench/rpc.ts runRpcBenchApart()', run: mod.runRpcBenchApart };
  } catch (err) {
    return { ok: false, detail: `bench/rpc.ts does not load: ${(err as Error).message}` };
  }
}

async function setupPeers(): Promise<Peers> {
  log('setting up peers (first run installs them)');
  const npm = ensureNpmPeers();
  const natsBin = ensureNatsServer();
  const osipc = buildOsIpc();
  const rpc = await loadRpc();
  let natsServer: NatsServer | undefined;
  let natsOk: Availability = npm.nats.ok ? natsBin : npm.nats;
  if (natsBin.ok && npm.nats.ok && natsBin.path !== undefined) {
    try {
      natsServer = await startNatsServer(natsBin.path);
      natsOk = { ok: true, detail: `${natsBin.detail} on ${natsServer.url}, ${npm.nats.detail}` };
    } catch (err) {
      natsOk = { ok: false, detail: (err as Error).message };
    }
  } else if (!natsBin.ok) natsOk = { ok: false, detail: `nats-server: ${natsBin.detail}` };
  const limits = osLimits();
  return {
    osipc,
    nats: natsOk,
    ...(natsServer !== undefined ? { natsServer } : {}),
    zeromq: npm.zeromq,
    rpc,
    limits,
    table: {
      'raw Unix socket (Node net)': { ok: true, detail: `node ${process.version}` },
      'System V queue, POSIX mq, pipe': {
        ok: osipc.ok,
        detail: osipc.ok
          ? `${osipc.detail}; limits: kernel.msgmax ${limits.msgmax} B, fs.mqueue.msgsize_max ${limits.mqMsgsizeMax} B, msg_max ${limits.mqMsgMax}`
          : osipc.detail,
      },
      NATS: natsOk,
      'ZeroMQ (ipc://)': npm.zeromq.ok
        ? { ok: true, detail: `${npm.zeromq.detail} (libzmq bundled)` }
        : npm.zeromq,
      'Node child_process IPC': { ok: true, detail: `node ${process.version}, JSON serialization` },
      'Postbox RPC': rpc.ok ? { ok: true, detail: rpc.detail } : rpc,
    },
  };
}

// ---------------------------------------------------------------- sections

const perSec = (label = 'msg/s'): Column => ({
  key: 'value',
  label,
  unit: label === 'calls/s' ? 'calls/s' : 'msg/s',
});

function sections(p: Peers): SectionDef[] {
  const natsUrl = p.natsServer?.url;
  const natsNa = p.nats.ok ? undefined : p.nats.detail;
  const zmqNa = p.zeromq.ok ? undefined : p.zeromq.detail;
  const osNa = p.osipc.ok ? undefined : p.osipc.detail;
  const bin = p.osipc.path ?? '';
  const slow = (n: number) => Math.max(1000, Math.round(n * N.slowShare));
  const osRow = (kind: OsKind, system: string, size: number, limit: number, limitName: string): RowDef => ({
    id: kind,
    system,
    ...(osNa !== undefined
      ? { unavailable: osNa }
      : size > limit
        ? { unavailable: `${size} B is over the OS limit ${limitName} = ${limit} B` }
        : {}),
    measure: () => os.oneWay(bin, kind, N.oneWay[size]!, size),
  });

  const oneWay = (size: number, id: string, label: string): SectionDef => {
    const n = N.oneWay[size]!;
    return {
      id,
      title: `One-way throughput, ${label}`,
      detail: `${fmt(n)} messages of ${label} from one process to another (ZeroMQ and Node IPC: ${fmt(slow(n))}); the receiver's rate, first message to last.`,
      better: 'higher',
      columns: [perSec()],
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        { id: 'raw', system: 'raw Unix socket (ceiling)', measure: () => raw.oneWay(n, size) },
        ...(size === SIZE
          ? [
              {
                id: 'raw-relay',
                system: 'raw, through a byte relay (floor for a broker)',
                measure: () => raw.relayOneWay(n, size),
              },
            ]
          : []),
        {
          id: 'postbox-unix',
          system: 'Postbox (kernel, unix)',
          measure: () => postbox.oneWay(n, size, 'unix'),
        },
        {
          id: 'postbox-batch',
          system: 'Postbox (unix), sendMany + batches()',
          measure: () => postbox.oneWay(n, size, 'unix', undefined, 'batch'),
        },
        ...(size === SIZE
          ? [
              {
                id: 'postbox-consume',
                system: 'Postbox (unix), send() + consume()',
                measure: () => postbox.oneWay(n, size, 'unix', undefined, 'callback'),
              },
            ]
          : []),
        ...(size === SIZE && !opt['fresh-kernel']
          ? [
              {
                id: 'postbox-fresh',
                system: 'Postbox (unix), a fresh kernel per run',
                measure: () => postbox.oneWay(n, size, 'unix', undefined, 'each', 'fresh'),
              },
            ]
          : []),
        { id: 'postbox-tcp', system: 'Postbox (kernel, tcp)', measure: () => postbox.oneWay(n, size, 'tcp') },
        ...(size === SIZE
          ? [
              {
                id: 'postbox-unix-cap',
                system: 'Postbox (unix, capacity 10,000)',
                measure: () => postbox.oneWay(n, size, 'unix', 10_000),
              },
            ]
          : []),
        osRow('sysv', 'System V msgsnd/msgrcv', size, p.limits.msgmax, 'kernel.msgmax'),
        osRow('posix', 'POSIX mq_send/mq_receive', size, p.limits.mqMsgsizeMax, 'fs.mqueue.msgsize_max'),
        osRow('pipe', 'pipe write/read', size, Number.POSITIVE_INFINITY, ''),
        {
          id: 'nats',
          system: 'NATS pub/sub',
          ...(natsNa !== undefined ? { unavailable: natsNa } : {}),
          measure: () => nats.fan(natsUrl!, n, size, 1, 1),
        },
        {
          id: 'zmq',
          system: 'ZeroMQ PUSH/PULL',
          ...(zmqNa !== undefined ? { unavailable: zmqNa } : {}),
          measure: () => zmq.fan(slow(n), size, 1, 1),
        },
        { id: 'node-ipc', system: 'Node child_process IPC', measure: () => nodeIpc.oneWay(slow(n), size) },
      ],
    };
  };

  const latency: Column[] = [
    { key: 'value', label: 'p50', unit: 'µs' },
    { key: 'p99', label: 'p99', unit: 'µs' },
    { key: 'perSec', label: 'round trips/s', unit: 'calls/s' },
  ];
  const rt = (r: Promise<import('./peer-common.js').RoundTripResult>) => r.then(latencyOf);

  return [
    oneWay(100, 'oneway-100', '100 B'),
    oneWay(1024, 'oneway-1k', '1 KiB'),
    oneWay(65536, 'oneway-64k', '64 KiB'),
    {
      id: 'rtt',
      title: 'Round trip, 100 B',
      detail: `${fmt(N.rounds)} round trips (after ${fmt(N.rttWarmup)} not timed), one at a time: a request to an echoing process and its answer back.`,
      better: 'lower',
      columns: latency,
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        {
          id: 'raw',
          system: 'raw Unix socket (ceiling)',
          measure: () => rt(raw.pingPong(N.rounds, SIZE, N.rttWarmup)),
        },
        {
          id: 'raw-relay',
          system: 'raw, through a byte relay (4 hops, floor for a broker)',
          measure: () => rt(raw.pingPong(N.rounds, SIZE, N.rttWarmup, 1, true)),
        },
        {
          id: 'postbox-unix',
          system: 'Postbox (kernel, unix)',
          measure: () => postbox.pingPong(N.rounds, SIZE, N.rttWarmup, 'unix'),
        },
        {
          id: 'postbox-consume',
          system: 'Postbox (unix), consume() at both ends',
          measure: () => postbox.pingPong(N.rounds, SIZE, N.rttWarmup, 'unix', 'callback'),
        },
        {
          id: 'postbox-tcp',
          system: 'Postbox (kernel, tcp)',
          measure: () => postbox.pingPong(N.rounds, SIZE, N.rttWarmup, 'tcp'),
        },
        ...(['sysv', 'posix', 'pipe'] as const).map((kind) => ({
          id: kind,
          system: {
            sysv: 'System V msgsnd/msgrcv',
            posix: 'POSIX mq_send/mq_receive',
            pipe: 'pipe write/read',
          }[kind],
          ...(osNa !== undefined ? { unavailable: osNa } : {}),
          measure: () => os.pingPong(bin, kind, N.rounds, SIZE),
        })),
        {
          id: 'nats',
          system: 'NATS request/reply',
          ...(natsNa !== undefined ? { unavailable: natsNa } : {}),
          measure: () => rt(nats.request(natsUrl!, N.rounds, SIZE, N.rttWarmup)),
        },
        {
          id: 'zmq',
          system: 'ZeroMQ REQ/REP',
          ...(zmqNa !== undefined ? { unavailable: zmqNa } : {}),
          measure: () => zmq.reqRep(N.rounds, SIZE, N.rttWarmup),
        },
        {
          id: 'node-ipc',
          system: 'Node child_process IPC',
          measure: () => nodeIpc.pingPong(N.rounds, SIZE, N.rttWarmup),
        },
      ],
    },
    {
      id: 'fanout',
      title: 'One producer to four consumers, 100 B',
      detail: `${fmt(N.fanOut)} messages (ZeroMQ: ${fmt(slow(N.fanOut))}) from one process, each taken by exactly one of four consumer processes; all consumers' messages, first to last. Raw: the producer splits its stream over four sockets.`,
      better: 'higher',
      columns: [perSec()],
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        {
          id: 'raw',
          system: 'raw Unix socket, 1 → 4 sockets (ceiling)',
          measure: () => raw.fan(N.fanOut, SIZE, 1, 4),
        },
        {
          id: 'postbox',
          system: 'Postbox, one shared mailbox',
          measure: () => postbox.fan(N.fanOut, SIZE, 1, 4, 'shared'),
        },
        {
          id: 'postbox-batch',
          system: 'Postbox, one shared mailbox, sendMany + batches()',
          measure: () => postbox.fan(N.fanOut, SIZE, 1, 4, 'shared', 'batch'),
        },
        {
          id: 'nats',
          system: 'NATS queue group',
          ...(natsNa !== undefined ? { unavailable: natsNa } : {}),
          measure: () => nats.fan(natsUrl!, N.fanOut, SIZE, 1, 4),
        },
        {
          id: 'zmq',
          system: 'ZeroMQ PUSH → 4 PULL',
          ...(zmqNa !== undefined ? { unavailable: zmqNa } : {}),
          measure: () => zmq.fan(slow(N.fanOut), SIZE, 1, 4),
        },
      ],
    },
    {
      id: 'fanin',
      title: 'Ten producers to one consumer, 100 B',
      detail: `${fmt(N.fanIn)} messages (ZeroMQ: ${fmt(slow(N.fanIn))}) from ten producer processes to one consumer process.`,
      better: 'higher',
      columns: [perSec()],
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        {
          id: 'raw',
          system: 'raw Unix socket, 10 → 1 (ceiling)',
          measure: () => raw.fan(N.fanIn, SIZE, 10, 1),
        },
        {
          id: 'postbox-shared',
          system: 'Postbox, one mailbox',
          measure: () => postbox.fan(N.fanIn, SIZE, 10, 1, 'shared'),
        },
        {
          id: 'postbox-ten',
          system: 'Postbox, ten mailboxes read interleaved',
          measure: () => postbox.fan(N.fanIn, SIZE, 10, 1, 'one per producer'),
        },
        {
          id: 'nats',
          system: 'NATS, one subject',
          ...(natsNa !== undefined ? { unavailable: natsNa } : {}),
          measure: () => nats.fan(natsUrl!, N.fanIn, SIZE, 10, 1),
        },
        {
          id: 'zmq',
          system: 'ZeroMQ 10 PUSH → PULL',
          ...(zmqNa !== undefined ? { unavailable: zmqNa } : {}),
          measure: () => zmq.fan(slow(N.fanIn), SIZE, 10, 1),
        },
      ],
    },
    {
      id: 'rendezvous',
      title: 'Zero-capacity (rendezvous) sends, 100 B',
      detail: `Capacity 0: a send completes only when a receiver has taken the message. ${fmt(N.rendezvous1)} sends one at a time, ${fmt(N.rendezvous64)} with 64 outstanding; the sender's rate. Ceiling: raw ping-pong round trips per second.`,
      better: 'higher',
      columns: [perSec('sends/s')],
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        {
          id: 'raw',
          system: 'raw Unix socket ping-pong (ceiling)',
          measure: async () => {
            const r = await raw.pingPong(N.rendezvous1, SIZE, N.warmup);
            return { value: (r.rounds / r.ms) * 1000 };
          },
        },
        {
          id: 'postbox-unix-1',
          system: 'Postbox (unix), 1 outstanding',
          measure: () => postbox.rendezvous(N.rendezvous1, SIZE, 1, 'unix'),
        },
        {
          id: 'postbox-tcp-1',
          system: 'Postbox (tcp), 1 outstanding',
          measure: () => postbox.rendezvous(N.rendezvous1, SIZE, 1, 'tcp'),
        },
        {
          id: 'postbox-unix-64',
          system: 'Postbox (unix), 64 outstanding',
          measure: () => postbox.rendezvous(N.rendezvous64, SIZE, 64, 'unix'),
        },
      ],
    },
    {
      id: 'rpc',
      title: 'RPC, 64 calls in flight',
      detail: `Calls per second from one client process to one server process with 64 calls outstanding: raw and NATS echo 100 B bodies (raw: ${fmt(N.rpcRaw)} echoes; NATS: ${fmt(N.rpc)} requests); Postbox RPC is bench/rpc.ts calling add(i, 1) (${fmt(N.rpc)} calls, and ${fmt(N.rpcSequential)} one at a time for the 1-in-flight figure); each after ${fmt(N.rpcWarmup)} calls not timed, as many in flight.`,
      better: 'higher',
      columns: [perSec('calls/s'), { key: 'inFlight1', label: '1 in flight', unit: 'calls/s' }],
      ceiling: 'raw',
      runs: RUNS,
      rows: [
        {
          id: 'raw',
          system: 'raw Unix socket echo (ceiling)',
          measure: async () => {
            const r = await raw.pingPong(N.rpcRaw, SIZE, N.rpcWarmup, 64);
            return { value: (r.rounds / r.ms) * 1000 };
          },
        },
        {
          id: 'nats',
          system: 'NATS request/reply',
          ...(natsNa !== undefined ? { unavailable: natsNa } : {}),
          measure: async () => {
            const r = await nats.request(natsUrl!, N.rpc, SIZE, N.rpcWarmup, 64);
            return { value: (r.rounds / r.ms) * 1000 };
          },
        },
        {
          id: 'postbox-rpc',
          system: 'Postbox RPC (kernel, unix)',
          ...(p.rpc.ok ? {} : { unavailable: p.rpc.detail }),
          measure: async () => {
            const shared = sharedKernel();
            const r = await p.rpc.run!({
              sequentialCalls: N.rpcSequential,
              pipelinedCalls: N.rpc,
              warmup: N.rpcWarmup,
              ...(shared !== null ? { kernel: { socket: shared.socket, env: shared.env } } : {}),
            });
            return { value: r.inFlight64, inFlight1: r.inFlight1 };
          },
        },
      ],
    },
    {
      id: 'memory',
      title: 'Kernel memory with 1,000,000 queued 100-byte messages',
      detail: `One process sends ${fmt(N.queued)} messages of 100 B to an unbounded mailbox nobody reads; once all are acknowledged (queued), the kernel's VmRSS from /proc/<pid>/status.`,
      better: 'lower',
      columns: [
        { key: 'value', label: 'kernel RSS', unit: 'bytes' },
        { key: 'empty', label: 'RSS before', unit: 'bytes' },
        { key: 'perMessage', label: 'bytes per message', unit: 'count' },
        { key: 'fillPerSec', label: 'fill rate', unit: 'msg/s' },
      ],
      runs: RUNS,
      rows: [
        { id: 'postbox', system: 'Postbox kernel', measure: () => postbox.queuedMemory(N.queued, SIZE) },
      ],
    },
    {
      id: 'connections',
      title: 'Kernel with 1,000 idle client connections',
      detail: `${N.connections.processes} OS processes each open ${N.connections.each} connections (connect(), each a Postbox process); then the kernel's VmRSS and its CPU over ${N.connections.idleMs / 1000} s of idleness (/proc/<pid>/stat; TCP clients send heartbeats).`,
      better: 'lower',
      columns: [
        { key: 'value', label: 'kernel RSS', unit: 'bytes' },
        { key: 'cpuPct', label: 'idle CPU', unit: '%' },
        { key: 'perConnection', label: 'bytes per connection', unit: 'count' },
      ],
      runs: quick ? 1 : RUNS,
      rows: (['unix', 'tcp'] as const).map((t) => ({
        id: t,
        system: `Postbox kernel, ${t}`,
        measure: () =>
          postbox.idleConnections(N.connections.processes, N.connections.each, t, N.connections.idleMs),
      })),
    },
  ];
}

// ---------------------------------------------------------------- measuring

async function measure(def: SectionDef): Promise<SectionResult> {
  log(`\n## ${def.title} (${def.runs} runs)`);
  const samples = new Map<string, Sample[]>(def.rows.map((r) => [r.id, []]));
  const errors = new Map<string, string[]>(def.rows.map((r) => [r.id, []]));
  for (let run = 1; run <= def.runs; run++) {
    for (const row of def.rows) {
      if (row.unavailable !== undefined) continue;
      const t0 = performance.now();
      try {
        const s = await row.measure();
        samples.get(row.id)!.push(s);
        log(
          `  ${row.system} run ${run}/${def.runs}: ${formatValue(s.value, def.columns[0]!.unit)} ${def.columns[0]!.label} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
        );
      } catch (err) {
        const msg = (err as Error).message.split('\n')[0]!;
        errors.get(row.id)!.push(msg);
        log(`  ${row.system} run ${run}/${def.runs}: FAILED ${msg}`);
      }
    }
  }
  const rows: RowResult[] = def.rows.map((row) => {
    const ss = samples.get(row.id)!;
    const errs = errors.get(row.id)!;
    const st: RowResult['stats'] = {};
    for (const c of def.columns) st[c.key] = stats(ss.map((s) => s[c.key] ?? Number.NaN));
    const notes: string[] = [];
    if (row.unavailable !== undefined) notes.push(`not run: ${row.unavailable}`);
    if (errs.length > 0) notes.push(`${errs.length} of ${def.runs} runs failed: ${errs[0]}`);
    const lost = Math.max(0, ...ss.map((s) => s.lost ?? 0));
    if (lost > 0) notes.push(`lost up to ${fmt(lost)} messages in a run`);
    return {
      id: row.id,
      system: row.system,
      status: row.unavailable !== undefined ? 'unavailable' : ss.length === 0 ? 'failed' : 'ok',
      ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
      samples: ss,
      stats: st,
    };
  });
  const ceiling = rows.find((r) => r.id === def.ceiling);
  const base = ceiling?.status === 'ok' ? ceiling.stats.value!.median : Number.NaN;
  for (const r of rows) if (r.status === 'ok' && base > 0) r.vsCeiling = r.stats.value!.median / base;
  const { rows: _defs, ...rest } = def;
  return { ...rest, rows };
}

// ---------------------------------------------------------------- docs

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m !== null) return m[1]!.trim();
  } catch {}
  return cpus()[0]?.model ?? 'unknown';
}

/** One line per workload: the medians of the ceiling, Postbox and each peer. */
function headline(r: Results): string {
  const cols = [
    ['raw', 'raw Unix socket'],
    ['postbox', 'Postbox (unix)'],
    ['vs', 'Postbox vs raw'],
    ['nats', 'NATS'],
    ['zmq', 'ZeroMQ'],
    ['sysv', 'System V'],
    ['posix', 'POSIX mq'],
    ['pipe', 'pipe'],
    ['node-ipc', 'Node IPC'],
  ] as const;
  const postboxRow: Record<string, string> = {
    'oneway-100': 'postbox-unix',
    'oneway-1k': 'postbox-unix',
    'oneway-64k': 'postbox-unix',
    rtt: 'postbox-unix',
    fanout: 'postbox',
    fanin: 'postbox-shared',
    rendezvous: 'postbox-unix-1',
    rpc: 'postbox-rpc',
  };
  const lines = [
    `| workload | ${cols.map((c) => c[1]).join(' | ')} |`,
    `|---|${cols.map(() => '--:').join('|')}|`,
  ];
  for (const s of r.sections) {
    const pb = postboxRow[s.id];
    if (pb === undefined) continue;
    const unit = s.columns[0]!;
    const cell = (id: string): string => {
      const row = s.rows.find((x) => x.id === id);
      if (row === undefined) return '';
      if (row.status !== 'ok') return 'n/a';
      return formatValue(row.stats.value!.median, unit.unit);
    };
    const cells = cols.map(([k]) =>
      k === 'vs' ? ratio(s.rows.find((x) => x.id === pb)?.vsCeiling) : k === 'postbox' ? cell(pb) : cell(k),
    );
    const what = s.id === 'rtt' ? `${s.title}, p50 µs` : `${s.title}, ${unit.label}`;
    lines.push(`| ${what} | ${cells.join(' | ')} |`);
  }
  const mem = r.sections.find((s) => s.id === 'memory')?.rows[0];
  if (mem?.status === 'ok')
    lines.push(
      `| Kernel RSS, 1M queued 100 B messages | | ${formatValue(mem.stats.value!.median, 'bytes')} | | | | | | | |`,
    );
  return lines.join('\n');
}

/** How the Postbox kernel was run, for the page's opening (older results do not say). */
function kernelNote(r: Results): string {
  if (r.env.kernel === 'shared, warmed up')
    return ' The Postbox kernel is a daemon and is run as the NATS server is: one kernel for the whole run, warmed up by untimed messages first, with fresh client processes and mailboxes in every run (the row "a fresh kernel per run" shows a cold one; `--fresh-kernel` runs every row that way).';
  if (r.env.kernel === 'fresh per run')
    return ' Every Postbox run started a kernel of its own (`--fresh-kernel`).';
  return '';
}

/** Under the docs' comparison: why it flags nothing, when the baseline's workload differs. */
function baselineNote(r: Results): string {
  const differs = baseline === null ? null : workloadDiffers(baseline, r);
  return differs === null ? '' : `\nNot judged: ${differs}.\n`;
}

function docsPage(r: Results, changes: Change[] | null): string {
  const env = r.env as { cpu: string; nproc: number; node: string; os: string; memory: string; load: string };
  const min = (r.durationMs / 60_000).toFixed(1);
  return `# Benchmarks

Postbox next to the raw Unix-socket ceiling and its peers — the operating system's own message
passing (System V message queues, POSIX message queues, pipes: small C programs), NATS, ZeroMQ and
Node's \`child_process\` IPC channel — always between separate OS processes, all measured in one run.
This page is written by the harness (\`bench/run.ts\`) from the run of ${r.date.slice(0, 10)}.${kernelNote(r)}

![One-way throughput, 100 B messages](bench-throughput.svg)

## Headline

Medians of ${r.sections[0]?.runs ?? 3} runs each. Throughput in messages (or calls, or sends) per
second, higher is better; round trip in microseconds, lower is better. "Postbox vs raw" is the
ratio of the two medians measured in the same run.

${headline(r)}

## Targets

${targetsTable(r.targets)}

Why a target is missed, with profiles and the experiments tried: [performance.md](performance.md).

## Machine

- ${env.nproc} CPUs (\`nproc\`), ${env.cpu} (from /proc/cpuinfo), ${env.memory} of memory
- Node ${env.node}, ${env.os}
- load average before / after the run: ${env.load}. The machine is shared and other work ran
  during the run: absolute figures move from run to run; ratios within one run are what to compare.

## Reproduce

\`\`\`sh
npm install
npm run bench                 # the full run (${min} min here); -- --quick for a one-minute subset
npm run bench -- --only rtt   # one section (ids in \`npm run bench -- --help\`)
\`\`\`

The first run installs what the peers need: the npm packages in \`bench/package.json\` (\`nats\`,
\`zeromq\`) with \`npm ci --prefix bench\` (never part of the root install), \`nats-server\` from
Debian's packages when missing (as root; it is started by the harness on 127.0.0.1 with a random
port, and stopped after), and the C programs in \`bench/native/\` built with gcc into a temp folder.
A peer that cannot be installed is listed as not available, and its rows say why.

Results go to \`bench/results/latest.json\`. A full run also rewrites this page and its chart
(\`docs/benchmarks.md\`, \`docs/bench-throughput.svg\`) with its own figures; \`--no-docs\` leaves them. If \`bench/results/baseline.json\` exists, the run is
compared with it by each row's ratio to the raw ceiling of its own run (not by absolute times). A
Postbox row whose ratio fell by more than 20%, or that failed where the baseline has a figure, is
flagged as a regression (\`--fail-on-regression\` makes that exit 1; \`--save-baseline\` writes a new
baseline); the other systems' changes are shown, not judged. A quick run compared with a full
baseline (or the other way round) moved other message counts, and a \`--fresh-kernel\` run against a
baseline on the shared kernel (or the other way round) measured Postbox on another setup: their
changes are shown, not judged.

## How each workload is measured

- Every row is its own set of OS processes, started for the measurement and stopped after it; a
  Postbox row has processes and mailboxes of its own, on the run's one kernel (above) unless it says
  otherwise. Rows of a section are interleaved (row 1, row 2, …, row 1, …),
  so a slow spell of the machine spreads over all of them.
- One-way: the receiver's rate from its first message to its last. Postbox senders pipeline sends
  with a window of unacknowledged sends: 4,096 of 100 B, 1,024 of 1 KiB and up (2,048 over TCP, 4,096 into the bounded mailbox;
  \`sendMany\`: batches of 256), and receivers iterate (or, in the \`consume()\` row, have a
  handler called) with prefetch 16,384, the kernel's most; NATS publishers flush every 1,024 messages (NATS core has no
  end-to-end flow control: lost messages would be noted); ZeroMQ v6 allows one awaited send at a
  time per socket; Node IPC uses the default JSON serialization. The C programs make one system call
  per send and one per receive, with each queue at the depth the OS gives (System V: msgmnb bytes;
  POSIX: msg_max messages); System V and POSIX queues cannot carry 64 KiB messages under this
  machine's default limits, and the harness does not change system settings.
- The ceiling ("raw") is two Node processes over a Unix socket, length-prefixed frames batched
  into 64 KiB writes, nothing in between: the most a Node design could hope for. The C programs
  are not bound by Node, so a pipe can beat it (a ratio above 1×).
- Round trip: one request at a time to a process that echoes it; p50 and p99 of every round trip.
- 1 → 4 and 10 → 1: all data messages over all consumers, from the first received to the last.
- Rendezvous: a mailbox of capacity 0, where a send completes only once a receiver has taken it.
- Memory and connections: the kernel's VmRSS from \`/proc/<pid>/status\` and CPU time from
  \`/proc/<pid>/stat\`. The memory target's 300 MB is read as 300 × 10⁶ bytes; MiB are shown too.

## All results

${fullReport(r)}
${changes === null ? '' : `\n### Compared with the baseline\n\n${changes.length === 0 ? 'Nothing to compare.' : comparisonTable(changes, r.sections)}\n${baselineNote(r)}`}`;
}

// ---------------------------------------------------------------- main

async function measureRun(): Promise<Results> {
  const started = performance.now();
  const loadBefore = loadavg();
  const peers = await setupPeers();
  let defs = sections(peers);
  const selected = only ?? (quick ? QUICK_SECTIONS : undefined);
  if (selected !== undefined) {
    defs = defs.filter((d) => selected.includes(d.id));
  }
  log(
    `${quick ? 'quick run' : only !== undefined ? 'sections' : 'full run'}: ${defs.map((d) => d.id).join(', ')}; ${RUNS} runs per row${RUNS < MIN_JUDGED ? ' (too few to judge the targets)' : ''}`,
  );

  const results: SectionResult[] = [];
  let kernel: SharedKernel | null = null;
  try {
    if (!opt['fresh-kernel']) {
      log('starting the shared Postbox kernel and warming it up (not timed)');
      try {
        kernel = await startSharedKernel();
        useSharedKernel(kernel);
        peers.table['Postbox kernel'] = {
          ok: true,
          detail: `one kernel for the run (Unix socket and TCP), warmed up by ${fmt(kernel.warmedBy.messages)} messages (${(kernel.warmedBy.ms / 1000).toFixed(1)} s) before the first timed run; the memory rows start their own`,
        };
      } catch (err) {
        // Said in the report, and every run starts its own kernel instead.
        log(`  the shared kernel failed: ${(err as Error).message}`);
        peers.table['Postbox kernel'] = {
          ok: false,
          detail: `the shared kernel failed (${(err as Error).message}); every run started a kernel of its own`,
        };
      }
    } else
      peers.table['Postbox kernel'] = { ok: true, detail: 'a fresh kernel for every run (--fresh-kernel)' };
    for (const d of defs) results.push(await measure(d));
  } finally {
    useSharedKernel(null);
    await kernel?.stop();
    if (peers.natsServer !== undefined) await stop([peers.natsServer.proc]);
  }

  return {
    date: new Date().toISOString(),
    quick,
    durationMs: performance.now() - started,
    env: {
      node: process.version,
      os: `${platform()} ${release()} ${arch()}`,
      cpu: cpuModel(),
      nproc: cpus().length,
      memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
      load: `${loadBefore.map((x) => x.toFixed(2)).join(', ')} / ${loadavg()
        .map((x) => x.toFixed(2))
        .join(', ')}`,
      runs: RUNS,
      only: selected ?? null,
      kernel: opt['fresh-kernel'] ? 'fresh per run' : 'shared, warmed up',
    },
    peers: peers.table,
    sections: results,
    targets: targets(results, RUNS),
  };
}

async function main(): Promise<void> {
  installCleanup();
  const started = performance.now();
  // --from FILE: no measuring, only the tables, comparison and docs of saved results.
  const r: Results = fromResults ?? (await measureRun());
  const results = r.sections;

  for (const s of results) console.log(`\n### ${s.title}\n\n${s.detail}\n\n${sectionTable(s)}`);
  console.log(`\n### Targets\n\n${targetsTable(r.targets)}`);
  console.log(`\n### Peers\n\n${peersTable(r.peers)}`);

  // Baseline (read at start): compared by ratios to the ceiling of each run.
  let changes: Change[] | null = null;
  const sameFile = fromFile !== null && fileURLToPath(baselineFile) === fileURLToPath(fromFile);
  if (baseline !== null && !sameFile) {
    const base = baseline;
    changes = compare(base, r);
    const regressions = changes.filter((c) => c.regression);
    const differs = workloadDiffers(base, r);
    console.log(
      `\n### Compared with the baseline (${base.date.slice(0, 10)}${base.quick ? ', quick' : ''})\n\n${changes.length === 0 ? 'Nothing to compare.' : comparisonTable(changes, results)}`,
    );
    // With different workloads compare() calls nothing a regression, so --fail-on-regression
    // cannot fail on noise either.
    console.log(
      differs !== null
        ? `\nNot judged: ${differs}.`
        : regressions.length === 0
          ? '\nNo regression: no Postbox ratio fell by more than 20%, and no Postbox row the baseline has failed.'
          : `\n${regressions.length} regression(s): ${regressions.map((c) => `${c.section}/${c.row}${c.failed ? ` (${c.status})` : ''}`).join(', ')}`,
    );
    // Not a regression (there is nothing to judge by), but not to pass in silence either.
    const unjudged = changes.filter((c) => c.notCompared !== undefined && c.system.startsWith('Postbox'));
    if (unjudged.length > 0)
      console.log(
        `${unjudged.length} Postbox row(s) not compared: ${unjudged.map((c) => `${c.section}/${c.row}: ${c.notCompared}`).join('; ')}`,
      );
    if (regressions.length > 0 && opt['fail-on-regression']) process.exitCode = 1;
  } else if (!sameFile) {
    console.log(
      opt['save-baseline']
        ? '\n(no baseline to compare with; this run is saved as the baseline)'
        : `\n(no baseline at ${baselineFile.pathname}: run with --save-baseline to make one)`,
    );
  }

  await mkdir(RESULTS, { recursive: true });
  const json = `${JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
  if (opt.from === undefined) await writeFile(new URL('latest.json', RESULTS), json);
  if (opt['save-baseline']) await writeFile(new URL('baseline.json', RESULTS), json);

  const writeDocs = opt['no-docs'] ? false : (opt.docs ?? (!r.quick && r.env.only === null));
  if (writeDocs) {
    await mkdir(DOCS, { recursive: true });
    const oneWay = results.find((s) => s.id === 'oneway-100');
    if (oneWay !== undefined) {
      const env = r.env as { nproc: number; cpu: string; node: string };
      const sub = [
        `${oneWay.detail.split(';')[0]}; medians of ${oneWay.runs} runs.`,
        `${env.nproc} CPUs (${env.cpu}), Node ${env.node}, ${r.date.slice(0, 10)}; a shared machine: compare ratios, not absolute figures.`,
      ];
      await writeFile(new URL('bench-throughput.svg', DOCS), barChart(oneWay, sub));
    }
    await writeFile(new URL('benchmarks.md', DOCS), docsPage(r, changes));
    // In the project's Markdown style (biome aligns tables), so that `npm run lint` passes on it.
    const biome = fileURLToPath(new URL('../node_modules/.bin/biome', BENCH));
    if (existsSync(biome)) {
      const f = runSync(biome, ['format', '--write', fileURLToPath(new URL('benchmarks.md', DOCS))], 60_000);
      if (!f.ok) log(`biome format docs/benchmarks.md failed: ${f.output.trim().split('\n')[0]}`);
    }
    log('wrote docs/benchmarks.md and docs/bench-throughput.svg');
  }
  log(`\nbench finished in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopAll());

// RPC calls per second: a kernel, one server process and this process as the one client, each
// its own OS process; small arguments (`add(i, 1)`), with 1 and with 64 calls in flight.
//   node dist/bench/rpc.js [--calls N]
//   node dist/bench/rpc.js --socket PATH --sequential N --pipelined N --warmup N   (a running kernel)
// runRpcBench() measures from the calling process and always reaps its children;
// runRpcBenchApart() runs it in a process of its own, as bench/run.ts does.

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '../src/client/mod.js';
import { stub } from '../src/faces/rpc.js';
import { nodeChild, removeDir, session, spawnTracked, tempDir } from './harness.js';
import type { benchHandlers } from './rpc-server.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SERVER = fileURLToPath(new URL('./rpc-server.js', import.meta.url));

export interface RpcBenchOptions {
  /** Calls timed with one in flight (default 5,000). */
  sequentialCalls?: number;
  /** Calls timed with 64 in flight (default 50,000). */
  pipelinedCalls?: number;
  /** Calls made first and not timed, 64 in flight, after up to 1,000 one at a time (default 2,000). */
  warmup?: number;
  /**
   * A running kernel to use (the bench's shared one): its socket and environment. Without it a
   * kernel is started for the measurement and stopped after.
   */
  kernel?: { socket: string; env: NodeJS.ProcessEnv };
}

// A shared kernel serves many runs: each registers its service under a name of its own, so a
// run never meets the previous run's server on its way out.
let runs = 0;

export interface RpcBenchResult {
  /** Calls per second, one call at a time (each awaited before the next). */
  inFlight1: number;
  /** Calls per second with 64 calls outstanding at all times. */
  inFlight64: number;
}

/** Starts a child and resolves once a line of its output matches `ready`. */
function startChild(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  stderr: 'inherit' | 'ignore',
): Promise<ChildProcess> {
  // Spawned and tracked by the harness: reaped on Ctrl-C or SIGTERM, and when this process dies.
  const child = spawnTracked(process.execPath, args, {
    env,
    stdin: 'ignore',
    stderr: stderr === 'ignore' ? 'pipe' : 'inherit',
  });
  if (stderr === 'ignore') child.stderr?.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start in 10 s`)), 10_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (ready.test(line)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args[0]} exited with ${code} before it was ready`));
    });
  });
}

async function stopChild(child: ChildProcess | null): Promise<void> {
  if (child === null || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

/** Makes `calls` calls with 64 in flight at all times, checking every answer. */
function pipelined(calc: { add(a: number, b: number): Promise<number> }, calls: number): Promise<void> {
  let started = 0;
  return new Promise<void>((resolve, reject) => {
    if (calls === 0) return resolve();
    let done = 0;
    const next = (): void => {
      const i = started++;
      calc.add(i, 1).then((v) => {
        if (v !== i + 1) return reject(new Error('wrong answer'));
        if (++done === calls) return resolve();
        if (started < calls) next();
      }, reject);
    };
    for (let k = 0; k < 64 && started < calls; k++) next();
  });
}

/** Measures RPC calls per second with 1 and 64 calls in flight. */
export async function runRpcBench(options: RpcBenchOptions = {}): Promise<RpcBenchResult> {
  const sequential = options.sequentialCalls ?? 5_000;
  const pipelinedCalls = options.pipelinedCalls ?? 50_000;
  const warmup = options.warmup ?? 2_000;
  const dir = tempDir('pb-rpc-bench-');
  const socket = options.kernel?.socket ?? join(dir, 'k.sock');
  const env = { ...(options.kernel?.env ?? process.env), POSTBOX_SOCKET: socket };
  const service = `bench-${process.pid}-${++runs}`;
  let kernel: ChildProcess | null = null;
  let server: ChildProcess | null = null;
  let proc: Awaited<ReturnType<typeof connect>> | null = null;
  try {
    if (options.kernel === undefined)
      kernel = await startChild([CLI, 'kernel', '--socket', socket], env, /listening on unix:/, 'ignore');
    server = await startChild([SERVER, service], env, /^ready$/, 'inherit');
    proc = await connect({ socket });
    const calc = stub<typeof benchHandlers>(proc, service);
    // Warm-up of both shapes measured: one at a time (bounded: a call costs a round trip), and
    // 64 in flight.
    for (let i = 0; i < Math.min(warmup, 1_000); i++) await calc.add(i, 1);
    await pipelined(calc, warmup);

    let t0 = performance.now();
    for (let i = 0; i < sequential; i++) {
      if ((await calc.add(i, 1)) !== i + 1) throw new Error('wrong answer');
    }
    const inFlight1 = sequential / ((performance.now() - t0) / 1000);

    t0 = performance.now();
    await pipelined(calc, pipelinedCalls);
    const inFlight64 = pipelinedCalls / ((performance.now() - t0) / 1000);
    return { inFlight1, inFlight64 };
  } finally {
    await proc?.close().catch(() => {});
    await stopChild(server);
    await stopChild(kernel);
    removeDir(dir);
  }
}

/**
 * runRpcBench() in a client process of its own, as every other row's clients are: measured from
 * inside the harness, the client shared its process with the harness's own heap and work, and
 * the row measured that too.
 */
export function runRpcBenchApart(options: RpcBenchOptions): Promise<RpcBenchResult> {
  const args = [
    '--sequential',
    String(options.sequentialCalls ?? 5_000),
    '--pipelined',
    String(options.pipelinedCalls ?? 50_000),
    '--warmup',
    String(options.warmup ?? 2_000),
    ...(options.kernel !== undefined ? ['--socket', options.kernel.socket] : []),
  ];
  return session('postbox rpc', 180_000, async (s) => {
    const client = s.add(nodeChild('postbox rpc client', 'rpc', args, options.kernel?.env));
    return Promise.race([client.json<RpcBenchResult>(), client.failure()]);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string' },
      sequential: { type: 'string' },
      pipelined: { type: 'string' },
      warmup: { type: 'string' },
      socket: { type: 'string' },
    },
  });
  const count = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, not ${v}`);
    return n;
  };
  const calls = count(values.calls, 'calls');
  const r = await runRpcBench({
    ...(calls !== undefined ? { sequentialCalls: calls, pipelinedCalls: calls * 10 } : {}),
    ...(values.sequential !== undefined ? { sequentialCalls: count(values.sequential, 'sequential') } : {}),
    ...(values.pipelined !== undefined ? { pipelinedCalls: count(values.pipelined, 'pipelined') } : {}),
    ...(values.warmup !== undefined ? { warmup: count(values.warmup, 'warmup') } : {}),
    ...(values.socket !== undefined ? { kernel: { socket: values.socket, env: process.env } } : {}),
  });
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  console.log(`RPC calls/s, 1 in flight: ${fmt(r.inFlight1)}; 64 in flight: ${fmt(r.inFlight64)}`);
  console.log(JSON.stringify(r));
}

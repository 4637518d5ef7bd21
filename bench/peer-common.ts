// Helpers for the child scripts (raw-peer, pb-peer, nats-peer, zmq-peer, node-ipc-peer): the
// harness talks to them by lines — a child prints `ready`, waits for `go` on stdin, prints one JSON
// result line — and a child exits when its stdin closes (the harness is gone) or on its own time
// limit, so none outlives a run.

import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** What a one-way receiver reports: data messages, and wall times of the first and last. */
export interface CountResult {
  received: number;
  /** ms since the epoch, sub-ms precision (performance.timeOrigin + now). */
  first: number;
  last: number;
}

/** What a round-trip client reports. */
export interface RoundTripResult {
  rounds: number;
  /** Wall time of all measured rounds. */
  ms: number;
  p50us: number;
  p99us: number;
  p999us: number;
  maxUs: number;
}

/** What a sender reports. */
export interface SendReport {
  sent: number;
  ms: number;
}

export const wallMs = (): number => performance.timeOrigin + performance.now();

/**
 * Sends `messages` copies of `body` with `sendMany` of `every` at a time, at most `window`
 * unacknowledged (the batch API's sender, shared by pb-peer and postbox-pump).
 */
export async function sendInBatches(
  mailbox: { sendMany(bodies: Buffer[]): Promise<unknown> },
  body: Buffer,
  messages: number,
  every: number,
  window: number,
): Promise<void> {
  const full = new Array<Buffer>(every).fill(body);
  const batches: Promise<unknown>[] = [];
  let head = 0;
  const most = Math.max(1, Math.floor(window / every));
  for (let sent = 0; sent < messages; ) {
    const n = Math.min(every, messages - sent);
    batches.push(mailbox.sendMany(n === every ? full : full.slice(0, n)));
    sent += n;
    if (batches.length - head > most) await batches[head++];
  }
  await Promise.all(batches.slice(head));
}

export function fail(err: unknown): never {
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`${process.argv[2] ?? 'peer'}: ${text}\n`);
  process.exit(1);
}

/** Prints one line; with `exit`, exits once it is flushed (stdout to a pipe is async). */
export function say(line: string | object, exit = false): void {
  const text = typeof line === 'string' ? line : JSON.stringify(line);
  if (exit) process.stdout.write(`${text}\n`, () => process.exit(0));
  else process.stdout.write(`${text}\n`);
}

let goResolve: (() => void) | undefined;
const goPromise = new Promise<void>((r) => {
  goResolve = r;
});

/**
 * Starts listening to stdin: `go` resolves goSignal(); the end of stdin ends the process. Also sets
 * the process's own time limit.
 */
export function peerStart(limitMs = 180_000): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (l) => {
    if (l.trim() === 'go') goResolve?.();
  });
  rl.on('close', () => process.exit(0));
  setTimeout(() => fail(new Error(`time limit of ${limitMs} ms`)), limitMs).unref();
  process.on('unhandledRejection', fail);
}

export const goSignal = (): Promise<void> => goPromise;

/** Counts data messages and stamps the first and last; ends on idle after the first. */
export class Counter {
  received = 0;
  first = 0;
  last = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly expect: number,
    private readonly idleMs: number,
    private readonly onDone: () => void,
  ) {}

  /** Counts one message; true once the expected number has arrived. */
  hit(): boolean {
    const now = wallMs();
    if (this.received === 0) {
      this.first = now;
      this.armIdle();
    }
    this.last = now;
    this.received++;
    if (this.expect > 0 && this.received >= this.expect) {
      this.done();
      return true;
    }
    return false;
  }

  private armIdle(): void {
    if (this.idleMs <= 0) return;
    // Checked now and then instead of re-armed per message, which would cost more than the message.
    let seen = -1;
    this.idleTimer = setInterval(() => {
      if (this.received === seen) this.done();
      seen = this.received;
    }, this.idleMs);
  }

  private finished = false;
  done(): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.idleTimer);
    this.onDone();
  }

  result(): CountResult {
    return { received: this.received, first: this.first, last: this.last };
  }
}

/** Sorted latencies in µs to a RoundTripResult. */
export function roundTrips(latUs: Float64Array, ms: number): RoundTripResult {
  latUs.sort();
  const at = (p: number) => latUs[Math.min(latUs.length - 1, Math.max(0, Math.ceil(p * latUs.length) - 1))]!;
  return { rounds: latUs.length, ms, p50us: at(0.5), p99us: at(0.99), p999us: at(0.999), maxUs: at(1) };
}

/**
 * Loads a peer's npm package from bench/node_modules (installed by the harness from
 * bench/package.json), wherever this compiled file lives.
 */
export function requirePeer<T>(name: string): T {
  const benchPackage = fileURLToPath(new URL('../../bench/package.json', import.meta.url));
  return createRequire(benchPackage)(name) as T;
}

export function intArg(value: string | undefined, name: string, min = 0): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min)
    fail(new Error(`${name} must be an integer >= ${min}, not ${value}`));
  return n;
}

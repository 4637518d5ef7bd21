// Every measured row: one function per (system, workload) that starts its processes, moves the
// messages, stops everything and returns one Sample. bench/run.ts decides which rows run, how
// often, and in what order.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { anyFailure, Child, cpuMsOf, nodeChild, rssOf, session, sleep } from './harness.js';
import type { CountResult, RoundTripResult, SendReport } from './peer-common.js';
import { runPostboxPump } from './postbox.js';
import type { PumpApi } from './postbox-pump.js';
import { runRawPump } from './pump.js';
import type { SinkMode } from './raw-peer.js';
import { launchKernel, type SharedKernel } from './shared-kernel.js';

/** One run's figures: `value` is the row's headline figure, the rest are extra columns. */
export interface Sample {
  value: number;
  [key: string]: number;
}

/** Time limit of one measurement (its processes are stopped after it). */
const LIMIT_MS = 150_000;

// ---------------------------------------------------------------- combining results

/** Aggregate rate over several receivers: all data messages, first receipt to last. */
function rateOf(results: CountResult[], expected: number): Sample {
  const received = results.reduce((n, r) => n + r.received, 0);
  const counted = results.filter((r) => r.received > 0);
  if (counted.length === 0) throw new Error('no message arrived');
  const first = Math.min(...counted.map((r) => r.first));
  const last = Math.max(...counted.map((r) => r.last));
  const ms = Math.max(last - first, 1e-3);
  return { value: (received / ms) * 1000, received, lost: expected - received, ms };
}

function latencyOf(r: RoundTripResult): Sample {
  return { value: r.p50us, p99: r.p99us, perSec: (r.rounds / r.ms) * 1000 };
}

/** Waits for every consumer and producer to be ready, says `go` to the producers, and collects. */
async function fan(consumers: Child[], producers: Child[], expected: number): Promise<Sample> {
  const failed = anyFailure([...consumers, ...producers]);
  await Promise.race([Promise.all([...consumers, ...producers].map((c) => c.ready())), failed]);
  for (const p of producers) p.send('go');
  const results = await Promise.race([Promise.all(consumers.map((c) => c.json<CountResult>())), failed]);
  return rateOf(results, expected);
}

/** Split `total` into `parts` whole shares. */
const shares = (total: number, parts: number): number[] =>
  Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));

// ---------------------------------------------------------------- raw Unix socket (ceiling)

export const raw = {
  oneWay: async (messages: number, size: number): Promise<Sample> => {
    const r = await runRawPump({ messages, size });
    return { value: r.msgsPerSec };
  },

  /** One source process writing to `sinks` sink processes (fan-out), or the other way round. */
  fan: (messages: number, size: number, sources: number, sinks: number): Promise<Sample> =>
    session('raw fan', LIMIT_MS, async (s) => {
      const dir = s.dir('postbox-bench-raw-');
      const paths = Array.from({ length: sinks }, (_, i) => join(dir, `s${i}.sock`));
      // With one sink, every source connects to it; with one source, it connects to every sink.
      const perSink = sources === 1 ? shares(messages, sinks) : [messages];
      const sinkChildren = paths.map((p, i) =>
        s.add(
          nodeChild(`raw sink ${i}`, 'raw-peer', [
            'sink',
            p,
            String(sources === 1 ? 1 : sources),
            String(perSink[i]),
          ]),
        ),
      );
      await Promise.all(sinkChildren.map((c) => c.ready()));
      const sourceChildren = shares(messages, sources).map((n, i) =>
        s.add(nodeChild(`raw source ${i}`, 'raw-peer', ['source', String(n), String(size), paths.join(',')])),
      );
      return fan(sinkChildren, sourceChildren, messages);
    }),

  /**
   * One way through a relay process that forwards bytes untouched (raw-peer.ts relay): two hops
   * and three processes, with no work per message in the middle. The floor for a broker. `sink`
   * says how the receiver hands frames on (raw-peer.ts SinkMode); `viaRelay` false goes straight
   * from source to sink.
   */
  relayOneWay: (messages: number, size: number, sink: SinkMode = 'count', viaRelay = true): Promise<Sample> =>
    session('raw relay', LIMIT_MS, async (s) => {
      const dir = s.dir('postbox-bench-raw-');
      const sinkPath = join(dir, 'sink.sock');
      const relayPath = join(dir, 'relay.sock');
      const sinkChild = s.add(
        nodeChild('raw sink', 'raw-peer', ['sink', sinkPath, '1', String(messages), sink]),
      );
      await sinkChild.ready();
      const children = [sinkChild];
      if (viaRelay) {
        const relay = s.add(nodeChild('raw relay', 'raw-peer', ['relay', relayPath, sinkPath]));
        children.push(relay);
        await Promise.race([relay.ready(), anyFailure(children)]);
      }
      const source = s.add(
        nodeChild('raw source', 'raw-peer', [
          'source',
          String(messages),
          String(size),
          viaRelay ? relayPath : sinkPath,
        ]),
      );
      children.push(source);
      const failed = anyFailure(children);
      await Promise.race([source.ready(), failed]);
      source.send('go');
      const result = await Promise.race([sinkChild.json<CountResult>(), failed]);
      return rateOf([result], messages);
    }),

  /**
   * Round trips through an echo process: latency with one in flight, calls/s with more. With
   * `viaRelay`, through a relay process that forwards bytes untouched: four hops and three
   * processes, the floor for a broker.
   */
  pingPong: (
    rounds: number,
    size: number,
    warmup: number,
    inflight = 1,
    viaRelay = false,
  ): Promise<RoundTripResult> =>
    session('raw ping-pong', LIMIT_MS, async (s) => {
      const dir = s.dir('postbox-bench-raw-');
      const echoPath = join(dir, 'echo.sock');
      const echo = s.add(nodeChild('raw echo', 'raw-peer', ['echo', echoPath]));
      await echo.ready();
      const relays: Child[] = [];
      let path = echoPath;
      if (viaRelay) {
        path = join(dir, 'relay.sock');
        const relay = s.add(nodeChild('raw relay', 'raw-peer', ['relay', path, echoPath]));
        relays.push(relay);
        await Promise.race([relay.ready(), anyFailure([echo, relay])]);
      }
      const ping = s.add(
        nodeChild('raw ping', 'raw-peer', [
          'ping',
          path,
          String(rounds),
          String(size),
          String(warmup),
          String(inflight),
        ]),
      );
      const failed = anyFailure([echo, ...relays, ping]);
      await Promise.race([ping.ready(), failed]);
      ping.send('go');
      return Promise.race([ping.json<RoundTripResult>(), failed]);
    }),
};

// ---------------------------------------------------------------- Postbox

interface Kernel {
  address: string;
  pid: number;
  env: NodeJS.ProcessEnv;
  /** Rejects when the kernel ends. */
  failed: Promise<never>;
}

/** The bench's long-lived kernel (shared-kernel.ts), when the run has one. */
let shared: SharedKernel | null = null;

/** Postbox rows run against `k` from now on (null: each run starts its own kernel). */
export function useSharedKernel(k: SharedKernel | null): void {
  shared = k;
}

/** The kernel Postbox rows share, if the run has one (for workloads outside this file: RPC). */
export function sharedKernel(): SharedKernel | null {
  return shared;
}

/**
 * The kernel a Postbox run talks to: the shared one, or with `fresh` (or none shared) one of the
 * run's own, stopped with the run's session.
 */
async function startKernel(
  s: { add: (c: Child) => Child; dir: (p: string) => string },
  transport: 'unix' | 'tcp',
  fresh = false,
): Promise<Kernel> {
  if (shared !== null && !fresh)
    return {
      address: transport === 'tcp' ? shared.tcp : shared.socket,
      pid: shared.pid,
      env: shared.env,
      failed: shared.failed,
    };
  const env = { ...process.env, POSTBOX_TOKEN: randomBytes(16).toString('hex') };
  const { child, socket, tcp } = await launchKernel(s.dir('postbox-bench-'), env, transport === 'tcp');
  s.add(child);
  const address = tcp ?? socket;
  return { address, pid: child.pid, env, failed: child.failure() };
}

/** Rejects when the kernel or any of `children` fails. */
const kernelOr = (k: Kernel, children: Child[]): Promise<never> =>
  Promise.race([k.failed, anyFailure(children)]);

const pbChild = (k: Kernel, name: string, args: string[]): Child =>
  nodeChild(name, 'pb-peer', [args[0]!, k.address, ...args.slice(1)], k.env);

export const postbox = {
  oneWay: async (
    messages: number,
    size: number,
    transport: 'unix' | 'tcp',
    capacity?: number,
    api: PumpApi = 'each',
    kernel: 'shared' | 'fresh' = 'shared',
  ): Promise<Sample> => {
    // Windows picked by sweeping on this machine (bench/explore.ts), last after the kernel's
    // credit went to 16,384: over the Unix socket 4,096 sends of 100 B (~640 KB in flight) beat
    // 1,024 by 15 % with the batch calls and ~5 % with send(); 1 KiB and up gained nothing from
    // more than 1,024 (~1 MB). TCP measured the same at 2,048 and 8,192.
    // Prefetch is the kernel's most (maxCredit): with less, a receiver that loses its core for a
    // few ms runs out of credit, and the kernel queues what arrives meanwhile and delivers it
    // later (copied into its slab, then relabelled there) instead of forwarding it where it lies.
    const r = await runPostboxPump({
      messages,
      size,
      transport,
      api,
      window:
        capacity !== undefined || (transport === 'unix' && size < 1024)
          ? 4096
          : transport === 'tcp'
            ? 2048
            : 1024,
      every: 256,
      prefetch: 16384,
      ...(capacity !== undefined ? { capacity, watch: true } : {}),
      ...(shared !== null && kernel === 'shared' ? { kernel: shared } : {}),
      timeoutMs: LIMIT_MS,
    });
    return {
      value: r.msgsPerSec,
      kernelCpuMs: r.cpu.kernel.user + r.cpu.kernel.system,
      ...(r.peak !== undefined ? { peakCount: r.peak.count } : {}),
    };
  },

  /** `api` each: a `for await` loop and `send()` at both ends; callback: `consume()` and `send()`. */
  pingPong: (
    rounds: number,
    size: number,
    warmup: number,
    transport: 'unix' | 'tcp',
    api: 'each' | 'callback' = 'each',
  ): Promise<Sample> =>
    session('postbox ping-pong', LIMIT_MS, async (s) => {
      const k = await startKernel(s, transport);
      const boxes = [
        '--api',
        api,
        '--box',
        `ping-${randomBytes(3).toString('hex')},pong-${randomBytes(3).toString('hex')}`,
      ];
      const echo = s.add(pbChild(k, 'postbox echo', ['echo', ...boxes]));
      await Promise.race([echo.ready(), k.failed]);
      const ping = s.add(
        pbChild(k, 'postbox ping', ['ping', ...boxes, String(rounds), String(size), String(warmup)]),
      );
      const failed = kernelOr(k, [echo, ping]);
      await Promise.race([ping.ready(), failed]);
      ping.send('go');
      return latencyOf(await Promise.race([ping.json<RoundTripResult>(), failed]));
    }),

  /** `producers` processes to `consumers` processes, sharing one mailbox or one each (`boxes`). */
  fan: (
    messages: number,
    size: number,
    producers: number,
    consumers: number,
    boxes: 'shared' | 'one per producer',
    api: PumpApi = 'each',
  ): Promise<Sample> =>
    session('postbox fan', LIMIT_MS, async (s) => {
      const k = await startKernel(s, 'unix');
      const tag = randomBytes(3).toString('hex');
      const names =
        boxes === 'shared' ? [`q-${tag}`] : Array.from({ length: producers }, (_, i) => `q${i}-${tag}`);
      // One consumer counts to the total; several stop at a stop message each (shares are uneven).
      const consumerArgs =
        consumers === 1 ? ['--expect', String(messages)] : ['--expect', '0', '--idle', '3000'];
      const cs = Array.from({ length: consumers }, (_, i) =>
        s.add(
          pbChild(k, `postbox consumer ${i}`, [
            'consumer',
            '--box',
            names.join(','),
            '--api',
            api,
            ...consumerArgs,
          ]),
        ),
      );
      // Consumers create the mailboxes; producers start once they are there.
      await Promise.race([Promise.all(cs.map((c) => c.ready())), kernelOr(k, [...cs])]);
      const ps = shares(messages, producers).map((n, i) =>
        s.add(
          pbChild(k, `postbox producer ${i}`, [
            'producer',
            '--box',
            names[boxes === 'shared' ? 0 : i]!,
            '--stops',
            String(consumers === 1 ? 0 : consumers),
            '--api',
            api,
            String(n),
            String(size),
          ]),
        ),
      );
      return fan(cs, [...ps], messages);
    }),

  /** Capacity 0: each send completes only when a receiver takes it; `window` sends outstanding. */
  rendezvous: (messages: number, size: number, window: number, transport: 'unix' | 'tcp'): Promise<Sample> =>
    session('postbox rendezvous', LIMIT_MS, async (s) => {
      const k = await startKernel(s, transport);
      const box = ['--box', `r-${randomBytes(3).toString('hex')}`, '--capacity', '0'];
      const c = s.add(pbChild(k, 'postbox receiver', ['consumer', ...box, '--expect', String(messages)]));
      await Promise.race([c.ready(), k.failed]);
      const p = s.add(
        pbChild(k, 'postbox sender', [
          'producer',
          ...box,
          '--window',
          String(window),
          String(messages),
          String(size),
        ]),
      );
      const failed = kernelOr(k, [c, p]);
      await Promise.race([p.ready(), failed]);
      p.send('go');
      const [sent] = await Promise.race([Promise.all([p.json<SendReport>(), c.json<CountResult>()]), failed]);
      return { value: (sent.sent / sent.ms) * 1000 };
    }),

  /** Kernel RSS once `messages` messages of `size` bytes sit in a mailbox nobody reads. */
  queuedMemory: (messages: number, size: number): Promise<Sample> =>
    session('postbox queued memory', LIMIT_MS, async (s) => {
      // A kernel of its own: its RSS is the figure.
      const k = await startKernel(s, 'unix', true);
      await sleep(300);
      const empty = rssOf(k.pid).rss;
      const h = s.add(
        pbChild(k, 'postbox holder', [
          'hold',
          '--box',
          `m-${randomBytes(3).toString('hex')}`,
          String(messages),
          String(size),
        ]),
      );
      const failed = kernelOr(k, [h]);
      await Promise.race([h.ready(), failed]);
      h.send('go');
      const sent = await Promise.race([h.json<SendReport>(), failed]);
      // Every send was acknowledged: all are queued. Let a young-generation GC settle first.
      await sleep(500);
      const { rss, hwm } = rssOf(k.pid);
      return {
        value: rss,
        empty,
        peak: hwm,
        perMessage: (rss - empty) / messages,
        fillPerSec: (sent.sent / sent.ms) * 1000,
      };
    }),

  /** Kernel RSS and CPU while `processes` OS processes hold `perProcess` idle connections each. */
  idleConnections: (
    processes: number,
    perProcess: number,
    transport: 'unix' | 'tcp',
    idleMs: number,
  ): Promise<Sample> =>
    session('postbox idle connections', LIMIT_MS, async (s) => {
      const k = await startKernel(s, transport, true);
      await sleep(300);
      const empty = rssOf(k.pid).rss;
      const cs = Array.from({ length: processes }, (_, i) =>
        s.add(pbChild(k, `postbox idle ${i}`, ['idle', String(perProcess)])),
      );
      const failed = kernelOr(k, [...cs]);
      const counts = await Promise.race([
        Promise.all(cs.map((c) => c.json<{ connected: number }>())),
        failed,
      ]);
      const connected = counts.reduce((n, c) => n + c.connected, 0);
      await sleep(1000);
      const cpu0 = cpuMsOf(k.pid);
      const t0 = performance.now();
      await Promise.race([sleep(idleMs), failed]);
      const cpuPct = ((cpuMsOf(k.pid) - cpu0) / (performance.now() - t0)) * 100;
      const { rss } = rssOf(k.pid);
      return { value: rss, cpuPct, connected, empty, perConnection: (rss - empty) / connected };
    }),
};

// ---------------------------------------------------------------- the OS: System V, POSIX mq, pipe

export type OsKind = 'sysv' | 'posix' | 'pipe';

function osipc(
  bin: string,
  kind: OsKind,
  mode: 'oneway' | 'rtt',
  count: number,
  size: number,
): Promise<unknown> {
  return session(`${kind} ${mode}`, LIMIT_MS, async (s) => {
    const c = s.add(
      new Child(`osipc ${kind}`, bin, [kind, mode, String(count), String(size)], { quietStderr: true }),
    );
    return Promise.race([c.json<unknown>(), c.failure()]);
  });
}

export const os = {
  oneWay: async (bin: string, kind: OsKind, messages: number, size: number): Promise<Sample> => {
    const r = (await osipc(bin, kind, 'oneway', messages, size)) as { received: number; ms: number };
    return { value: (r.received / r.ms) * 1000 };
  },
  pingPong: async (bin: string, kind: OsKind, rounds: number, size: number): Promise<Sample> =>
    latencyOf((await osipc(bin, kind, 'rtt', rounds, size)) as RoundTripResult),
};

// ---------------------------------------------------------------- NATS

export const nats = {
  /** `publishers` publishers to `subscribers` subscribers, in a queue group when several. */
  fan: (
    url: string,
    messages: number,
    size: number,
    publishers: number,
    subscribers: number,
  ): Promise<Sample> =>
    session('nats fan', LIMIT_MS, async (s) => {
      const subject = `bench.${randomBytes(3).toString('hex')}`;
      const subArgs =
        subscribers > 1 ? ['--queue', 'q'] : publishers > 1 ? ['--expect', String(messages)] : [];
      const subs = Array.from({ length: subscribers }, (_, i) =>
        s.add(nodeChild(`nats sub ${i}`, 'nats-peer', ['sub', url, subject, ...subArgs])),
      );
      await Promise.race([Promise.all(subs.map((c) => c.ready())), anyFailure(subs)]);
      const pubs = shares(messages, publishers).map((n, i) =>
        s.add(nodeChild(`nats pub ${i}`, 'nats-peer', ['pub', url, subject, String(n), String(size)])),
      );
      return fan(subs, pubs, messages);
    }),

  request: (
    url: string,
    rounds: number,
    size: number,
    warmup: number,
    inflight = 1,
  ): Promise<RoundTripResult> =>
    session('nats request/reply', LIMIT_MS, async (s) => {
      const subject = `rpc.${randomBytes(3).toString('hex')}`;
      const rep = s.add(nodeChild('nats reply', 'nats-peer', ['reply', url, subject]));
      await rep.ready();
      const req = s.add(
        nodeChild('nats request', 'nats-peer', [
          'request',
          url,
          subject,
          String(rounds),
          String(size),
          String(warmup),
          '--inflight',
          String(inflight),
        ]),
      );
      const failed = anyFailure([rep, req]);
      await Promise.race([req.ready(), failed]);
      req.send('go');
      return Promise.race([req.json<RoundTripResult>(), failed]);
    }),
};

// ---------------------------------------------------------------- ZeroMQ

export const zmq = {
  /** PUSH to PULL: one pusher to `pullers` (it binds), or `pushers` to one puller (it binds). */
  fan: (messages: number, size: number, pushers: number, pullers: number): Promise<Sample> =>
    session('zeromq fan', LIMIT_MS, async (s) => {
      const addr = `ipc://${join(s.dir('postbox-bench-zmq-'), 'z.sock')}`;
      if (pushers === 1) {
        // The pusher binds and waits for every puller's handshake before `ready`.
        const push = s.add(
          nodeChild('zmq push', 'zmq-peer', [
            'push',
            addr,
            String(messages),
            String(size),
            '--bind',
            '--peers',
            String(pullers),
            '--stops',
            String(pullers),
          ]),
        );
        await Promise.race([push.waitFor('bound', (l) => l === 'bound'), push.failure()]);
        const pulls = Array.from({ length: pullers }, (_, i) =>
          s.add(
            nodeChild(`zmq pull ${i}`, 'zmq-peer', [
              'pull',
              addr,
              ...(pullers === 1 ? ['--expect', String(messages)] : []),
            ]),
          ),
        );
        return fan(pulls, [push], messages);
      }
      const pull = s.add(
        nodeChild('zmq pull', 'zmq-peer', ['pull', addr, '--bind', '--expect', String(messages)]),
      );
      await Promise.race([pull.ready(), pull.failure()]);
      const pushes = shares(messages, pushers).map((n, i) =>
        s.add(nodeChild(`zmq push ${i}`, 'zmq-peer', ['push', addr, String(n), String(size)])),
      );
      return fan([pull], pushes, messages);
    }),

  reqRep: (rounds: number, size: number, warmup: number): Promise<Sample> =>
    session('zeromq req/rep', LIMIT_MS, async (s) => {
      const addr = `ipc://${join(s.dir('postbox-bench-zmq-'), 'z.sock')}`;
      const rep = s.add(nodeChild('zmq rep', 'zmq-peer', ['rep', addr]));
      await Promise.race([rep.ready(), rep.failure()]);
      const req = s.add(
        nodeChild('zmq req', 'zmq-peer', ['req', addr, String(rounds), String(size), String(warmup)]),
      );
      const failed = anyFailure([rep, req]);
      await Promise.race([req.ready(), failed]);
      req.send('go');
      return latencyOf(await Promise.race([req.json<RoundTripResult>(), failed]));
    }),
};

// ---------------------------------------------------------------- Node child_process IPC

export const nodeIpc = {
  oneWay: (messages: number, size: number): Promise<Sample> =>
    session('node ipc one-way', LIMIT_MS, async (s) => {
      const c = s.add(nodeChild('node ipc', 'node-ipc-peer', ['oneway', String(messages), String(size)]));
      await Promise.race([c.ready(), c.failure()]);
      c.send('go');
      return rateOf([await Promise.race([c.json<CountResult>(), c.failure()])], messages);
    }),
  pingPong: (rounds: number, size: number, warmup: number): Promise<Sample> =>
    session('node ipc ping-pong', LIMIT_MS, async (s) => {
      const c = s.add(
        nodeChild('node ipc', 'node-ipc-peer', ['rtt', String(rounds), String(size), String(warmup)]),
      );
      await Promise.race([c.ready(), c.failure()]);
      c.send('go');
      return latencyOf(await Promise.race([c.json<RoundTripResult>(), c.failure()]));
    }),
};

export { latencyOf };

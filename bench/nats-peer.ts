// NATS clients (npm `nats`, from bench/node_modules) against a nats-server the harness started on
// 127.0.0.1. Each is its own OS process.
//
//   node nats-peer.js sub <url> <subject> [--queue Q] [--expect N]  counts until N, `<subject>.done`, or idle
//   node nats-peer.js pub <url> <subject> <messages> <size>        on `go`, publishes, then `<subject>.done`
//   node nats-peer.js reply <url> <subject>                        answers every request with its data
//   node nats-peer.js request <url> <subject> <rounds> <size> <warmup> [--inflight K]

import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Counter, fail, goSignal, intArg, peerStart, requirePeer, roundTrips, say } from './peer-common.js';

/** The few parts of the nats client used here. */
interface Msg {
  data: Uint8Array;
  respond(data?: Uint8Array): boolean;
}
interface NatsConnection {
  publish(subject: string, data?: Uint8Array): void;
  subscribe(
    subject: string,
    opts?: { queue?: string; callback?: (err: Error | null, msg: Msg) => void },
  ): unknown;
  request(subject: string, data: Uint8Array, opts: { timeout: number }): Promise<Msg>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
interface Nats {
  connect(opts: { servers: string; noEcho?: boolean; pingInterval?: number }): Promise<NatsConnection>;
}

const nats = requirePeer<Nats>('nats');
const open = (url: string) => nats.connect({ servers: url, pingInterval: 60_000 });

async function sub(url: string, subject: string, queue: string | undefined, expect: number): Promise<void> {
  const nc = await open(url);
  const counter = new Counter(expect, 3000, () => say(counter.result(), true));
  nc.subscribe(subject, {
    ...(queue !== undefined ? { queue } : {}),
    callback: (err) => {
      if (err !== null) fail(err);
      counter.hit();
    },
  });
  // Published after every data message by the same connection, so it arrives after them. With
  // several publishers the count (--expect) ends it instead.
  if (expect === 0) nc.subscribe(`${subject}.done`, { callback: () => setImmediate(() => counter.done()) });
  await nc.flush(); // the server has both subscriptions
  say('ready');
}

async function pub(url: string, subject: string, messages: number, size: number): Promise<void> {
  const nc = await open(url);
  say('ready');
  await goSignal();
  const body = new Uint8Array(size).fill(0x61);
  const start = performance.now();
  // publish() only appends to the client's buffer; a flush (a PING the server answers after
  // everything before it) now and then keeps that buffer, and the server's, bounded.
  for (let i = 1; i <= messages; i++) {
    nc.publish(subject, body);
    if (i % 1024 === 0) await nc.flush();
  }
  await nc.flush();
  const ms = performance.now() - start;
  nc.publish(`${subject}.done`);
  await nc.flush();
  say({ sent: messages, ms });
  await nc.close();
  process.exit(0);
}

async function reply(url: string, subject: string): Promise<void> {
  const nc = await open(url);
  nc.subscribe(subject, { callback: (_err, m) => m.respond(m.data) });
  await nc.flush();
  say('ready');
}

async function request(
  url: string,
  subject: string,
  rounds: number,
  size: number,
  warmup: number,
  inflight: number,
): Promise<void> {
  const nc = await open(url);
  say('ready');
  await goSignal();
  const body = new Uint8Array(size).fill(0x61);
  // K callers, each with one request outstanding at a time, until `count` have been made.
  const callers = async (count: number): Promise<void> => {
    let next = 0;
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (next++ < count) await nc.request(subject, body, { timeout: 10_000 });
      }),
    );
  };
  // The warm-up has the shape of the measurement: as many in flight.
  await callers(warmup);
  if (inflight === 1) {
    const lat = new Float64Array(rounds);
    const start = performance.now();
    for (let i = 0; i < rounds; i++) {
      const t = performance.now();
      await nc.request(subject, body, { timeout: 10_000 });
      lat[i] = (performance.now() - t) * 1000;
    }
    say(roundTrips(lat, performance.now() - start), true);
    return;
  }
  const start = performance.now();
  await callers(rounds);
  say({ rounds, ms: performance.now() - start, p50us: null, p99us: null }, true);
}

peerStart();
const { positionals, values } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    queue: { type: 'string' },
    expect: { type: 'string', default: '0' },
    inflight: { type: 'string', default: '1' },
  },
});
const [role, url, subject, a, b, c] = positionals;
if (url === undefined || subject === undefined)
  fail(new Error('usage: nats-peer.js <role> <url> <subject> …'));
if (role === 'sub') sub(url, subject, values.queue, intArg(values.expect, 'expect')).catch(fail);
else if (role === 'pub') pub(url, subject, intArg(a, 'messages', 1), intArg(b, 'size')).catch(fail);
else if (role === 'reply') reply(url, subject).catch(fail);
else if (role === 'request')
  request(
    url,
    subject,
    intArg(a, 'rounds', 1),
    intArg(b, 'size'),
    intArg(c, 'warmup'),
    intArg(values.inflight, 'inflight', 1),
  ).catch(fail);
else fail(new Error(`unknown role ${role}`));

// ZeroMQ sockets (npm `zeromq` v6, from bench/node_modules) over ipc:// (a Unix socket), each
// end its own OS process.
//
//   node zmq-peer.js pull <addr> [--bind] [--expect N]            counts until N, an empty message, or idle
//   node zmq-peer.js push <addr> <messages> <size> [--bind] [--peers K] [--stops K]
//        with --bind waits for K peers' handshakes; on `go` sends, then K empty messages; stays
//        until stdin ends (closing could drop what is still queued)
//   node zmq-peer.js rep <addr>                                    answers every request with it
//   node zmq-peer.js req <addr> <rounds> <size> <warmup>

import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Counter, fail, goSignal, intArg, peerStart, requirePeer, roundTrips, say } from './peer-common.js';

/** The few parts of zeromq v6 used here. */
interface Socket extends AsyncIterable<Buffer[]> {
  bind(address: string): Promise<void>;
  connect(address: string): void;
  send(msg: Buffer | Uint8Array): Promise<void>;
  receive(): Promise<Buffer[]>;
  close(): void;
  events: AsyncIterable<{ type: string }>;
}
type SocketClass = new (opts?: Record<string, unknown>) => Socket;
interface Zmq {
  Push: SocketClass;
  Pull: SocketClass;
  Request: SocketClass;
  Reply: SocketClass;
}

const zmq = requirePeer<Zmq>('zeromq');

/** Resolves once `count` peers have completed the ZMTP handshake with this bound socket. */
async function handshakes(socket: Socket, count: number): Promise<void> {
  if (count <= 0) return;
  let seen = 0;
  for await (const ev of socket.events) if (ev.type === 'handshake' && ++seen >= count) return;
}

async function pull(addr: string, bind: boolean, expect: number): Promise<void> {
  const s = new zmq.Pull();
  if (bind) await s.bind(addr);
  else s.connect(addr);
  const counter = new Counter(expect, 3000, () => say(counter.result(), true));
  say('ready');
  for await (const [m] of s) {
    if (m!.length === 0) break;
    if (counter.hit()) break;
  }
  counter.done();
}

async function push(
  addr: string,
  messages: number,
  size: number,
  bind: boolean,
  peers: number,
  stops: number,
): Promise<void> {
  const s = new zmq.Push();
  if (bind) {
    await s.bind(addr);
    say('bound');
    await handshakes(s, peers);
  } else s.connect(addr);
  say('ready');
  await goSignal();
  const body = Buffer.alloc(size, 0x61);
  const start = performance.now();
  // One send at a time is all v6 allows on a socket; each resolves once queued.
  for (let i = 0; i < messages; i++) await s.send(body);
  const ms = performance.now() - start;
  for (let i = 0; i < stops; i++) await s.send(Buffer.alloc(0));
  say({ sent: messages, ms });
}

async function rep(addr: string): Promise<void> {
  const s = new zmq.Reply();
  await s.bind(addr);
  say('ready');
  for await (const [m] of s) await s.send(m!);
}

async function req(addr: string, rounds: number, size: number, warmup: number): Promise<void> {
  const s = new zmq.Request();
  s.connect(addr);
  say('ready');
  await goSignal();
  const body = Buffer.alloc(size, 0x61);
  for (let i = 0; i < warmup; i++) {
    await s.send(body);
    await s.receive();
  }
  const lat = new Float64Array(rounds);
  const start = performance.now();
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await s.send(body);
    await s.receive();
    lat[i] = (performance.now() - t) * 1000;
  }
  say(roundTrips(lat, performance.now() - start), true);
}

peerStart();
const { positionals, values } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    bind: { type: 'boolean', default: false },
    expect: { type: 'string', default: '0' },
    peers: { type: 'string', default: '1' },
    stops: { type: 'string', default: '0' },
  },
});
const [role, addr, a, b, c] = positionals;
if (addr === undefined) fail(new Error('usage: zmq-peer.js <role> <addr> …'));
if (role === 'pull') pull(addr, values.bind === true, intArg(values.expect, 'expect')).catch(fail);
else if (role === 'push')
  push(
    addr,
    intArg(a, 'messages', 1),
    intArg(b, 'size'),
    values.bind === true,
    intArg(values.peers, 'peers'),
    intArg(values.stops, 'stops'),
  ).catch(fail);
else if (role === 'rep') rep(addr).catch(fail);
else if (role === 'req')
  req(addr, intArg(a, 'rounds', 1), intArg(b, 'size'), intArg(c, 'warmup')).catch(fail);
else fail(new Error(`unknown role ${role}`));

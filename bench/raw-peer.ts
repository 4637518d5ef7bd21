// The raw Unix-socket ceiling for the shapes beyond one-to-one (raw-pump.ts has that one):
// length-prefixed frames between plain Node processes, with nothing in the middle.
//
//   node raw-peer.js sink <path> <connections> <expect>     counts frames over all connections
//   node raw-peer.js source <messages> <size> <path>[,<path>…]  splits the messages over the paths
//   node raw-peer.js echo <path>                            writes back whatever arrives
//   node raw-peer.js ping <path> <rounds> <size> <warmup> <inflight>
//   node raw-peer.js relay <path> <target>                  forwards every byte to target and back

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Counter, fail, goSignal, intArg, peerStart, roundTrips, say } from './peer-common.js';

const HEADER = 4;
const BATCH_BYTES = 64 * 1024;

function sink(path: string, connections: number, expect: number): void {
  const counter = new Counter(expect, 0, () => say(counter.result(), true));
  let accepted = 0;
  const server = createServer((socket: Socket) => {
    if (++accepted >= connections) server.close();
    // Payload bytes are skipped, never copied; only a split header is carried across chunks.
    const header = Buffer.alloc(HEADER);
    let headerFill = 0;
    let payloadLeft = 0;
    socket.on('data', (chunk: Buffer) => {
      let off = 0;
      const len = chunk.length;
      while (off < len) {
        if (payloadLeft > 0) {
          const take = Math.min(payloadLeft, len - off);
          payloadLeft -= take;
          off += take;
          if (payloadLeft === 0 && counter.hit()) return;
          continue;
        }
        if (headerFill === 0 && off + HEADER <= len) {
          const frameLen = chunk.readUInt32LE(off);
          off += HEADER;
          if (off + frameLen <= len) {
            off += frameLen;
            if (counter.hit()) return;
            continue;
          }
          payloadLeft = frameLen - (len - off);
          off = len;
          continue;
        }
        const take = Math.min(HEADER - headerFill, len - off);
        chunk.copy(header, headerFill, off, off + take);
        headerFill += take;
        off += take;
        if (headerFill < HEADER) break;
        headerFill = 0;
        payloadLeft = header.readUInt32LE(0);
        if (payloadLeft === 0 && counter.hit()) return;
      }
    });
    socket.on('error', fail);
  });
  server.on('error', fail);
  server.listen(path, () => say('ready'));
}

async function source(messages: number, size: number, paths: string[]): Promise<void> {
  const sockets = await Promise.all(
    paths.map(async (p) => {
      const s = connect(p);
      s.on('error', fail);
      await once(s, 'connect');
      return s;
    }),
  );
  say('ready');
  await goSignal();
  const frame = HEADER + size;
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / frame));
  const payload = Buffer.alloc(size, 0x61);
  // Exact shares, so that each sink knows how many it gets.
  const left = paths.map(
    (_, j) => Math.floor(messages / paths.length) + (j < messages % paths.length ? 1 : 0),
  );
  const start = performance.now();
  for (let busy = true; busy; ) {
    busy = false;
    for (const [j, socket] of sockets.entries()) {
      const n = Math.min(perBatch, left[j]!);
      if (n === 0) continue;
      busy = true;
      left[j]! -= n;
      const batch = Buffer.allocUnsafe(n * frame);
      for (let i = 0, off = 0; i < n; i++, off += frame) {
        batch.writeUInt32LE(size, off);
        payload.copy(batch, off + HEADER);
      }
      if (!socket.write(batch)) await once(socket, 'drain');
    }
  }
  for (const s of sockets) s.end();
  await Promise.all(sockets.map((s) => once(s, 'close')));
  say({ sent: messages, ms: performance.now() - start }, true);
}

function echo(path: string): void {
  const server = createServer((socket: Socket) => {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => socket.write(d));
    socket.on('error', () => socket.destroy());
  });
  server.on('error', fail);
  server.listen(path, () => say('ready'));
}

/**
 * A process in the middle that does no work per message: each client's bytes go on to `target`
 * as they came, and the answers back. Two hops and three processes with nothing but Node's
 * sockets: the floor for any design that puts a broker between two processes.
 */
function relay(path: string, target: string): void {
  const server = createServer((client: Socket) => {
    client.setNoDelay(true);
    const upstream = connect(target);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  server.on('error', fail);
  server.listen(path, () => say('ready'));
}

async function ping(
  path: string,
  rounds: number,
  size: number,
  warmup: number,
  inflight: number,
): Promise<void> {
  const socket = connect(path);
  socket.on('error', fail);
  await once(socket, 'connect');
  socket.setNoDelay(true);
  say('ready');
  await goSignal();
  const frame = Buffer.alloc(size, 0x61);
  const total = warmup + rounds;
  // Bytes back count whole rounds: the echo returns exactly what it was sent.
  let back = 0;
  let done = 0;
  let sent = 0;
  const lat = new Float64Array(inflight === 1 ? rounds : 0);
  const sentAt: number[] = [];
  let start = 0;
  let finish: (() => void) | undefined;
  const finished = new Promise<void>((r) => {
    finish = r;
  });
  const sendOne = (): void => {
    if (sent >= total) return;
    if (sent === warmup) start = performance.now();
    sentAt.push(performance.now());
    sent++;
    socket.write(frame);
  };
  socket.on('data', (d: Buffer) => {
    back += d.length;
    while (back >= size) {
      back -= size;
      const t = sentAt[done]!;
      if (done >= warmup && inflight === 1) lat[done - warmup] = (performance.now() - t) * 1000;
      done++;
      if (done >= total) {
        finish?.();
        return;
      }
      sendOne();
    }
  });
  for (let i = 0; i < inflight; i++) sendOne();
  await finished;
  const ms = performance.now() - start;
  if (inflight === 1) say(roundTrips(lat, ms), true);
  else say({ rounds, ms, p50us: Number.NaN, p99us: Number.NaN }, true);
}

peerStart();
const [role, ...rest] = process.argv.slice(2);
if (role === 'sink') sink(rest[0]!, intArg(rest[1], 'connections', 1), intArg(rest[2], 'expect', 1));
else if (role === 'source')
  source(intArg(rest[0], 'messages', 1), intArg(rest[1], 'size'), rest[2]!.split(',')).catch(fail);
else if (role === 'echo') echo(rest[0]!);
else if (role === 'relay') relay(rest[0]!, rest[1]!);
else if (role === 'ping')
  ping(
    rest[0]!,
    intArg(rest[1], 'rounds', 1),
    intArg(rest[2], 'size', 1),
    intArg(rest[3], 'warmup'),
    intArg(rest[4], 'inflight', 1),
  ).catch(fail);
else fail(new Error(`unknown role ${role}`));

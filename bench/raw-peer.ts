// The raw Unix-socket ceiling for the shapes beyond one-to-one (raw-pump.ts has that one):
// length-prefixed frames between plain Node processes, with nothing in the middle.
//
//   node raw-peer.js sink <path> <connections> <expect> [count|callback|for-await]
//                                                          counts frames over all connections
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

/**
 * How a sink hands frames to its "application": `count` counts them where they lie (the ceiling's
 * receiver); `callback` makes a value per frame and calls a handler with it; `for-await` makes
 * the same value and yields it to a `for await` loop through the least an async iterator can be
 * (a ring, one promise and one result per step). The last two are what any message API costs in
 * Node before it does anything, measured with no broker work behind them.
 */
export type SinkMode = 'count' | 'callback' | 'for-await';

/** A received frame as the least a message API could hand out: where its bytes lie. */
class FrameView {
  constructor(
    readonly buf: Buffer,
    readonly start: number,
    readonly end: number,
  ) {}
}

/** Frames read ahead of a `for await` loop; reading pauses past a bound, as a credit would. */
class FrameQueue implements AsyncIterableIterator<FrameView> {
  private ring: (FrameView | null)[] = new Array<FrameView | null>(16384).fill(null);
  private head = 0;
  private count = 0;
  private waiter: ((r: IteratorResult<FrameView>) => void) | null = null;
  private paused = false;

  constructor(
    private readonly socket: Socket,
    private readonly high: number,
  ) {}

  push(v: FrameView): void {
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: v, done: false });
      return;
    }
    if (this.count === this.ring.length) this.grow();
    this.ring[(this.head + this.count) & (this.ring.length - 1)] = v;
    if (++this.count >= this.high && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  next(): Promise<IteratorResult<FrameView>> {
    if (this.count === 0) return new Promise((resolve) => (this.waiter = resolve));
    const v = this.ring[this.head]!;
    this.ring[this.head] = null;
    this.head = (this.head + 1) & (this.ring.length - 1);
    if (--this.count <= this.high >> 2 && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    return Promise.resolve({ value: v, done: false });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  private grow(): void {
    const n = this.ring.length;
    const next = new Array<FrameView | null>(n * 2).fill(null);
    for (let k = 0; k < n; k++) next[k] = this.ring[(this.head + k) & (n - 1)]!;
    this.ring = next;
    this.head = 0;
  }
}

function sink(path: string, connections: number, expect: number, mode: SinkMode): void {
  const counter = new Counter(expect, 0, () => say(counter.result(), true));
  let accepted = 0;
  const server = createServer((socket: Socket) => {
    if (++accepted >= connections) server.close();
    // `frame` is where a whole frame found in a chunk goes; split frames are counted as they end.
    let frame: (buf: Buffer, start: number, end: number) => boolean = () => counter.hit();
    if (mode === 'callback') {
      const handler = (v: FrameView): boolean => v.end >= v.start && counter.hit();
      frame = (buf, start, end) => handler(new FrameView(buf, start, end));
    } else if (mode === 'for-await') {
      const queue = new FrameQueue(socket, 16384);
      frame = (buf, start, end) => {
        queue.push(new FrameView(buf, start, end));
        return false;
      };
      void (async () => {
        for await (const v of queue) if (v.end >= v.start && counter.hit()) return;
      })();
    }
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
          if (payloadLeft === 0 && frame(chunk, off, off)) return;
          continue;
        }
        if (headerFill === 0 && off + HEADER <= len) {
          const frameLen = chunk.readUInt32LE(off);
          off += HEADER;
          if (off + frameLen <= len) {
            off += frameLen;
            if (frame(chunk, off - frameLen, off)) return;
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
        if (payloadLeft === 0 && frame(chunk, off, off)) return;
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
if (role === 'sink') {
  const mode = (rest[3] ?? 'count') as SinkMode;
  if (mode !== 'count' && mode !== 'callback' && mode !== 'for-await')
    fail(new Error(`sink mode must be count, callback or for-await, not ${mode}`));
  sink(rest[0]!, intArg(rest[1], 'connections', 1), intArg(rest[2], 'expect', 1), mode);
} else if (role === 'source')
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

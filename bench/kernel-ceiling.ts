// The kernel's own ceiling: the one-way pump through a real kernel process, but with clients that
// do nothing per message (hand-made SEND frames written in 64 KiB batches, DELIVER frames counted
// and taken in batches: no promise per send, no Message per delivery). Run side by side with the
// raw pump, the byte relay and the Postbox pump, it tells the kernel's cost from the client
// library's. With --rtt, the same split for the round trip: ping-pong through a real kernel with
// clients that do nothing but answer, next to raw, the byte relay and Postbox's clients. With
// --receivers, what a receiving API costs with no broker work behind it: the raw socket and the
// byte relay with receivers that count frames, hand each to a callback, or yield each to a
// `for await` loop, next to Postbox's three ways to receive (one warm kernel). Not part of
// `npm run bench`.
//
//   node dist/bench/kernel-ceiling.js [--messages N] [--size B] [--runs N] [--window N] [--profile DIR]
//     [--kernel-only [--credit N]] [--rtt [--rounds N]] [--receivers] [--kernel-arg=FLAG ...]

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FrameDecoder } from '../src/protocol/decoder.js';
import { decodeJsonPayload, Off, Op, ReceiveFlag } from '../src/protocol/frame.js';
import { callFrame, helloFrame, receiveFrame, sendFrame, takeFrame } from '../test/helpers/raw-peer.js';
import { intArg } from './peer-common.js';
import { processCpu, runPostboxPump } from './postbox.js';
import { runRawPump } from './pump.js';
import { stats } from './report.js';
import { startSharedKernel } from './shared-kernel.js';
import { postbox, raw } from './workloads.js';

const SELF = fileURLToPath(import.meta.url);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const BATCH_BYTES = 64 * 1024;
const STREAM_REQUEST = 2;

/** Connects, says HELLO and waits for WELCOME; frames after that go to `onFrame`. */
async function hello(
  path: string,
  onFrame: (buf: Buffer, start: number, end: number) => void,
): Promise<Socket> {
  const socket = connect(path);
  await once(socket, 'connect');
  let welcomed: (() => void) | null = null;
  const welcome = new Promise<void>((resolve) => {
    welcomed = resolve;
  });
  const decoder = new FrameDecoder(1 << 28, (buf, start, end) => {
    if (welcomed !== null && buf[start + Off.OPCODE] === Op.WELCOME) {
      welcomed();
      welcomed = null;
      return;
    }
    onFrame(buf, start, end);
  });
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  socket.write(helloFrame({ pid: process.pid }));
  await welcome;
  return socket;
}

async function receiver(path: string, name: string, messages: number, credit: number): Promise<void> {
  let created: ((id: number) => void) | null = null;
  const mailboxId = new Promise<number>((resolve) => {
    created = resolve;
  });
  let count = 0;
  let taken = 0;
  let start = 0;
  let socket: Socket | null = null;
  const batch = Math.max(1, credit >> 2);
  socket = await hello(path, (buf, s, e) => {
    const op = buf[s + Off.OPCODE];
    if (op === Op.DELIVER) {
      if (count === 0) start = performance.now();
      taken++;
      if (++count === messages) {
        const ms = performance.now() - start;
        process.stdout.write(`${JSON.stringify({ received: count, ms })}\n`, () => process.exit(0));
        return;
      }
      if (taken >= batch) {
        socket!.write(takeFrame(STREAM_REQUEST, taken, taken));
        taken = 0;
      }
    } else if (op === Op.RESULT && created !== null) {
      created((decodeJsonPayload(buf, s, e) as { id: number }).id);
      created = null;
    } else if (op === Op.ERROR) {
      throw new Error(`kernel error: ${JSON.stringify(decodeJsonPayload(buf, s, e))}`);
    }
  });
  socket.write(callFrame(1, { op: 'create', name, mode: 0o666, maxBytes: 2 ** 31 }));
  const id = await mailboxId;
  socket.write(receiveFrame({ request: STREAM_REQUEST, target: id, flags: ReceiveFlag.STREAM, credit }));
  // The stream is registered before the sender's first frame: the kernel handles frames in order,
  // and a PING answered after it proves the RECEIVE was read.
  process.stdout.write(`ready ${id}\n`);
}

async function sender(
  path: string,
  target: number,
  messages: number,
  size: number,
  window: number,
): Promise<void> {
  let acked = 0;
  let onAck: (() => void) | null = null;
  const socket = await hello(path, (buf, s) => {
    const op = buf[s + Off.OPCODE];
    if (op === Op.ACK) {
      acked = buf.readUInt32LE(s + Off.REQUEST);
      onAck?.();
    } else if (op !== Op.SENT && op !== Op.PONG) {
      throw new Error(`unexpected opcode 0x${op?.toString(16)} from the kernel`);
    }
  });
  const template = sendFrame({ request: 0, target, body: Buffer.alloc(size, 0x61) });
  const frame = template.length;
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / frame));
  let sent = 0;
  while (sent < messages) {
    const room = window - (sent - acked);
    if (room <= 0) {
      await new Promise<void>((resolve) => {
        onAck = resolve;
      });
      onAck = null;
      continue;
    }
    const n = Math.min(perBatch, messages - sent, room);
    const batch = Buffer.allocUnsafe(n * frame);
    for (let i = 0; i < n; i++) {
      template.copy(batch, i * frame);
      batch.writeUInt32LE(++sent, i * frame + Off.REQUEST);
    }
    if (!socket.write(batch)) await once(socket, 'drain');
  }
  while (acked < messages) {
    await new Promise<void>((resolve) => {
      onAck = resolve;
    });
  }
  process.exit(0);
}

const ECHO_STREAM = 7;
const PING_STREAM = 8;

/** Creates mailboxes X and Y, answers every message from X with one to Y, and a TAKE. */
async function echo(path: string): Promise<void> {
  const ids: number[] = [];
  let created: (() => void) | null = null;
  let pong: Buffer | null = null;
  const both = new Promise<void>((resolve) => {
    created = resolve;
  });
  const socket: Socket = await hello(path, (buf, s, e) => {
    const op = buf[s + Off.OPCODE];
    if (op === Op.DELIVER) {
      socket.write(pong!);
    } else if (op === Op.RESULT) {
      ids.push((decodeJsonPayload(buf, s, e) as { id: number }).id);
      if (ids.length === 2) created!();
    } else if (op === Op.ERROR) {
      throw new Error(`kernel error: ${JSON.stringify(decodeJsonPayload(buf, s, e))}`);
    }
  });
  socket.write(callFrame(1, { op: 'create', name: 'ping', mode: 0o666 }));
  socket.write(callFrame(2, { op: 'create', name: 'pong', mode: 0o666 }));
  await both;
  const [x, y] = ids as [number, number];
  // Request ids repeat: each send completes at once and is covered by the cumulative ACK.
  pong = Buffer.concat([
    takeFrame(ECHO_STREAM, 1, 1),
    sendFrame({ request: 1, target: y, body: Buffer.alloc(100, 0x62) }),
  ]);
  socket.write(receiveFrame({ request: ECHO_STREAM, target: x, flags: ReceiveFlag.STREAM, credit: 64 }));
  process.stdout.write(`ready ${x} ${y}\n`);
}

/** Sends to X, waits for the answer from Y, `rounds` times after `warmup`; prints the p50 in µs. */
async function pinger(path: string, x: number, y: number, rounds: number, warmup: number): Promise<void> {
  const lat: number[] = [];
  let t0 = 0;
  let n = 0;
  const ping = Buffer.concat([
    takeFrame(PING_STREAM, 1, 1),
    sendFrame({ request: 1, target: x, body: Buffer.alloc(100, 0x61) }),
  ]);
  let done: (() => void) | null = null;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const socket: Socket = await hello(path, (buf, s) => {
    if (buf[s + Off.OPCODE] !== Op.DELIVER) return;
    const now = performance.now();
    if (n++ >= warmup) lat.push(now - t0);
    if (lat.length === rounds) return done!();
    t0 = performance.now();
    socket.write(ping);
  });
  socket.write(receiveFrame({ request: PING_STREAM, target: y, flags: ReceiveFlag.STREAM, credit: 64 }));
  t0 = performance.now();
  // The first ping carries no TAKE: nothing has been delivered yet.
  socket.write(sendFrame({ request: 1, target: x, body: Buffer.alloc(100, 0x61) }));
  await finished;
  lat.sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ p50us: lat[lat.length >> 1]! * 1000 })}\n`, () => process.exit(0));
}

/** Round trip p50 (µs) through a real kernel with clients that only answer. */
async function kernelRoundTrip(rounds: number, warmup: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-kernel-rtt-'));
  const path = join(dir, 'k.sock');
  const children: ChildProcess[] = [];
  try {
    const kernel = await start([CLI, 'kernel', '--socket', path, '--quiet'], /listening on unix:/);
    children.push(kernel.child);
    const e = await start([SELF, 'echo', path], /^ready /);
    children.push(e.child);
    const [, x, y] = e.line.split(' ');
    const p = spawn(process.execPath, [SELF, 'pinger', path, x!, y!, String(rounds), String(warmup)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(p);
    const lines = createInterface({ input: p.stdout! });
    const [line] = (await once(lines, 'line')) as [string];
    return (JSON.parse(line) as { p50us: number }).p50us;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGINT');
    await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : null)));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts a child and resolves with the first line matching `ready`. */
function start(args: string[], ready: RegExp): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')}: not ready in 10 s`)), 10_000);
    lines.on('line', (line) => {
      if (!ready.test(line)) return;
      clearTimeout(timer);
      resolve({ child, line });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

async function kernelCeiling(
  messages: number,
  size: number,
  window: number,
  profile: string[],
  credit = 16384,
): Promise<{ rate: number; kernelNsPerMessage: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-kernel-ceiling-'));
  const path = join(dir, 'k.sock');
  const children: ChildProcess[] = [];
  try {
    const kernel = await start(
      [...profile, CLI, 'kernel', '--socket', path, '--quiet'],
      /listening on unix:/,
    );
    children.push(kernel.child);
    const recv = await start(
      [SELF, 'receiver', path, 'ceiling', String(messages), String(credit)],
      /^ready /,
    );
    children.push(recv.child);
    const lines = createInterface({ input: recv.child.stdout! });
    const result = new Promise<{ ms: number }>((resolve) =>
      lines.on('line', (l) => {
        if (l.startsWith('{')) resolve(JSON.parse(l) as { ms: number });
      }),
    );
    const id = recv.line.split(' ')[1]!;
    const before = await processCpu(kernel.child.pid);
    const send = spawn(
      process.execPath,
      [SELF, 'sender', path, id, String(messages), String(size), String(window)],
      {
        stdio: 'inherit',
      },
    );
    children.push(send);
    const { ms } = await result;
    const after = await processCpu(kernel.child.pid);
    const cpuMs = after.user + after.system - before.user - before.system;
    return { rate: (messages / ms) * 1000, kernelNsPerMessage: (cpuMs * 1e6) / messages };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGINT');
    await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : null)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '1000000' },
      size: { type: 'string', default: '100' },
      runs: { type: 'string', default: '3' },
      window: { type: 'string', default: '1024' },
      profile: { type: 'string' },
      'kernel-only': { type: 'boolean', default: false },
      rtt: { type: 'boolean', default: false },
      rounds: { type: 'string', default: '10000' },
      'kernel-arg': { type: 'string', multiple: true, default: [] },
      credit: { type: 'string', default: '16384' },
      receivers: { type: 'boolean', default: false },
    },
  });
  // Nonsense fails here, before a kernel starts (a NaN credit would leave the receiver waiting).
  const messages = intArg(values.messages, '--messages', 1);
  const size = intArg(values.size, '--size', 0);
  const window = intArg(values.window, '--window', 1);
  const runs = intArg(values.runs, '--runs', 1);
  const rounds = intArg(values.rounds, '--rounds', 1);
  const credit = intArg(values.credit, '--credit', 1);
  // The kernel's V8 profile (written when it exits on SIGINT), to see its cost with no client cost.
  const profile =
    values.profile === undefined
      ? []
      : ['--cpu-prof', '--cpu-prof-interval=100', `--cpu-prof-dir=${values.profile}`];
  // Node/V8 flags for the kernel process only (e.g. --kernel-arg=--max-semi-space-size=32).
  profile.push(...(values['kernel-arg'] ?? []));
  if (values.receivers) return receivers(messages, size, runs);
  for (let i = 0; i < runs; i++) {
    if (values.rtt) {
      const warmup = Math.ceil(rounds / 10);
      const direct = (await raw.pingPong(rounds, 100, warmup)).p50us;
      const relay = (await raw.pingPong(rounds, 100, warmup, 1, true)).p50us;
      const kernel = await kernelRoundTrip(rounds, warmup);
      const pb = (await postbox.pingPong(rounds, 100, warmup, 'unix')).value;
      const cb = (await postbox.pingPong(rounds, 100, warmup, 'unix', 'callback')).value;
      const r = (x: number): string => `${x.toFixed(1)} µs (${(x / direct).toFixed(2)}×)`;
      console.log(
        `round trip p50: raw ${direct.toFixed(1)} µs; byte relay ${r(relay)}; kernel with raw clients ${r(kernel)}; Postbox clients ${r(pb)}; with consume() ${r(cb)}`,
      );
      continue;
    }
    if (values['kernel-only']) {
      // For comparing kernel builds: the kernel's CPU per message is steadier than a rate.
      const ceiling = await kernelCeiling(messages, size, window, profile, credit);
      console.log(
        `kernel with raw clients ${fmt(ceiling.rate)}; kernel CPU ${Math.round(ceiling.kernelNsPerMessage)} ns/message`,
      );
      continue;
    }
    const rawRate = (await runRawPump({ messages, size })).msgsPerSec;
    const relay = (await raw.relayOneWay(messages, size)).value;
    const ceiling = await kernelCeiling(messages, size, window, profile);
    const pump = (await runPostboxPump({ messages, size, transport: 'unix', window, prefetch: 16384 }))
      .msgsPerSec;
    const r = (x: number): string => `${fmt(x)} (${(x / rawRate).toFixed(2)}×)`;
    console.log(
      `raw ${fmt(rawRate)}; byte relay ${r(relay)}; kernel with raw clients ${r(ceiling.rate)}, kernel CPU ${Math.round(ceiling.kernelNsPerMessage)} ns/message; Postbox clients ${r(pump)}`,
    );
  }
}

/**
 * The cost of a receiving API, apart from any broker: each row's ratio to the raw pump of the same
 * round, rows interleaved, medians over the rounds. Postbox's rows go through one kernel warmed
 * up as the bench's is.
 */
async function receivers(messages: number, size: number, runs: number): Promise<void> {
  const kernel = await startSharedKernel();
  const rows: { name: string; measure: () => Promise<number> }[] = [
    { name: 'raw, counting', measure: async () => (await runRawPump({ messages, size })).msgsPerSec },
    {
      name: 'raw, callback',
      measure: async () => (await raw.relayOneWay(messages, size, 'callback', false)).value,
    },
    {
      name: 'raw, for await',
      measure: async () => (await raw.relayOneWay(messages, size, 'for-await', false)).value,
    },
    { name: 'byte relay, counting', measure: async () => (await raw.relayOneWay(messages, size)).value },
    {
      name: 'byte relay, callback',
      measure: async () => (await raw.relayOneWay(messages, size, 'callback')).value,
    },
    {
      name: 'byte relay, for await',
      measure: async () => (await raw.relayOneWay(messages, size, 'for-await')).value,
    },
  ];
  const apis = [
    ['Postbox, batches()', 'batch'],
    ['Postbox, consume()', 'callback'],
    ['Postbox, for await', 'each'],
  ] as const;
  for (const [name, api] of apis)
    rows.push({
      name,
      measure: async () =>
        (
          await runPostboxPump({
            messages,
            size,
            transport: 'unix',
            window: 4096,
            prefetch: 16384,
            api,
            kernel,
          })
        ).msgsPerSec,
    });
  const ratios = rows.map(() => [] as number[]);
  try {
    for (let i = 0; i < runs; i++) {
      const rates: number[] = [];
      for (const row of rows) rates.push(await row.measure());
      const line = rows.map((row, k) => {
        ratios[k]!.push(rates[k]! / rates[0]!);
        return k === 0
          ? `${row.name} ${fmt(rates[0]!)}`
          : `${row.name} ${(rates[k]! / rates[0]!).toFixed(2)}×`;
      });
      console.log(line.join('; '));
    }
  } finally {
    await kernel.stop();
  }
  console.log(`medians of ${runs} rounds, each row against the round's raw pump:`);
  for (const [k, row] of rows.entries()) {
    const s = stats(ratios[k]!);
    console.log(
      `  ${row.name.padEnd(24)} ${s.median.toFixed(2)}×  (${s.min.toFixed(2)}–${s.max.toFixed(2)}×)`,
    );
  }
}

const [role, ...rest] = process.argv.slice(2);
const die = (err: unknown): never => {
  process.stderr.write(
    `kernel-ceiling: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
};
if (role === 'receiver') receiver(rest[0]!, rest[1]!, Number(rest[2]), Number(rest[3])).catch(die);
else if (role === 'echo') echo(rest[0]!).catch(die);
else if (role === 'pinger')
  pinger(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]), Number(rest[4])).catch(die);
else if (role === 'sender')
  sender(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]), Number(rest[4])).catch(die);
else main().catch(die);

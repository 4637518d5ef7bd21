// Postbox clients for the shapes beyond the one-to-one pump (postbox-pump.ts has that one). Each
// is its own OS process, talking to a kernel process. <address> is a Unix socket path or
// tcp://HOST:PORT (token from POSTBOX_TOKEN).
//
//   node pb-peer.js consumer <address> --box A[,B…] [--create] [--capacity N] [--expect N] [--prefetch N]
//        counts type-1 messages over every box until --expect, a type-2 (stop) message, or idle
//   node pb-peer.js producer <address> --box A <messages> <size> [--window N] [--every N] [--stops K]
// consumer and producer take [--api each|batch]: send()/messages() or sendMany()/batches().
//        on `go`, sends pipelined (at most --window unacknowledged), then K stop messages
//   node pb-peer.js echo <address> --box PING,PONG          sends back on PONG what comes on PING
//   node pb-peer.js ping <address> --box PING,PONG <rounds> <size> <warmup>
//   node pb-peer.js hold <address> --box A <messages> <size>  fills a mailox nobody reads, then waits
//   node pb-peer.js idle <address> <connections>           opens that many connections, then waits

import { parseArgs } from 'node:util';
import { connect, type Mailbox, type PostboxProcess, type SendResult } from '../src/client/mod.js';
import {
  Counter,
  fail,
  goSignal,
  intArg,
  peerStart,
  roundTrips,
  type SendReport,
  say,
  sendInBatches,
  wallMs,
} from './peer-common.js';

const STOP = 2;

function join(address: string): Promise<PostboxProcess> {
  return address.startsWith('tcp://') ? connect({ url: address }) : connect({ socket: address });
}

/** Opens the box, or creates it as a system mailbox (it outlives whichever client made it). */
function open(p: PostboxProcess, name: string, capacity: number | 'unbounded'): Promise<Mailbox<Buffer>> {
  return p.openMailbox<Buffer>(name, {
    create: { system: true, mode: 0o666, capacity, ...(capacity === 0 ? {} : { maxBytes: 2 ** 31 }) },
  });
}

async function consumer(address: string, boxes: string[], opts: Opts): Promise<void> {
  const p = await join(address);
  const mailboxes = await Promise.all(boxes.map((b) => open(p, b, opts.capacity)));
  const streams =
    opts.api === 'batch'
      ? mailboxes.map((m) => m.batches({ prefetch: opts.prefetch }))
      : mailboxes.map((m) => m.messages({ prefetch: opts.prefetch }));
  // Ending the loops (return()) tells the kernel which pushed messages were taken; a process that
  // just exited would have them counted as untaken and given to another consumer (or, in a
  // rendezvous, leave the last sender waiting).
  const counter = new Counter(opts.expect, opts.idle, () => {
    for (const s of streams) void s.return?.();
  });
  // The kernel answers in order: once a stat is back, every stream above is registered, so a
  // producer started after `ready` finds this consumer already waiting.
  await Promise.all(mailboxes.map((m) => m.stat()));
  say('ready');
  await Promise.all(
    streams.map(async (s, i) => {
      // Each step is one message (each) or every message that has arrived (batch). A batch is
      // taken whole, so it may hold other consumers' stop messages too: every message in it is
      // counted, and each stop beyond this consumer's own is sent back for another to take.
      for await (const step of s) {
        const batch = Array.isArray(step) ? step : [step];
        let stops = 0;
        let reached = false;
        for (const m of batch) {
          if (m.type === STOP) stops++;
          else if (counter.hit()) reached = true;
        }
        for (let k = 1; k < stops; k++) await mailboxes[i]!.send(Buffer.alloc(0), { type: STOP });
        if (stops > 0 || reached) break;
      }
    }),
  );
  counter.done();
  await p.close();
  say(counter.result(), true);
}

async function producer(
  address: string,
  box: string,
  messages: number,
  size: number,
  opts: Opts,
): Promise<void> {
  const p = await join(address);
  const mailbox = await open(p, box, opts.capacity);
  const body = Buffer.alloc(size, 0x61);
  say('ready');
  await goSignal();
  const start = wallMs();
  if (opts.api === 'batch') {
    await sendInBatches(mailbox, body, messages, Math.min(opts.every, opts.window), opts.window);
  } else if (opts.window <= 64) {
    // Small windows (rendezvous): each send is its own promise, awaited in order.
    const pending: Promise<SendResult>[] = [];
    let head = 0;
    for (let i = 0; i < messages; i++) {
      pending.push(mailbox.send(body));
      if (pending.length - head >= opts.window) await pending[head++];
    }
    await Promise.all(pending.slice(head));
  } else {
    // Acknowledgements are cumulative and in order: awaiting every `every`-th send is enough to
    // bound what is outstanding (as in postbox-pump.ts).
    const every = Math.min(opts.every, opts.window);
    const maxCheckpoints = Math.max(1, Math.floor(opts.window / every));
    const checkpoints: Promise<SendResult>[] = [];
    let head = 0;
    for (let i = 1; i <= messages; i++) {
      const sent = mailbox.send(body);
      if (i % every === 0 || i === messages) {
        checkpoints.push(sent);
        if (checkpoints.length - head > maxCheckpoints) await checkpoints[head++];
      }
    }
    await Promise.all(checkpoints.slice(head));
  }
  const ms = wallMs() - start;
  for (let i = 0; i < opts.stops; i++) await mailbox.send(Buffer.alloc(0), { type: STOP });
  const report: SendReport = { sent: messages, ms };
  say(report);
  // Leave only once told (or the harness goes): closing early is fine, but a holder must stay.
  if (opts.hold) return;
  await p.close();
  process.exit(0);
}

async function echo(address: string, [pingName, pongName]: string[], opts: Opts): Promise<void> {
  const p = await join(address);
  const ping = await open(p, pingName!, 'unbounded');
  const pong = await open(p, pongName!, 'unbounded');
  if (opts.api === 'callback') {
    ping.consume((m) => void pong.send(m.data), { prefetch: 64 });
    await ping.stat();
    say('ready');
    return;
  }
  const stream = ping.messages({ prefetch: 64 });
  await ping.stat();
  say('ready');
  for await (const m of stream) void pong.send(m.data);
}

async function pinger(
  address: string,
  [pingName, pongName]: string[],
  rounds: number,
  size: number,
  warmup: number,
  opts: Opts,
): Promise<void> {
  const p = await join(address);
  const ping = await open(p, pingName!, 'unbounded');
  const pong = await open(p, pongName!, 'unbounded');
  if (opts.api === 'callback') return pingerByCallback(ping, pong, rounds, size, warmup);
  const replies = pong.messages({ prefetch: 64 });
  await pong.stat();
  say('ready');
  await goSignal();
  const body = Buffer.alloc(size, 0x61);
  const lat = new Float64Array(rounds);
  let start = 0;
  for (let i = 0; i < warmup + rounds; i++) {
    if (i === warmup) start = performance.now();
    const t = performance.now();
    void ping.send(body);
    const r = await replies.next();
    if (r.done) throw new Error('the reply stream ended');
    if (i >= warmup) lat[i - warmup] = (performance.now() - t) * 1000;
  }
  say(roundTrips(lat, performance.now() - start), true);
}

/** The pinger with a consumer: each reply's handler sends the next ping, no promise in the loop. */
async function pingerByCallback(
  ping: Mailbox<Buffer>,
  pong: Mailbox<Buffer>,
  rounds: number,
  size: number,
  warmup: number,
): Promise<void> {
  const body = Buffer.alloc(size, 0x61);
  const lat = new Float64Array(rounds);
  let i = 0;
  let t = 0;
  let start = 0;
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const replies = pong.consume(
    () => {
      if (i >= warmup) lat[i - warmup] = (performance.now() - t) * 1000;
      if (++i === warmup + rounds) return finish();
      if (i === warmup) start = performance.now();
      t = performance.now();
      void ping.send(body);
    },
    { prefetch: 64 },
  );
  await pong.stat();
  say('ready');
  await goSignal();
  if (warmup === 0) start = performance.now();
  t = performance.now();
  void ping.send(body);
  await done;
  say(roundTrips(lat, performance.now() - start), true);
  await replies.stop();
}

async function idle(address: string, n: number): Promise<void> {
  const procs: PostboxProcess[] = [];
  // A few at a time: a thousand connects at once would only measure the accept queue.
  for (let i = 0; i < n; i += 20) {
    const batch = Math.min(20, n - i);
    procs.push(...(await Promise.all(Array.from({ length: batch }, () => join(address)))));
  }
  say({ connected: procs.length });
  // Waits for the end of stdin (peerStart exits then).
}

interface Opts {
  capacity: number | 'unbounded';
  expect: number;
  prefetch: number;
  idle: number;
  window: number;
  every: number;
  stops: number;
  hold: boolean;
  /** each: send() and messages(); batch: sendMany() and batches(); callback: send() and consume(). */
  api: 'each' | 'batch' | 'callback';
}

peerStart();
const { positionals, values } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    box: { type: 'string', default: '' },
    capacity: { type: 'string', default: 'unbounded' },
    expect: { type: 'string', default: '0' },
    prefetch: { type: 'string', default: '4096' },
    idle: { type: 'string', default: '3000' },
    window: { type: 'string', default: '1024' },
    every: { type: 'string', default: '256' },
    stops: { type: 'string', default: '0' },
    api: { type: 'string', default: 'each' },
  },
});
const [role, address, a, b, c] = positionals;
if (address === undefined) fail(new Error('usage: pb-peer.js <role> <address> …'));
const boxes = values.box.split(',').filter((x) => x !== '');
const opts: Opts = {
  capacity: values.capacity === 'unbounded' ? 'unbounded' : intArg(values.capacity, 'capacity'),
  expect: intArg(values.expect, 'expect'),
  prefetch: intArg(values.prefetch, 'prefetch', 1),
  idle: intArg(values.idle, 'idle'),
  window: intArg(values.window, 'window', 1),
  every: intArg(values.every, 'every', 1),
  stops: intArg(values.stops, 'stops'),
  hold: role === 'hold',
  api: values.api === 'batch' || values.api === 'callback' ? values.api : 'each',
};
if (values.api !== 'each' && values.api !== 'batch' && values.api !== 'callback')
  fail(new Error(`unknown api ${values.api}`));
if (role === 'consumer') consumer(address, boxes, opts).catch(fail);
else if (role === 'producer' || role === 'hold')
  producer(address, boxes[0]!, intArg(a, 'messages', 1), intArg(b, 'size'), opts).catch(fail);
else if (role === 'echo') echo(address, boxes, opts).catch(fail);
else if (role === 'ping')
  pinger(address, boxes, intArg(a, 'rounds', 1), intArg(b, 'size'), intArg(c, 'warmup'), opts).catch(fail);
else if (role === 'idle') idle(address, intArg(a, 'connections', 1)).catch(fail);
else fail(new Error(`unknown role ${role}`));

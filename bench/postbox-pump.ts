// One end of the Postbox pump: the same one-way stream as raw-pump.ts, but through a kernel.
// The receiver creates the mailbox and iterates it with prefetch; the sender pipelines Buffer
// bodies (no codec cost) with at most `window` sends unacknowledged.
//
// Usage (spawned by postbox.ts, one process per role):
//   node postbox-pump.js receiver <address> <mailbox> <messages> <size> [--prefetch N] [--capacity N|unbounded] [--watch]
//   node postbox-pump.js sender   <address> <mailbox> <messages> <size> [--window N] [--every N] [--scheme checkpoint|all]
// Either role takes [--api each|batch] (see PumpApi).
// <address> is a Unix socket path or tcp://HOST:PORT (the token comes from POSTBOX_TOKEN).

import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { connect, type PostboxProcess, type SendResult } from '../src/client/mod.js';
import { sendInBatches } from './peer-common.js';

/**
 * Which client calls move the messages: `each` is a `send()` per message and `for await` over
 * `messages()`; `batch` is `sendMany()` of `every` messages and `for await` over `batches()`;
 * `callback` is a `send()` per message and a handler called by `consume()`.
 */
export type PumpApi = 'each' | 'batch' | 'callback';

/** Send schemes: how the sender keeps its window of unacknowledged sends. */
export type SendScheme = 'checkpoint' | 'all';

export interface ReceiverResult {
  received: number;
  /** First message to last, as the receiving application saw them. */
  ms: number;
  /** CPU time over the same span. */
  cpu: CpuMs;
  /** With --watch: the most messages the mailbox held, and senders blocked on it, at a stat. */
  peak?: { count: number; waitingSenders: number; stats: number };
}

export interface SenderResult {
  sent: number;
  /** First send to the last acknowledgement. */
  ms: number;
  /** CPU time over the same span. */
  cpu: CpuMs;
}

/** CPU time in ms: user (JavaScript, V8, libuv) and system (syscalls, socket copies). */
export interface CpuMs {
  user: number;
  system: number;
}

function cpuMs(since: NodeJS.CpuUsage): CpuMs {
  const u = process.cpuUsage(since);
  return { user: u.user / 1000, system: u.system / 1000 };
}

function fail(err: unknown): never {
  process.stderr.write(`postbox-pump: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}

function intArg(value: string | undefined, name: string, min: number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min)
    fail(new Error(`${name} must be an integer >= ${min}, not ${value}`));
  return n;
}

/** Writes one line and exits once it is flushed (stdout to a pipe is async). */
function finish(result: object): void {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

function join(address: string): Promise<PostboxProcess> {
  return address.startsWith('tcp://') ? connect({ url: address }) : connect({ socket: address });
}

async function receive(
  address: string,
  name: string,
  messages: number,
  size: number,
  prefetch: number,
  capacity: number | 'unbounded',
  watch: boolean,
): Promise<void> {
  const proc = await join(address);
  // Unbounded in count and, for the pump, in bytes too: the default 64 MiB byte limit would
  // otherwise block a sender that runs ahead on a long run, and that is not what this row measures.
  const mailbox = await proc.createMailbox<Buffer>(name, {
    mode: 0o666,
    capacity,
    ...(capacity === 'unbounded' ? { maxBytes: 2 ** 31 } : {}),
  });
  // The parent waits for this line before starting the sender, so the mailbox exists.
  process.stdout.write('ready\n');

  // --watch: sample the mailbox's state now and then, to show a bound holding and senders
  // blocking on it. One stat at a time; it costs the receiver a little.
  let peak: ReceiverResult['peak'];
  let watcher: NodeJS.Timeout | undefined;
  if (watch) {
    const seen = { count: 0, waitingSenders: 0, stats: 0 };
    peak = seen;
    let busy = false;
    watcher = setInterval(() => {
      if (busy) return;
      busy = true;
      mailbox.stat().then((st) => {
        busy = false;
        seen.stats++;
        seen.count = Math.max(seen.count, st.count);
        seen.waitingSenders = Math.max(seen.waitingSenders, st.waitingSenders.length);
      }, fail);
    }, 10);
  }

  let count = 0;
  let start = 0;
  let cpu = process.cpuUsage();
  if (api === 'batch') {
    for await (const batch of mailbox.batches({ prefetch })) {
      if (count === 0) {
        start = performance.now();
        cpu = process.cpuUsage();
        if (batch[0]!.size !== size)
          fail(new Error(`first message is ${batch[0]!.size} bytes, expected ${size}`));
      }
      count += batch.length;
      if (count >= messages) break;
    }
  } else if (api === 'callback') {
    await new Promise<void>((resolve) => {
      const consumer = mailbox.consume(
        (m) => {
          if (count === 0) {
            start = performance.now();
            cpu = process.cpuUsage();
            if (m.size !== size) fail(new Error(`first message is ${m.size} bytes, expected ${size}`));
          }
          if (++count === messages) {
            resolve();
            void consumer.stop();
          }
        },
        { prefetch },
      );
      consumer.closed.catch(fail);
    });
  } else {
    for await (const m of mailbox.messages({ prefetch })) {
      if (count === 0) {
        start = performance.now();
        cpu = process.cpuUsage();
        if (m.size !== size) fail(new Error(`first message is ${m.size} bytes, expected ${size}`));
      }
      if (++count >= messages) break;
    }
  }
  const ms = performance.now() - start;
  clearInterval(watcher);
  const result: ReceiverResult = { received: count, ms, cpu: cpuMs(cpu), ...(peak ? { peak } : {}) };
  finish(result);
}

async function send(
  address: string,
  name: string,
  messages: number,
  size: number,
  window: number,
  every: number,
  scheme: SendScheme,
): Promise<void> {
  const proc = await join(address);
  const mailbox = await proc.openMailbox<Buffer>(name);
  const body = Buffer.alloc(size, 0x61);
  const start = performance.now();
  const cpu = process.cpuUsage();

  if (api === 'batch') {
    await sendInBatches(mailbox, body, messages, every, window);
  } else if (scheme === 'all') {
    // Windows of `window` sends, each awaited whole: simple, but the pipe empties at every edge.
    for (let sent = 0; sent < messages; ) {
      const n = Math.min(window, messages - sent);
      const batch: Promise<SendResult>[] = new Array(n);
      for (let i = 0; i < n; i++) batch[i] = mailbox.send(body);
      sent += n;
      await Promise.all(batch);
    }
  } else {
    // Acknowledgements are cumulative and in order, so awaiting every `every`-th send is enough
    // to know how many are outstanding; at most `window` are, and the pipe never empties. The
    // other promises get no handler (a handler per send costs a reaction per send); one that
    // fails is an unhandled rejection, which fails the run (see the handler below).
    const checkpoints: Promise<SendResult>[] = [];
    let head = 0;
    const maxCheckpoints = Math.max(1, Math.floor(window / every));
    for (let i = 1; i <= messages; i++) {
      const p = mailbox.send(body);
      if (i % every === 0 || i === messages) {
        checkpoints.push(p);
        if (checkpoints.length - head > maxCheckpoints) await checkpoints[head++];
      }
    }
    await Promise.all(checkpoints.slice(head));
  }

  const ms = performance.now() - start;
  const cpu2 = cpuMs(cpu);
  await proc.close();
  const result: SenderResult = { sent: messages, ms, cpu: cpu2 };
  finish(result);
}

process.on('unhandledRejection', fail);

const { positionals, values } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    prefetch: { type: 'string', default: '4096' },
    capacity: { type: 'string', default: 'unbounded' },
    watch: { type: 'boolean', default: false },
    window: { type: 'string', default: '4096' },
    every: { type: 'string', default: '256' },
    scheme: { type: 'string', default: 'checkpoint' },
    api: { type: 'string', default: 'each' },
  },
});
const [role, address, name, messagesArg, sizeArg] = positionals;
if (address === undefined || name === undefined)
  fail(new Error('usage: postbox-pump.js <receiver|sender> <address> <mailbox> <messages> <size> [options]'));
const messages = intArg(messagesArg, 'messages', 1);
const size = intArg(sizeArg, 'size', 0);
const api = values.api as PumpApi;
if (api !== 'each' && api !== 'batch' && api !== 'callback') fail(new Error(`unknown api ${String(api)}`));

if (role === 'receiver') {
  const capacity = values.capacity === 'unbounded' ? 'unbounded' : intArg(values.capacity, 'capacity', 1);
  const prefetch = intArg(values.prefetch, 'prefetch', 1);
  receive(address, name, messages, size, prefetch, capacity, values.watch === true).catch(fail);
} else if (role === 'sender') {
  const scheme = values.scheme as SendScheme;
  if (scheme !== 'checkpoint' && scheme !== 'all') fail(new Error(`unknown scheme ${scheme}`));
  const window = intArg(values.window, 'window', 1);
  const every = Math.min(intArg(values.every, 'every', 1), window);
  send(address, name, messages, size, window, every, scheme).catch(fail);
} else {
  fail(new Error(`unknown role ${role}`));
}

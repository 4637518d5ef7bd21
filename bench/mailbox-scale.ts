// One mailbox grown large, three ways, and what the kernel pays for it afterwards
// (docs/performance.md, "What an operation costs as things grow"). A tool, like owner-end.js; not
// part of `npm run bench`.
//
//   node dist/bench/mailbox-scale.js [--part typed,from,turns,rendezvous,drain] [--sizes N,N…]
//     [--runs N] [--sends N] [--messages N] [--queued N] [--policy first|round-robin] [--left N]
//
// typed:      N receives wait on a mailbox of --policy, each for a type of its own (System V's
//             clients, each in msgrcv for type = its pid); then --sends messages, each of the
//             type of a receive chosen at random among those still waiting. Printed: the kernel's
//             CPU per send (its main thread's). With --queued K, K messages of a type no receive
//             takes are queued first (the requests the clients' server has not read yet).
// from:       on a mailbox of --policy, N receives wait for a message from process B, then
//             --sends receives for one from process C (an inbox's owner waiting on each of its
//             peers); C sends --sends messages, each past B's receives. Printed: the kernel's CPU
//             per send.
// turns:      on a round-robin mailbox, process A has N receives waiting, then process B has N
//             (each asked for all of its work at once); --sends messages go to them, turn by
//             turn A's and B's. Printed: the kernel's CPU per send, and whether the turns
//             alternated.
// rendezvous: N sends of different priorities (random, 0…32,767) wait on a priority mailbox of
//             capacity 0; one receiver takes them all, one receive at a time. Printed: the
//             kernel's CPU per receive, and whether they came highest priority first.
// drain:      --messages 1-byte messages fill a mailbox and are drained; the kernel runs in a
//             process of its own with --expose-gc and reports its memory after a full
//             collection, before, full and drained. With --left K, drained down to K, and then
//             as many again sent and received in batches of 10,000, K or more always queued.
//
// Each run starts a kernel and its clients; medians of the runs.

import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Mailbox, type Message, type PostboxProcess } from '../src/client/mod.js';
import { Child, installCleanup, session } from './harness.js';
import { stats } from './report.js';
import { launchKernel } from './shared-kernel.js';
import { toolArgs } from './tool-args.js';

const USAGE =
  'node dist/bench/mailbox-scale.js [--part typed,from,turns,rendezvous,drain] [--sizes N,N…] [--runs N] [--sends N] [--messages N] [--queued N] [--policy first|round-robin] [--left N]';

const { values, count } = toolArgs('mailbox-scale', USAGE, {
  part: { type: 'string', default: 'typed,rendezvous,drain' },
  sizes: { type: 'string', default: '1000,10000' },
  runs: { type: 'string', default: '3' },
  sends: { type: 'string', default: '1000' },
  messages: { type: 'string', default: '1000000' },
  queued: { type: 'string', default: '0' },
  policy: { type: 'string', default: 'first' },
  left: { type: 'string', default: '0' },
  // The kernel process of the drain part (this script, started by itself).
  'serve-kernel': { type: 'string' },
  help: { type: 'boolean', default: false },
});

/**
 * CPU time of a process's main thread so far in ms, from the scheduler's count in ns: the kernel's
 * work is done there, and /proc's clock ticks (10 ms) are too coarse for a few thousand operations.
 */
function mainThreadCpuMs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

/** Operations in flight at once from one client: enough to keep the kernel busy. */
const IN_FLIGHT = 1000;
/** The policies the typed and from parts compare. */
type Policy = 'first' | 'round-robin';
/** Types of the typed part start here, past the default type 1. */
const FIRST_TYPE = 1000;

async function waitForCount(
  proc: PostboxProcess,
  name: string,
  what: 'waitingReceiversCount' | 'waitingSendersCount' | 'queued' | 'received',
  n: number,
): Promise<void> {
  const deadline = Date.now() + 120_000;
  while ((await proc.stat(name))[what] !== n) {
    if (Date.now() > deadline) throw new Error(`${name}: ${what} never reached ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs `round` twice on one kernel, each time on a mailbox of its own, and returns the second:
 * a fresh kernel runs its first few thousand operations slower while V8 compiles them.
 */
function warmed<T>(
  label: string,
  round: (
    kernelPid: number,
    a: PostboxProcess,
    b: PostboxProcess,
    name: string,
    c: PostboxProcess,
  ) => Promise<T>,
): Promise<T> {
  return session(label, 600_000, async ({ add, dir }) => {
    const kernel = await launchKernel(dir('postbox-mailbox-scale-'), process.env, false);
    add(kernel.child);
    const a = await connect({ socket: kernel.socket });
    const b = await connect({ socket: kernel.socket });
    const c = await connect({ socket: kernel.socket });
    try {
      await round(kernel.child.pid, a, b, 'warm-up', c);
      return await round(kernel.child.pid, a, b, 'measured', c);
    } finally {
      await Promise.allSettled([a.close(), b.close(), c.close()]);
    }
  });
}

/** Kernel CPU ms per message of `bodies`, sent by `into` while receives wait for them. */
async function sendAll(
  pid: number,
  a: PostboxProcess,
  name: string,
  into: Mailbox<string>,
  bodies: { body: string; type?: number }[],
): Promise<number> {
  const before = (await a.stat(name)).received;
  const cpu = mainThreadCpuMs(pid);
  const sent: Promise<unknown>[] = [];
  for (const { body, type } of bodies) {
    sent.push(into.send(body, type === undefined ? {} : { type }));
    if (sent.length === IN_FLIGHT) await Promise.all(sent.splice(0));
  }
  await Promise.all(sent);
  // The receives' TAKEs reach the kernel after their messages reach them: counted too.
  await waitForCount(a, name, 'received', before + bodies.length);
  return (mainThreadCpuMs(pid) - cpu) / bodies.length;
}

/**
 * Kernel CPU ms per send with `waiting` typed receives waiting, and `queued` messages of a type
 * none of them takes (the requests a System V server has not read yet) in the queue.
 */
function typed(waiting: number, sends: number, queued: number, policy: Policy): Promise<number> {
  return warmed(`typed run of ${waiting}`, async (pid, a, b, name) => {
    const box = await a.createMailbox<string>(name, { mode: 0o666, policy });
    const into = await b.openMailbox<string>(name);
    const got = new Map<number, Promise<Message<string> | null>>();
    for (let i = 0; i < waiting; i++) {
      const r = box.receive({ type: FIRST_TYPE + i });
      r.catch(() => {});
      got.set(FIRST_TYPE + i, r);
    }
    await waitForCount(a, name, 'waitingReceiversCount', waiting);
    if (queued > 0) await into.sendMany(Array(queued).fill('request'), { type: 1 });
    const types = [...got.keys()];
    // Fisher–Yates: each send for a receive still waiting, anywhere in the line.
    for (let i = types.length - 1; i > 0; i--) {
      const j = randomInt(i + 1);
      [types[i], types[j]] = [types[j]!, types[i]!];
    }
    const chosen = types.slice(0, Math.min(sends, waiting));
    const perSend = await sendAll(
      pid,
      a,
      name,
      into,
      chosen.map((t) => ({ body: `to ${t}`, type: t })),
    );
    const bodies = await Promise.all(chosen.map((t) => got.get(t)!));
    chosen.forEach((t, i) => {
      if (bodies[i]?.body !== `to ${t}`) throw new Error(`the receive of type ${t} got ${bodies[i]?.body}`);
    });
    await box.delete();
    return perSend;
  });
}

/** Kernel CPU ms per send from C with `waiting` receives from B ahead of C's in line. */
function bySender(waiting: number, sends: number, policy: Policy): Promise<number> {
  return warmed(`from run of ${waiting}`, async (pid, a, b, name, c) => {
    const box = await a.createMailbox<string>(name, { mode: 0o666, policy });
    const fromC = await c.openMailbox<string>(name);
    const receive = (sender: number): Promise<Message<string> | null> => {
      const r = box.receive({ from: sender });
      r.catch(() => {}); // B's, still waiting when the mailbox goes
      return r;
    };
    for (let i = 0; i < waiting; i++) receive(b.id);
    const got = Array.from({ length: sends }, () => receive(c.id));
    await waitForCount(a, name, 'waitingReceiversCount', waiting + sends);
    const perSend = await sendAll(
      pid,
      a,
      name,
      fromC,
      got.map((_, i) => ({ body: `m${i}` })),
    );
    const bodies = (await Promise.all(got)).map((m) => m?.body);
    bodies.forEach((body, i) => {
      if (body !== `m${i}`) throw new Error(`receive ${i} from C got ${body}`);
    });
    await box.delete();
    return perSend;
  });
}

/**
 * Kernel CPU ms per send to a round-robin mailbox where A, then B, has `waiting` receives
 * waiting, and whether the messages went to A and B in turn.
 */
function turns(waiting: number, sends: number): Promise<{ perSend: number; alternated: boolean }> {
  return warmed(`turns run of ${waiting}`, async (pid, a, b, name, c) => {
    const box = await a.createMailbox<string>(name, { mode: 0o666, policy: 'round-robin' });
    const ofB = await b.openMailbox<string>(name);
    const into = await c.openMailbox<string>(name);
    const waitOn = (mb: Mailbox<string>): Promise<Message<string> | null>[] =>
      Array.from({ length: waiting }, () => {
        const r = mb.receive();
        r.catch(() => {}); // still waiting when the mailbox goes
        return r;
      });
    const gotA = waitOn(box);
    await waitForCount(a, name, 'waitingReceiversCount', waiting);
    const gotB = waitOn(ofB);
    await waitForCount(a, name, 'waitingReceiversCount', 2 * waiting);
    const n = Math.min(sends, 2 * waiting);
    const perSend = await sendAll(
      pid,
      a,
      name,
      into,
      Array.from({ length: n }, (_, i) => ({ body: `m${i}` })),
    );
    // Turn by turn: A's receives get the even messages, B's the odd, each in the order asked.
    const ofA = await Promise.all(gotA.slice(0, Math.ceil(n / 2)));
    const ofB2 = await Promise.all(gotB.slice(0, Math.floor(n / 2)));
    const alternated =
      ofA.every((m, i) => m?.body === `m${2 * i}`) && ofB2.every((m, i) => m?.body === `m${2 * i + 1}`);
    await box.delete();
    return { perSend, alternated };
  });
}

/** Kernel CPU ms per receive with `waiting` senders of random priorities blocked at capacity 0. */
function rendezvous(waiting: number): Promise<{ perReceive: number; inOrder: boolean }> {
  return warmed(`rendezvous run of ${waiting}`, async (pid, a, b, name) => {
    const box = await a.createMailbox<string>(name, { mode: 0o666, capacity: 0, order: 'priority' });
    const into = await b.openMailbox<string>(name);
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < waiting; i++) {
      const priority = randomInt(32_768);
      sent.push(into.send(`${priority}`, { priority }));
    }
    await waitForCount(a, name, 'waitingSendersCount', waiting);
    const cpu = mainThreadCpuMs(pid);
    let inOrder = true;
    let last = Number.POSITIVE_INFINITY;
    for (let i = 0; i < waiting; i++) {
      const m = await box.receive();
      const p = Number(m?.body);
      if (p > last) inOrder = false;
      last = p;
    }
    const perReceive = (mainThreadCpuMs(pid) - cpu) / waiting;
    await Promise.all(sent);
    return { perReceive, inOrder };
  });
}

interface Memory {
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
}

/** What drain measures: the kernel's memory before, full, drained, and after a turnover (with --left). */
interface Drained {
  before: Memory;
  full: Memory;
  drained: Memory;
  turned: Memory | null;
}

/**
 * The kernel's memory after a full collection, before, full and drained (to `left` queued), and
 * with `left` > 0 after as many again went through the queue, in MiB.
 */
function drain(messages: number, left: number): Promise<Drained> {
  return session(`drain run of ${messages}`, 600_000, async ({ add, dir }) => {
    const socket = join(dir('postbox-mailbox-scale-'), 'k.sock');
    const script = fileURLToPath(import.meta.url);
    const kernel = add(
      new Child('kernel', process.execPath, ['--expose-gc', script, '--serve-kernel', socket], {
        teeStderr: true,
      }),
    );
    await kernel.ready();
    const memory = (): Promise<Memory> => {
      kernel.send('memory');
      return kernel.json<Memory>('its memory');
    };
    const a = await connect({ socket });
    try {
      const box = await a.createMailbox<string>('drain', { maxBytes: 'unbounded' });
      const before = await memory();
      const batch = Array(10_000).fill('x');
      for (let sent = 0; sent < messages; sent += batch.length) await box.sendMany(batch);
      await waitForCount(a, 'drain', 'queued', messages);
      const full = await memory();
      // Batches while far from `left`, then single receives: a loop's break gives back what it held.
      let queued = messages;
      for await (const got of box.batches({ prefetch: 16_384 })) {
        queued -= got.length;
        if (queued - left <= 2 * 16_384) break;
      }
      await waitForCount(a, 'drain', 'queued', queued);
      await Promise.all(Array.from({ length: queued - left }, () => box.receive()));
      await waitForCount(a, 'drain', 'queued', left);
      const drained = await memory();
      if (left === 0) return { before, full, drained, turned: null };
      // The queue never empties: each batch sent is received by a loop with less credit than what stays.
      const prefetch = Math.max(1, Math.min(1_000, left));
      for (let moved = 0; moved < messages; moved += batch.length) {
        await box.sendMany(batch);
        let got = 0;
        for await (const b of box.batches({ prefetch })) {
          got += b.length;
          if (got >= batch.length - prefetch) break;
        }
        await waitForCount(a, 'drain', 'queued', left + batch.length - got);
        await Promise.all(Array.from({ length: batch.length - got }, () => box.receive()));
      }
      await waitForCount(a, 'drain', 'queued', left);
      return { before, full, drained, turned: await memory() };
    } finally {
      await a.close();
    }
  });
}

/** The drain part's kernel: answers each line on stdin with its memory after a full collection. */
async function serveKernel(socket: string): Promise<void> {
  const { startKernel } = await import('../src/kernel/mod.js');
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('the kernel process needs --expose-gc');
  const running = await startKernel({ socket });
  console.log('ready');
  for await (const _ of createInterface({ input: process.stdin })) {
    gc();
    gc();
    const m = process.memoryUsage();
    console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers }));
  }
  await running.close();
}

const span = (xs: number[], digits = 1): string => {
  const { median, min, max } = stats(xs);
  return `${median.toFixed(digits)} (${min.toFixed(digits)}–${max.toFixed(digits)})`;
};
const mib = (n: number): number => n / 1024 / 1024;

async function main(): Promise<void> {
  if (values['serve-kernel'] !== undefined) {
    await serveKernel(values['serve-kernel']);
    return;
  }
  installCleanup();
  const parts = values.part.split(',');
  const sizes = values.sizes.split(',').map((v) => count(v.trim(), 'sizes'));
  const runs = count(values.runs, 'runs');
  const sends = count(values.sends, 'sends');
  const messages = count(values.messages, 'messages');
  const queued = count(values.queued, 'queued', 0);
  const policy = values.policy;
  const left = count(values.left, 'left', 0);
  if (policy !== 'first' && policy !== 'round-robin') {
    console.error(`mailbox-scale: --policy must be first or round-robin, not '${policy}'\nusage: ${USAGE}`);
    process.exit(2);
  }
  const perSendTable = (title: string, rs: Map<number, number[]>): void => {
    console.log(`${title}; ${runs} runs, median (min–max)\n`);
    console.log('| receives waiting | kernel CPU µs a send |\n|--:|--:|');
    for (const [n, ms] of rs)
      console.log(
        `| ${n.toLocaleString('en-US')} | ${span(
          ms.map((x) => x * 1000),
          0,
        )} |`,
      );
    console.log();
  };
  if (parts.includes('typed')) {
    const results = new Map<number, number[]>(sizes.map((n) => [n, []]));
    for (let i = 0; i < runs; i++)
      for (const n of sizes) results.get(n)!.push(await typed(n, sends, queued, policy));
    perSendTable(
      `${policy}: typed receives waiting, a send to a random one, ${queued} queued for no one`,
      results,
    );
  }
  if (parts.includes('from')) {
    const results = new Map<number, number[]>(sizes.map((n) => [n, []]));
    for (let i = 0; i < runs; i++)
      for (const n of sizes) results.get(n)!.push(await bySender(n, sends, policy));
    perSendTable(
      `${policy}: receives from B waiting, ${sends} sends from C to receives from C behind them`,
      results,
    );
  }
  if (parts.includes('turns')) {
    const results = new Map<number, { perSend: number; alternated: boolean }[]>(sizes.map((n) => [n, []]));
    for (let i = 0; i < runs; i++) for (const n of sizes) results.get(n)!.push(await turns(n, sends));
    console.log(`round robin: A's receives waiting, then as many of B's, ${sends} sends; ${runs} runs\n`);
    console.log("| each's receives waiting | kernel CPU µs a send | A, B, A, B … |\n|--:|--:|:-:|");
    for (const [n, rs] of results)
      console.log(
        `| ${n.toLocaleString('en-US')} | ${span(
          rs.map((r) => r.perSend * 1000),
          0,
        )} | ${rs.every((r) => r.alternated) ? 'yes' : 'NO'} |`,
      );
    console.log();
  }
  if (parts.includes('rendezvous')) {
    const results = new Map<number, { perReceive: number; inOrder: boolean }[]>(sizes.map((n) => [n, []]));
    for (let i = 0; i < runs; i++) for (const n of sizes) results.get(n)!.push(await rendezvous(n));
    console.log(`senders of random priorities waiting at capacity 0, all received; ${runs} runs\n`);
    console.log('| senders waiting | kernel CPU µs a receive | highest first |\n|--:|--:|:-:|');
    for (const [n, rs] of results) {
      const ordered = rs.every((r) => r.inOrder) ? 'yes' : 'NO';
      console.log(
        `| ${n.toLocaleString('en-US')} | ${span(
          rs.map((r) => r.perReceive * 1000),
          0,
        )} | ${ordered} |`,
      );
    }
    console.log();
  }
  if (parts.includes('drain')) {
    const rs: Drained[] = [];
    for (let i = 0; i < runs; i++) rs.push(await drain(messages, left));
    console.log(
      `the kernel's memory after a full collection, ${messages.toLocaleString('en-US')} messages, drained to ${left}; MiB, ${runs} runs\n`,
    );
    console.log('| | RSS | heap used | array buffers |\n|--|--:|--:|--:|');
    const row = (when: string, ms: Memory[]): void =>
      console.log(
        `| ${when} | ${span(ms.map((m) => mib(m.rss)))} | ${span(ms.map((m) => mib(m.heapUsed)))} | ${span(
          ms.map((m) => mib(m.arrayBuffers)),
        )} |`,
      );
    for (const when of ['before', 'full', 'drained'] as const)
      row(
        when,
        rs.map((r) => r[when]),
      );
    if (left > 0)
      row(
        'as many again through it',
        rs.map((r) => r.turned!),
      );
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);

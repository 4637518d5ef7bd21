/**
 * Structure-aware fuzzing of the kernel: hostile peers that complete the handshake and then send
 * well-framed requests of every opcode with one field at a boundary (0, 1, the largest, one past
 * it, unknown flag bits, ids stale, never issued or another process's) and valid requests in
 * wrong orders (TAKE or RETURN before any delivery, CANCEL of finished ids, control-plane CALLs
 * with odd JSON), several at once, in seeded sequences, while well-behaved processes trade
 * messages beside them. The kernel must answer every bad request with a known code and a message
 * for people (or end only that connection), lose nothing of the others', and keep nothing of the
 * hostile peers' once they have gone.
 *
 * POSTBOX_HOSTILE_SEED replays a run; POSTBOX_HOSTILE_PEERS and POSTBOX_HOSTILE_STEPS make it longer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, type MailboxOptions, type Message } from '../src/client/mod.js';
import { Mailbox } from '../src/kernel/mailbox.js';
import { type Kernel, startKernel } from '../src/kernel/mod.js';
import { KernelProcess } from '../src/kernel/process.js';
import {
  MESSAGE_HEAD_BYTES,
  NO_MAX_SIZE,
  Off,
  Op,
  RECALL_FRAME_BYTES,
  RECEIVE_FRAME_BYTES,
  ReceiveFlag,
  SendFlag,
  TAKE_FRAME_BYTES,
  writeHead,
} from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { Rng } from './helpers/prng.js';
import {
  callFrame,
  frameError,
  framePayload,
  headFrame,
  RawPeer,
  rawCallFrame,
  within,
} from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const SEED = Number(process.env.POSTBOX_HOSTILE_SEED ?? 0x40571e);
const PEERS = Number(process.env.POSTBOX_HOSTILE_PEERS ?? 24);
const STEPS = Number(process.env.POSTBOX_HOSTILE_STEPS ?? 80);
/** Hostile peers connected at once. */
const AT_ONCE = 4;

const kernels: TestKernel[] = [];
after(async () => {
  for (const k of kernels.splice(0)) await k.stop();
});

/** What a hostile peer may name: ids of its own, of others, stale ones, and ones never issued. */
interface Known {
  goodMailbox: number;
  goodProcesses: number[];
  goodInboxes: number[];
  /** Mailboxes removed before the peers start. */
  staleMailbox: number;
  /** System mailboxes of every policy and order that all the hostile peers may use. */
  shared: number[];
}

/** The shared mailboxes: one of each policy, order and kind of limit. */
const SHARED: MailboxOptions[] = [
  {},
  { capacity: 0 },
  { capacity: 2 },
  { order: 'priority' },
  { policy: 'exclusive' },
  { policy: 'pair' },
  { policy: 'round-robin', capacity: 4 },
  { messageSize: 8, capacity: 4 },
  { endOnLastWriter: true },
  { requireReader: true },
  { admission: 'fits', maxBytes: 200 },
];

/** u32 boundary values, and the ones around what a field means. */
const U32_EDGES = [0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
/** u64 boundary values for a type (written as bigint, two's complement). */
const U64_EDGES: bigint[] = [
  0n,
  1n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n, // -1
  2n ** 64n - 2n ** 53n + 1n, // -(2^53 - 1)
  2n ** 64n - 2n ** 53n, // -2^53
];

/** JSON values for CALL arguments: good ones beside ones of every wrong shape. */
function argValue(rng: Rng, ids: number[]): unknown {
  switch (rng.int(14)) {
    case 0:
    case 1:
    case 2:
      return rng.pick(ids);
    case 3:
      return rng.pick(U32_EDGES.concat([2 ** 32, 2 ** 53 - 1, 2 ** 53, -1, 1.5, 1e308, -0]));
    case 4:
      return rng.pick(['7', '', 'NaN', 'Infinity', '-0', '0x10', '0662', 'unbounded', 'read', 'both']);
    case 5:
      return rng.pick([null, true, false]);
    case 6:
      return rng.pick([{}, [], [1, 2], { nested: { deep: [1, { a: null }] } }, { id: 1 }]);
    case 7:
      return 'x'.repeat(rng.pick([255, 256, 1024, 1025, 70_000]));
    case 8:
      return rng.pick(['ü✓😀', '\u202e', 'a\u0000b', '#7', '12', 'fifo', 'priority', 'exclusive', 'pair']);
    case 9:
      return rng.pick([0o600, 0o662, 0o666, 0o777, 0o1000, 438]);
    default:
      return rng.pick(ids.concat([0, 1]));
  }
}

const OPS = [
  'create',
  'open',
  'close',
  'unlink',
  'notify',
  'awaitReader',
  'delete',
  'stat',
  'list',
  'busiest',
  'usage',
  'processes',
  'lookup',
  'monitor',
  'demonitor',
  'chmod',
  'grant',
  'revoke',
  'transfer',
  'release',
  'set',
  'passkey',
];
const ARGS = [
  'id',
  'name',
  'key',
  'handle',
  'process',
  'mode',
  'role',
  'capacity',
  'maxMessageSize',
  'maxBytes',
  'order',
  'policy',
  'messageSize',
  'system',
  'ifExists',
  'on',
  'event',
  'beyond',
  'after',
  'limit',
  'above',
  'monitor',
  'transient',
  'endOnLastWriter',
  'requireReader',
  'admission',
  'rightsAtOpen',
  'passkey',
  'renew',
  'zzz',
];

/** CALL payloads JSON.stringify cannot write: numbers past a double, -0, bad text, deep nesting. */
const RAW_CALLS: (string | Buffer)[] = [
  '{"op":"stat","id":1e999}',
  '{"op":"stat","id":-1e999}',
  '{"op":"stat","id":-0}',
  '{"op":"stat","id":1.0}',
  '{"op":"create","capacity":1e999}',
  '{"op":"create","capacity":-0,"name":"neg-zero"}',
  '{"op":"list","limit":1e400}',
  '{"op":"list","after":-0}',
  '{"op":"create","__proto__":{"system":true}}',
  '{"op":"stat","__proto__":{"id":1}}',
  '{"op":"open","name":"\\ud800"}',
  '{"op":"create","name":"\\udfff\\ud800"}',
  '{"op":"create","name":"a","name":"b"}',
  '{"op":"constructor"}',
  '{"op":"__proto__"}',
  '{"op":"toString"}',
  '{"op":"hasOwnProperty","id":1}',
  '{"op":["create"]}',
  '{"op":null}',
  '"create"',
  'null',
  '[]',
  '',
  ' ',
  '{"op":"usage"} trailing',
  '{"op":"monitor","process":1e999}',
  '{"op":"grant","id":1,"process":{}}',
  `${'['.repeat(50_000)}${']'.repeat(50_000)}`,
  `{"op":"stat","id":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
  Buffer.from([0x7b, 0x22, 0x6f, 0x70, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
  Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{"op":"usage"}')]),
];

function u64(buf: Buffer, at: number, v: bigint): void {
  buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
}

/** Messages (pattern) no error for people should hold: they are the kernel's insides showing. */
const INSIDES =
  /internal error|Cannot read|is not a function|is not iterable|\[object |Maximum call stack|(?<!["'])NaN(?!["'])/;

interface PeerReport {
  seed: number;
  welcomed: boolean;
  fatal: string | null;
  errors: Map<string, number>;
  /** Errors whose code is unknown or whose message is empty or shows the kernel's insides. */
  unclear: string[];
  decodeError: string | null;
  /** A fatal ERROR after which the connection stayed open. */
  stayedOpen: boolean;
}

/** One hostile peer: HELLO, then `steps` seeded requests, then it goes (one of several ways). */
async function hostile(socket: string, seed: number, steps: number, known: Known): Promise<PeerReport> {
  const rng = new Rng(seed);
  const report: PeerReport = {
    seed,
    welcomed: false,
    fatal: null,
    errors: new Map(),
    unclear: [],
    decodeError: null,
    stayedOpen: false,
  };
  const p = await RawPeer.open(socket);
  // The last frames written, for a failure's message.
  const written: string[] = [];
  const write = p.write.bind(p);
  p.write = (bytes: Buffer): void => {
    written.push(bytes.subarray(0, 64).toString('hex'));
    if (written.length > 8) written.shift();
    write(bytes);
  };
  try {
    const welcome = await p.hello({ pid: process.pid, recall: rng.chance(0.5) });
    if (welcome.op !== Op.WELCOME) {
      report.fatal = JSON.stringify(frameError(welcome));
      return report;
    }
    report.welcomed = true;
    const w = framePayload(welcome) as { process: { id: number }; inbox: number };
    const mine: number[] = [];
    const handles: number[] = [];
    const events: number[] = [];
    const issued: number[] = [];
    let nextRequest = 1;
    const fresh = (): number => {
      const r = nextRequest++;
      issued.push(r);
      return r;
    };
    const anyRequest = (): number =>
      rng.chance(0.6) && issued.length > 0
        ? rng.pick(issued)
        : rng.pick([...U32_EDGES.slice(1), nextRequest, nextRequest + 1000]);
    const ids = (): number[] => [
      w.process.id,
      w.inbox,
      known.goodMailbox,
      known.staleMailbox,
      ...known.goodProcesses,
      ...known.goodInboxes,
      ...mine,
      ...handles,
      ...events,
    ];
    let seen = 0;
    const delivered: { request: number; seq: bigint }[] = [];
    const untaken: { request: number; seq: bigint }[] = [];
    const recalled: { request: number; seq: bigint }[] = [];
    const look = (): void => {
      for (; seen < p.frames.length; seen++) {
        const f = p.frames[seen]!;
        if (f.op === Op.DELIVER) {
          const d = { request: f.request, seq: f.bytes.readBigUInt64LE(Off.SEQ) };
          delivered.push(d);
          untaken.push(d);
        } else if (f.op === Op.RECALL) {
          const d = { request: f.request, seq: f.bytes.readBigUInt64LE(Off.C_SEQ) };
          recalled.push(d);
          const i = untaken.findIndex((u) => u.request === d.request && u.seq === d.seq);
          if (i >= 0) untaken.splice(i, 1);
        } else if (f.op === Op.RESULT) {
          const r = framePayload(f) as { id?: unknown; handle?: unknown; monitor?: unknown; event?: unknown };
          if (typeof r?.id === 'number' && typeof r.handle === 'number') {
            mine.push(r.id);
            handles.push(r.handle);
          }
          if (typeof r?.monitor === 'number') events.push(r.monitor);
          if (typeof r?.event === 'number') events.push(r.event);
        } else if (f.op === Op.ERROR) {
          const e = frameError(f);
          report.errors.set(e.code, (report.errors.get(e.code) ?? 0) + 1);
          if (e.code.startsWith('wire') || e.message.length === 0 || INSIDES.test(e.message))
            report.unclear.push(`${e.code} ${e.message}`);
          if (f.request === 0) report.fatal = `${e.code} ${e.message}`;
        }
      }
    };
    /** Mailboxes it may use: the shared ones and its own, mostly; now and then any id at all. */
    const useful = (): number =>
      rng.chance(0.85) ? rng.pick(known.shared.concat(mine)) : rng.pick(ids().concat(U32_EDGES));
    /** Receives and sends it has begun (some long over). */
    const open: number[] = [];
    for (let step = 0; step < steps && p.isOpen && report.fatal === null; step++) {
      look();
      const roll = rng.int(100);
      if (roll < 30) {
        // A CALL of a known op (now and then an unknown one) with a few arguments of any shape.
        const payload: Record<string, unknown> = {
          op: rng.chance(0.95) ? rng.pick(OPS) : rng.pick(['', 'nope', 'bye ']),
        };
        const n = rng.int(4);
        for (let i = 0; i < n; i++) payload[rng.pick(ARGS)] = argValue(rng, ids());
        // Mostly names of its own: creating many under one name only meets EEXIST.
        if (payload.op === 'create' && rng.chance(0.7)) payload.name = `hp-${seed}-${step}`;
        p.write(callFrame(rng.chance(0.95) ? fresh() : anyRequest(), payload));
      } else if (roll < 34) {
        p.write(rawCallFrame(fresh(), rng.pick(RAW_CALLS)));
      } else if (roll < 52) {
        const toProcess = rng.chance(0.2);
        const to = toProcess ? rng.pick([w.process.id, ...known.goodProcesses]) : useful();
        p.write(sendOf(rng, rng.chance(0.9) ? fresh() : anyRequest(), to, toProcess));
      } else if (roll < 66) {
        const r = rng.chance(0.9) ? fresh() : anyRequest();
        open.push(r);
        p.write(receiveOf(rng, r, useful(), [w.process.id, ...known.goodProcesses]));
      } else if (roll < 76) {
        // Mostly as a client would: the oldest delivery not yet taken, one taken, one more credit.
        const right = untaken.length > 0 && rng.chance(0.7);
        const d = right
          ? untaken.shift()!
          : delivered.length > 0 && rng.chance(0.5)
            ? rng.pick(delivered)
            : null;
        const buf = Buffer.alloc(TAKE_FRAME_BYTES);
        writeHead(buf, 0, TAKE_FRAME_BYTES, Op.TAKE, right ? 0 : rng.int(256), 0, d?.request ?? anyRequest());
        buf.writeUInt32LE(right ? 1 : rng.pick([0, 1, 2, 3, 0xffffffff]), Off.T_TAKEN);
        buf.writeUInt32LE(right ? rng.int(2) : rng.pick([0, 1, 16384, 16385, 0xffffffff]), Off.T_CREDIT);
        p.write(buf);
      } else if (roll < 82) {
        // A recalled message given back (right), or a RETURN of what was never recalled.
        const right = recalled.length > 0 && rng.chance(0.7);
        const d = right
          ? recalled.shift()!
          : delivered.length > 0 && rng.chance(0.6)
            ? rng.pick(delivered)
            : null;
        const buf = Buffer.alloc(RECALL_FRAME_BYTES);
        writeHead(buf, 0, RECALL_FRAME_BYTES, Op.RETURN, 0, 0, d?.request ?? anyRequest());
        u64(buf, Off.C_SEQ, d !== null && (right || rng.chance(0.7)) ? d.seq : rng.pick(U64_EDGES));
        p.write(buf);
      } else if (roll < 90) {
        const r = open.length > 0 && rng.chance(0.7) ? rng.pick(open) : anyRequest();
        p.write(headFrame(Op.CANCEL, r, rng.chance(0.8) ? 0 : rng.int(256), 0));
      } else if (roll < 98) {
        // A barrier: once its PONG is back, everything before it was handled.
        const r = rng.pick([0, 0xffffffff, nextRequest + 7, rng.int(1000)]);
        p.write(headFrame(Op.PING, r, rng.int(256), rng.int(65536)));
        await p.waitFor(
          (f) => f.op === Op.PONG && f.request === r && p.frames.indexOf(f) >= seen,
          5000,
          'PONG',
        );
      } else if (roll < 99) {
        // A goodbye, late in the run: after it the peer is only told no.
        if (step > steps * 0.8) p.write(callFrame(fresh(), { op: 'bye' }));
      } else if (rng.chance(0.5)) {
        // Something the stream cannot survive: the kernel must end this connection, and only it.
        p.write(
          rng.pick([
            headFrame(0x7e, 1),
            headFrame(Op.HELLO, 0),
            headFrame(Op.TAKE, 1),
            headFrame(Op.RETURN, 1),
            sized(Buffer.concat([headFrame(Op.PING, 1), Buffer.from('x')])),
            sized(receiveOf(rng, fresh(), w.inbox, []).subarray(0, RECEIVE_FRAME_BYTES - 4)),
            sized(Buffer.concat([headFrame(Op.TAKE, 1), Buffer.alloc(TAKE_FRAME_BYTES)])),
            headFrame(Op.SEND, 5),
          ]),
        );
        await p.waitFor((f) => f.op === Op.ERROR && f.request === 0, 5000, 'fatal ERROR');
        look();
        report.stayedOpen = !(await p.waitClosed(5000));
      }
    }
    look();
    // Goes: at once, after a barrier, or half-closing and waiting for the kernel to close.
    switch (rng.int(3)) {
      case 0:
        break;
      case 1:
        if (p.isOpen) {
          p.write(headFrame(Op.PING, 0xfffffff0));
          await p
            .waitFor((f) => f.op === Op.PONG && f.request === 0xfffffff0, 5000, 'last PONG')
            .catch(() => {});
        }
        break;
      default:
        p.socket.end();
        await p.waitClosed(5000);
    }
    look();
    report.decodeError = p.decodeError?.message ?? null;
    return report;
  } catch (err) {
    throw new Error(`hostile peer ${seed}: ${(err as Error).message}; last written:\n${written.join('\n')}`);
  } finally {
    await p.destroy();
  }
}

/** The frame with its length field made to say its size (after it was cut or grown). */
function sized(frame: Buffer): Buffer {
  const copy = Buffer.from(frame);
  copy.writeUInt32LE(copy.length - 4, 0);
  return copy;
}

/** A SEND that is valid for `target` (or for a fixed size), with one field at a bad value now and then. */
function sendOf(rng: Rng, request: number, target: number, toProcess: boolean): Buffer {
  const headers = rng.chance(0.8) ? Buffer.alloc(0) : Buffer.from('{"k":"v"}');
  const body = Buffer.alloc(rng.pick([0, 1, 8, 8, 100, 4096]), 0x61);
  const size = MESSAGE_HEAD_BYTES + headers.length + body.length;
  const buf = Buffer.alloc(size);
  const flags =
    rng.pick([0, 0, 0, SendFlag.RECEIPT, SendFlag.WITHOUT_READER]) | (toProcess ? SendFlag.TO_PROCESS : 0);
  writeHead(buf, 0, size, Op.SEND, flags, 0, request);
  buf[Off.CODEC] = rng.int(4);
  buf[Off.ON_FULL] = rng.int(4);
  buf.writeUInt32LE(target >>> 0, Off.TARGET);
  buf.writeUInt32LE(rng.pick([0, 20, 100]), Off.TIMEOUT);
  buf.writeUInt16LE(rng.int(6), Off.PRIORITY);
  buf.writeUInt16LE(headers.length, Off.HEADERS_LENGTH);
  u64(buf, Off.TYPE, BigInt(1 + rng.int(4)));
  headers.copy(buf, MESSAGE_HEAD_BYTES);
  body.copy(buf, MESSAGE_HEAD_BYTES + headers.length);
  if (rng.chance(0.6)) return buf;
  // One field mutated.
  switch (rng.int(10)) {
    case 0:
      buf[Off.FLAGS] = rng.int(256);
      break;
    case 1:
      buf[Off.CODEC] = rng.pick([4, 255]);
      break;
    case 2:
      buf[Off.ON_FULL] = rng.pick([4, 5, 255]);
      break;
    case 3:
      buf.writeUInt32LE(rng.pick(U32_EDGES), Off.TARGET);
      break;
    case 4:
      buf.writeUInt32LE(rng.pick(U32_EDGES), rng.pick([Off.SENDER, Off.RESERVED, Off.TIMEOUT]));
      break;
    case 5:
      buf.writeUInt16LE(rng.pick([32767, 32768, 65535]), Off.PRIORITY);
      break;
    case 6:
      buf.writeUInt16LE(
        Math.max(0, Math.min(65535, headers.length + rng.pick([-1, 1, body.length + 1, 65535]))),
        Off.HEADERS_LENGTH,
      );
      break;
    case 7:
      u64(buf, Off.TYPE, rng.pick(U64_EDGES));
      break;
    case 8:
      u64(buf, rng.pick([Off.SEQ, Off.TIME]), rng.pick(U64_EDGES));
      break;
    default: {
      // Headers of a wrong shape, at the right length.
      const bad = Buffer.from(
        rng.pick(['{"k":1}', '[]', '{"k":', '{"__proto__":"x"}', '"s"', '{"a":{"b":"c"}}']),
      );
      return Buffer.concat([
        (() => {
          const head = Buffer.from(buf.subarray(0, MESSAGE_HEAD_BYTES));
          head.writeUInt32LE(MESSAGE_HEAD_BYTES + bad.length + body.length - 4, 0);
          head.writeUInt16LE(bad.length, Off.HEADERS_LENGTH);
          return head;
        })(),
        bad,
        body,
      ]);
    }
  }
  return buf;
}

/** A RECEIVE that is valid for `target`, with one field at a bad value now and then. */
function receiveOf(rng: Rng, request: number, target: number, fromIds: number[]): Buffer {
  const buf = Buffer.alloc(RECEIVE_FRAME_BYTES);
  let flags = 0;
  for (const f of [
    ReceiveFlag.NOWAIT,
    ReceiveFlag.EXCEPT,
    ReceiveFlag.TRUNCATE,
    ReceiveFlag.STREAM,
    ReceiveFlag.INBOX,
    ReceiveFlag.HOLD,
  ])
    if (rng.chance(0.2)) flags |= f;
  writeHead(buf, 0, RECEIVE_FRAME_BYTES, Op.RECEIVE, flags, 0, request);
  buf.writeUInt32LE(target >>> 0, Off.R_TARGET);
  buf.writeUInt32LE(rng.chance(0.7) ? 0 : rng.pick(fromIds), Off.R_FROM);
  buf.writeUInt32LE(rng.pick([0, 0, 20, 100]), Off.R_TIMEOUT);
  buf.writeUInt32LE(rng.pick([NO_MAX_SIZE, NO_MAX_SIZE, 8, 100]), Off.R_MAX_SIZE);
  buf.writeUInt32LE(1 + rng.int(8), Off.R_CREDIT);
  u64(buf, Off.R_TYPE, BigInt(rng.int(7) - 3));
  if (rng.chance(0.6)) return buf;
  switch (rng.int(7)) {
    case 0:
      buf[Off.FLAGS] = rng.int(256);
      break;
    case 1:
      buf.writeUInt16LE(rng.int(65536), Off.AUX);
      break;
    case 2:
      buf.writeUInt32LE(rng.pick(U32_EDGES), rng.pick([Off.R_TARGET, Off.R_FROM, Off.R_RESERVED]));
      break;
    case 3:
      buf.writeUInt32LE(rng.pick([1, 0xffffffff]), Off.R_TIMEOUT);
      break;
    case 4:
      buf.writeUInt32LE(rng.pick([0, 1, 56, NO_MAX_SIZE - 1]), Off.R_MAX_SIZE);
      break;
    case 5:
      buf.writeUInt32LE(rng.pick([0, 16384, 16385, 0xffffffff]), Off.R_CREDIT);
      break;
    default:
      u64(buf, Off.R_TYPE, rng.pick(U64_EDGES));
  }
  return buf;
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

test('hostile peers sending boundary values and requests out of order: clear answers, nothing lost, nothing left', {
  timeout: 120_000,
}, async (t) => {
  t.diagnostic(
    `seed ${SEED} (POSTBOX_HOSTILE_SEED replays), ${PEERS} peers × ${STEPS} steps (POSTBOX_HOSTILE_PEERS, POSTBOX_HOSTILE_STEPS)`,
  );
  const kernel = await startTestKernel();
  kernels.push(kernel);
  const kpid = kernel.proc.pid!;
  const producer = await connect({ socket: kernel.socket, name: 'hp-producer' });
  const consumer = await connect({ socket: kernel.socket, name: 'hp-consumer' });
  const inspector = await connect({ socket: kernel.socket, operator: true });
  try {
    // Only the two may use it: owner and group read and write, others nothing.
    const good = await producer.createMailbox<number>('hp-good', { mode: 0o660, capacity: 16 });
    await good.grant(consumer.id);
    const stale = await producer.createMailbox('hp-stale');
    const staleId = stale.id;
    await stale.delete();
    const shared = [];
    for (const [i, options] of SHARED.entries())
      shared.push(await producer.createMailbox(`hp-shared-${i}`, { system: true, mode: 0o666, ...options }));
    const baseline = new Map((await inspector.mailboxes()).map((m) => [m.id, m]));
    const fdsBefore = openFds(kpid);

    // Well-behaved traffic: a bounded mailbox iterated with prefetching, and a direct link.
    let producing = true;
    let sentBox = 0;
    let sentDirect = 0;
    const produce = (async () => {
      while (producing) {
        await good.send(sentBox++, { type: 1 + (sentBox % 3) });
        await producer.send(consumer.id, `d${sentDirect++}`);
      }
    })();
    const gotBox: number[] = [];
    const gotDirect: string[] = [];
    const box = await consumer.openMailbox<number>('hp-good');
    const consumeBox = (async () => {
      for await (const m of box.messages({ prefetch: 8 })) {
        if (m.body === -1) break;
        gotBox.push(m.body);
      }
    })();
    const consumeDirect = (async () => {
      for (;;) {
        const m: Message<unknown> | null = await consumer.receive({ from: producer.id, timeout: 30_000 });
        if (m!.body === 'end') break;
        gotDirect.push(m!.body as string);
      }
    })();

    // Awaited below; until then a failure of theirs must not be an unhandled rejection.
    for (const bg of [produce, consumeBox, consumeDirect]) bg.catch(() => {});
    const known: Known = {
      goodMailbox: good.id,
      goodProcesses: [producer.id, consumer.id, inspector.id],
      goodInboxes: [producer.inbox, consumer.inbox],
      staleMailbox: staleId,
      shared: shared.map((m) => m.id),
    };
    const reports: PeerReport[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < PEERS) {
        const i = next++;
        reports.push(
          await within(hostile(kernel.socket, SEED + i, STEPS, known), 30_000, `hostile peer ${SEED + i}`),
        );
      }
    };
    await Promise.all(Array.from({ length: AT_ONCE }, worker));
    producing = false;
    await within(produce, 10_000, 'producer');
    // The ends, after everything else the producer sent.
    await good.send(-1);
    await producer.send(consumer.id, 'end');
    await within(Promise.all([consumeBox, consumeDirect]), 15_000, 'consumers');

    const codes = new Map<string, number>();
    for (const r of reports) for (const [c, n] of r.errors) codes.set(c, (codes.get(c) ?? 0) + n);
    t.diagnostic(
      `${reports.length} peers, ${reports.filter((r) => r.fatal !== null).length} ended fatally; errors ${JSON.stringify(Object.fromEntries(codes))}; good traffic ${sentBox} + ${sentDirect}`,
    );
    assert.equal(kernel.proc.exitCode, null, `the kernel died; log:\n${kernel.log.slice(-20).join('\n')}`);
    assert.deepEqual(
      kernel.log.filter((l) => /internal error|uncaught|TypeError|RangeError|at .*\.js:\d+/i.test(l)),
      [],
      'the kernel logged a fault',
    );
    assert.deepEqual(
      reports.filter((r) => r.unclear.length > 0).map((r) => ({ seed: r.seed, unclear: r.unclear })),
      [],
      'every ERROR has a known code and a message that names what was wrong',
    );
    assert.deepEqual(
      reports.filter((r) => r.decodeError !== null).map((r) => r.seed),
      [],
      'output well-framed',
    );
    assert.deepEqual(
      reports.filter((r) => r.stayedOpen).map((r) => r.seed),
      [],
      'a fatal ERROR ends the connection',
    );
    assert.ok(reports.every((r) => r.welcomed));

    // Nothing lost, nothing doubled, order kept.
    assert.deepEqual(
      gotBox,
      Array.from({ length: sentBox }, (_, i) => i),
    );
    assert.deepEqual(
      gotDirect,
      Array.from({ length: sentDirect }, (_, i) => `d${i}`),
    );

    // Nothing of the hostile peers is left: processes, their mailboxes, what they waited for.
    await until(
      () => inspector.processes(),
      (ps) => ps.length === 3,
      10_000,
      'only the well-behaved processes left',
    );
    const left = await inspector.mailboxes();
    const inboxes = await Promise.all(
      [producer.inbox, consumer.inbox, inspector.inbox].map((id) => inspector.stat(id)),
    );
    for (const m of [...left, ...inboxes]) {
      // Nothing in the hands of a process that has gone, nobody of theirs waiting or holding.
      assert.equal(m.inflight, 0, `in flight to nobody: ${JSON.stringify(m)}`);
      assert.equal(m.waitingSendersCount + m.waitingReceiptsCount, 0, JSON.stringify(m));
      assert.equal(m.waitingReceiversCount, 0, JSON.stringify(m));
      assert.deepEqual(m.holders, [], JSON.stringify(m));
    }
    // The kernel's count of queued bytes is the sum of what its mailboxes hold.
    const usage = await inspector.usage();
    assert.equal(
      usage.totalBytes,
      [...left, ...inboxes].reduce((sum, m) => sum + m.bytes, 0),
    );
    assert.equal(usage.mailboxes, left.length + inboxes.length);
    for (const m of left) {
      if (baseline.has(m.id)) continue;
      // What stays is system-owned (it outlives its maker) and unowned, or was given away to a
      // process that is still here.
      assert.ok(
        (m.system && m.owner === null) || known.goodProcesses.includes(m.owner!),
        `left over: ${JSON.stringify(m)}`,
      );
    }
    const after = await inspector.stat('hp-good');
    assert.equal(after.inflight, 0);
    assert.deepEqual(after.group, [consumer.id]);
    assert.equal(after.owner, producer.id);
    assert.equal(after.mode, 0o660);
    await until(
      async () => openFds(kpid),
      (n) => n <= fdsBefore,
      10_000,
      `kernel fds back to ${fdsBefore}`,
    );
  } finally {
    await Promise.allSettled([producer.close(), consumer.close(), inspector.close()]);
  }
});

test('a CALL argument nested too deep to write, or of a megabyte, is refused naming the argument, in a message of a line', async () => {
  const kernel = await startTestKernel();
  kernels.push(kernel);
  const p = await RawPeer.open(kernel.socket);
  try {
    assert.equal((await p.hello()).op, Op.WELCOME, p.describe());
    // JSON.parse reads arrays 20,000 deep; JSON.stringify, writing the error, overflowed the stack.
    p.write(rawCallFrame(1, `{"op":"stat","id":${'['.repeat(20_000)}${']'.repeat(20_000)}}`));
    p.write(callFrame(2, { op: 'chmod', id: 1, mode: 'x'.repeat(500_000) }));
    p.write(callFrame(3, { op: 'monitor', process: { deep: [[['x'.repeat(1000)]]] } }));
    const answers = await Promise.all(
      [1, 2, 3].map((r) => p.waitFor((f) => f.request === r, 5000, `the answer to CALL ${r}`)),
    );
    const [deep, long, object] = answers.map(frameError);
    assert.deepEqual(deep, {
      code: 'EINVAL',
      message:
        'id must be a mailbox id (a whole number from 1 to 4294967295), not an array nested too deep to show',
    });
    assert.equal(long!.code, 'EPERM'); // mailbox 1 is an inbox: that is said before the mode is read
    assert.equal(object!.code, 'EINVAL');
    assert.match(
      object!.message,
      /^process must be a process id \(a number\) or name \(a string\), not \{"deep":\[\[\["x{50,}… \(1\d{3} characters\)$/,
    );
    p.write(callFrame(4, { op: 'create', name: 'long-mode', mode: 'x'.repeat(500_000) }));
    const mode = frameError(await p.waitFor((f) => f.request === 4, 5000, 'the answer to CALL 4'));
    assert.equal(mode.code, 'EINVAL');
    assert.match(
      mode.message,
      /^mode must be three octal digits such as '0662', not "x{79}… \(500002 characters\)$/,
    );
  } finally {
    await p.destroy();
  }
});

/**
 * Every object reachable from the kernel's fields (sockets, timers and bytes aside) that is one of
 * its processes: those that have terminated are what the kernel still holds of them.
 */
function deadProcessesHeld(kernel: Kernel): string[] {
  const seen = new Set<object>();
  const found: string[] = [];
  const stack: [unknown, string][] = [[kernel, 'kernel']];
  const skip = new Set([
    'Socket',
    'Server',
    'Timeout',
    'Immediate',
    'FrameWriter',
    'FrameDecoder',
    'ReadArena',
  ]);
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v !== 'object' || v === null || seen.has(v)) continue;
    seen.add(v);
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) continue;
    if (skip.has(v.constructor?.name ?? '')) continue;
    if (v instanceof KernelProcess && v.terminated) {
      found.push(`${path}: ${v.label}`);
      continue;
    }
    if (v instanceof Mailbox && v.removed) {
      found.push(`${path}: removed ${v.label}`);
      continue;
    }
    if (v instanceof Map) {
      for (const [key, value] of v) {
        stack.push([key, `${path}<key>`]);
        stack.push([value, `${path}.get(${typeof key === 'object' ? '…' : String(key)})`]);
      }
    } else if (v instanceof Set) {
      for (const item of v) stack.push([item, `${path}<item>`]);
    } else if (Array.isArray(v)) {
      for (const [i, item] of v.entries()) stack.push([item, `${path}[${i}]`]);
    } else {
      for (const key of Object.keys(v)) {
        // Receives from a process are swept from its list as the list grows (Kernel.noteReceiveFrom):
        // ended ones may stay there, at most as many as the live ones and 16, until then.
        if (v === kernel && key === 'receivesFrom') continue;
        // One-mailbox caches of a process's last send, checked for removal where they are read.
        if (v instanceof KernelProcess && (key === 'lastMailbox' || key === 'sendRight')) continue;
        stack.push([(v as Record<string, unknown>)[key], `${path}.${key}`]);
      }
    }
    if (found.length > 20) break;
  }
  return found;
}

test('in a kernel run in this process, nothing holds a hostile peer once it has gone', {
  timeout: 120_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pbhp-'));
  const running = await startKernel({ socket: join(dir, 'k.sock') });
  const seed = SEED + 0x10000;
  t.diagnostic(`seed ${seed}, ${PEERS} peers × ${STEPS} steps`);
  const owner = await connect({ socket: running.socketPath, name: 'hp-owner' });
  try {
    const shared = [];
    for (const [i, options] of SHARED.entries())
      shared.push(await owner.createMailbox(`hp-shared-${i}`, { system: true, mode: 0o666, ...options }));
    const known: Known = {
      goodMailbox: shared[0]!.id,
      goodProcesses: [owner.id],
      goodInboxes: [owner.inbox],
      staleMailbox: 0xfffffff0,
      shared: shared.map((m) => m.id),
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < PEERS) {
        const i = next++;
        await within(hostile(running.socketPath, seed + i, STEPS, known), 30_000, `hostile peer ${seed + i}`);
      }
    };
    await Promise.all(Array.from({ length: AT_ONCE }, worker));
    await until(
      async () => running.kernel.processes.size,
      (n) => n === 1,
      10_000,
      'only the owner left',
    );
    // Their mailboxes go too: the kernel's own and the shared ones, all removed, must not be held.
    for (const m of shared.slice(5)) await m.delete();
    // A turn for what ends after the last close.
    await owner.usage();
    assert.deepEqual(deadProcessesHeld(running.kernel), []);
  } finally {
    await owner.close();
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

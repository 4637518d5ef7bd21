/**
 * The client library against a hostile kernel: a small server on a Unix socket that completes the
 * handshake as a kernel does and then answers with mutated frames (short, long, of a wrong kind,
 * for request ids never issued, cut off, with huge length fields, with JSON of a wrong shape).
 * The library must never throw out of its event handlers (an uncaught exception ends the
 * application), must settle every awaited call with a PostboxError once the connection is
 * declared broken, and must not wait for ever.
 *
 * POSTBOX_HOSTILE_KERNEL_SEED replays a run; POSTBOX_HOSTILE_KERNEL_ROUNDS makes it longer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  BusyError,
  connect,
  MessageSizeError,
  PostboxError,
  type PostboxProcess,
} from '../src/client/mod.js';
import { waitForReader } from '../src/faces/fifo.js';
import { FrameDecoder } from '../src/protocol/decoder.js';
import {
  encodeJsonFrame,
  HEAD_BYTES,
  MAX_HEARTBEAT_MS,
  MAX_MESSAGE_SIZE_LIMIT,
  MESSAGE_HEAD_BYTES,
  Off,
  Op,
  PingFlag,
  PROTOCOL_VERSION,
  RECALL_FRAME_BYTES,
  SENT_FRAME_BYTES,
  writeHead,
} from '../src/protocol/frame.js';
import { Rng } from './helpers/prng.js';
import { within } from './helpers/raw-peer.js';

const SEED = Number(process.env.POSTBOX_HOSTILE_KERNEL_SEED ?? 0xbad0);
const ROUNDS = Number(process.env.POSTBOX_HOSTILE_KERNEL_ROUNDS ?? 25);

const dir = mkdtempSync(join(tmpdir(), 'pbhk-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A frame a client sent, as the hostile kernel read it. */
interface ClientFrame {
  op: number;
  request: number;
  bytes: Buffer;
}

/** What the hostile kernel does with each frame a client sends it after the handshake. */
type Answer = (c: Socket, f: ClientFrame) => void;

/** A server that speaks enough of the protocol to welcome a client, then answers as told. */
async function hostileKernel(
  name: string,
  welcome: (c: Socket, hello: ClientFrame) => void,
  answer: Answer,
): Promise<{ path: string; server: Server; close(): Promise<void> }> {
  const path = join(dir, `${name}.sock`);
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    sockets.add(c);
    c.on('error', () => {});
    c.on('close', () => sockets.delete(c));
    let welcomed = false;
    const decoder = new FrameDecoder(64 * 1024 * 1024, (buf, start, end) => {
      const f = {
        op: buf[start + Off.OPCODE]!,
        request: buf.readUInt32LE(start + Off.REQUEST),
        bytes: Buffer.from(buf.subarray(start, end)),
      };
      if (c.destroyed) return;
      if (!welcomed) {
        welcomed = true;
        welcome(c, f);
      } else answer(c, f);
    });
    c.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch {
        c.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    server,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function welcomePayload(): Record<string, unknown> {
  return {
    process: { id: 2, name: null },
    inbox: 6,
    kernel: { pid: 4321, instance: '9f2c4e1a0b7d3c55', version: '0.1.0', time: Date.now() },
    limits: {
      maxMessageSize: 1048576,
      maxMailboxBytes: 67108864,
      maxTotalBytes: 4294967296,
      maxWaitingBytes: 1073741824,
      maxPartialBytes: 268435456,
      maxMailboxes: 1000000,
      maxProcesses: 100000,
      maxPerProcess: 65536,
      maxCredit: 16384,
      outputHighWater: 4194304,
      heartbeatMs: 5000,
    },
  };
}

function head(op: number, request: number, size = HEAD_BYTES, flags = 0, aux = 0): Buffer {
  const buf = Buffer.alloc(size);
  writeHead(buf, 0, size, op, flags, aux, request);
  return buf;
}

/** A DELIVER for `request` carrying `body` (codec, headers as given). */
function deliver(
  request: number,
  body: Buffer,
  o: { codec?: number; headers?: Buffer; headersLength?: number; seq?: number } = {},
): Buffer {
  const headers = o.headers ?? Buffer.alloc(0);
  const size = MESSAGE_HEAD_BYTES + headers.length + body.length;
  const buf = Buffer.alloc(size);
  writeHead(buf, 0, size, Op.DELIVER, 0, 0, request);
  buf[Off.CODEC] = o.codec ?? 0;
  buf.writeUInt32LE(7, Off.TARGET);
  buf.writeUInt32LE(3, Off.SENDER);
  buf.writeUInt16LE(o.headersLength ?? headers.length, Off.HEADERS_LENGTH);
  buf.writeBigUInt64LE(1n, Off.TYPE);
  buf.writeBigUInt64LE(BigInt(o.seq ?? 1), Off.SEQ);
  buf.writeDoubleLE(Date.now(), Off.TIME);
  headers.copy(buf, MESSAGE_HEAD_BYTES);
  body.copy(buf, MESSAGE_HEAD_BYTES + headers.length);
  return buf;
}

function jsonFrame(op: number, request: number, text: string | Buffer, aux = 0): Buffer {
  const body = typeof text === 'string' ? Buffer.from(text) : text;
  const buf = Buffer.alloc(HEAD_BYTES + body.length);
  writeHead(buf, 0, buf.length, op, 0, aux, request);
  body.copy(buf, HEAD_BYTES);
  return buf;
}

/**
 * The plain answer to a CALL with one member (or an item's, or the whole) made something the op
 * never answers: gone, or of another type, or out of range.
 */
function spoiledResult(rng: Rng, f: ClientFrame): Buffer {
  const result = plainResult(callOp(f), f.request);
  const wrong = rng.pick<unknown>([undefined, null, '5', -1, 1.5, 2 ** 53, true, [], {}, 'x'.repeat(200)]);
  let target: unknown = result;
  if (Array.isArray(target) && target.length > 0 && rng.chance(0.7)) target = target[0];
  else if (typeof target === 'object' && target !== null && 'mailboxes' in target && rng.chance(0.5))
    target = (target as { mailboxes: unknown[] }).mailboxes[0];
  const keys = typeof target === 'object' && target !== null ? Object.keys(target) : [];
  if (keys.length === 0 || rng.chance(0.1))
    return jsonFrame(Op.RESULT, f.request, JSON.stringify(wrong) ?? '7');
  const key = rng.pick(keys);
  if (wrong === undefined) delete (target as Record<string, unknown>)[key];
  else (target as Record<string, unknown>)[key] = wrong;
  return encodeJsonFrame(Op.RESULT, 0, 0, f.request, result);
}

/** Mutated answers to a request: each a list of frames (and whether to close after them). */
function mutatedAnswer(rng: Rng, f: ClientFrame): { frames: Buffer[]; close?: boolean } {
  const r = f.request;
  const other = rng.pick([r, r, r + 1, r + 1000, 0xffffffff, 1]);
  switch (rng.int(27)) {
    case 21:
      // The request's own RESULT, one member spoilt: EPROTO naming the op, or (a member the
      // client lets through, or a value that happens to fit) the answer as it came.
      if (f.op === Op.CALL) return { frames: [spoiledResult(rng, f)] };
      return { frames: [] };
    case 0:
      // For an id never issued.
      return {
        frames: [
          jsonFrame(
            Op.RESULT,
            r + 1000,
            rng.pick(['null', '{}', '[]', '1', '"s"', '{"id":"x"}', '{"id":-1,"handle":null}']),
          ),
        ],
      };
    case 1:
      return { frames: [jsonFrame(Op.RESULT, other, rng.pick(['{', 'undefined', '\u00ff']))] };
    case 2:
      return {
        frames: [
          jsonFrame(
            Op.ERROR,
            rng.pick([other, 0]),
            rng.pick([
              '{"message":"bad"}',
              '{}',
              'null',
              '"str"',
              '{"message":5}',
              '{',
              '{"message":"m","mailbox":{}}',
              '[]',
            ]),
            rng.pick([0, 1, 2, 9, 24, 25, 999, 65535]),
          ),
        ],
      };
    case 3:
      return { frames: [deliver(other, Buffer.from('hello'), { codec: rng.int(4) })] };
    case 4:
      // Shorter than its message head.
      return { frames: [head(Op.DELIVER, other, rng.pick([12, 13, 20, 40, 55]))] };
    case 5:
      return { frames: [deliver(other, Buffer.from('xyz'), { headersLength: rng.pick([4, 100, 65535]) })] };
    case 6:
      return {
        frames: [
          deliver(other, Buffer.from('xyz'), {
            headers: Buffer.from(rng.pick(['{', '[]', '{"a":1}', 'null'])),
          }),
        ],
      };
    case 7:
      return {
        frames: [
          deliver(other, Buffer.from(rng.pick(['{', '\xc1\xc1', 'nul'])), {
            codec: rng.pick([2, 3, 9, 255]),
          }),
        ],
      };
    case 8:
      return { frames: [head(Op.ACK, rng.pick([other, 0, 0xffffffff]))] };
    case 9:
      return {
        frames: [head(Op.SENT, other, rng.pick([12, 20, SENT_FRAME_BYTES]), 0, rng.pick([0, 1, 4, 999]))],
      };
    case 10:
      return { frames: [head(Op.BLOCKED, other)] };
    case 11:
      return { frames: [head(rng.pick([Op.EMPTY, Op.END]), other)] };
    case 12:
      return {
        frames: [
          jsonFrame(
            Op.EVENT,
            rng.pick([1, 2, 3, other]),
            rng.pick(['null', '{}', '{"event":"down"}', '[]', '{']),
          ),
        ],
      };
    case 13: {
      const f = head(Op.RECALL, other, rng.pick([12, RECALL_FRAME_BYTES]));
      if (f.length >= RECALL_FRAME_BYTES) f.writeBigUInt64LE(BigInt(rng.pick([0, 1, 2 ** 53])), Off.C_SEQ);
      return { frames: [f] };
    }
    case 14:
      return { frames: [head(Op.PONG, rng.pick([0, other]), rng.pick([12, 20]), PingFlag.CLOCK)] };
    case 15:
      return { frames: [head(rng.pick([0x00, 0x7f, 0x90, 0xff, Op.SEND, Op.HELLO]), other)] };
    case 16:
      return { frames: [encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, welcomePayload())] };
    case 17:
      // Cut off, then the kernel goes.
      return { frames: [deliver(r, Buffer.alloc(100)).subarray(0, rng.pick([2, 5, 30, 80]))], close: true };
    case 18: {
      // A length field past anything a client accepts, or just below its limit, and then silence.
      const f = Buffer.alloc(8);
      f.writeUInt32LE(rng.pick([0xffffffff, 256 * 1024 * 1024, 3, 7]), 0);
      f[4] = Op.DELIVER;
      return { frames: [f], close: rng.chance(0.5) };
    }
    case 19:
      return { frames: [], close: true };
    case 20:
      return { frames: [] };
    default:
      return { frames: [] }; // answered as a kernel would, by the caller
  }
}

/** A mailbox's description as a kernel gives it (chmod, set, …; create and open add a handle). */
function description(): Record<string, unknown> {
  return {
    id: 7,
    name: 'm',
    capacity: null,
    maxMessageSize: 1048576,
    maxBytes: 67108864,
    order: 'fifo',
    policy: 'first',
    messageSize: 0,
    key: 0,
    endOnLastWriter: false,
    requireReader: false,
    admission: 'in-order',
    rightsAtOpen: false,
    unlinked: false,
    hasPasskey: false,
    mode: 438,
    owner: 2,
    system: false,
    group: [],
    kernelMaxCredit: 16384,
  };
}

/** A mailbox's stat as a kernel gives it. */
function stat(): Record<string, unknown> {
  return {
    ...description(),
    inboxOf: null,
    count: 1,
    bytes: 5,
    queued: 1,
    inflight: 0,
    waitingSenders: [],
    waitingSendersCount: 0,
    waitingReceipts: [],
    waitingReceiptsCount: 0,
    waitingReceivers: [3],
    waitingReceiversCount: 1,
    holders: [],
    opens: 1,
    readers: 1,
    writers: 1,
    sent: 1,
    received: 0,
    replaced: 0,
    dropped: 0,
    lastSendTime: 1700000000000,
    lastSendProcess: 2,
    lastSendPid: 4321,
    lastReceiveTime: 0,
    lastReceiveProcess: 0,
    lastReceivePid: 0,
    changeTime: 1700000000000,
    createTime: 1700000000000,
  };
}

/** A connected process as `processes` lists it. */
function processRow(): Record<string, unknown> {
  return {
    id: 3,
    name: 'w',
    pid: 99,
    host: 'h',
    transport: 'unix',
    inbox: 8,
    inboxMessages: 0,
    owns: ['m'],
    ownsCount: 1,
    blockedOn: [],
    holds: [],
    watching: 0,
    handles: 1,
    unread: 0,
    connectedAt: 1700000000000,
  };
}

/** What a kernel answers to a CALL of `op` (request `r`): the JSON of its RESULT. */
function plainResult(op: string, r: number): unknown {
  switch (op) {
    case 'create':
    case 'open':
      return { ...description(), handle: 1 };
    case 'chmod':
    case 'grant':
    case 'revoke':
    case 'transfer':
    case 'set':
      return description();
    case 'stat':
      return stat();
    case 'list':
      return [stat()];
    case 'busiest':
      return { scanned: 1, next: null, mailboxes: [stat()] };
    case 'processes':
      return [processRow()];
    case 'usage':
      return { mailboxes: 3, processes: 2, totalBytes: 5, partialBytes: 0, mostWaitingBytes: 0 };
    case 'lookup':
      return { id: 3, name: 'w', pid: 99, host: 'h', inbox: 8 };
    case 'monitor':
      return { monitor: r, process: 3 };
    case 'notify':
    case 'awaitReader':
      return { event: r };
    case 'passkey':
      return { passkey: '0123456789abcdef'.repeat(2) };
    default:
      return {};
  }
}

/** The op a CALL frame asks for. */
function callOp(f: ClientFrame): string {
  return (JSON.parse(f.bytes.toString('utf8', HEAD_BYTES)) as { op: string }).op;
}

/** A plausible answer, as a kernel would give it, for what the client asked. */
function plainAnswer(f: ClientFrame): Buffer[] {
  switch (f.op) {
    case Op.CALL:
      return [encodeJsonFrame(Op.RESULT, 0, 0, f.request, plainResult(callOp(f), f.request))];
    case Op.SEND:
      return [head(Op.ACK, f.request)];
    case Op.RECEIVE:
      return [deliver(f.request, Buffer.from('plain'), { codec: 1 })];
    default:
      return [];
  }
}

/** Runs a few calls against the hostile kernel; every one must settle, and settle well. */
async function round(seed: number): Promise<{ outcomes: string[]; uncaught: unknown[] }> {
  const rng = new Rng(seed);
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => {
    uncaught.push(err);
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const welcomeKind = rng.int(20);
  const k = await hostileKernel(
    `k${seed}`,
    (c) => {
      const w = welcomePayload();
      const limits = w.limits as Record<string, unknown>;
      switch (welcomeKind) {
        case 0:
          limits.maxCredit = rng.pick([0, -1, 'x', null, 2 ** 40]);
          break;
        case 1:
          limits.maxMessageSize = rng.pick([0, -1, 'x', null, 2 ** 40, 2 ** 32, MAX_MESSAGE_SIZE_LIMIT]);
          break;
        case 2:
          delete w.limits;
          break;
        case 3:
          w.process = rng.pick([null, {}, { id: 'x' }, { id: 0 }]);
          break;
        default:
          break;
      }
      c.write(encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, w));
    },
    (c, f) => {
      if (f.op === Op.TAKE || f.op === Op.CANCEL || f.op === Op.PING || f.op === Op.RETURN) return;
      const m = rng.chance(0.6) ? mutatedAnswer(rng, f) : { frames: [] };
      const frames = m.frames.length === 0 && !m.close && rng.chance(0.7) ? plainAnswer(f) : m.frames;
      for (const b of frames) c.write(b);
      if (m.close) c.end();
    },
  );
  const outcomes: string[] = [];
  let me: PostboxProcess | null = null;
  try {
    try {
      me = await within(connect({ socket: k.path, timeout: 3000 }), 5000, 'connect');
    } catch (err) {
      assert.ok(err instanceof PostboxError, `connect() failed with ${String(err)}`);
      outcomes.push(`connect ${err.code}`);
      return { outcomes, uncaught };
    }
    const p = me;
    const calls: [string, () => Promise<unknown>][] = [
      ['usage', () => p.usage()],
      ['send', () => p.send(3, 'x')],
      ['send receipt', () => p.send(3, 'x', { receipt: true })],
      ['receive', () => p.receive({ timeout: 200 })],
      ['receive nowait', () => p.receive({ nowait: true })],
      ['lookup', () => p.lookup(3)],
      ['monitor', () => p.monitor(3, { signal: AbortSignal.timeout(300) })],
      ['open', () => p.openMailbox(7)],
      [
        'iterate',
        async () => {
          const box = await p.openMailbox(7);
          let n = 0;
          for await (const m of box.messages({ prefetch: 4 })) {
            void m.body;
            void m.headers;
            if (++n === 3) break;
          }
          return n;
        },
      ],
    ];
    calls.push(
      [
        'consume',
        async () => {
          const box = await p.openMailbox(7);
          const c = box.consume((m) => {
            void m.body;
          });
          return c.closed;
        },
      ],
      ['sendMany', () => p.sendMany(3, ['a', 'b', 'c'])],
      ['stat', () => p.stat(7)],
      ['mailboxes', () => p.mailboxes()],
      ['processes', () => p.processes()],
      ['busiest', () => p.busiestMailboxes(3)],
      ['chmod', async () => (await p.openMailbox(7)).chmod(0o600)],
      ['renewPasskey', async () => (await p.openMailbox(7)).renewPasskey()],
      ['notify', async () => (await p.openMailbox(7)).notify(() => {})],
      [
        'inbox batches',
        async () => {
          for await (const batch of p.batches({ prefetch: 8 })) return batch.length;
          return 0;
        },
      ],
    );
    const started = Array.from({ length: 1 + rng.int(6) }, () => rng.pick(calls));
    // Whatever happens, the hostile kernel goes in the end: every call must be settled by then.
    const hangUp = setTimeout(() => void k.close(), 400);
    const settled = await Promise.allSettled(
      started.map(([name, run]) =>
        within(
          (async () => {
            const v = await run();
            // What a message holds is read by the application: reading must not throw anything
            // but a PostboxError.
            if (v !== null && typeof v === 'object' && 'seq' in v) {
              const m = v as { body: unknown; headers: unknown; seq: number; size: number };
              void m.body;
              void m.headers;
              void m.seq;
              void m.size;
            }
            return v;
          })(),
          6000,
          name,
        ),
      ),
    );
    clearTimeout(hangUp);
    for (const [i, s] of settled.entries()) {
      const name = started[i]![0];
      if (s.status === 'fulfilled') outcomes.push(`${name} ok`);
      else {
        const err = s.reason as Error;
        assert.ok(
          err instanceof PostboxError,
          `seed ${seed}: ${name} failed with ${err?.stack ?? String(err)}, not a PostboxError`,
        );
        outcomes.push(`${name} ${err.code}`);
        if (process.env.POSTBOX_HOSTILE_KERNEL_VERBOSE) console.log(seed, name, err.code, err.message);
      }
    }
    await k.close();
    const closed = await within(p.closed, 5000, 'closed');
    if (closed !== null) assert.ok(closed instanceof PostboxError);
    // Once broken, a new call fails at once.
    await assert.rejects(within(p.usage(), 2000, 'usage after the end'), PostboxError);
  } finally {
    await k.close();
    if (me !== null) await within(me.close(), 5000, 'close').catch(() => {});
    // Anything the library let escape shows up within a turn or two.
    await new Promise((r) => setTimeout(r, 10));
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  }
  return { outcomes, uncaught };
}

test('the client against a hostile kernel: every call settles, with a PostboxError when it fails, and nothing escapes', {
  timeout: 300_000,
}, async (t) => {
  t.diagnostic(
    `seed ${SEED} (POSTBOX_HOSTILE_KERNEL_SEED replays), ${ROUNDS} rounds (POSTBOX_HOSTILE_KERNEL_ROUNDS)`,
  );
  const counts = new Map<string, number>();
  for (let i = 0; i < ROUNDS; i++) {
    const { outcomes, uncaught } = await round(SEED + i);
    assert.deepEqual(
      uncaught.map((e) => (e as Error)?.stack ?? String(e)),
      [],
      `seed ${SEED + i}: the library let an exception escape`,
    );
    for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
  }
  t.diagnostic(JSON.stringify(Object.fromEntries([...counts].sort())));
});

/** Waits for `pending` to fail with EPROTO whose message matches `message`; resolving fails the test. */
async function failsWithEproto(
  pending: Promise<unknown>,
  what: string,
  message: RegExp,
  ms = 5000,
): Promise<PostboxError> {
  const err = await within(pending, ms, what).then(
    (v) => assert.fail(`${what}: resolved with ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PostboxError, `${what}: ${String(err)}`);
  assert.equal(err.code, 'EPROTO', what);
  assert.match(err.message, message, what);
  return err;
}

/**
 * Runs `use` with a process joined to a hostile kernel that answers as {@link answering} does,
 * and ends both after, whatever `use` did.
 */
async function withHostileKernel(
  name: string,
  answer: (f: ClientFrame) => Buffer[],
  use: (p: PostboxProcess) => Promise<void>,
): Promise<void> {
  const k = await answering(name, answer);
  try {
    const p = await connect({ socket: k.path });
    try {
      await use(p);
    } finally {
      await p.close();
    }
  } finally {
    await k.close();
  }
}

/** A hostile kernel that welcomes properly and answers each request with `answer(frame)`. */
async function answering(
  name: string,
  answer: (f: ClientFrame) => Buffer[],
): Promise<{ path: string; close(): Promise<void> }> {
  return hostileKernel(
    name,
    (c) => c.write(encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, welcomePayload())),
    (c, f) => {
      if (f.op === Op.CALL || f.op === Op.SEND || f.op === Op.RECEIVE) for (const b of answer(f)) c.write(b);
    },
  );
}

test('an answer of another kind than its request, or a payload that is not JSON, is a broken kernel: the call fails EPROTO saying so', async () => {
  const cases: [string, (r: number) => Buffer, (p: PostboxProcess) => Promise<unknown>, RegExp][] = [
    [
      'EMPTY for a CALL',
      (r) => head(Op.EMPTY, r),
      (p) => p.usage(),
      /EMPTY or END for request \d+, which is a call/,
    ],
    [
      'RESULT for a receive',
      (r) => jsonFrame(Op.RESULT, r, '{"id":7}'),
      (p) => p.receive({ nowait: true }),
      /RESULT for request \d+, which is a receive/,
    ],
    [
      'DELIVER for a CALL',
      (r) => deliver(r, Buffer.from('x')),
      (p) => p.lookup(3),
      /DELIVER for request \d+, which is a call/,
    ],
    [
      'SENT for a receive',
      (r) => head(Op.SENT, r, SENT_FRAME_BYTES, 0, 4),
      (p) => p.receive({ nowait: true }),
      /SENT for request \d+, which is a receive/,
    ],
    [
      'RESULT not JSON',
      (r) => jsonFrame(Op.RESULT, r, '{"id":'),
      (p) => p.usage(),
      /^bad frame from the kernel: RESULT for request \d+ is not JSON: /,
    ],
    [
      'ERROR not JSON',
      (r) => jsonFrame(Op.ERROR, r, 'nope', 2),
      (p) => p.usage(),
      /^bad frame from the kernel: ERROR for request \d+ is not JSON: /,
    ],
  ];
  for (const [what, frame, call, message] of cases) {
    await withHostileKernel(
      'kind',
      (f) => [frame(f.request)],
      async (p) => {
        await failsWithEproto(call(p), what, message);
      },
    );
  }
});

test('a DELIVER shorter than its head, or whose headers run past it, is a bad frame; headers that are not JSON are EPROTO', async () => {
  const cases: [string, (r: number) => Buffer, RegExp][] = [
    ['short', (r) => head(Op.DELIVER, r, 40), /DELIVER of 40 bytes is shorter than its 56-byte head/],
    [
      'headers past it',
      (r) => deliver(r, Buffer.from('xyz'), { headersLength: 100 }),
      /DELIVER's headers length 100 runs past its 59 bytes/,
    ],
    ['short SENT', (r) => head(Op.SENT, r, 20, 0, 4), /SENT frame must be 28 bytes, got 20/],
  ];
  for (const [what, frame, message] of cases) {
    await withHostileKernel(
      'short',
      (f) => [frame(f.request), deliver(f.request, Buffer.from('next'), { codec: 1 })],
      async (p) => {
        await failsWithEproto(p.receive(), what, message);
      },
    );
  }
  await withHostileKernel(
    'headers',
    (f) => [deliver(f.request, Buffer.from('body'), { headers: Buffer.from('{"a":') })],
    async (p) => {
      const m = await within(p.receive(), 5000, 'receive');
      assert.equal(m!.text(), 'body');
      assert.throws(
        () => m!.headers,
        (err: unknown) =>
          err instanceof PostboxError &&
          err.code === 'EPROTO' &&
          /5 bytes of user headers are not JSON/.test(err.message),
      );
    },
  );
});

test('an ERROR whose payload is not an error (a message that is no string, a subject that is no string, sizes that are no whole numbers) is a bad frame: EPROTO saying which member', async () => {
  const cases: [string, RegExp][] = [
    ['null', /its payload is null, not an object/],
    ['[]', /its payload is an array, not an object/],
    ['"str"', /its payload is a string, not an object/],
    ['{}', /its message is missing, not a string/],
    ['{"message":5}', /its message is 5, not a string/],
    ['{"message":"m","mailbox":{}}', /its mailbox is an object, not a string/],
    ['{"message":"m","process":7}', /its process is 7, not a string/],
    ['{"message":"m","size":-1,"limit":5}', /its size is -1, not a whole number of bytes/],
    ['{"message":"m","size":1,"limit":1.5}', /its limit is 1.5, not a whole number of bytes/],
    ['{"message":"m","size":10}', /it has a size without a limit/],
    ['{"message":"m","holders":"a"}', /its holders is a string, not a list of strings/],
    ['{"message":"m","holders":["a",2]}', /its holders is an array, not a list of strings/],
  ];
  for (const [payload, message] of cases) {
    await withHostileKernel(
      'error-shape',
      (f) => [jsonFrame(Op.ERROR, f.request, payload, 5)],
      async (p) => {
        await failsWithEproto(
          p.usage(),
          payload,
          new RegExp(`^bad frame from the kernel: ERROR for request \\d+ is not an error: ${message.source}`),
        );
      },
    );
  }
  // Well formed, its members reach the error; one the client does not know is left alone.
  await withHostileKernel(
    'error-members',
    (f) => [
      jsonFrame(
        Op.ERROR,
        f.request,
        '{"message":"too big","mailbox":"m","process":"w","size":10,"limit":8,"newer":true}',
        5,
      ),
    ],
    async (p) => {
      const err = await within(p.usage(), 5000, 'usage').then(
        (v) => assert.fail(`resolved with ${JSON.stringify(v)}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof MessageSizeError, String(err));
      assert.deepEqual(
        [err.message, err.mailbox, err.process, err.size, err.limit],
        ['too big', 'm', 'w', 10, 8],
      );
    },
  );
  await withHostileKernel(
    'error-holders',
    (f) => [jsonFrame(Op.ERROR, f.request, '{"message":"held","process":"a","holders":["a","7"]}', 11)],
    async (p) => {
      const err = await within(p.usage(), 5000, 'usage').then(
        (v) => assert.fail(`resolved with ${JSON.stringify(v)}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof BusyError, String(err));
      assert.deepEqual([err.process, err.holders], ['a', ['a', '7']]);
    },
  );
});

test('a WELCOME whose members are not what a kernel sends fails connect() with EPROTO naming the member', async () => {
  const cases: [string, (w: Record<string, unknown>) => void, RegExp][] = [
    [
      'process null',
      (w) => {
        w.process = null;
      },
      /process\.id is absent, not an id/,
    ],
    [
      'process id a string',
      (w) => {
        w.process = { id: '2', name: null };
      },
      /process\.id is "2", not an id/,
    ],
    [
      'inbox absent',
      (w) => {
        delete w.inbox;
      },
      /inbox is absent, not an id/,
    ],
    [
      "the kernel's pid a string",
      (w) => {
        (w.kernel as Record<string, unknown>).pid = '4321';
      },
      /kernel\.pid is "4321", not a pid/,
    ],
    [
      "the kernel's instance a number",
      (w) => {
        (w.kernel as Record<string, unknown>).instance = 7;
      },
      /kernel\.instance is 7, not a string/,
    ],
    [
      'no limits',
      (w) => {
        delete w.limits;
      },
      /limits are not an object/,
    ],
    [
      'heartbeat 0',
      (w) => {
        (w.limits as Record<string, unknown>).heartbeatMs = 0;
      },
      /limits\.heartbeatMs is 0, not a positive whole number/,
    ],
    [
      'credit a string',
      (w) => {
        (w.limits as Record<string, unknown>).maxCredit = 'x';
      },
      /limits\.maxCredit is "x"/,
    ],
  ];
  for (const [what, spoil, message] of cases) {
    const k = await hostileKernel(
      'welcome',
      (c) => {
        const w = welcomePayload();
        spoil(w);
        c.write(encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, w));
      },
      () => {},
    );
    try {
      const joined = connect({ socket: k.path, timeout: 5000 }).then(async (p) => {
        await p.close();
        return 'connected';
      });
      // Longer than the join's own 5 s timeout, so that it is the join that gives up.
      const err = await failsWithEproto(joined, what, /is not a Postbox kernel: its WELCOME/, 6000);
      assert.match(err.message, message, what);
    } finally {
      await k.close();
    }
  }
});

test('a kernel that pushes past a stream credit fails the connection EPROTO; within it the messages are read', async () => {
  for (const extra of [0, 1, 1000]) {
    await withHostileKernel(
      'credit',
      (f) => {
        if (f.op === Op.CALL) return plainAnswer(f);
        if (f.op !== Op.RECEIVE) return [];
        const credit = f.bytes.readUInt32LE(Off.R_CREDIT);
        return Array.from({ length: credit + extra }, (_, i) =>
          deliver(f.request, Buffer.from(`m${i}`), { codec: 1, seq: i + 1 }),
        );
      },
      async (p) => {
        const box = await p.openMailbox(7);
        const it = box.messages({ prefetch: 4 });
        if (extra === 0) {
          for (let i = 0; i < 4; i++)
            assert.equal((await within(it.next(), 5000, 'next')).value?.body, `m${i}`);
          await it.return();
          return;
        }
        // Held without end otherwise: a queue of 4 that the kernel fills as it likes.
        const closed = await within(p.closed, 5000, 'the connection to fail');
        assert.ok(closed instanceof PostboxError && closed.code === 'EPROTO', String(closed));
        assert.match(
          closed.message,
          /^bad frame from the kernel: DELIVER for stream \d+ past its credit of 4$/,
        );
      },
    );
  }
});

/** One call answered with a RESULT of a wrong shape, and the EPROTO it must end in. */
interface BadResultCase {
  what: string;
  /** The RESULT's JSON for a CALL of `op`; other ops are answered plainly. */
  op: string;
  result: (r: number) => unknown;
  call: (p: PostboxProcess) => Promise<unknown>;
  message: RegExp;
}

test('a RESULT of the right kind whose fields are not what the op answers fails the call EPROTO naming the op and the field: taken on trust, it ended in a TypeError or in a wrong value handed to the application', async () => {
  const cases: BadResultCase[] = [
    {
      what: 'open answered {}',
      op: 'open',
      result: () => ({}),
      call: (p) => p.openMailbox(7),
      message: /^bad answer from the kernel: its RESULT for open \(request \d+\): id is absent, not an id$/,
    },
    {
      what: 'create without a handle',
      op: 'create',
      result: () => description(),
      call: (p) => p.createMailbox('m'),
      message: /RESULT for create \(request \d+\): handle is absent, not an id$/,
    },
    {
      what: 'stat whose count is a string',
      op: 'stat',
      result: () => ({ ...stat(), count: '5' }),
      call: (p) => p.stat(7),
      message: /RESULT for stat \(request \d+\): count is "5", not a whole number$/,
    },
    {
      what: 'stat whose order is unknown',
      op: 'stat',
      result: () => ({ ...stat(), order: 'lifo' }),
      call: (p) => p.stat('m'),
      message: /RESULT for stat \(request \d+\): order is "lifo", not one of "fifo", "priority"$/,
    },
    {
      what: 'list that is no array',
      op: 'list',
      result: () => ({ mailboxes: [] }),
      call: (p) => p.mailboxes(),
      message: /RESULT for list \(request \d+\): the answer is \{"mailboxes":\[\]\}, not an array$/,
    },
    {
      what: 'list with a bad stat',
      op: 'list',
      result: () => [stat(), { ...stat(), waitingReceivers: [3, 'x'] }],
      call: (p) => p.mailboxes(),
      message: /RESULT for list \(request \d+\): \[1\]\.waitingReceivers\[1\] is "x", not an id$/,
    },
    {
      what: 'busiest without its mailboxes',
      op: 'busiest',
      result: () => ({ scanned: 1, next: null }),
      call: (p) => p.busiestMailboxes(3),
      message: /RESULT for busiest \(request \d+\): mailboxes is absent, not an array$/,
    },
    {
      what: 'processes whose owns is a string',
      op: 'processes',
      result: () => [{ ...processRow(), owns: 'm' }],
      call: (p) => p.processes(),
      message: /RESULT for processes \(request \d+\): \[0\]\.owns is "m", not an array$/,
    },
    {
      what: 'usage null',
      op: 'usage',
      result: () => null,
      call: (p) => p.usage(),
      message: /RESULT for usage \(request \d+\): the answer is null, not an object$/,
    },
    {
      what: 'lookup whose name is a number',
      op: 'lookup',
      result: () => ({ id: 3, name: 5, pid: 99, host: 'h', inbox: 8 }),
      call: (p) => p.lookup('w'),
      message: /RESULT for lookup \(request \d+\): name is 5, not a string or null$/,
    },
    {
      what: 'monitor without its id',
      op: 'monitor',
      result: () => ({ process: 3 }),
      call: (p) => p.monitor(3),
      message: /RESULT for monitor \(request \d+\): monitor is absent, not an id$/,
    },
    {
      what: 'chmod whose mode is negative',
      op: 'chmod',
      result: () => ({ ...description(), mode: -1 }),
      call: async (p) => (await p.openMailbox(7)).chmod(0o600),
      message: /RESULT for chmod \(request \d+\): mode is -1, not a whole number$/,
    },
    {
      what: 'passkey that is no passkey',
      op: 'passkey',
      result: () => ({ passkey: 'secret' }),
      call: async (p) => (await p.openMailbox(7)).passkey(),
      message: /RESULT for passkey \(request \d+\): passkey is "secret", not a passkey or null$/,
    },
    {
      what: 'renewed passkey that is null',
      op: 'passkey',
      result: () => ({ passkey: null }),
      call: async (p) => (await p.openMailbox(7)).renewPasskey(),
      message: /RESULT for passkey \(request \d+\): passkey is null, not a passkey \(32 hex digits\)$/,
    },
    {
      what: 'notify whose event is a string',
      op: 'notify',
      result: () => ({ event: '9' }),
      call: async (p) => (await p.openMailbox(7)).notify(() => {}),
      message: /RESULT for notify \(request \d+\): event is "9", not an id$/,
    },
    {
      what: 'awaitReader with neither readers nor an event',
      op: 'awaitReader',
      result: () => ({}),
      call: async (p) => waitForReader(p, await p.openMailbox(7)),
      message: /RESULT for awaitReader \(request \d+\): the answer has neither readers nor an event$/,
    },
  ];
  for (const c of cases) {
    await withHostileKernel(
      'result',
      (f) => {
        if (f.op !== Op.CALL || callOp(f) !== c.op) return plainAnswer(f);
        return [encodeJsonFrame(Op.RESULT, 0, 0, f.request, c.result(f.request))];
      },
      async (p) => {
        await failsWithEproto(c.call(p), c.what, c.message);
        // The kernel cannot be trusted after it: the connection has ended with the same error.
        const closed = await within(p.closed, 5000, `${c.what}: the connection to end`);
        assert.match(String(closed?.message), c.message, c.what);
      },
    );
  }
});

test('an EVENT of another shape than the kind its call announced fails the connection EPROTO, and the call waiting on it with it', async () => {
  const down = (r: number, event: unknown): Buffer[] => [
    encodeJsonFrame(Op.RESULT, 0, 0, r, { monitor: r, process: 3 }),
    jsonFrame(Op.EVENT, r, JSON.stringify(event)),
  ];
  const cases: [string, string, (r: number) => Buffer[], (p: PostboxProcess) => Promise<unknown>, RegExp][] =
    [
      [
        'a null event for a monitor',
        'monitor',
        (r) => down(r, null),
        (p) => p.monitor(3),
        /^bad answer from the kernel: its EVENT \d+ \(announced by monitor\): the event is null, not an object$/,
      ],
      [
        'a down event without its process',
        'monitor',
        (r) => down(r, { event: 'down', name: null, reason: 'exit' }),
        (p) => p.monitor(3),
        /EVENT \d+ \(announced by monitor\): process is absent, not an id$/,
      ],
      [
        'a down event with an unknown reason',
        'monitor',
        (r) => down(r, { event: 'down', process: 3, name: 'w', reason: 'bored' }),
        (p) => p.monitor('w'),
        /EVENT \d+ \(announced by monitor\): reason is "bored", not one of "exit", /,
      ],
      [
        "another call's event for a monitor",
        'monitor',
        (r) => down(r, { event: 'reader', mailbox: 7 }),
        (p) => p.monitor(3),
        /EVENT \d+ \(announced by monitor\): its event is "reader", not "down"$/,
      ],
      [
        'a reader event without its mailbox',
        'awaitReader',
        (r) => [
          encodeJsonFrame(Op.RESULT, 0, 0, r, { event: r }),
          jsonFrame(Op.EVENT, r, '{"event":"reader","mailbox":"7"}'),
        ],
        async (p) => waitForReader(p, await p.openMailbox(7)),
        /EVENT \d+ \(announced by awaitReader\): mailbox is "7", not an id$/,
      ],
    ];
  for (const [what, op, frames, call, message] of cases) {
    await withHostileKernel(
      'event',
      (f) => (f.op === Op.CALL && callOp(f) === op ? frames(f.request) : plainAnswer(f)),
      async (p) => {
        await failsWithEproto(call(p), what, message);
      },
    );
  }
});

test('a WELCOME announcing a limit past what any kernel can be started with fails connect() with EPROTO; one at the most a kernel takes is welcome', async () => {
  const cases: [string, Record<string, unknown>, RegExp | null][] = [
    [
      'a message size past a 32-bit frame',
      { maxMessageSize: MAX_MESSAGE_SIZE_LIMIT + 1 },
      /limits\.maxMessageSize is 4294901705, more than any kernel can be started with \(at most 4294901704\)$/,
    ],
    [
      'a message size of 1 TiB',
      { maxMessageSize: 2 ** 40 },
      /limits\.maxMessageSize is 1099511627776, more than/,
    ],
    [
      "a heartbeat past Node's longest timer",
      { heartbeatMs: MAX_HEARTBEAT_MS + 1 },
      /limits\.heartbeatMs is 2147483648, more than any kernel can be started with/,
    ],
    [
      'the largest a kernel takes',
      { maxMessageSize: MAX_MESSAGE_SIZE_LIMIT, heartbeatMs: MAX_HEARTBEAT_MS },
      null,
    ],
  ];
  for (const [what, limits, message] of cases) {
    const k = await hostileKernel(
      'limits',
      (c) => {
        const w = welcomePayload();
        Object.assign(w.limits as Record<string, unknown>, limits);
        c.write(encodeJsonFrame(Op.WELCOME, 0, PROTOCOL_VERSION, 0, w));
      },
      (c, f) => {
        for (const b of plainAnswer(f)) c.write(b);
      },
    );
    try {
      const joined = connect({ socket: k.path, timeout: 5000 });
      if (message === null) {
        const p = await within(joined, 5000, what);
        assert.equal(p.limits.maxMessageSize, MAX_MESSAGE_SIZE_LIMIT, what);
        await p.close();
        continue;
      }
      const settled = joined.then(async (p) => {
        await p.close();
        return 'connected';
      });
      const err = await failsWithEproto(settled, what, /is not a Postbox kernel: its WELCOME/, 6000);
      assert.match(err.message, message, what);
    } finally {
      await k.close();
    }
  }
});

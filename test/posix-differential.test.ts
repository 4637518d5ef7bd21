/**
 * Linux's own POSIX message queues are the reference for the posix face. Seeded random sequences
 * of mq_open/mq_send/mq_receive/mq_timedsend/mq_timedreceive/mq_getattr/mq_setattr/mq_notify/
 * mq_close/mq_unlink run on Linux (test/fixtures/posix-ops.c, compiled with gcc, run as an
 * unprivileged user so that fs.mqueue.msg_max and msgsize_max bind) and on the Postbox face, and
 * every result line must be the same. Descriptors are named by slot (d0 is the first open of the
 * script, d1 the second, ...), never by number.
 *
 * Nothing may block: the generator keeps a model of the queues (Linux's rules) and sends or
 * receives without O_NONBLOCK or a past deadline only where the model says the call returns at
 * once. Should a call wait all the same (a generator bug, or a Postbox queue that holds other
 * messages than Linux's after an earlier difference), the C side gives up on it after 2 s, the
 * face after 5 s, and its line says BLOCKED.
 *
 * Identity: Postbox's is the process, Linux's the uid; one process per sequence on each side
 * (the C program, and one PostboxProcess whose queues are all closed between sequences), so the
 * owner is the caller on both.
 *
 * Scenarios with other processes, which the sequences cannot have (blocked calls, mq_notify, the
 * mode as another user sees it), are run on both sides too (test/fixtures/posix-blocking.c):
 * forked children there, other Postbox processes here.
 *
 * POSIX_SEEDS=n runs n seeds (default 400); POSIX_SEED=s runs only seed s, printing both outputs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type MailboxStat, type PostboxProcess } from '../src/client/mod.js';
import {
  type AbsTime,
  MQ_PRIO_MAX,
  type MqAttr,
  O_CREAT,
  O_EXCL,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  type PosixQueues,
  posix,
} from '../src/faces/posix.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { compileFixture, requireSetpriv, run, summary, unprivileged } from './helpers/linux-reference.js';
import { prng } from './helpers/prng.js';
import { until } from './helpers/wait.js';

const SEEDS =
  process.env.POSIX_SEED !== undefined
    ? [Number(process.env.POSIX_SEED)]
    : Array.from({ length: Number(process.env.POSIX_SEEDS ?? 400) }, (_, i) => i + 1);
/** A face call that has not returned after this long is taken to be blocked. */
// Only a call that should not have waited meets it; 1 s could pass on a loaded machine.
const BLOCK_MS = 5000;
/** Queues alive at once (Linux's RLIMIT_MSGQUEUE, 800 KiB, holds 9 of the default 10 × 8192). */
const MAX_LIVE_QUEUES = 4;

// ── the seeded generator ───────────────────────────────────────────────────────────────────────

/** mulberry32: a small, good, seedable PRNG. */

/** The names one sequence uses: two ordinary ones, one of the longest length, one too long. */
interface Names {
  a: string;
  b: string;
  long: string;
  tooLong: string;
}

function namesFor(tag: string, seed: number): Names {
  const base = `/pbd${tag}s${seed}`;
  return {
    a: `${base}a`,
    b: `${base}b`,
    long: `${base}L`.padEnd(256, 'y'), // '/' and 255 characters: NAME_MAX
    tooLong: `${base}T`.padEnd(257, 'y'),
  };
}

/** Names Linux refuses before looking at any queue. */
const BAD_NAMES = ['noslash', '/', '//', '/a/b', '/x/'];

const COMMON_MODES = [0o600, 0o600, 0o644, 0o666, 0o700];
const ODD_MODES = [0o400, 0o200, 0o000, 0o100, 0o500, 0o300, 0o060, 0o006];
const GOOD_MAXMSG = [1, 2, 2, 3, 4, 5, 10];
const BAD_MAXMSG = [0, -1, 11, 100];
const GOOD_MSGSIZE = [1, 2, 4, 8, 16, 50, 100, 1024, 8192];
const BAD_MSGSIZE = [0, -1, 8193, 65536];
const PRIOS = [0, 0, 1, 1, 2, 3, 5, 7, 10, 31, 100, 1000, 32767, 32767];
const BAD_PRIOS = [32768, 65535, 4294967295];
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A queue as Linux keeps it, as far as the generator needs to know. */
interface QueueModel {
  maxmsg: number;
  msgsize: number;
  mode: number;
  count: number;
  opens: number;
  linked: boolean;
  notify: boolean;
}

/** A descriptor slot. */
interface SlotModel {
  q: QueueModel | null;
  access: number;
  nonblock: boolean;
  open: boolean;
}

/**
 * One op script, as test/fixtures/posix-ops.c reads it. The model follows Linux's rules (the
 * reference): where Postbox differs, its queues may hold other counts, which is what the test
 * finds; the model only decides which calls may go without O_NONBLOCK or a deadline.
 */
function generate(seed: number, names: Names): string[] {
  const r = prng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number): boolean => r() < p;
  const ops: string[] = [];
  const byName = new Map<string, QueueModel>();
  const queues: QueueModel[] = [];
  const slots: SlotModel[] = [];
  let usedLong = false;

  const live = (): number => queues.filter((q) => q.linked || q.opens > 0).length;
  const openSlots = (): number[] => slots.flatMap((s, i) => (s.open ? [i] : []));
  /** Mostly an open slot (one that can do the call, if `can` says), sometimes any, rarely none. */
  const pickSlot = (can: (s: SlotModel) => boolean = () => true): number => {
    const open = openSlots();
    const able = open.filter((k) => can(slots[k]!));
    if (able.length > 0 && chance(0.75)) return pick(able);
    if (open.length > 0 && chance(0.6)) return pick(open);
    if (slots.length > 0 && chance(0.9)) return int(slots.length);
    return 999; // a slot never opened
  };
  const word = (): string => {
    let s = '';
    for (let n = 1 + int(12); n > 0; n--) s += ALPHABET[int(ALPHABET.length)];
    return s;
  };
  const closeSlot = (s: SlotModel): void => {
    s.open = false;
    s.q!.opens--;
    s.q!.notify = false; // Linux drops the caller's registration on any close of the queue
  };

  const open = (name: string, first = false): void => {
    const k = slots.length;
    const access = chance(0.03) ? 3 : pick([O_RDONLY, O_WRONLY, O_RDWR, O_RDWR, O_RDWR]);
    let create = first || chance(0.65);
    const excl = create ? chance(0.3) : chance(0.05);
    const nonblock = chance(0.5);
    const mode = chance(0.85) ? pick(COMMON_MODES) : pick(ODD_MODES);
    let attr = '- -';
    let maxmsg = 10;
    let msgsize = 8192;
    if (chance(0.75)) {
      maxmsg = chance(0.92) ? pick(GOOD_MAXMSG) : pick(BAD_MAXMSG);
      msgsize = chance(0.92) ? pick(GOOD_MSGSIZE) : pick(BAD_MSGSIZE);
      attr = `${maxmsg} ${msgsize}`;
    }
    const valid = !BAD_NAMES.includes(name) && name !== names.tooLong;
    const existing = byName.get(name);
    // Linux counts the bytes of every queue alive against the user's RLIMIT_MSGQUEUE: stay
    // well within it.
    if (valid && existing === undefined && create && live() >= MAX_LIVE_QUEUES) create = false;
    const oflag = access | (create ? O_CREAT : 0) | (excl ? O_EXCL : 0) | (nonblock ? O_NONBLOCK : 0);
    ops.push(`open d${k} ${name} ${oflag} ${mode} ${attr}`);
    const slot: SlotModel = { q: null, access, nonblock, open: false };
    slots.push(slot);
    if (!valid) return;
    if (name === names.long) usedLong = true;
    if (existing === undefined) {
      if (!create) return;
      if (maxmsg <= 0 || maxmsg > 10 || msgsize <= 0 || msgsize > 8192) return;
      const q: QueueModel = { maxmsg, msgsize, mode, count: 0, opens: 0, linked: true, notify: false };
      queues.push(q);
      byName.set(name, q);
      slot.q = q;
    } else {
      if (create && excl) return;
      if (access === 3) return;
      const need = access === O_RDONLY ? 4 : access === O_WRONLY ? 2 : 6;
      if (((existing.mode >> 6) & need) !== need) return;
      slot.q = existing;
    }
    slot.open = true;
    slot.q.opens++;
  };

  const send = (): void => {
    const k = pickSlot((s) => s.access === O_WRONLY || s.access === O_RDWR);
    const s = slots[k];
    const msgsize = s?.q?.msgsize ?? 8192;
    const prio = chance(0.95) ? pick(PRIOS) : pick(BAD_PRIOS);
    const x = r();
    const size =
      x < 0.4
        ? -1
        : x < 0.48
          ? 0
          : x < 0.6
            ? msgsize
            : x < 0.68
              ? msgsize - 1
              : x < 0.78
                ? msgsize + 1
                : x < 0.94
                  ? int(msgsize + 1)
                  : pick([8192, 8193]);
    const text = size < 0 ? word() : size === 0 ? '-' : `#${size}`;
    const bytes = size < 0 ? text.length : size;
    let timed = chance(0.3);
    const deadline = chance(0.06) ? 'badns' : 'past';
    const goes = s?.open === true && (s.access === O_WRONLY || s.access === O_RDWR);
    const q = s?.q;
    const fits = goes && prio < MQ_PRIO_MAX && bytes <= q!.msgsize;
    if (!timed && fits && !s!.nonblock && q!.count >= q!.maxmsg) timed = true; // would wait
    ops.push(timed ? `timedsend d${k} ${prio} ${text} ${deadline}` : `send d${k} ${prio} ${text}`);
    if (fits && (!timed || deadline === 'past') && q!.count < q!.maxmsg) {
      q!.count++;
      if (q!.count === 1) q!.notify = false; // the registration fires, and is gone
    }
  };

  const receive = (): void => {
    const k = pickSlot((s) => s.access === O_RDONLY || s.access === O_RDWR);
    const s = slots[k];
    const msgsize = s?.q?.msgsize ?? 8192;
    const len = chance(0.85)
      ? pick([msgsize, msgsize, msgsize, msgsize + 1, 8192, 65536])
      : pick([msgsize - 1, 0, 1, msgsize >> 1]);
    let timed = chance(0.3);
    const deadline = chance(0.06) ? 'badns' : 'past';
    const q = s?.q;
    const takes = s?.open === true && (s.access === O_RDONLY || s.access === O_RDWR) && len >= q!.msgsize;
    if (!timed && takes && !s!.nonblock && q!.count === 0) timed = true; // would wait
    ops.push(timed ? `timedrecv d${k} ${len} ${deadline}` : `recv d${k} ${len}`);
    if (takes && (!timed || deadline === 'past') && q!.count > 0) q!.count--;
  };

  const someName = (): string => {
    const x = r();
    if (x < 0.75) return names.a;
    if (x < 0.9) return names.b;
    if (x < 0.94) return names.long;
    if (x < 0.96) return names.tooLong;
    return pick(BAD_NAMES);
  };

  open(chance(0.9) ? names.a : someName(), true);
  const n = 15 + int(45);
  for (let i = 0; i < n; i++) {
    const x = r();
    if (x < 0.14 || (openSlots().length === 0 && chance(0.5))) open(someName());
    else if (x < 0.38) send();
    else if (x < 0.62) receive();
    else if (x < 0.7) ops.push(`getattr d${pickSlot()}`);
    else if (x < 0.77) {
      const k = pickSlot();
      const valid = chance(0.85);
      const flags = valid ? pick([0, O_NONBLOCK]) : pick([1, O_NONBLOCK | 1, O_CREAT, O_RDWR, -1]);
      ops.push(`setattr d${k} ${flags}`);
      if (valid && slots[k]?.open === true) slots[k]!.nonblock = flags === O_NONBLOCK;
    } else if (x < 0.84) {
      const k = pickSlot();
      ops.push(`close d${k}`);
      if (slots[k]?.open === true) closeSlot(slots[k]!);
    } else if (x < 0.9) {
      const name = someName();
      ops.push(`unlink ${name}`);
      const q = byName.get(name);
      if (q !== undefined) {
        byName.delete(name);
        q.linked = false;
      }
      if (chance(0.6)) open(name);
    } else {
      const k = pickSlot();
      const on = chance(0.7);
      ops.push(`notify d${k} ${on ? 'on' : 'off'}`);
      const q = slots[k]?.open === true ? slots[k]!.q! : null;
      if (q !== null) q.notify = on;
    }
  }
  if (chance(0.5)) for (const k of openSlots()) ops.push(`getattr d${k}`);
  ops.push(`unlink ${names.a}`, `unlink ${names.b}`);
  if (usedLong) ops.push(`unlink ${names.long}`);
  return ops;
}

// ── running a script on the face, printing as posix-ops.c does ─────────────────────────────────

function makeText(spec: string): Buffer {
  if (spec === '-') return Buffer.alloc(0);
  if (spec.startsWith('#')) {
    const n = Number(spec.slice(1));
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = 97 + ((31 * i + n) % 26);
    return b;
  }
  return Buffer.from(spec, 'latin1');
}

function deadline(kind: string | undefined): AbsTime {
  const now = Date.now();
  const tv_sec = Math.floor(now / 1000) - 1;
  return { tv_sec, tv_nsec: kind === 'badns' ? 1e9 : (now % 1000) * 1e6 };
}

const attrText = (a: MqAttr): string =>
  `flags=${a.mq_flags} maxmsg=${a.mq_maxmsg} msgsize=${a.mq_msgsize} curmsgs=${a.mq_curmsgs}`;

const BLOCKED = Symbol('blocked');

/** The call's value, or BLOCKED if it has not settled in BLOCK_MS. */
async function bounded<T>(call: Promise<T>): Promise<T | typeof BLOCKED> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<typeof BLOCKED>((resolve) => {
    timer = setTimeout(() => resolve(BLOCKED), BLOCK_MS);
  });
  call.catch(() => {}); // if it loses the race, its later failure is nobody's business
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function runFace(mq: PosixQueues, script: string[]): Promise<string[]> {
  const lines: string[] = [];
  const fds = new Map<string, number>();
  for (const line of script) {
    const [op, a1 = '', a2 = '', a3 = '', a4 = '', a5 = '', a6 = ''] = line.split(' ');
    const fd = fds.get(a1) ?? -1;
    const head = op === 'unlink' ? 'unlink' : `${op} ${a1}`;
    const call = async (): Promise<string> => {
      switch (op) {
        case 'open': {
          const attr = a5 === '-' ? null : { mq_maxmsg: Number(a5), mq_msgsize: Number(a6) };
          fds.set(a1, await mq.mq_open(a2, Number(a3), Number(a4), attr));
          return 'ok';
        }
        case 'send':
          await mq.mq_send(fd, makeText(a3), Number(a2));
          return 'ok';
        case 'timedsend':
          await mq.mq_timedsend(fd, makeText(a3), Number(a2), deadline(a4));
          return 'ok';
        case 'recv':
        case 'timedrecv': {
          const m =
            op === 'recv'
              ? await mq.mq_receive(fd, Number(a2))
              : await mq.mq_timedreceive(fd, Number(a2), deadline(a3));
          return `ok prio=${m.priority} len=${m.data.length} text=${summary(m.data)}`;
        }
        case 'getattr':
          return `ok ${attrText(await mq.mq_getattr(fd))}`;
        case 'setattr':
          return `ok old ${attrText(await mq.mq_setattr(fd, { mq_flags: Number(a2) }))}`;
        case 'notify':
          await mq.mq_notify(fd, a2 === 'off' ? null : () => {});
          return 'ok';
        case 'close':
          await mq.mq_close(fd);
          return 'ok';
        case 'unlink':
          await mq.mq_unlink(a1);
          return 'ok';
        default:
          return 'unknown-op';
      }
    };
    let result: string;
    try {
      const r = await bounded(call());
      result = r === BLOCKED ? 'BLOCKED' : r;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      result = typeof code === 'string' ? code : `THROW ${String(err)}`;
    }
    lines.push(`${head} ${result}`);
  }
  return lines;
}

// ── running the C side as an unprivileged user ─────────────────────────────────────────────────

/** Linux's limits (msg_max, msgsize_max, the queue-bytes rlimit) bind everyone but root. */

const limitsDiffer = ((): string | false => {
  if (process.platform !== 'linux') return 'Linux is the reference: this test needs Linux';
  const read = (name: string): string => {
    try {
      return execFileSync('cat', [`/proc/sys/fs/mqueue/${name}`], { encoding: 'utf8' }).trim();
    } catch {
      return '?';
    }
  };
  const got = ['msg_max', 'msgsize_max', 'msg_default', 'msgsize_default'].map(read).join('/');
  if (got !== '10/8192/10/8192')
    return `this machine's fs.mqueue msg_max/msgsize_max/msg_default/msgsize_default are ${got}, not Linux's defaults 10/8192/10/8192`;
  return false;
})();

// ── the tests ──────────────────────────────────────────────────────────────────────────────────

describe('posix face vs Linux', { skip: limitsDiffer }, () => {
  let kernel: TestKernel;
  let proc: PostboxProcess;
  let dir: string;
  let ops: string;
  let blocking: string;
  const others: PostboxProcess[] = [];
  const tag = `${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
  const used: string[] = [];

  before(async () => {
    if (process.getuid?.() === 0) {
      requireSetpriv();
    }
    dir = mkdtempSync(join(tmpdir(), 'pb-posix-diff-'));
    chmodSync(dir, 0o755); // the unprivileged user runs the program in here
    ops = compileFixture(dir, 'posix-ops', ['-lrt']);
    blocking = compileFixture(dir, 'posix-blocking', ['-lrt']);
    kernel = await startTestKernel();
    proc = await connect({ socket: kernel.socket });
  });

  after(async () => {
    await Promise.all(others.map((p) => p.close()));
    await proc?.close();
    await kernel?.stop();
    // Every queue the C program made, it unlinked; remove (as root, who may) any a killed run
    // left, and say so.
    const left: string[] = [];
    if (ops !== undefined && used.length > 0) {
      const r = await run([ops], `${used.map((n) => `unlink ${n}`).join('\n')}\n`);
      const out = r.stdout.split('\n');
      for (let i = 0; i < used.length; i++) if (out[i] === 'unlink ok') left.push(used[i]!);
    }
    if (existsSync('/dev/mqueue')) {
      for (const f of readdirSync('/dev/mqueue').filter((f) => f.startsWith(`pbd${tag}s`))) {
        rmSync(join('/dev/mqueue', f), { force: true });
        left.push(`/${f}`);
      }
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no Linux queue of ours is left behind');
  });

  const linux = async (script: string[]): Promise<string[]> => {
    const r = await run(unprivileged(ops), `${script.join('\n')}\n`);
    if (r.code !== 0) throw new Error(`posix-ops exited with ${r.code}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l !== '');
  };

  test("the face's constants are the C headers'", async () => {
    const [line] = await linux(['consts']);
    const c = Object.fromEntries(
      line!
        .split(' ')
        .slice(1)
        .map((kv) => kv.split('=') as [string, string])
        .map(([k, v]) => [k, Number(v)]),
    );
    assert.deepEqual({ O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NONBLOCK, MQ_PRIO_MAX }, c);
  });

  test(`${SEEDS.length} seeded sequences give Linux's results, line by line`, async (t) => {
    const mismatches: string[] = [];
    let lines = 0;
    let blocked = 0;
    for (const seed of SEEDS) {
      const names = namesFor(tag, seed);
      used.push(names.a, names.b, names.long);
      const script = generate(seed, names);
      const mq = posix(proc);
      const [want, got] = await Promise.all([linux(script), runFace(mq, script)]);
      // Leave nothing behind on the Postbox side either, whatever the script did.
      await mq.closeAll().catch(() => {});
      for (const n of [names.a, names.b, names.long]) await mq.mq_unlink(n).catch(() => {});
      lines += want.length;
      blocked += [...want, ...got].filter((l) => l.includes('BLOCKED')).length;
      const same = want.length === got.length && want.every((l, i) => l === got[i]);
      if (!same || process.env.POSIX_SEED !== undefined) {
        const width = 56;
        const cut = (s: string): string => (s.length > width ? `${s.slice(0, width - 1)}…` : s);
        const short = (op: string): string =>
          op
            .replaceAll(names.tooLong, 'TOOLONG')
            .replaceAll(names.long, 'LONG')
            .replaceAll(names.a, 'A')
            .replaceAll(names.b, 'B');
        const rows = script.map((op, i) => {
          const l = want[i] ?? '(none)';
          const p = got[i] ?? '(none)';
          return `${l === p ? ' ' : '≠'} ${String(i + 1).padStart(3)} ${cut(short(op)).padEnd(width)} | ${cut(l).padEnd(width)} | ${cut(p)}`;
        });
        const report = `seed ${seed} (rerun: POSIX_SEED=${seed}):\n    # op${' '.repeat(width - 2)} | Linux${' '.repeat(width - 5)} | Postbox\n${rows.join('\n')}`;
        if (same) t.diagnostic(report);
        else mismatches.push(report);
      }
    }
    t.diagnostic(
      `${SEEDS.length} seeds, ${lines} result lines compared, ${mismatches.length} mismatching seeds`,
    );
    if (mismatches.length > 0) {
      assert.fail(
        `${mismatches.length} of ${SEEDS.length} seeds differ from Linux:\n\n${mismatches.slice(0, 5).join('\n\n')}`,
      );
    }
    assert.equal(blocked, 0, 'an operation blocked: the generator let a call wait that could not return');
  });

  describe('with other processes: blocked calls, mq_notify, rights', () => {
    /** Other processes with their own descriptor tables, for the calls that block. */
    const more = async (n: number): Promise<PosixQueues[]> => {
      const faces: PosixQueues[] = [];
      for (let i = 0; i < n; i++) {
        const p = await connect({ socket: kernel.socket });
        others.push(p);
        faces.push(posix(p));
      }
      return faces;
    };
    const queueStat = async (name: string): Promise<MailboxStat> => {
      const mb = await proc.openMailbox(name, { role: 'none' });
      try {
        return await mb.stat();
      } finally {
        mb.close();
      }
    };
    const blockedSending = (name: string, mq: PosixQueues): Promise<MailboxStat> =>
      until(
        () => queueStat(name),
        (st) => st.waitingSenders.includes(mq.process.id),
        10_000,
        'sender blocked',
      );
    const blockedReceiving = (name: string, mq: PosixQueues): Promise<MailboxStat> =>
      until(
        () => queueStat(name),
        (st) => st.waitingReceivers.includes(mq.process.id),
        10_000,
        'receiver blocked',
      );
    /** "ok" or the errno name, as posix-blocking.c prints a call's result. */
    const result = (call: Promise<unknown>): Promise<string> =>
      call.then(
        () => 'ok',
        (e: { code?: string }) => e.code ?? String(e),
      );
    /** As result, or "blocked" if the call has not settled in BLOCK_MS (a call Linux completes). */
    const settled = async (call: Promise<unknown>): Promise<string> => {
      const r = await bounded(result(call));
      return r === BLOCKED ? 'blocked' : r;
    };
    const received = async (mq: PosixQueues, d: number): Promise<string> => {
      try {
        const m = await mq.mq_receive(d, 16);
        return `recv ${m.data.toString()} prio=${m.priority}`;
      } catch (err) {
        return `recv ${(err as { code?: string }).code ?? String(err)}`;
      }
    };
    /**
     * Notifications counted since the last look. A notice the kernel sends comes before its answer
     * to a request made after it, and runs in a microtask of its own: one round trip, then one
     * turn, and every notice due has run.
     */
    const notices = (
      mq: PosixQueues,
    ): { notify: (d: number) => Promise<string>; seen: () => Promise<number> } => {
      let told = 0;
      return {
        notify: (d) =>
          result(
            mq.mq_notify(d, () => {
              told++;
            }),
          ),
        seen: async () => {
          await mq.process.lookup(mq.process.id);
          await new Promise((r) => setImmediate(r));
          const n = told;
          told = 0;
          return n;
        },
      };
    };
    const open = (mq: PosixQueues, name: string, maxmsg: number): Promise<number> =>
      mq.mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0o666, { mq_maxmsg: maxmsg, mq_msgsize: 16 });

    const scenarios: { name: string; what: string; postbox: (name: string) => Promise<string[]> }[] = [
      {
        name: 'notify-refill',
        what: 'a blocked sender refills the queue a receive emptied: no notification, it stays registered',
        postbox: async (name) => {
          const mq = posix(proc);
          const [b] = await more(1);
          const d = await open(mq, name, 1);
          const d2 = await b!.mq_open(name, O_RDWR);
          const n = notices(mq);
          const out = [`send ${await result(mq.mq_send(d, 'one', 0))}`];
          const sender = settled(b!.mq_send(d2, 'two', 0));
          await blockedSending(name, b!);
          out.push(`notify ${await n.notify(d)}`, await received(mq, d), `blocked-send ${await sender}`);
          out.push(`notified ${await n.seen()} curmsgs ${(await mq.mq_getattr(d)).mq_curmsgs}`);
          out.push(`notify ${await n.notify(d)}`, await received(mq, d));
          out.push(`send ${await result(mq.mq_send(d, 'three', 0))}`, `notified ${await n.seen()}`);
          await mq.closeAll();
          await b!.closeAll();
          await mq.mq_unlink(name);
          return out;
        },
      },
      {
        name: 'notify-receiver-waiting',
        what: 'a message handed to a waiting receiver notifies nobody; the next one into the empty queue does',
        postbox: async (name) => {
          const mq = posix(proc);
          const [b] = await more(1);
          const d = await open(mq, name, 2);
          const d2 = await b!.mq_open(name, O_RDWR);
          const n = notices(mq);
          const out = [`notify ${await n.notify(d)}`];
          const receiver = settled(b!.mq_receive(d2, 16));
          await blockedReceiving(name, b!);
          out.push(`send ${await result(mq.mq_send(d, 'one', 0))}`, `receiver ${await receiver}`);
          out.push(`notified ${await n.seen()}`, `notify ${await n.notify(d)}`);
          out.push(`send ${await result(mq.mq_send(d, 'two', 0))}`, `notified ${await n.seen()}`);
          out.push(`notify ${await n.notify(d)}`);
          await mq.closeAll();
          await b!.closeAll();
          await mq.mq_unlink(name);
          return out;
        },
      },
      {
        name: 'senders-in-order',
        what: 'blocked senders go in in the order they blocked, whatever their priorities',
        postbox: async (name) => {
          const mq = posix(proc);
          const [b, c] = await more(2);
          const d = await open(mq, name, 1);
          const db = await b!.mq_open(name, O_RDWR);
          const dc = await c!.mq_open(name, O_RDWR);
          const out = [`send ${await result(mq.mq_send(d, 'first', 5))}`];
          const low = settled(b!.mq_send(db, 'low', 1));
          await blockedSending(name, b!);
          const high = settled(c!.mq_send(dc, 'high', 9));
          await blockedSending(name, c!);
          out.push(await received(mq, d), await received(mq, d), await received(mq, d));
          out.push(`low ${await low}`, `high ${await high}`);
          await mq.closeAll();
          await b!.closeAll();
          await c!.closeAll();
          await mq.mq_unlink(name);
          return out;
        },
      },
      {
        name: 'unlink-while-waiting',
        what: 'mq_unlink while a receiver waits: it goes on waiting and gets the next message',
        postbox: async (name) => {
          const mq = posix(proc);
          const [b] = await more(1);
          const d = await open(mq, name, 2);
          const d2 = await b!.mq_open(name, O_RDWR);
          const receiver = settled(b!.mq_receive(d2, 16));
          await blockedReceiving(name, b!);
          const out = [`unlink ${await result(mq.mq_unlink(name))}`];
          out.push(`send ${await result(mq.mq_send(d, 'one', 0))}`, `receiver ${await receiver}`);
          out.push(`open ${await result(mq.mq_open(name, O_RDWR))}`);
          out.push(`curmsgs ${(await mq.mq_getattr(d)).mq_curmsgs}`);
          await mq.closeAll();
          await b!.closeAll();
          return out;
        },
      },
    ];

    const OTHER_MODES = [0o600, 0o644, 0o622, 0o666, 0o604, 0o660, 0o400, 0o200, 0o006];
    test('other-user: the mode as seen by a process that neither created a queue nor was granted it', {
      skip: process.getuid?.() !== 0 ? 'needs root: Linux side is two users' : false,
    }, async () => {
      const name = `/pbd${tag}sb-other`;
      for (const m of OTHER_MODES) used.push(`${name}-${m.toString(8)}`);
      // Run as root: the program becomes the two users itself.
      const r = await run([blocking, 'other-user', name], '');
      if (r.code !== 0) throw new Error(`posix-blocking other-user exited with ${r.code}: ${r.stderr}`);
      const want = r.stdout.split('\n').filter((l) => l !== '');
      const mq = posix(proc);
      const [other] = await more(1);
      const attr = { mq_maxmsg: 1, mq_msgsize: 16 };
      for (const m of OTHER_MODES)
        await mq.mq_open(`${name}-${m.toString(8)}`, O_CREAT | O_EXCL | O_RDWR, m, attr);
      const got: string[] = [];
      for (const m of OTHER_MODES) {
        const opens: string[] = [];
        for (const [a, access] of [
          ['r', O_RDONLY],
          ['w', O_WRONLY],
          ['rw', O_RDWR],
        ] as const) {
          opens.push(`${a}=${await result(other!.mq_open(`${name}-${m.toString(8)}`, access))}`);
        }
        got.push(`0${m.toString(8)} ${opens.join(' ')}`);
      }
      got.push(`unlink ${await result(other!.mq_unlink(`${name}-${OTHER_MODES[0]!.toString(8)}`))}`);
      await other!.closeAll();
      await mq.closeAll();
      for (const m of OTHER_MODES) await mq.mq_unlink(`${name}-${m.toString(8)}`);
      assert.deepEqual(got, want, 'Postbox (actual) vs Linux (expected) for other-user');
    });

    for (const s of scenarios) {
      test(`${s.name}: ${s.what}`, async () => {
        const name = `/pbd${tag}sb-${s.name}`;
        used.push(name);
        const r = await run(unprivileged(blocking, s.name, name), '');
        if (r.code !== 0) throw new Error(`posix-blocking ${s.name} exited with ${r.code}: ${r.stderr}`);
        const want = r.stdout.split('\n').filter((l) => l !== '');
        const got = await s.postbox(name);
        assert.deepEqual(got, want, `Postbox (actual) vs Linux (expected) for ${s.name}`);
      });
    }
  });
});

/**
 * Linux's own System V queues are the reference for the sysv face. Seeded random sequences of
 * msgget/msgsnd/msgrcv/msgctl/ftok run on Linux (test/fixtures/sysv-ops.c, compiled with gcc,
 * run as an unprivileged user) and on the Postbox face, and every result line must be the same.
 * Every operation that could block uses IPC_NOWAIT. Scenarios with blocked processes are run on
 * both sides too (test/fixtures/sysv-blocking.c); those where Postbox's kernel still differs are
 * checked the same way.
 *
 * SYSV_SEEDS=n runs n seeds (default 300); SYSV_SEED=s runs only seed s, printing both outputs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type MailboxStat, type PostboxProcess } from '../src/client/mod.js';
import {
  errno,
  IPC_CREAT,
  IPC_EXCL,
  IPC_NOWAIT,
  IPC_PRIVATE,
  IPC_RMID,
  IPC_SET,
  IPC_STAT,
  MSG_COPY,
  MSG_EXCEPT,
  MSG_NOERROR,
  type Sysv,
  sysv,
} from '../src/faces/sysv.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { compileFixture, requireSetpriv, run, summary, unprivileged } from './helpers/linux-reference.js';
import { prng } from './helpers/prng.js';
import { until } from './helpers/wait.js';

const SEEDS =
  process.env.SYSV_SEED !== undefined
    ? [Number(process.env.SYSV_SEED)]
    : range(1, Number(process.env.SYSV_SEEDS ?? 300));

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

// ── the seeded generator ───────────────────────────────────────────────────────────────────────

/** mulberry32: a small, good, seedable PRNG. */

const COMMON_MODES = [0o600, 0o600, 0o666, 0o644, 0o640];
const ODD_MODES = [0o400, 0o200, 0o000, 0o700, 0o604, 0o060, 0o460, 0o640];
const SIZES = [0, 0, 1, 2, 3, 5, 8, 13, 16, 31, 64, 100, 200, 512, 1000, 2000, 4096, 8000, 8192];
const TYPES = [1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 9, 100, 2 ** 31 - 1, 2 ** 40];
const MAXSIZES = [0, 0, 1, 2, 3, 4, 5, 8, 10, 16, 32, 64, 100, 600, 1000, 8192, 100_000];
const MSGTYPS = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, -1, -2, -3, -4, -5, -7, -1000, 100, 2 ** 31 - 1, -(2 ** 40)];
const QBYTES = [0, 1, 2, 3, 5, 8, 10, 16, 20, 30, 50, 64, 100, 200, 500, 1000, 4096, 8192, 16384];
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * One op script: `KEY` stands for the sequence's key, `FILE` for a file to ftok, `NOFILE` for
 * a missing one. Lines are as test/fixtures/sysv-ops.c reads them.
 */
function generate(seed: number): string[] {
  const r = prng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number): boolean => r() < p;
  const ops: string[] = [];
  let mode = chance(0.85) ? pick(COMMON_MODES) : pick(ODD_MODES);

  const start = r();
  if (start < 0.1) ops.push(`get KEY ${mode}`); // no IPC_CREAT: ENOENT
  if (start < 0.15) ops.push(`get ${IPC_PRIVATE} ${mode}`);
  else ops.push(`get KEY ${IPC_CREAT | IPC_EXCL | mode}`);
  if (chance(0.55)) ops.push(`set ${pick(QBYTES.slice(3))} ${mode}`);

  const n = 10 + int(45);
  for (let i = 0; i < n; i++) {
    const x = r();
    if (x < 0.38) {
      const type = chance(0.04) ? pick([0, -1, -100]) : pick(TYPES);
      const size = chance(0.03) ? pick([8193, 9000]) : pick(SIZES);
      let body = '';
      for (let j = 0; j < size; j++) body += ALPHABET[int(ALPHABET.length)];
      const flags = IPC_NOWAIT | (chance(0.1) ? MSG_NOERROR : 0) | (chance(0.05) ? MSG_EXCEPT : 0);
      ops.push(`snd ${type} ${flags}${size > 0 ? ` ${body}` : ''}`);
    } else if (x < 0.76) {
      const maxsize = chance(0.03) ? -1 : pick(MAXSIZES);
      const flags = IPC_NOWAIT | (chance(0.25) ? MSG_EXCEPT : 0) | (chance(0.3) ? MSG_NOERROR : 0);
      ops.push(`rcv ${maxsize} ${pick(MSGTYPS)} ${flags}`);
    } else if (x < 0.85) {
      ops.push('stat');
    } else if (x < 0.91) {
      const qbytes = chance(0.08) ? pick([16385, 20000, 65536]) : pick(QBYTES);
      if (chance(0.3)) mode = chance(0.7) ? pick(COMMON_MODES) : pick(ODD_MODES);
      ops.push(`set ${qbytes} ${mode}`);
    } else if (x < 0.965) {
      const flags = pick([
        0,
        mode,
        IPC_CREAT | mode,
        IPC_CREAT | IPC_EXCL | mode,
        0o400,
        0o200,
        0o600,
        0o040,
        0o004,
        0o700,
        0o001,
        IPC_CREAT | 0o666,
      ]);
      ops.push(`get ${chance(0.1) ? IPC_PRIVATE : 'KEY'} ${flags}`);
    } else if (x < 0.985) {
      ops.push('rmid');
      if (chance(0.7)) ops.push(`get KEY ${IPC_CREAT | mode}`);
    } else {
      ops.push(
        chance(0.8) ? `ftok FILE ${pick([0, 1, 0x27, 0x7f, 0x80, 0xff, 0x100, -1])}` : 'ftok NOFILE 1',
      );
    }
  }
  ops.push('stat', 'rmid');
  return ops;
}

// ── running a script on the face, printing as sysv-ops.c does ──────────────────────────────────

const hex8 = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

async function runFace(face: Sysv, script: string[]): Promise<{ lines: string[]; ids: number[] }> {
  const lines: string[] = [];
  const ids: number[] = [];
  const label = (id: number): number => {
    if (!ids.includes(id)) ids.push(id);
    return ids.indexOf(id) + 1;
  };
  let cur = -1;
  for (const line of script) {
    const [op, ...args] = line.split(' ');
    const num = (i: number): number => Number(args[i]);
    try {
      switch (op) {
        case 'get': {
          cur = await face.msgget(num(0), num(1));
          lines.push(`get ok q${label(cur)}`);
          break;
        }
        case 'snd':
          await face.msgsnd(cur, num(0), args[2] ?? '', num(1));
          lines.push('snd ok');
          break;
        case 'rcv': {
          const m = await face.msgrcv(cur, num(0), num(1), num(2));
          lines.push(`rcv ok type=${m.mtype} len=${m.mtext.length} text=${summary(m.mtext)}`);
          break;
        }
        case 'stat': {
          const ds = await face.msgctl(cur, IPC_STAT);
          lines.push(
            `stat ok qnum=${ds.msg_qnum} cbytes=${ds.msg_cbytes} qbytes=${ds.msg_qbytes} mode=0${ds.msg_perm.mode.toString(8)} ` +
              `key=${hex8(ds.msg_perm.__key)} stime=${+(ds.msg_stime !== 0)} rtime=${+(ds.msg_rtime !== 0)} ` +
              `lspid=${+(ds.msg_lspid !== 0)} lrpid=${+(ds.msg_lrpid !== 0)}`,
          );
          break;
        }
        case 'set':
          await face.msgctl(cur, IPC_SET, { msg_qbytes: num(0), msg_perm: { mode: num(1) } });
          lines.push('set ok');
          break;
        case 'rmid':
          await face.msgctl(cur, IPC_RMID);
          lines.push('rmid ok');
          break;
        case 'ftok':
          lines.push(`ftok ${hex8(await face.ftok(args[0]!, num(1)))}`);
          break;
        default:
          lines.push(`${op} unknown-op`);
      }
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string') throw err;
      lines.push(`${op} ${code}`);
    }
  }
  return { lines, ids };
}

// ── running a program as an unprivileged user ──────────────────────────────────────────────────

/** Linux's checks (permissions, msg_qbytes over MSGMNB) apply to everyone but root. */

/** The msqids in `ipcs -q`, with their keys. */
function ipcsQueues(): { key: number; id: number }[] {
  const out = execFileSync('ipcs', ['-q'], { encoding: 'utf8' });
  const queues: { key: number; id: number }[] = [];
  for (const line of out.split('\n')) {
    const m = /^(0x[0-9a-f]+)\s+(\d+)\s/.exec(line);
    if (m !== null) queues.push({ key: Number.parseInt(m[1]!, 16) | 0, id: Number(m[2]) });
  }
  return queues;
}

function readLimit(name: string): number | null {
  try {
    return Number(readFileSync(`/proc/sys/kernel/${name}`, 'utf8').trim());
  } catch {
    return null;
  }
}

const limitsDiffer = ((): string | false => {
  if (process.platform !== 'linux') return 'Linux is the reference: this test needs Linux';
  const msgmax = readLimit('msgmax');
  const msgmnb = readLimit('msgmnb');
  if (msgmax !== 8192 || msgmnb !== 16384)
    return `this machine's kernel.msgmax/msgmnb are ${msgmax}/${msgmnb}, not Linux's defaults 8192/16384`;
  return false;
})();

// ── the tests ──────────────────────────────────────────────────────────────────────────────────

describe('sysv face vs Linux', { skip: limitsDiffer }, () => {
  let kernel: TestKernel;
  let procs: PostboxProcess[] = [];
  let face: Sysv;
  let dir: string;
  let ops: string;
  let blocking: string;
  let keyBase: number;
  const linuxIds = new Set<number>();

  before(async () => {
    if (process.getuid?.() === 0) {
      requireSetpriv();
    }
    dir = mkdtempSync(join(tmpdir(), 'pb-sysv-diff-'));
    chmodSync(dir, 0o755); // the unprivileged user runs the programs and ftoks the file in here
    ops = compileFixture(dir, 'sysv-ops');
    blocking = compileFixture(dir, 'sysv-blocking');
    writeFileSync(join(dir, 'keyfile'), '');
    chmodSync(join(dir, 'keyfile'), 0o644);
    // A run of keys no queue on this machine uses, one per seed (the scenarios use IPC_PRIVATE).
    const used = new Set(ipcsQueues().map((q) => q.key));
    for (;;) {
      keyBase = 0x50000000 + Math.floor(Math.random() * 0xfff) * 0x10000;
      if (![...used].some((k) => k >= keyBase && k < keyBase + 0x10000)) break;
    }
    kernel = await startTestKernel();
    procs = [await connect({ socket: kernel.socket })];
    face = sysv(procs[0]!);
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.close()));
    await kernel?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    // Every queue the C programs made was removed by them; remove any a killed run left.
    const left = ipcsQueues().filter(
      (q) => linuxIds.has(q.id) || (q.key >= keyBase && q.key < keyBase + 0x10000),
    );
    for (const q of left) execFileSync('ipcrm', ['-q', String(q.id)]);
    assert.deepEqual(left, [], 'no Linux queue is left behind');
    const still = ipcsQueues().filter((q) => linuxIds.has(q.id));
    assert.deepEqual(still, [], 'ipcs -q shows none of ours');
  });

  const linux = async (script: string[]): Promise<string[]> => {
    const r = await run(unprivileged(ops), `${script.join('\n')}\n`);
    for (const m of r.stderr.matchAll(/^id (\d+)$/gm)) linuxIds.add(Number(m[1]));
    if (r.code !== 0) throw new Error(`sysv-ops exited with ${r.code}: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l !== '');
  };

  const concrete = (script: string[], key: number): string[] =>
    script.map((l) =>
      l
        .replace(/^(get) KEY /, `$1 ${key} `)
        .replace(/^ftok FILE /, `ftok ${join(dir, 'keyfile')} `)
        .replace(/^ftok NOFILE /, `ftok ${join(dir, 'no-such-file')} `),
    );

  test("the face's constants and errno numbers are the C headers'", async () => {
    const [line] = await linux(['consts']);
    const c = Object.fromEntries(
      line!
        .split(' ')
        .slice(1)
        .map((kv) => kv.split('=') as [string, string])
        .map(([k, v]) => [k, Number(v)]),
    );
    assert.deepEqual(
      {
        IPC_PRIVATE,
        IPC_CREAT,
        IPC_EXCL,
        IPC_NOWAIT,
        MSG_NOERROR,
        MSG_EXCEPT,
        MSG_COPY,
        IPC_RMID,
        IPC_SET,
        IPC_STAT,
        ...errno,
      },
      c,
    );
  });

  test(`${SEEDS.length} seeded sequences give Linux's results, line by line`, async (t) => {
    const mismatches: string[] = [];
    const outcomes = new Map<string, number>();
    let lines = 0;
    for (const seed of SEEDS) {
      const script = concrete(generate(seed), keyBase + seed);
      const [want, got] = await Promise.all([linux(script), runFace(face, script)]);
      // Whatever the script did, leave no Postbox queue behind either.
      for (const id of got.ids) await face.msgctl(id, IPC_RMID).catch(() => {});
      lines += want.length;
      for (const l of want) {
        const kind = l.startsWith('ftok 0x') ? 'ftok ok' : l.split(' ', 2).join(' ');
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
      }
      const same = want.length === got.lines.length && want.every((l, i) => l === got.lines[i]);
      if (!same || process.env.SYSV_SEED !== undefined) {
        const width = 60;
        const cut = (s: string): string => (s.length > width ? `${s.slice(0, width - 1)}…` : s);
        const rows = script.map((op, i) => {
          const l = want[i] ?? '(none)';
          const p = got.lines[i] ?? '(none)';
          return `${l === p ? ' ' : '≠'} ${String(i + 1).padStart(3)} ${cut(op).padEnd(width)} | ${cut(l).padEnd(width)} | ${cut(p)}`;
        });
        const report = `seed ${seed} (rerun: SYSV_SEED=${seed}):\n    # op${' '.repeat(width - 2)} | Linux${' '.repeat(width - 5)} | Postbox\n${rows.join('\n')}`;
        if (same) for (const l of report.split('\n')) t.diagnostic(l);
        else mismatches.push(report);
      }
    }
    t.diagnostic(
      `${SEEDS.length} seeds, ${lines} result lines compared, ${mismatches.length} mismatching seeds`,
    );
    t.diagnostic(`Linux's results: ${[...outcomes].map(([k, n]) => `${k} ×${n}`).join(', ')}`);
    if (SEEDS.length >= 100) {
      // The generator must keep reaching every path it is meant to compare.
      const expected = ['snd EAGAIN', 'snd EINVAL', 'snd EACCES', 'rcv E2BIG', 'rcv ENOMSG', 'rcv EACCES'];
      expected.push('rcv EINVAL', 'get EEXIST', 'get ENOENT', 'get EACCES', 'set EPERM', 'stat EACCES');
      expected.push('rmid ok', 'ftok ENOENT');
      for (const kind of expected) assert.ok(outcomes.has(kind), `no sequence reached '${kind}'`);
    }
    if (mismatches.length > 0) {
      assert.fail(
        `${mismatches.length} of ${SEEDS.length} seeds differ from Linux:\n\n${mismatches.slice(0, 5).join('\n\n')}`,
      );
    }
  });

  describe('blocked senders and receivers', () => {
    /** A second and third process for the blocked calls, so the first can go on. */
    const others = async (n: number): Promise<Sysv[]> => {
      const extra: Sysv[] = [];
      for (let i = 0; i < n; i++) {
        const p = await connect({ socket: kernel.socket });
        procs.push(p);
        extra.push(sysv(p));
      }
      return extra;
    };
    const mailboxStat = async (id: number): Promise<MailboxStat> => {
      const mb = await face.process.openMailbox(id);
      try {
        return await mb.stat();
      } finally {
        mb.close();
      }
    };
    const blockedSending = (id: number, s: Sysv): Promise<MailboxStat> =>
      until(
        () => mailboxStat(id),
        (st) => st.waitingSenders.includes(s.process.id),
        10_000,
        'sender blocked',
      );
    const blockedReceiving = (id: number, s: Sysv): Promise<MailboxStat> =>
      until(
        () => mailboxStat(id),
        (st) => st.waitingReceivers.includes(s.process.id),
        10_000,
        'receiver blocked',
      );
    /** What became of a call: "ok", its errno name, or "blocked" if it has not settled within ms. */
    // How long a call Linux completes may take to settle on the face: returned as soon as it
    // settles, so only a wrong result waits it out; 500 ms and 2 s were windows a loaded machine
    // could miss, making a late 'ok' a 'blocked'. (A short wait stays where 'blocked' is expected.)
    const SETTLE_MS = 10_000;
    const outcome = (call: Promise<unknown>): ((ms: number) => Promise<string>) => {
      let result: string | null = null;
      call.then(
        () => {
          result = 'ok';
        },
        (e: { code?: string }) => {
          result = e.code ?? String(e);
        },
      );
      return async (ms) => {
        const deadline = Date.now() + ms;
        while (result === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        return result ?? 'blocked';
      };
    };
    const sent = (call: Promise<unknown>): Promise<string> =>
      call.then(
        () => 'ok',
        (e: { code?: string }) => e.code ?? String(e),
      );
    const stat = async (id: number): Promise<string> => {
      const ds = await face.msgctl(id, IPC_STAT);
      return `stat qnum=${ds.msg_qnum} cbytes=${ds.msg_cbytes}`;
    };
    const scenarioLinux = async (name: string): Promise<string[]> => {
      const r = await run(unprivileged(blocking, name), '');
      for (const m of r.stderr.matchAll(/^id (\d+)$/gm)) linuxIds.add(Number(m[1]));
      if (r.code !== 0) throw new Error(`sysv-blocking ${name} exited with ${r.code}: ${r.stderr}`);
      return r.stdout.split('\n').filter((l) => l !== '');
    };

    const scenarios: {
      name: string;
      what: string;
      todo?: string;
      postbox: () => Promise<string[]>;
    }[] = [
      {
        name: 'nowait-past-blocked',
        what: 'a sender whose message fits goes in while another sender is blocked',
        postbox: async () => {
          const [s2] = await others(1);
          const id = await face.msgget(IPC_PRIVATE, 0o666);
          await face.msgctl(id, IPC_SET, { msg_qbytes: 10 });
          const out = [`send8 ${await sent(face.msgsnd(id, 1, '12345678', IPC_NOWAIT))}`];
          const blocked = outcome(s2!.msgsnd(id, 2, 'abcde', 0));
          await blockedSending(id, s2!);
          out.push(`nowait-send1 ${await sent(face.msgsnd(id, 3, 'x', IPC_NOWAIT))}`);
          out.push(await stat(id));
          await face.msgctl(id, IPC_RMID);
          out.push(`blocked-send ${await blocked(SETTLE_MS)}`);
          return out;
        },
      },
      {
        name: 'small-passes-big',
        what: 'room for a blocked small message but not for the big one blocked before it',
        postbox: async () => {
          const [big, small] = await others(2);
          const id = await face.msgget(IPC_PRIVATE, 0o666);
          await face.msgctl(id, IPC_SET, { msg_qbytes: 10 });
          const out = [
            `send4 ${await sent(face.msgsnd(id, 1, '1234', IPC_NOWAIT))}`,
            `send4 ${await sent(face.msgsnd(id, 1, '5678', IPC_NOWAIT))}`,
          ];
          const bigResult = outcome(big!.msgsnd(id, 2, 'bbbbbbb', 0));
          await blockedSending(id, big!);
          const smallResult = outcome(small!.msgsnd(id, 3, 'sssss', 0));
          await blockedSending(id, small!);
          out.push(`receive ${await sent(face.msgrcv(id, 64, 0, IPC_NOWAIT))}`);
          out.push(`small ${await smallResult(SETTLE_MS)}`);
          out.push(`big ${await bigResult(50)}`);
          out.push(await stat(id));
          await face.msgctl(id, IPC_RMID);
          out.push(`big ${await bigResult(SETTLE_MS)}`);
          out.push(`small ${await smallResult(SETTLE_MS)}`);
          return out;
        },
      },
      {
        name: 'qbytes0-receiver',
        what: 'msg_qbytes 0: nothing fits, even with a receiver waiting',
        postbox: async () => {
          const [receiver] = await others(1);
          const id = await face.msgget(IPC_PRIVATE, 0o666);
          await face.msgctl(id, IPC_SET, { msg_qbytes: 0 });
          const got = outcome(receiver!.msgrcv(id, 64, 0, 0));
          await blockedReceiving(id, receiver!);
          const out = [`nowait-send0 ${await sent(face.msgsnd(id, 1, '', IPC_NOWAIT))}`];
          // A rendezvous delivers to the waiting receiver: let it finish before looking.
          await got(500);
          out.push(await stat(id));
          await face.msgctl(id, IPC_RMID);
          out.push(`receiver ${await got(SETTLE_MS)}`);
          return out;
        },
      },
    ];

    scenarios.push(
      {
        name: 'receiver-e2big',
        what: 'a message too long for the waiting receiver fails it with E2BIG and stays queued',
        postbox: async () => {
          const [receiver] = await others(1);
          const id = await face.msgget(IPC_PRIVATE, 0o666);
          const got = outcome(receiver!.msgrcv(id, 4, 0, 0));
          await blockedReceiving(id, receiver!);
          const out = [`send10 ${await sent(face.msgsnd(id, 1, '0123456789', IPC_NOWAIT))}`];
          out.push(`receiver ${await got(SETTLE_MS)}`, await stat(id));
          await face.msgctl(id, IPC_RMID);
          return out;
        },
      },
      {
        name: 'set-wakes-sender',
        what: 'raising msg_qbytes with IPC_SET lets a blocked sender in',
        postbox: async () => {
          const [sender] = await others(1);
          const id = await face.msgget(IPC_PRIVATE, 0o666);
          await face.msgctl(id, IPC_SET, { msg_qbytes: 4 });
          const out = [`send4 ${await sent(face.msgsnd(id, 1, '1234', IPC_NOWAIT))}`];
          const blocked = outcome(sender!.msgsnd(id, 2, '5678', 0));
          await blockedSending(id, sender!);
          await face.msgctl(id, IPC_SET, { msg_qbytes: 8 });
          out.push(`blocked-send ${await blocked(SETTLE_MS)}`, await stat(id));
          await face.msgctl(id, IPC_RMID);
          return out;
        },
      },
    );

    for (const s of scenarios) {
      test(`${s.name}: ${s.what}`, s.todo === undefined ? {} : { todo: s.todo }, async () => {
        const [want, got] = [await scenarioLinux(s.name), await s.postbox()];
        assert.deepEqual(got, want, `Postbox (actual) vs Linux (expected) for ${s.name}`);
      });
    }
  });
});

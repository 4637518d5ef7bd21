/**
 * The System V face (postbox/sysv) against a real kernel process: each call, each error with
 * Linux's errno name, EIDRM for blocked calls when another process removes the queue, the
 * module-level calls on their default process, and the lecture's example.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type MailboxStat, type PostboxProcess } from '../src/client/mod.js';
import * as face from '../src/faces/sysv.js';
import {
  errno,
  ftok,
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
  MSGMAX,
  MSGMNB,
  type Sysv,
  SysvError,
  sysv,
} from '../src/faces/sysv.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

/** Asserts that a call fails with a SysvError of this errno name. */
async function fails(call: Promise<unknown>, code: string, syscall?: string): Promise<SysvError> {
  const err = await call.then(
    (v) => assert.fail(`expected ${code}, got ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SysvError, `expected a SysvError ${code}, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.equal(err.errno, errno[code as keyof typeof errno]);
  if (syscall !== undefined) assert.equal(err.syscall, syscall);
  return err;
}

const text = (m: { mtext: Buffer }): string => m.mtext.toString();

describe('postbox/sysv', () => {
  let kernel: TestKernel;
  let p1: PostboxProcess;
  let p2: PostboxProcess;
  let a: Sysv;
  let b: Sysv;
  let dir: string;
  let nextKey = 0x5e000000 + Math.floor(Math.random() * 0x10000) * 0x100;
  const key = (): number => ++nextKey;
  /** The mailbox behind a msqid, as Postbox sees it (who waits on it, its limits). */
  const mailboxStat = async (id: number): Promise<MailboxStat> => {
    const mb = await p1.openMailbox(id);
    try {
      return await mb.stat();
    } finally {
      mb.close();
    }
  };

  before(async () => {
    kernel = await startTestKernel();
    p1 = await connect({ socket: kernel.socket, name: 'p1' });
    p2 = await connect({ socket: kernel.socket, name: 'p2' });
    a = sysv(p1);
    b = sysv(p2);
    dir = mkdtempSync(join(tmpdir(), 'pb-sysv-'));
  });
  after(async () => {
    await face.close();
    await p1.close();
    await p2.close();
    await kernel.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("constants have Linux's values", () => {
    assert.deepEqual(
      [IPC_PRIVATE, IPC_CREAT, IPC_EXCL, IPC_NOWAIT, MSG_NOERROR, MSG_EXCEPT, MSG_COPY],
      [0, 0o1000, 0o2000, 0o4000, 0o10000, 0o20000, 0o40000],
    );
    assert.deepEqual([IPC_RMID, IPC_SET, IPC_STAT, MSGMAX, MSGMNB], [0, 1, 2, 8192, 16384]);
    assert.deepEqual(
      [errno.EPERM, errno.ENOENT, errno.E2BIG, errno.EAGAIN, errno.EACCES, errno.EEXIST],
      [1, 2, 7, 11, 13, 17],
    );
    assert.deepEqual([errno.EINVAL, errno.ENOMSG, errno.EIDRM], [22, 42, 43]);
  });

  describe('ftok', () => {
    test("is glibc's formula of st_ino, st_dev and the project id, as a signed key_t", async () => {
      const path = join(dir, 'keyfile');
      writeFileSync(path, '');
      const st = statSync(path, { bigint: true });
      const low = Number(st.ino & 0xffffn) | (Number(st.dev & 0xffn) << 16);
      assert.equal(await ftok(path, 0x27), low | (0x27 << 24) | 0);
      assert.equal(await ftok(path, 0x127), await ftok(path, 0x27), 'only the low 8 bits of the id count');
      const high = await ftok(path, 0xc8);
      assert.ok(high < 0, 'a project id of 0x80 or more gives a negative key_t');
      assert.equal(high >>> 0, (low | (0xc8 << 24)) >>> 0);
      assert.notEqual(await ftok(path, 1), await ftok(path, 2));
    });

    test('fails with the stat error of a missing file', async () => {
      await fails(ftok(join(dir, 'no-such-file'), 1), 'ENOENT', 'ftok');
    });
  });

  describe('msgget', () => {
    test('IPC_CREAT creates once, then opens the same queue; IPC_CREAT | IPC_EXCL is EEXIST', async () => {
      const k = key();
      const id = await a.msgget(k, 0o600 | IPC_CREAT);
      assert.equal(await a.msgget(k, 0o600 | IPC_CREAT), id);
      assert.equal(await a.msgget(k, 0), id);
      assert.equal(await b.msgget(k, 0), id, 'another process finds it by key');
      await fails(a.msgget(k, 0o600 | IPC_CREAT | IPC_EXCL), 'EEXIST', 'msgget');
      const ds = await a.msgctl(id, IPC_STAT);
      assert.equal(ds.msg_perm.__key, k);
      assert.equal(ds.msg_perm.mode, 0o600);
      assert.equal(ds.msg_qbytes, MSGMNB);
      await a.msgctl(id, IPC_RMID);
    });

    test('IPC_RMID frees the key: without IPC_CREAT it is ENOENT, and IPC_CREAT | IPC_EXCL makes a new queue under it', async () => {
      const k = key();
      const id = await a.msgget(k, 0o600 | IPC_CREAT);
      await a.msgctl(id, IPC_RMID);
      await fails(a.msgget(k, 0o600), 'ENOENT', 'msgget');
      const again = await a.msgget(k, 0o600 | IPC_CREAT | IPC_EXCL);
      assert.notEqual(again, id, 'a new queue');
      assert.equal(await b.msgget(k, 0), again, 'the key leads to it');
      await a.msgctl(again, IPC_RMID);
    });

    test('without IPC_CREAT a key with no queue is ENOENT', async () => {
      await fails(a.msgget(key(), 0o666), 'ENOENT', 'msgget');
    });

    test('IPC_PRIVATE always makes a new queue, with key 0', async () => {
      const q1 = await a.msgget(IPC_PRIVATE, 0o600);
      const q2 = await a.msgget(IPC_PRIVATE, 0o600 | IPC_CREAT | IPC_EXCL);
      assert.notEqual(q1, q2);
      assert.equal((await a.msgctl(q1, IPC_STAT)).msg_perm.__key, 0);
      await a.msgctl(q1, IPC_RMID);
      await a.msgctl(q2, IPC_RMID);
    });

    test('a queue is a system-owned fifo mailbox with the key, mode and System V limits', async () => {
      const k = key();
      const id = await a.msgget(k, 0o640 | IPC_CREAT);
      const st = await mailboxStat(id);
      assert.equal(st.system, true);
      assert.equal(st.order, 'fifo');
      assert.equal(st.key, k);
      assert.equal(st.mode, 0o640);
      assert.equal(st.capacity, MSGMNB);
      assert.equal(st.maxBytes, MSGMNB);
      assert.equal(st.maxMessageSize, MSGMAX);
      assert.equal(st.owner, p1.id);
      await a.msgctl(id, IPC_RMID);
    });

    test('opening asks for the rights in flags: EACCES if the mode does not grant them', async () => {
      const k = key();
      const id = await a.msgget(k, 0o640 | IPC_CREAT);
      // p2 is "others" (mode digit 0): it may open without asking for rights, not with.
      assert.equal(await b.msgget(k, 0), id);
      await fails(b.msgget(k, 0o400), 'EACCES', 'msgget');
      await fails(b.msgget(k, 0o004), 'EACCES', 'msgget');
      await fails(b.msgget(k, 0o666 | IPC_CREAT), 'EACCES', 'msgget');
      // The owner has read and write: any class's read or write is asked of it, execute too.
      assert.equal(await a.msgget(k, 0o444), id);
      assert.equal(await a.msgget(k, 0o620), id);
      await fails(a.msgget(k, 0o700), 'EACCES', 'msgget');
      await fails(a.msgget(k, 0o001), 'EACCES', 'msgget');
      await a.msgctl(id, IPC_RMID);
    });

    test("the group class is the processes the owner granted: their rights are the mode's middle digit", async () => {
      const k = key();
      const id = await a.msgget(k, 0o640 | IPC_CREAT);
      await fails(b.msgget(k, 0o040), 'EACCES', 'msgget');
      const mb = await p1.openMailbox(id);
      try {
        await mb.grant(p2.id);
      } finally {
        mb.close();
      }
      assert.equal(await b.msgget(k, 0o040), id, 'the group may read');
      await fails(b.msgget(k, 0o020), 'EACCES', 'msgget');
      assert.equal(
        (await b.msgctl(id, IPC_STAT)).msg_perm.mode,
        0o640,
        'IPC_STAT needs the read right it has',
      );
      await a.msgctl(id, IPC_RMID);
    });

    test("the creator's own mode is not checked when the queue is created", async () => {
      const k = key();
      const id = await a.msgget(k, 0o046 | IPC_CREAT);
      assert.equal((await a.msgctl(id, IPC_STAT).catch((e: SysvError) => e.code)) as unknown, 'EACCES');
      await a.msgctl(id, IPC_RMID);
    });

    test('keys are 32-bit key_t values: 0xdeadbeef and -559038737 are the same key', async () => {
      const id = await a.msgget(0xdeadbeef, 0o600 | IPC_CREAT | IPC_EXCL);
      assert.equal(await a.msgget(-559038737, 0), id);
      assert.equal((await a.msgctl(id, IPC_STAT)).msg_perm.__key, -559038737);
      await a.msgctl(id, IPC_RMID);
      // The edges of the range: INT_MIN is a key (0x80000000 as unsigned), 2³² is not.
      const low = await a.msgget(-(2 ** 31), 0o600 | IPC_CREAT | IPC_EXCL);
      assert.equal(await a.msgget(0x80000000, 0), low);
      assert.equal((await a.msgctl(low, IPC_STAT)).msg_perm.__key, -(2 ** 31));
      await a.msgctl(low, IPC_RMID);
      await fails(a.msgget(-(2 ** 31) - 1, IPC_CREAT), 'EINVAL', 'msgget');
      await fails(a.msgget(2 ** 32, IPC_CREAT), 'EINVAL', 'msgget');
      await fails(a.msgget(1.5, IPC_CREAT), 'EINVAL', 'msgget');
      // A key passed as text says so: "0x1234" alone would look like a number.
      const text = await fails(a.msgget('0x1234' as unknown as number, IPC_CREAT), 'EINVAL', 'msgget');
      assert.match(text.message, /not the string '0x1234'/);
    });
  });

  describe('msgsnd and msgrcv', () => {
    test('sends strings and bytes; msgrcv gives the type and a Buffer of the text', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      assert.equal(await a.msgsnd(id, 7, 'hello', 0), 0);
      assert.equal(await a.msgsnd(id, 8, new Uint8Array([0, 1, 2, 255]), IPC_NOWAIT), 0);
      assert.equal(await a.msgsnd(id, 9, Buffer.alloc(0), 0), 0);
      const m1 = await a.msgrcv(id, 100, 0, 0);
      assert.equal(m1.mtype, 7);
      assert.ok(Buffer.isBuffer(m1.mtext));
      assert.equal(text(m1), 'hello');
      assert.deepEqual([...(await a.msgrcv(id, 100, 0, IPC_NOWAIT)).mtext], [0, 1, 2, 255]);
      const m3 = await a.msgrcv(id, 0, 0, IPC_NOWAIT);
      assert.deepEqual([m3.mtype, m3.mtext.length], [9, 0]);
      await a.msgctl(id, IPC_RMID);
    });

    test('msgsnd: a type below 1, a body over MSGMAX or a bad msqid is EINVAL', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await fails(a.msgsnd(id, 0, 'x', 0), 'EINVAL', 'msgsnd');
      await fails(a.msgsnd(id, -3, 'x', 0), 'EINVAL', 'msgsnd');
      await fails(a.msgsnd(id, 1.5, 'x', 0), 'EINVAL', 'msgsnd');
      await fails(a.msgsnd(id, 1, Buffer.alloc(MSGMAX + 1), 0), 'EINVAL', 'msgsnd');
      await fails(a.msgsnd(id, 1, 'é'.repeat(MSGMAX / 2 + 1), 0), 'EINVAL', 'msgsnd');
      assert.equal(await a.msgsnd(id, 1, Buffer.alloc(MSGMAX), 0), 0, 'exactly MSGMAX fits');
      await fails(a.msgsnd(-1, 1, 'x', 0), 'EINVAL', 'msgsnd');
      await fails(a.msgsnd(987_654, 1, 'x', 0), 'EINVAL', 'msgsnd');
      await a.msgctl(id, IPC_RMID);
      await fails(a.msgsnd(id, 1, 'x', 0), 'EINVAL', 'msgsnd');
    });

    test('msgrcv selects by type: > 0 that type, < 0 the lowest ≤ |t|, 0 any, MSG_EXCEPT any other', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      for (const [t, s] of [
        [3, 'a'],
        [1, 'b'],
        [2, 'c'],
        [1, 'd'],
        [5, 'e'],
      ] as const)
        await a.msgsnd(id, t, s, 0);
      assert.equal(text(await a.msgrcv(id, 10, 2, IPC_NOWAIT)), 'c');
      assert.equal(text(await a.msgrcv(id, 10, 1, IPC_NOWAIT | MSG_EXCEPT)), 'a');
      assert.equal(text(await a.msgrcv(id, 10, -4, IPC_NOWAIT)), 'b');
      assert.equal(text(await a.msgrcv(id, 10, -4, IPC_NOWAIT)), 'd');
      // ENOMSG says what was asked for: type 0 is any message, not a type 0.
      const upTo = await fails(a.msgrcv(id, 10, -4, IPC_NOWAIT), 'ENOMSG', 'msgrcv');
      assert.equal(upTo.message, `msgrcv: no message of a type up to 4 in queue ${id}`);
      const six = await fails(a.msgrcv(id, 10, 6, IPC_NOWAIT), 'ENOMSG', 'msgrcv');
      assert.equal(six.message, `msgrcv: no message of type 6 in queue ${id}`);
      // MSG_EXCEPT means nothing with 0 or a negative type.
      assert.equal(text(await a.msgrcv(id, 10, 0, IPC_NOWAIT | MSG_EXCEPT)), 'e');
      const any = await fails(a.msgrcv(id, 10, 0, IPC_NOWAIT), 'ENOMSG', 'msgrcv');
      assert.equal(any.message, `msgrcv: no message in queue ${id}`);
      const other = await fails(a.msgrcv(id, 10, 3, IPC_NOWAIT | MSG_EXCEPT), 'ENOMSG', 'msgrcv');
      assert.equal(other.message, `msgrcv: no message of a type other than 3 in queue ${id}`);
      await a.msgctl(id, IPC_RMID);
    });

    test('msgrcv: a longer message is E2BIG and stays; MSG_NOERROR cuts it and takes it', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await a.msgsnd(id, 1, 'abcdefgh', 0);
      await a.msgsnd(id, 2, '', 0);
      await fails(a.msgrcv(id, 7, 0, IPC_NOWAIT), 'E2BIG', 'msgrcv');
      await fails(a.msgrcv(id, 0, 1, 0), 'E2BIG', 'msgrcv');
      assert.equal((await a.msgctl(id, IPC_STAT)).msg_qnum, 2, 'E2BIG leaves the message queued');
      const cut = await a.msgrcv(id, 3, 0, IPC_NOWAIT | MSG_NOERROR);
      assert.deepEqual([cut.mtype, text(cut)], [1, 'abc']);
      const ds = await a.msgctl(id, IPC_STAT);
      assert.deepEqual([ds.msg_qnum, ds.msg_cbytes], [1, 0], 'the cut message was taken whole');
      const empty = await a.msgrcv(id, 0, 0, IPC_NOWAIT);
      assert.deepEqual([empty.mtype, empty.mtext.length], [2, 0], 'maxsize 0 takes an empty message');
      await a.msgctl(id, IPC_RMID);
    });

    test("msgrcv: a maxsize of 2^32 − 1 or more takes any message whole, with MSG_NOERROR too, as Linux's size_t msgsz does", async () => {
      // The wire's maxSize stops below 2^32 − 1: at or above it the face asks for no limit at all.
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      for (const [t, s] of [
        [1, 'abcdefgh'],
        [2, 'ijk'],
        [3, 'lmnop'],
      ] as const)
        await a.msgsnd(id, t, s, 0);
      assert.equal(text(await a.msgrcv(id, 2 ** 32 - 1, 0, IPC_NOWAIT)), 'abcdefgh');
      assert.equal(text(await a.msgrcv(id, 2 ** 32 - 1, 0, IPC_NOWAIT | MSG_NOERROR)), 'ijk');
      assert.equal(text(await a.msgrcv(id, 2 ** 40, 0, IPC_NOWAIT | MSG_NOERROR)), 'lmnop');
      await a.msgctl(id, IPC_RMID);
    });

    test('msgrcv: bad arguments and msqids are EINVAL, MSG_COPY is ENOSYS', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await fails(a.msgrcv(id, -1, 0, IPC_NOWAIT), 'EINVAL', 'msgrcv');
      await fails(a.msgrcv(id, 1.5, 0, IPC_NOWAIT), 'EINVAL', 'msgrcv');
      await fails(a.msgrcv(id, 10, 0.5, IPC_NOWAIT), 'EINVAL', 'msgrcv');
      await fails(a.msgrcv(-2, 10, 0, IPC_NOWAIT), 'EINVAL', 'msgrcv');
      await fails(a.msgrcv(987_654, 10, 0, IPC_NOWAIT), 'EINVAL', 'msgrcv');
      await fails(a.msgrcv(id, 10, 0, IPC_NOWAIT | MSG_COPY), 'ENOSYS', 'msgrcv');
      await a.msgctl(id, IPC_RMID);
      await fails(a.msgrcv(id, 10, 0, IPC_NOWAIT), 'EINVAL', 'msgrcv');
    });

    test('a full queue: IPC_NOWAIT is EAGAIN, by bytes and by count (msg_qbytes messages)', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 10 });
      await a.msgsnd(id, 1, '123456', IPC_NOWAIT);
      await fails(a.msgsnd(id, 1, '12345', IPC_NOWAIT), 'EAGAIN', 'msgsnd');
      await a.msgsnd(id, 1, '1234', IPC_NOWAIT);
      await fails(a.msgsnd(id, 1, '1', IPC_NOWAIT), 'EAGAIN', 'msgsnd');
      // Empty messages: 1 + msg_qnum <= msg_qbytes, as Linux's msg_fits_inqueue.
      await a.msgctl(id, IPC_SET, { msg_qbytes: 3 });
      await a.msgrcv(id, 10, 0, 0);
      await a.msgrcv(id, 10, 0, 0);
      for (let i = 0; i < 3; i++) await a.msgsnd(id, 1, '', IPC_NOWAIT);
      await fails(a.msgsnd(id, 1, '', IPC_NOWAIT), 'EAGAIN', 'msgsnd');
      await a.msgctl(id, IPC_RMID);
    });

    test('rights: EACCES without the write right to send or the read right to receive', async () => {
      const k = key();
      const id = await a.msgget(k, 0o624 | IPC_CREAT); // others: read only
      await fails(b.msgsnd(id, 1, 'x', IPC_NOWAIT), 'EACCES', 'msgsnd');
      await a.msgsnd(id, 1, 'x', 0);
      assert.equal(text(await b.msgrcv(id, 10, 0, IPC_NOWAIT)), 'x');
      await a.msgctl(id, IPC_SET, { msg_perm: { mode: 0o622 } });
      await b.msgsnd(id, 1, 'y', 0);
      await fails(b.msgrcv(id, 10, 0, IPC_NOWAIT), 'EACCES', 'msgrcv');
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgrcv gets the message another process sends', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      const got = b.msgrcv(id, 100, 4, 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingReceivers.includes(p2.id),
        10_000,
        'msgrcv waiting',
      );
      await a.msgsnd(id, 3, 'not this one', 0);
      await a.msgsnd(id, 4, 'this one', 0);
      const m = await got;
      assert.deepEqual([m.mtype, text(m)], [4, 'this one']);
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgrcv of type < 0 gets the first message of a type up to |msgtyp|, that type included', {
      timeout: 20_000,
    }, async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      const got = b.msgrcv(id, 100, -4, 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingReceivers.includes(p2.id),
        10_000,
        'msgrcv waiting',
      );
      await a.msgsnd(id, 5, 'over the bound', 0);
      await a.msgsnd(id, 4, 'at the bound', 0);
      const m = await got;
      assert.deepEqual([m.mtype, text(m)], [4, 'at the bound']);
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgrcv too small for the message that arrives fails with E2BIG, and the message stays queued', {
      timeout: 20_000,
    }, async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      const got = fails(b.msgrcv(id, 4, 0, 0), 'E2BIG', 'msgrcv');
      await until(
        () => mailboxStat(id),
        (s) => s.waitingReceivers.includes(p2.id),
        10_000,
        'msgrcv waiting',
      );
      await a.msgsnd(id, 1, 'ten bytes!', 0);
      await got;
      assert.equal(text(await a.msgrcv(id, 100, 0, IPC_NOWAIT)), 'ten bytes!');
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgsnd goes in when a receive makes room', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 4 });
      await a.msgsnd(id, 1, 'full', 0);
      const sent = b.msgsnd(id, 2, 'next', 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingSenders.includes(p2.id),
        10_000,
        'msgsnd waiting',
      );
      assert.equal(text(await a.msgrcv(id, 10, 0, 0)), 'full');
      assert.equal(await sent, 0);
      assert.equal(text(await a.msgrcv(id, 10, 0, IPC_NOWAIT)), 'next');
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgsnd that fits goes in while a bigger one before it still waits, as on Linux', {
      timeout: 20_000,
    }, async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 10 });
      await a.msgsnd(id, 1, 'aaaaa', 0);
      await a.msgsnd(id, 1, 'bbbbb', 0);
      const big = b.msgsnd(id, 1, 'cccccccc', 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingSenders.length === 1,
        10_000,
        'the big msgsnd waiting',
      );
      const small = a.msgsnd(id, 1, 'dd', 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingSenders.length === 2,
        10_000,
        'the small msgsnd waiting',
      );
      // 5 bytes free: the 2-byte message goes in, the 8-byte one waits on.
      assert.equal(text(await a.msgrcv(id, 10, 0, 0)), 'aaaaa');
      assert.equal(await small, 0);
      assert.deepEqual((await mailboxStat(id)).waitingSenders, [p2.id]);
      assert.equal(text(await a.msgrcv(id, 10, 0, 0)), 'bbbbb');
      assert.equal(await big, 0);
      assert.deepEqual(
        [text(await a.msgrcv(id, 10, 0, 0)), text(await a.msgrcv(id, 10, 0, 0))],
        ['dd', 'cccccccc'],
      );
      await a.msgctl(id, IPC_RMID);
    });

    test('a blocked msgsnd over a lowered msg_qbytes keeps waiting, and goes in when it is raised again, as on Linux', {
      timeout: 20_000,
    }, async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o666);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 10 });
      await a.msgsnd(id, 1, 'aaaaaaaaaa', 0);
      const big = b.msgsnd(id, 1, 'cccccccc', 0);
      await until(
        () => mailboxStat(id),
        (s) => s.waitingSenders.length === 1,
        10_000,
        'the msgsnd waiting',
      );
      await a.msgctl(id, IPC_SET, { msg_qbytes: 4 });
      assert.deepEqual((await mailboxStat(id)).waitingSenders, [p2.id]);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 100 });
      assert.equal(await big, 0);
      assert.equal((await a.msgctl(id, IPC_STAT)).msg_qnum, 2);
      await a.msgctl(id, IPC_RMID);
    });

    test('an AbortSignal interrupts a waiting msgrcv or msgsnd: EINTR', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await fails(a.msgrcv(id, 10, 0, 0, { signal: AbortSignal.timeout(50) }), 'EINTR', 'msgrcv');
      await a.msgctl(id, IPC_SET, { msg_qbytes: 1 });
      await a.msgsnd(id, 1, 'x', 0);
      await fails(a.msgsnd(id, 1, 'y', 0, { signal: AbortSignal.timeout(50) }), 'EINTR', 'msgsnd');
      assert.equal((await a.msgctl(id, IPC_STAT)).msg_qnum, 1, 'the interrupted send left nothing');
      await a.msgctl(id, IPC_RMID);
    });
  });

  describe('msgctl', () => {
    test('IPC_STAT: counts, limits, pids, times in seconds, key, mode and owner', async () => {
      const t0 = Math.floor(Date.now() / 1000);
      const k = key();
      const id = await a.msgget(k, 0o644 | IPC_CREAT);
      let ds = await a.msgctl(id, IPC_STAT);
      assert.deepEqual(
        [ds.msg_qnum, ds.msg_cbytes, ds.msg_qbytes, ds.msg_lspid, ds.msg_lrpid, ds.msg_stime, ds.msg_rtime],
        [0, 0, MSGMNB, 0, 0, 0, 0],
      );
      assert.ok(ds.msg_ctime >= t0 && ds.msg_ctime <= t0 + 5, `ctime ${ds.msg_ctime} near ${t0}`);
      assert.deepEqual(ds.msg_perm, {
        __key: k,
        uid: p1.id,
        gid: p1.id,
        cuid: p1.id,
        cgid: p1.id,
        mode: 0o644,
      });
      await a.msgsnd(id, 1, 'abc', 0);
      await a.msgsnd(id, 2, 'defgh', 0);
      ds = await a.msgctl(id, IPC_STAT);
      assert.deepEqual(
        [ds.msg_qnum, ds.msg_cbytes, ds.msg_lspid, ds.msg_lrpid, ds.msg_rtime],
        [2, 8, process.pid, 0, 0],
        'sent to, never received from',
      );
      assert.ok(ds.msg_stime >= t0 && ds.msg_stime <= t0 + 5);
      await b.msgrcv(id, 10, 1, 0);
      ds = await b.msgctl(id, IPC_STAT);
      assert.deepEqual([ds.msg_qnum, ds.msg_cbytes], [1, 5]);
      assert.equal(ds.msg_lspid, process.pid, 'OS pid of the last sender');
      assert.equal(ds.msg_lrpid, process.pid, 'OS pid of the last receiver');
      assert.ok(ds.msg_stime >= t0 && ds.msg_stime <= t0 + 5);
      assert.ok(ds.msg_rtime >= t0 && ds.msg_rtime <= t0 + 5);
      await a.msgctl(id, IPC_RMID);
    });

    test('IPC_STAT needs the read right: EACCES', async () => {
      const id = await a.msgget(key(), 0o620 | IPC_CREAT);
      await fails(b.msgctl(id, IPC_STAT), 'EACCES', 'msgctl');
      await a.msgctl(id, IPC_SET, { msg_perm: { mode: 0o220 } });
      await fails(a.msgctl(id, IPC_STAT), 'EACCES', 'msgctl');
      await a.msgctl(id, IPC_RMID);
    });

    test('IPC_SET: lowers msg_qbytes (capacity and bytes) and changes the mode', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      const before = await a.msgctl(id, IPC_STAT);
      assert.equal(await a.msgctl(id, IPC_SET, { msg_qbytes: 100, msg_perm: { mode: 0o1640 } }), 0);
      const ds = await a.msgctl(id, IPC_STAT);
      assert.equal(ds.msg_qbytes, 100);
      assert.equal(ds.msg_perm.mode, 0o640, 'only the nine permission bits are taken');
      assert.ok(ds.msg_ctime >= before.msg_ctime);
      const st = await mailboxStat(id);
      assert.deepEqual([st.capacity, st.maxBytes], [100, 100]);
      // Back up to MSGMNB is allowed; over it is EPERM, as for an unprivileged Linux process.
      await a.msgctl(id, IPC_SET, { msg_qbytes: MSGMNB });
      await fails(a.msgctl(id, IPC_SET, { msg_qbytes: MSGMNB + 1 }), 'EPERM', 'msgctl');
      assert.equal((await a.msgctl(id, IPC_STAT)).msg_qbytes, MSGMNB);
      await fails(a.msgctl(id, IPC_SET, { msg_qbytes: -1 }), 'EINVAL', 'msgctl');
      await fails(a.msgctl(id, IPC_SET, null as unknown as face.MsqidDsSet), 'EINVAL', 'msgctl');
      await a.msgctl(id, IPC_RMID);
    });

    test('IPC_SET and IPC_RMID are the owner’s: EPERM for another process', async () => {
      const id = await a.msgget(key(), 0o666 | IPC_CREAT);
      await fails(b.msgctl(id, IPC_SET, { msg_qbytes: 10 }), 'EPERM', 'msgctl');
      await fails(b.msgctl(id, IPC_SET, { msg_perm: { mode: 0o600 } }), 'EPERM', 'msgctl');
      await fails(b.msgctl(id, IPC_SET, { msg_qbytes: MSGMNB + 1 }), 'EPERM', 'msgctl');
      await fails(b.msgctl(id, IPC_RMID), 'EPERM', 'msgctl');
      assert.equal((await b.msgctl(id, IPC_STAT)).msg_qbytes, MSGMNB);
      await a.msgctl(id, IPC_RMID);
    });

    test('an unknown or removed msqid is EINVAL; an unknown command is EINVAL', async () => {
      const id = await a.msgget(IPC_PRIVATE, 0o600);
      await fails(a.msgctl(id, 99 as typeof IPC_STAT), 'EINVAL', 'msgctl');
      await a.msgctl(id, IPC_RMID);
      await fails(a.msgctl(id, IPC_STAT), 'EINVAL', 'msgctl');
      await fails(a.msgctl(id, IPC_SET, { msg_qbytes: 10 }), 'EINVAL', 'msgctl');
      await fails(a.msgctl(id, IPC_SET, { msg_qbytes: MSGMNB + 1 }), 'EINVAL', 'msgctl');
      await fails(a.msgctl(id, IPC_RMID), 'EINVAL', 'msgctl');
      await fails(b.msgctl(-1, IPC_RMID), 'EINVAL', 'msgctl');
    });

    test('a queue outlives its creator; unowned, any process may set or remove it', async () => {
      const p3 = await connect({ socket: kernel.socket });
      const k = key();
      const id = await sysv(p3).msgget(k, 0o666 | IPC_CREAT);
      await sysv(p3).msgsnd(id, 1, 'left behind', 0);
      await p3.close();
      assert.equal(await b.msgget(k, 0o666), id);
      const ds = await b.msgctl(id, IPC_STAT);
      assert.equal(ds.msg_perm.uid, 0, 'owned by the system once its owner is gone');
      assert.equal(text(await b.msgrcv(id, 100, 0, IPC_NOWAIT)), 'left behind');
      assert.equal(await b.msgctl(id, IPC_SET, { msg_qbytes: 100 }), 0, 'IPC_SET too');
      assert.equal((await b.msgctl(id, IPC_STAT)).msg_qbytes, 100);
      assert.equal(await b.msgctl(id, IPC_RMID), 0);
    });
  });

  describe('EIDRM: another process removes the queue', () => {
    test('a blocked msgrcv fails with EIDRM', async () => {
      const id = await a.msgget(key(), 0o666 | IPC_CREAT);
      const waiting = fails(b.msgrcv(id, 100, 0, 0), 'EIDRM', 'msgrcv');
      await until(
        () => mailboxStat(id),
        (s) => s.waitingReceivers.includes(p2.id),
        10_000,
        'msgrcv waiting',
      );
      await a.msgctl(id, IPC_RMID);
      await waiting;
      await fails(b.msgrcv(id, 100, 0, 0), 'EINVAL', 'msgrcv');
    });

    test('a blocked msgsnd fails with EIDRM', async () => {
      const id = await a.msgget(key(), 0o666 | IPC_CREAT);
      await a.msgctl(id, IPC_SET, { msg_qbytes: 8 });
      await b.msgsnd(id, 1, '12345678', 0);
      const waiting = fails(b.msgsnd(id, 1, 'more', 0), 'EIDRM', 'msgsnd');
      await until(
        () => mailboxStat(id),
        (s) => s.waitingSenders.includes(p2.id),
        10_000,
        'msgsnd waiting',
      );
      await a.msgctl(id, IPC_RMID);
      await waiting;
      await fails(b.msgsnd(id, 1, 'x', 0), 'EINVAL', 'msgsnd');
    });
  });

  describe('module-level calls', () => {
    test('use a default process connected on first use, and close() disconnects it', async () => {
      const saved = process.env.POSTBOX_SOCKET;
      process.env.POSTBOX_SOCKET = kernel.socket;
      try {
        const k = key();
        const id = await face.msgget(k, 0o666 | IPC_CREAT);
        await face.msgsnd(id, 5, 'from the default process');
        const ds = await face.msgctl(id, IPC_STAT);
        assert.equal(ds.msg_qnum, 1);
        const owner = ds.msg_perm.uid;
        assert.ok(owner !== p1.id && owner !== p2.id && owner > 0, 'its own process');
        await face.close();
        // The queue stays; the next call connects a new default process.
        assert.equal(await face.msgget(k, 0), id);
        const m = await face.msgrcv(id, 100, 5, IPC_NOWAIT);
        assert.equal(text(m), 'from the default process');
        assert.equal((await face.msgctl(id, IPC_STAT)).msg_perm.uid, 0, 'the first one terminated');
        await fails(face.msgrcv(id, 100, 0, IPC_NOWAIT), 'ENOMSG', 'msgrcv');
        assert.equal(await face.msgctl(id, IPC_RMID), 0);
      } finally {
        await face.close();
        if (saved === undefined) delete process.env.POSTBOX_SOCKET;
        else process.env.POSTBOX_SOCKET = saved;
      }
    });
  });

  test("the lecture's example: ten crew names by type, type 2 with IPC_NOWAIT until ENOMSG, then the rest", async () => {
    // As alg.9-1-msgsnd.c: a key from ftok(pathname, 0x27), 0666 | IPC_CREAT, 512-byte texts.
    const TEXT_SIZE = 512;
    const path = join(dir, 'myshm');
    writeFileSync(path, '');
    const id = await a.msgget(await ftok(path, 0x27), 0o666 | IPC_CREAT);
    const crew: [number, string][] = [
      [1, 'Kirk'],
      [2, 'Spock'],
      [3, 'McCoy'],
      [4, 'Scott'],
      [5, 'Uhura'],
      [6, 'Sulu'],
      [2, 'Chekov'],
      [3, 'Chapel'],
      [2, 'Rand'],
      [1, 'Riley'],
    ];
    for (const [type, name] of crew) {
      const data = Buffer.alloc(TEXT_SIZE);
      data.write(name);
      await a.msgsnd(id, type, data, 0);
    }
    let ds = await a.msgctl(id, IPC_STAT);
    assert.deepEqual([ds.msg_qnum, ds.msg_cbytes], [10, 5120], 'ipcs: used-bytes 5120, messages 10');

    // alg.9-2-msgrcv.c with msg_type 2, in another process.
    const name = (m: { mtext: Buffer }): string => m.mtext.toString('utf8', 0, m.mtext.indexOf(0));
    const type2: string[] = [];
    for (;;) {
      try {
        const m = await b.msgrcv(id, TEXT_SIZE, 2, IPC_NOWAIT);
        assert.equal(m.mtype, 2);
        type2.push(name(m));
      } catch (err) {
        assert.equal((err as SysvError).code, 'ENOMSG');
        break;
      }
    }
    assert.deepEqual(type2, ['Spock', 'Chekov', 'Rand']);
    ds = await b.msgctl(id, IPC_STAT);
    assert.deepEqual([ds.msg_qnum, ds.msg_cbytes], [7, 3584]);

    const rest: [number, string][] = [];
    for (;;) {
      try {
        const m = await b.msgrcv(id, TEXT_SIZE, 0, IPC_NOWAIT);
        rest.push([m.mtype, name(m)]);
      } catch (err) {
        assert.equal((err as SysvError).code, 'ENOMSG');
        break;
      }
    }
    assert.deepEqual(
      rest,
      crew.filter(([t]) => t !== 2),
    );
    assert.equal((await b.msgctl(id, IPC_STAT)).msg_qnum, 0);
    await fails(b.msgctl(id, IPC_RMID), 'EPERM', 'msgctl');
    assert.equal(await a.msgctl(id, IPC_RMID), 0);
  });

  test('misspelt fields and options are EINVAL, not ignored; an IPC_STAT result may go back to IPC_SET', async () => {
    const id = await a.msgget(IPC_PRIVATE, 0o600 | IPC_CREAT);
    await fails(
      a.msgsnd(id, 1, 'x', 0, { signl: new AbortController().signal } as never),
      'EINVAL',
      'msgsnd',
    );
    await fails(a.msgrcv(id, 10, 0, IPC_NOWAIT, { signal: {} } as never), 'EINVAL', 'msgrcv');
    // msg_qbytes stayed 16384: the misspelling changed nothing and said nothing.
    await fails(a.msgctl(id, IPC_SET, { msg_qbyte: 10 } as never), 'EINVAL', 'msgctl');
    await fails(a.msgctl(id, IPC_SET, { msg_perm: { mdoe: 0o644 } } as never), 'EINVAL', 'msgctl');
    const ds = await a.msgctl(id, IPC_STAT);
    assert.equal(await a.msgctl(id, IPC_SET, { ...ds, msg_qbytes: 100 }), 0, "C's idiom: stat, change, set");
    assert.equal((await a.msgctl(id, IPC_STAT)).msg_qbytes, 100);
    assert.equal(await a.msgctl(id, IPC_RMID), 0);
  });

  test("msgget past the kernel's number of mailboxes is ENOSPC, as past Linux's MSGMNI", async () => {
    const full = await startTestKernel({ args: ['--max-mailboxes', '4'] });
    const p = await connect({ socket: full.socket });
    try {
      const s = sysv(p);
      // The process's inbox is one of the four: fewer than four queues fit, and the next is refused.
      let made = 0;
      for (; made < 5; made++) {
        const err = await s.msgget(IPC_PRIVATE, 0o600).then(
          () => null,
          (e: unknown) => e,
        );
        if (err === null) continue;
        assert.ok(err instanceof SysvError, `expected a SysvError ENOSPC, got ${String(err)}`);
        assert.deepEqual([err.code, err.errno, err.syscall], ['ENOSPC', errno.ENOSPC, 'msgget']);
        break;
      }
      assert.ok(made < 4, `msgget was refused after ${made} queues`);
      await fails(s.msgget(key(), 0o600 | IPC_CREAT), 'ENOSPC', 'msgget');
    } finally {
      await p.close();
      await full.stop();
    }
  });

  test("under a kernel whose largest message is smaller than MSGMAX, queues take the kernel's", async () => {
    const small = await startTestKernel({ args: ['--max-message-size', '1000'] });
    const p = await connect({ socket: small.socket });
    try {
      const s = sysv(p);
      // Every msgget(IPC_CREAT) was EINVAL: a queue of 8192-byte messages was over the kernel's limit.
      const id = await s.msgget(IPC_PRIVATE, 0o600 | IPC_CREAT);
      assert.equal(await s.msgsnd(id, 1, Buffer.alloc(1000)), 0);
      assert.equal((await s.msgrcv(id, 2000)).mtext.length, 1000);
      await fails(s.msgsnd(id, 1, Buffer.alloc(1001)), 'EINVAL', 'msgsnd');
    } finally {
      await p.close();
      await small.stop();
    }
  });
});

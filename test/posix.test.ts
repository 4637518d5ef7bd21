/** The POSIX message-queue face against a real kernel, with Linux's names, flags and errors. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import {
  MQ_PRIO_MAX,
  close as moduleClose,
  mq_open as moduleOpen,
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
import { within } from './helpers/raw-peer.js';

const code = (c: string) => (err: Error & { code?: string }) => err.code === c;

describe('POSIX message queues', () => {
  let kernel: TestKernel;
  let proc: PostboxProcess;
  let other: PostboxProcess;
  let mq: PosixQueues;
  let mq2: PosixQueues;
  let n = 0;
  const qname = (): string => `/q${++n}`;

  before(async () => {
    kernel = await startTestKernel();
    proc = await connect({ socket: kernel.socket });
    other = await connect({ socket: kernel.socket });
    mq = posix(proc);
    mq2 = posix(other);
  });
  /** Runs a fixture as its own process against the kernel; it must exit 0; returns its JSON line. */
  async function runFixture(fixture: string, ...args: string[]): Promise<unknown> {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL(`./fixtures/${fixture}`, import.meta.url)), ...args],
      { env: kernel.env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    const exit = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(exit, 0, `${fixture} exited ${exit}`);
    return JSON.parse(out);
  }
  after(async () => {
    await proc.close();
    await other.close();
    await kernel.stop();
  });

  test("the lecture's hello world: the parent sends 'Hello!' with priority 1, a child process receives it", async () => {
    const d = await mq.mq_open('/mq', O_CREAT | O_RDWR, 0o644, { mq_maxmsg: 10, mq_msgsize: 64 });
    await mq.mq_send(d, 'Hello!', 1);
    assert.deepEqual(await runFixture('posix-child.js', '/mq'), { text: 'Hello!', priority: 1 });
    await mq.mq_close(d);
    await mq.mq_unlink('/mq');
    await assert.rejects(
      mq.mq_open('mq', O_RDONLY),
      code('EINVAL'),
      "Linux refuses the notes' 'mq': a name starts with '/'",
    );
  });

  test('posix(proc) gives functions that work taken apart, as the module-level ones do', async () => {
    const { mq_open, mq_send, mq_receive, mq_getattr, mq_close, mq_unlink } = posix(proc);
    const name = qname();
    const mqd = await mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 2, mq_msgsize: 16 });
    await mq_send(mqd, 'apart', 3);
    assert.equal((await mq_getattr(mqd)).mq_curmsgs, 1);
    const got = await mq_receive(mqd, 16);
    assert.equal(got.data.toString(), 'apart');
    assert.equal(got.priority, 3);
    await mq_close(mqd);
    await mq_unlink(name);
  });

  test('priority order, fifo within a priority; sizes; non-blocking paths', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR | O_NONBLOCK, 0o600, { mq_maxmsg: 4, mq_msgsize: 8 });
    for (const [text, prio] of [
      ['low', 1],
      ['high-a', 9],
      ['mid', 5],
      ['high-b', 9],
    ] as const) {
      await mq.mq_send(d, text, prio);
    }
    // Each names the queue, as every error names its mailbox: with several open, which one.
    await assert.rejects(mq.mq_send(d, 'full', 0), {
      code: 'EAGAIN',
      message: `mq_send: queue '${name}' is full and descriptor ${d} is O_NONBLOCK`,
      mailbox: name,
    });
    await assert.rejects(mq.mq_send(d, '123456789', 0), {
      code: 'EMSGSIZE',
      message: `mq_send: a 9-byte message is over the mq_msgsize of queue '${name}', 8`,
      mailbox: name,
    });
    await assert.rejects(
      mq.mq_receive(d, 7),
      {
        code: 'EMSGSIZE',
        message: `mq_receive: a 7-byte buffer is smaller than the mq_msgsize of queue '${name}', 8`,
        mailbox: name,
      },
      'a buffer smaller than mq_msgsize',
    );
    await assert.rejects(mq.mq_send(d, 'x', 32768), code('EINVAL'));
    const got: [string, number][] = [];
    for (let i = 0; i < 4; i++) {
      const r = await mq.mq_receive(d, 8);
      got.push([r.data.toString(), r.priority]);
    }
    assert.deepEqual(got, [
      ['high-a', 9],
      ['high-b', 9],
      ['mid', 5],
      ['low', 1],
    ]);
    await assert.rejects(mq.mq_receive(d, 8), {
      code: 'EAGAIN',
      message: `mq_receive: queue '${name}' is empty and descriptor ${d} is O_NONBLOCK`,
      mailbox: name,
    });
    await mq.mq_send(d, '12345678', 2);
    assert.equal((await mq.mq_receive(d, 8)).data.toString(), '12345678', 'exactly mq_msgsize fits');
    assert.deepEqual(await mq.mq_getattr(d), {
      mq_flags: O_NONBLOCK,
      mq_maxmsg: 4,
      mq_msgsize: 8,
      mq_curmsgs: 0,
    });
    const old = await mq.mq_setattr(d, { mq_flags: 0 });
    assert.equal(old.mq_flags, O_NONBLOCK);
    assert.equal((await mq.mq_getattr(d)).mq_flags, 0);
    await assert.rejects(mq.mq_setattr(d, { mq_flags: O_CREAT }), code('EINVAL'));
    await assert.rejects(mq.mq_timedreceive(d, 8, Date.now() + 30), code('ETIMEDOUT'));
    await assert.rejects(
      mq.mq_timedreceive(d, 8, new Date(0)),
      {
        code: 'ETIMEDOUT',
        message: `mq_timedreceive: the time passed with queue '${name}' empty`,
        mailbox: name,
      },
      'a deadline already past',
    );
    await assert.rejects(mq.mq_timedreceive(d, 8, { tv_sec: 0, tv_nsec: 2e9 }), code('EINVAL'));
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('the edges Linux keeps, tested here as well as against Linux: attribute bounds, a queue full of messages of mq_msgsize, past and bad deadlines, O_NONBLOCK before a deadline, access mode 3', async () => {
    const name = qname();
    await assert.rejects(
      mq.mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 0, mq_msgsize: 8 }),
      code('EINVAL'),
    );
    await assert.rejects(
      mq.mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 2, mq_msgsize: 8193 }),
      code('EINVAL'),
    );
    const big = await mq.mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 2, mq_msgsize: 8192 });
    // The queue exists: attributes out of range no longer matter, and its own are kept.
    const nb = await mq.mq_open(name, O_CREAT | O_RDWR | O_NONBLOCK, 0o600, { mq_maxmsg: 0, mq_msgsize: 0 });
    assert.deepEqual(await mq.mq_getattr(nb), {
      mq_flags: O_NONBLOCK,
      mq_maxmsg: 2,
      mq_msgsize: 8192,
      mq_curmsgs: 0,
    });
    // Both O_WRONLY and O_RDWR is EINVAL once the queue exists; its creator gets a descriptor
    // that neither sends nor receives.
    await assert.rejects(mq.mq_open(name, O_WRONLY | O_RDWR), code('EINVAL'));
    const oddName = qname();
    const odd = await mq.mq_open(oddName, O_CREAT | O_WRONLY | O_RDWR, 0o600, {
      mq_maxmsg: 1,
      mq_msgsize: 8,
    });
    await assert.rejects(mq.mq_send(odd, 'x', 0), code('EBADF'));
    await assert.rejects(mq.mq_receive(odd, 8), code('EBADF'));
    for (let i = 0; i < 2; i++) await mq.mq_send(nb, Buffer.alloc(8192, i), 0);
    assert.equal((await mq.mq_getattr(big)).mq_curmsgs, 2, 'mq_maxmsg messages of mq_msgsize fit');
    await assert.rejects(
      mq.mq_timedsend(big, 'x', 0, new Date(0)),
      code('ETIMEDOUT'),
      'full, a past deadline',
    );
    await assert.rejects(mq.mq_timedsend(big, 'x', 0, { tv_sec: 1, tv_nsec: 1e9 }), code('EINVAL'));
    for (let i = 0; i < 2; i++) await mq.mq_receive(nb, 8192);
    await assert.rejects(
      mq.mq_timedreceive(nb, 8192, Date.now() + 10_000),
      code('EAGAIN'),
      'O_NONBLOCK does not wait for a deadline',
    );
    for (const d of [big, nb, odd]) await mq.mq_close(d);
    for (const n of [name, oddName]) await mq.mq_unlink(n);
  });

  test("mq_msgsize over the kernel's message size limit is mq_open's EINVAL, named as mq_open's", async () => {
    const small = await startTestKernel({ args: ['--max-message-size', '100'] });
    const p = await connect({ socket: small.socket });
    try {
      await assert.rejects(
        posix(p).mq_open(qname(), O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 2, mq_msgsize: 200 }),
        (err: Error & { code?: string }) =>
          err.code === 'EINVAL' &&
          err.message.startsWith("mq_open: mq_msgsize 200 is over the kernel's message size limit of 100"),
      );
    } finally {
      await p.close();
      await small.stop();
    }
  });

  test('open flags and descriptors: EEXIST, ENOENT, EBADF, access modes, attribute limits', async () => {
    const name = qname();
    await assert.rejects(mq.mq_open(name, O_RDONLY), code('ENOENT'));
    await assert.rejects(
      mq.mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 11, mq_msgsize: 8 }),
      code('EINVAL'),
    );
    await assert.rejects(
      mq.mq_open(name, O_CREAT | O_RDWR, 0o600, { mq_maxmsg: 1, mq_msgsize: 0 }),
      code('EINVAL'),
    );
    // A mode may carry the set-id and sticky bits (up to 0o7777); the queue keeps the nine
    // permission bits (mode 0600 below).
    const w = await mq.mq_open(name, O_CREAT | O_WRONLY, 0o1600);
    await assert.rejects(
      // @ts-expect-error a JavaScript caller may leave out the priority
      mq.mq_send(w, 'x'),
      (err: Error & { code?: string }) =>
        err.code === 'EINVAL' &&
        err.message === 'mq_send: priority must be an integer within 0…32767, not undefined',
    );
    await assert.rejects(mq.mq_open(name, O_CREAT | O_EXCL | O_RDWR), code('EEXIST'));
    assert.deepEqual(await mq.mq_getattr(w), { mq_flags: 0, mq_maxmsg: 10, mq_msgsize: 8192, mq_curmsgs: 0 });
    await assert.rejects(
      mq.mq_receive(w, 8192),
      { code: 'EBADF', message: `mq_receive: descriptor ${w} (queue '${name}') is not open for reading` },
      'not open for reading',
    );
    const r = await mq.mq_open(name, O_RDONLY);
    await assert.rejects(
      mq.mq_send(r, 'x', 0),
      { code: 'EBADF', message: `mq_send: descriptor ${r} (queue '${name}') is not open for writing` },
      'not open for writing',
    );
    await mq.mq_close(r);
    await assert.rejects(mq.mq_close(r), code('EBADF'));
    await assert.rejects(
      mq2.mq_open(name, O_RDONLY),
      code('EACCES'),
      'mode 0600: another process may not read',
    );
    // The kernel checks too, not only this face: a client opening the queue as a mailbox, for
    // writing alone, is refused as well.
    await assert.rejects(other.openMailbox(name, { role: 'write' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /\(mode 0600\) for writing/);
      return true;
    });
    await assert.rejects(mq.mq_open('/a/b', O_RDONLY), code('EACCES'));
    await mq.mq_close(w);
    await mq.mq_unlink(name);
  });

  test('a descriptor opened after another closes gets a number of its own: the descriptors still open keep their queues', async () => {
    const [na, nb, nc] = [qname(), qname(), qname()];
    const attr = { mq_maxmsg: 2, mq_msgsize: 16 };
    const a = await mq.mq_open(na, O_CREAT | O_RDWR, 0o600, attr);
    const b = await mq.mq_open(nb, O_CREAT | O_RDWR, 0o600, attr);
    await mq.mq_close(a);
    const c = await mq.mq_open(nc, O_CREAT | O_RDWR | O_NONBLOCK, 0o600, attr);
    assert.notEqual(c, b);
    await mq.mq_send(b, 'to b', 0);
    assert.equal((await mq.mq_getattr(b)).mq_flags, 0, 'b is still the blocking descriptor of its queue');
    assert.equal((await mq.mq_receive(b, 16)).data.toString(), 'to b');
    await assert.rejects(mq.mq_receive(c, 16), code('EAGAIN'), 'c is its own, empty, queue');
    for (const d of [b, c]) await mq.mq_close(d);
    for (const n of [na, nb, nc]) await mq.mq_unlink(n);
  });

  test("the creator's descriptor is not checked against the mode it gives; a later open is", async () => {
    const name = qname();
    // Mode 0400: even the owner may not write, but the creating open has both ends (as on Linux).
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o400, { mq_maxmsg: 2, mq_msgsize: 16 });
    await mq.mq_send(d, 'by the creator', 0);
    assert.equal((await mq.mq_receive(d, 16)).data.toString(), 'by the creator');
    await assert.rejects(mq.mq_open(name, O_WRONLY), code('EACCES'), 'a later open by the owner');
    const r = await mq.mq_open(name, O_RDONLY);
    await mq.mq_close(r);
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test("a process the owner granted opens with the mode's group rights", async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o640, { mq_maxmsg: 2, mq_msgsize: 16 });
    await assert.rejects(mq2.mq_open(name, O_RDONLY), code('EACCES'), 'others have no rights');
    const mb = await proc.openMailbox(name, { role: 'none' });
    try {
      await mb.grant(other.id);
    } finally {
      mb.close();
    }
    const r = await mq2.mq_open(name, O_RDONLY);
    await assert.rejects(mq2.mq_open(name, O_WRONLY), code('EACCES'), 'the group may not write');
    await mq.mq_send(d, 'to the group', 0);
    assert.equal((await mq2.mq_receive(r, 16)).data.toString(), 'to the group');
    await mq2.mq_close(r);
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('the kernel holds a queue opened as a mailbox to the ends it opened: no send on a read end, no receive on a write end', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    const reading = await other.openMailbox(name, { role: 'read' });
    await assert.rejects(reading.send('x', { priority: 0 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /has no handle on .* open for writing/);
      return true;
    });
    reading.close();
    const writing = await other.openMailbox(name, { role: 'write' });
    await mq.mq_send(d, 'queued', 0);
    await assert.rejects(writing.receive({ nowait: true }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /has no handle on .* open for reading/);
      return true;
    });
    writing.close();
    assert.equal((await mq.mq_receive(d, 16)).data.toString(), 'queued', 'only what the creator sent');
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('a process that closes its read end of a queue loses the receive right with it, and its write end the send right, though it keeps another end open', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    const reading = await other.openMailbox(name, { role: 'read' });
    const writing = await other.openMailbox(name, { role: 'write' });
    await writing.send('while both', { priority: 0 });
    await reading.close();
    await assert.rejects(writing.receive({ nowait: true }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /has no handle on .* open for reading/);
      return true;
    });
    const again = await other.openMailbox(name, { role: 'read' });
    await writing.close();
    await assert.rejects(again.send('x', { priority: 0 }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /has no handle on .* open for writing/);
      return true;
    });
    assert.equal((await again.receive({ nowait: true }))?.body, 'while both');
    await again.close();
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('mq_unlink: the name goes at once; the queue lives until its last close', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    const d2 = await mq2.mq_open(name, O_RDWR);
    await mq.mq_send(d, 'before', 0);
    await mq.mq_unlink(name);
    await assert.rejects(mq.mq_open(name, O_RDONLY), code('ENOENT'));
    const again = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    assert.equal((await mq.mq_getattr(again)).mq_curmsgs, 0, 'the name now means a new queue');
    assert.equal(
      (await mq2.mq_receive(d2, 16)).data.toString(),
      'before',
      'open descriptors keep the old queue',
    );
    await mq.mq_send(d, 'after', 3);
    assert.equal((await mq2.mq_receive(d2, 16)).data.toString(), 'after');
    await mq.mq_close(d);
    await mq2.mq_close(d2);
    const remaining = (await proc.mailboxes()).filter((m) => m.name === name);
    assert.equal(remaining.length, 1, 'only the new queue is left: the unlinked one went at its last close');
    await mq.mq_close(again);
    await mq.mq_unlink(name);
  });

  test('mq_notify: one registered process is told once when a message arrives on an empty queue', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
    const d2 = await mq2.mq_open(name, O_RDWR);
    let told = 0;
    const notified = new Promise<void>((resolve) => {
      void mq.mq_notify(d, () => {
        told++;
        resolve();
      });
    });
    await new Promise((r) => setImmediate(r));
    await proc.lookup(proc.id); // requests are answered in order: the registration is in
    await assert.rejects(
      mq2.mq_notify(d2, () => {}),
      code('EBUSY'),
    );
    await mq2.mq_send(d2, 'ping', 0);
    await notified;
    await mq2.mq_send(d2, 'again', 0);
    await mq2.mq_receive(d2, 16);
    await mq2.mq_receive(d2, 16);
    await mq2.mq_send(d2, 'third', 0);
    await mq.mq_receive(d, 16);
    assert.equal(told, 1, 'the registration is one-shot');
    // Told, the process is no longer registered: it may register again, and unregister.
    await mq.mq_notify(d, () => {});
    await mq.mq_notify(d, null);
    // Unregistered, it leaves the queue to another process, which may register.
    await mq2.mq_notify(d2, () => {});
    await mq2.mq_notify(d2, null);
    await mq.mq_notify(d, () => {});
    // Closing any of its descriptors on the queue ends its registration, not only the one it
    // registered through (Linux's mq_close).
    const d3 = await mq.mq_open(name, O_RDWR);
    await mq.mq_close(d3);
    await mq2.mq_notify(d2, () => {});
    await mq2.mq_notify(d2, null);
    await mq.mq_close(d);
    await mq2.mq_close(d2);
    await mq.mq_unlink(name);
  });

  test('a registration for mq_notify ends with its process: another may register, and is told', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
    const gone = await connect({ socket: kernel.socket });
    const mqGone = posix(gone);
    await mqGone.mq_notify(await mqGone.mq_open(name, O_RDWR), () => {});
    await assert.rejects(
      mq.mq_notify(d, () => {}),
      code('EBUSY'),
    );
    await gone.close();
    const notified = new Promise<void>((resolve) => {
      void mq.mq_notify(d, resolve);
    });
    await proc.lookup(proc.id); // requests are answered in order: the registration is in
    const w = await mq2.mq_open(name, O_WRONLY);
    await mq2.mq_send(w, 'ping', 0);
    await notified;
    await mq2.mq_close(w);
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('an unlinked queue goes when the last process that has it open ends, as at its last close', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
    const holder = await connect({ socket: kernel.socket });
    const id = (await holder.openMailbox(name)).id;
    await mq.mq_close(d);
    await mq.mq_unlink(name);
    assert.equal((await proc.stat(id)).unlinked, true, 'unlinked, still held');
    await holder.close();
    await assert.rejects(proc.stat(id), code('ENOENT'));
  });

  test('mq_notify and an mq_send in the same breath: the notice is not lost', async () => {
    // The kernel answers the registration and sends the notice in one write, which the client
    // reads in one go: the notice must find its handler although nobody has awaited yet.
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 4, mq_msgsize: 16 });
    const notified = new Promise<void>((resolve) => {
      void mq.mq_notify(d, resolve);
    });
    await mq.mq_send(d, 'ping', 0);
    await within(notified, 5_000, 'the notice');
    // The notice spent the registration: the process may register again.
    await mq.mq_notify(d, () => {});
    await mq.mq_notify(d, null);
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('a blocked mq_send waits for room; mq_timedsend gives up at its deadline', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 1, mq_msgsize: 16 });
    const d2 = await mq2.mq_open(name, O_RDWR);
    await mq.mq_send(d, 'one', 0);
    await assert.rejects(mq.mq_timedsend(d, 'late', 0, Date.now() + 30), code('ETIMEDOUT'));
    const blocked = mq.mq_send(d, 'two', 0);
    assert.equal((await mq2.mq_receive(d2, 16)).data.toString(), 'one');
    await blocked;
    assert.equal(
      (await mq2.mq_receive(d2, 16)).data.toString(),
      'two',
      "the timed-out 'late' was never queued",
    );
    await mq.mq_close(d);
    await mq2.mq_close(d2);
    await mq.mq_unlink(name);
  });

  test('bad arguments are EINVAL (names over 255 bytes ENAMETOOLONG), and nothing is sent, taken or made', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    const untyped = mq as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const einval = async (fn: string, ...args: unknown[]): Promise<void> => {
      await assert.rejects(untyped[fn]!.call(mq, ...args), code('EINVAL'), `${fn}(${args.map(String)})`);
    };
    await einval('mq_open', `${name}x`, 'rw');
    await einval('mq_open', `${name}x`, O_CREAT | O_RDWR, '0644');
    await einval('mq_open', `${name}x`, O_CREAT | O_RDWR, 0o10000);
    await einval('mq_open', `${name}x`, O_CREAT | O_RDWR, 0o644, { mq_maxmsg: '2', mq_msgsize: 16 });
    await einval('mq_send', d, null, 0);
    // Linux checks the priority (an unsigned int) before the descriptor: EINVAL, not EBADF.
    await einval('mq_send', 999, 'x', -1);
    await einval('mq_timedsend', 999, 'x', MQ_PRIO_MAX, null);
    await einval('mq_send', d, { text: 'hi' }, 0);
    // Linux: a negative tv_sec is EINVAL even when the queue has room.
    await einval('mq_timedsend', d, 'x', 0, { tv_sec: -1, tv_nsec: 0 });
    await einval('mq_timedsend', d, 'x', 0, -5);
    await einval('mq_timedsend', d, 'x', 0, new Date(Number.NaN));
    await einval('mq_timedsend', d, 'x', 0, 'soon');
    await mq.mq_send(d, 'kept', 0);
    for (const len of [undefined, Number.NaN, '4', -1]) await einval('mq_receive', d, len);
    await einval('mq_timedreceive', d, 16, { tv_sec: 1, tv_nsec: 2e9 });
    await einval('mq_setattr', d, null);
    await einval('mq_setattr', d, { mq_flags: 'nonblock' });
    await einval('mq_notify', d, undefined);
    await einval('mq_notify', d, 'SIGUSR1');
    await assert.rejects(mq.mq_open(`/${'é'.repeat(128)}`, O_CREAT | O_RDWR), code('ENAMETOOLONG'));
    // A mailbox that is not a queue is no queue to unlink (mq_open refuses it too).
    const plain = await proc.createMailbox(`${name}-plain`);
    await assert.rejects(mq.mq_unlink(`${name}-plain`), code('ENOENT'));
    assert.ok(
      (await proc.mailboxes()).some((m) => m.name === `${name}-plain`),
      'the mailbox is still there',
    );
    await einval('mq_open', `${name}-plain`, O_RDWR);
    await einval('mq_open', `${name}-plain`, O_CREAT | O_RDWR, 0o600);
    await plain.delete();
    assert.equal((await mq.mq_getattr(d)).mq_curmsgs, 1, 'only the good send is queued');
    assert.equal((await mq.mq_receive(d, 16)).data.toString(), 'kept');
    assert.deepEqual(
      (await proc.mailboxes()).filter((m) => m.name?.startsWith(`${name}x`) || m.name?.startsWith('/é')),
      [],
      'no queue was made by a refused mq_open',
    );
    await mq.mq_close(d);
    await mq.mq_unlink(name);
  });

  test('a null deadline waits as mq_send does; one beyond 49.7 days waits too, not EINVAL', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 1, mq_msgsize: 16 });
    const d2 = await mq2.mq_open(name, O_RDWR);
    await mq.mq_timedsend(d, 'one', 0, null);
    const year = Date.now() + 365 * 86_400_000;
    const blocked = mq.mq_timedsend(d, 'two', 0, year);
    assert.equal((await mq2.mq_receive(d2, 16)).data.toString(), 'one');
    await blocked;
    assert.equal(
      (await mq2.mq_timedreceive(d2, 16, { tv_sec: Math.floor(year / 1000), tv_nsec: 0 })).data.toString(),
      'two',
    );
    const waiting = mq2.mq_timedreceive(d2, 16, new Date(year));
    await mq.mq_send(d, 'three', 0);
    assert.equal((await waiting).data.toString(), 'three');
    // A timespec a minute away is a deadline in seconds, not milliseconds: it waits too.
    const soon = { tv_sec: Math.floor(Date.now() / 1000) + 60, tv_nsec: 0 };
    const inTimespec = mq2.mq_timedreceive(d2, 16, soon);
    await other.lookup(other.id); // answered in order: the receive waits in the kernel
    await mq.mq_send(d, 'four', 0);
    assert.equal((await inTimespec).data.toString(), 'four');
    await mq.mq_send(d, 'five', 0);
    const sendInTimespec = mq.mq_timedsend(d, 'six', 0, soon);
    await proc.lookup(proc.id);
    assert.equal((await mq2.mq_receive(d2, 16)).data.toString(), 'five');
    await sendInTimespec;
    assert.equal((await mq2.mq_receive(d2, 16)).data.toString(), 'six');
    await mq.mq_close(d);
    await mq2.mq_close(d2);
    await mq.mq_unlink(name);
  });

  test('mq_close while a receive on the descriptor waits: the receive fails EBADF', async () => {
    const name = qname();
    const d = await mq.mq_open(name, O_CREAT | O_RDWR, 0o666, { mq_maxmsg: 2, mq_msgsize: 16 });
    const waiting = mq.mq_receive(d, 16);
    await proc.lookup(proc.id); // answered in order: the receive is in the kernel
    await mq.mq_close(d);
    await assert.rejects(waiting, code('EBADF'));
    const again = await mq.mq_open(name, O_RDWR);
    await mq.mq_send(again, 'after', 0);
    assert.equal((await mq.mq_getattr(again)).mq_curmsgs, 1, 'the closed receive took nothing');
    await mq.mq_close(again);
    await mq.mq_unlink(name);
  });

  test("a notification that throws is the application's uncaught exception: the send and the connection are unharmed", async () => {
    const name = qname();
    assert.deepEqual(await runFixture('posix-notify-throws.js', name), {
      send: 'sent',
      thrown: 'bug in my callback',
      curmsgs: 1,
    });
    await mq.mq_unlink(name);
  });

  test('the module-level functions connect again after a failed first try', async () => {
    const saved = process.env.POSTBOX_SOCKET;
    const savedUrl = process.env.POSTBOX_URL;
    delete process.env.POSTBOX_URL;
    try {
      process.env.POSTBOX_SOCKET = `${kernel.socket}.absent`;
      await assert.rejects(moduleOpen(qname(), O_CREAT | O_RDWR), (err: Error & { code?: string }) =>
        ['ENOENT', 'ECONNREFUSED'].includes(err.code ?? ''),
      );
      await moduleClose(); // nothing was opened: closing is not an error
      await assert.rejects(moduleOpen(qname(), O_CREAT | O_RDWR));
      process.env.POSTBOX_SOCKET = kernel.socket;
      const name = qname();
      const d = await moduleOpen(name, O_CREAT | O_RDWR);
      assert.ok(d > 0);
      await moduleClose();
      await mq.mq_unlink(name);
    } finally {
      if (saved === undefined) delete process.env.POSTBOX_SOCKET;
      else process.env.POSTBOX_SOCKET = saved;
      if (savedUrl !== undefined) process.env.POSTBOX_URL = savedUrl;
    }
  });

  test('a misspelt mq_attr field is EINVAL; a kernel with smaller messages sets the default size', async () => {
    // mq_maxmsgs made a queue of the default size without a word.
    await assert.rejects(
      mq.mq_open(qname(), O_CREAT | O_RDWR, 0o600, { mq_maxmsgs: 2 } as never),
      code('EINVAL'),
    );
    const small = await startTestKernel({ args: ['--max-message-size', '1000'] });
    const p = await connect({ socket: small.socket });
    try {
      const q = posix(p);
      // Default attributes were EINVAL there: 8192-byte messages were over the kernel's limit.
      const d = await q.mq_open('/small', O_CREAT | O_RDWR, 0o600);
      assert.equal((await q.mq_getattr(d)).mq_msgsize, 1000);
      await q.mq_close(d);
    } finally {
      await p.close();
      await small.stop();
    }
  });
});

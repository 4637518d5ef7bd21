/**
 * Pipes (src/faces/pipe.ts) through a real kernel: an anonymous pipe's two ends as Node
 * streams, and popen-style spawn() with real child processes. What a Unix pipe promises: the
 * reader sees every byte then end of file; a writer whose readers have all gone is told (EPIPE)
 * at once, not after it filled the pipe; the side that stops early does not crash the other.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { describe, test } from 'node:test';
import { connect, type PostboxError, type PostboxProcess } from '../src/client/mod.js';
import { mkfifo, openFifo, unlinkFifo } from '../src/faces/fifo.js';
import { pipe, pipeFromEnv, spawn } from '../src/faces/pipe.js';
import { PipeReader } from '../src/faces/pipe-end.js';
import { startKernel } from '../src/kernel/mod.js';
import { kernelForTests, startTestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';

const BOUND_MS = 10_000;

/** Unnamed mailboxes this process can see: an anonymous pipe is one. */
async function pipes(p: PostboxProcess): Promise<number[]> {
  return (await p.mailboxes()).filter((m) => m.name === null).map((m) => m.id);
}

/** Waits, within the bound, until no more than `n` unnamed mailboxes are left. */
async function pipesBackTo(p: PostboxProcess, n: number): Promise<void> {
  await within(
    (async () => {
      while ((await pipes(p)).length > n) await new Promise((r) => setImmediate(r));
    })(),
    BOUND_MS,
    'the pipe to go',
  );
}

describe('pipes', () => {
  const { join } = kernelForTests();

  test('every byte written arrives in order, then end of file', async () => {
    const p = await join();
    const { reader, writer } = await pipe(p);
    const chunks: Buffer[] = [];
    reader.on('data', (c: Buffer) => chunks.push(c));
    for (let i = 0; i < 500; i++) writer.write(`line ${i}\n`);
    writer.end();
    await within(once(reader, 'end'), BOUND_MS, 'end of file');
    const want = Array.from({ length: 500 }, (_, i) => `line ${i}\n`).join('');
    assert.equal(Buffer.concat(chunks).toString(), want);
  });

  test('a writer whose reader has gone gets EPIPE at once, not at end() or a full pipe', async () => {
    const p = await join();
    const { reader, writer } = await pipe(p);
    reader.destroy();
    await within(once(reader, 'close'), BOUND_MS, 'the reader to close');
    // Each write's callback is called before its send is answered (writes are pipelined), so
    // the failure comes as the stream's 'error'.
    const failed = once(writer, 'error');
    for (let i = 0; i < 5; i++) writer.write(`y${i}`);
    const [err] = (await within(failed, BOUND_MS, 'EPIPE')) as [Error & { code?: string }];
    assert.equal(err.code, 'EPIPE');
  });

  test('a writer waiting on a full pipe gets EPIPE when the last reader goes, in this process or another', async () => {
    for (const how of ['destroyed', 'its process closed'] as const) {
      const p = await join();
      const other = await join();
      const { id, passkey, reader, writer } = await pipe(p);
      // The reader is in another process for the second round: that process ends with its
      // handle open, as one that crashes would.
      let far = reader;
      if (how === 'its process closed') {
        reader.destroy();
        far = new PipeReader(await other.openMailbox(id, { role: 'read', passkey }));
      }
      const failed = once(writer, 'error');
      // 64 KiB fill the pipe; the sends after them wait in the kernel for room.
      for (let i = 0; i < 8; i++) writer.write(Buffer.alloc(32 * 1024, i));
      await within(
        (async () => {
          while ((await p.stat(id)).waitingSenders.length === 0) await new Promise((r) => setImmediate(r));
        })(),
        BOUND_MS,
        'a send to wait for room',
      );
      if (how === 'destroyed') far.destroy();
      else await other.close();
      const [err] = (await within(failed, BOUND_MS, `EPIPE once the reader is ${how}`)) as [
        Error & { code?: string },
      ];
      assert.equal(err.code, 'EPIPE');
      assert.deepEqual((await p.stat(id).catch(() => null))?.waitingSenders ?? [], []);
    }
  });

  test('a writer ended while its last write waits for room fails with EPIPE when the last reader goes, rather than finishing', async () => {
    const p = await join();
    const { id, reader, writer } = await pipe(p);
    // Two writes fill the pipe; the third is sent and waits in the kernel for room.
    for (let i = 0; i < 3; i++) await new Promise((r) => writer.write(Buffer.alloc(32 * 1024, i), r));
    await within(
      (async () => {
        while ((await p.stat(id)).waitingSenders.length === 0) await new Promise((r) => setImmediate(r));
      })(),
      BOUND_MS,
      'a send to wait for room',
    );
    const outcome = new Promise<string>((resolve) => {
      writer.once('finish', () => resolve('finish'));
      writer.once('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message));
    });
    writer.end();
    // end() reaches the writer's _final, which waits for the send in flight.
    await p.lookup(p.id);
    await new Promise((r) => setImmediate(r));
    reader.destroy();
    assert.equal(await within(outcome, BOUND_MS, "the writer's end"), 'EPIPE');
  });

  test('a full pipe stops the writer after about a pipe more, not after megabytes parked in the kernel', async () => {
    // The writer had 64 sends in flight whatever their size: with 64 KiB writes and nobody
    // reading, 63 of them (4 MiB) waited in the kernel before write() ever waited.
    const p = await join();
    const { id, reader, writer } = await pipe(p);
    for (let i = 0; i < 16; i++) writer.write(Buffer.alloc(64 * 1024, i));
    const full = await within(
      (async () => {
        for (;;) {
          const s = await p.stat(id);
          if (s.bytes === 64 * 1024 && s.waitingSenders.length > 0) return s;
          await new Promise((r) => setImmediate(r));
        }
      })(),
      BOUND_MS,
      'the pipe to fill and a send to wait',
    );
    await p.lookup(p.id); // a round trip: whatever the writer would send has been sent by now
    const after = await p.stat(id);
    assert.equal(full.waitingSenders.length, 1, 'one send waits for room');
    assert.equal(after.waitingSenders.length, 1, 'and no more are sent while it waits');
    assert.ok(writer.writableLength >= 14 * 64 * 1024, 'the rest waits in the writer, where write() sees it');
    writer.destroy();
    reader.destroy();
  });

  test('a reader that stops reading holds at most the write it was waiting for; what it never read goes to the next reader', async () => {
    // The read end took up to 64 KiB ahead of the application into its Readable buffer: a paused
    // reader let the writer put a second pipe's worth in before it waited, and a reader that
    // closed threw those bytes away, where a Unix reader leaves them in the pipe for the next.
    const p = await join();
    const other = await join();
    const { id, passkey, reader, writer } = await pipe(p);
    const next = new PipeReader(await other.openMailbox(id, { role: 'read', passkey }));
    writer.write('first');
    await within(once(reader, 'data'), BOUND_MS, 'the first write');
    reader.pause();
    const piece = 4096;
    const pieces = 64;
    for (let i = 0; i < pieces; i++) writer.write(Buffer.alloc(piece, i));
    await within(
      (async () => {
        while ((await p.stat(id)).waitingSenders.length === 0) await new Promise((r) => setImmediate(r));
      })(),
      BOUND_MS,
      'the pipe to fill and a send to wait',
    );
    await p.lookup(p.id); // a round trip: whatever the reader would take has been delivered by now
    await new Promise((r) => setImmediate(r));
    const held = reader.readableLength;
    assert.ok(held <= piece, `the paused reader holds ${held} bytes, not more than one write`);
    assert.equal((await p.stat(id)).bytes, 64 * 1024, 'the pipe holds 64 KiB unread');
    reader.destroy();
    await within(once(reader, 'close'), BOUND_MS, 'the reader to close');
    writer.end();
    let got = 0;
    next.on('data', (c: Buffer) => {
      got += c.length;
    });
    await within(once(next, 'end'), BOUND_MS, 'end of file at the next reader');
    assert.equal(got + held, piece * pieces, 'every byte the first reader did not hold went to the next');
  });

  test("a pipe is its creator's and its passkey's: another process that knows only its id may neither open it nor send to it", async () => {
    const p = await join();
    const stranger = await join();
    const { id, passkey, reader, writer } = await pipe(p);
    assert.match(passkey, /^[0-9a-f]{32}$/);
    // Ids are small numbers counted from 1: knowing one must not be enough to read or write.
    for (const role of ['read', 'write', 'both'] as const)
      await assert.rejects(stranger.openMailbox(id, { role }), {
        code: 'EACCES',
        message: /with its passkey/,
      });
    await assert.rejects(stranger.sendTo(id, 'forged'), { code: 'EACCES' });
    await assert.rejects(
      stranger.openMailbox(id, { role: 'read', passkey: 'f'.repeat(32) }),
      (e: PostboxError) => {
        assert.equal(e.code, 'EACCES');
        assert.match(e.message, /the passkey does not open it/);
        return true;
      },
    );
    await assert.rejects(
      pipeFromEnv(stranger, { POSTBOX_PIPE: `${id}:r` }),
      (e: PostboxError) => e.code === 'EACCES' && /without its passkey/.test(e.message),
    );
    // Neither a stat nor an open with the passkey tells it to anyone else.
    assert.equal('passkey' in (await stranger.stat(id)), false);
    const end = await pipeFromEnv(stranger, {
      POSTBOX_PIPE: `${id}:r:${p.conn.info.kernel.pid}:${p.conn.info.kernel.instance ?? ''}:${passkey}`,
    });
    assert.ok(end instanceof PipeReader);
    assert.equal(end.mailbox.info.passkey, undefined);
    reader.destroy();
    writer.end('to the one handed the passkey\n');
    let text = '';
    for await (const chunk of end) text += String(chunk);
    assert.equal(text, 'to the one handed the passkey\n');
    await stranger.close();
  });

  test("an anonymous pipe whose creator has gone is its holders': another process may not grant itself the pipe, change its mode or delete it", async () => {
    const creator = await join();
    const holder = await join();
    const stranger = await join();
    const { id, passkey } = await pipe(creator);
    const end = await holder.openMailbox(id, { role: 'read', passkey });
    await holder.openMailbox(id, { role: 'write' });
    await creator.close();
    await within(
      (async () => {
        while ((await holder.stat(id)).owner !== null) await new Promise((r) => setImmediate(r));
      })(),
      BOUND_MS,
      'the pipe to be unowned',
    );
    // A handle of role 'none' needs no right; what an owner may do is what matters.
    const h = await stranger.openMailbox(id, { role: 'none' });
    for (const attempt of [() => h.grant(stranger.id), () => h.chmod(0o666), () => h.delete()])
      await assert.rejects(
        attempt(),
        (e: PostboxError) => e.code === 'EACCES' && /handed to/.test(e.message),
      );
    await assert.rejects(stranger.openMailbox(id, { role: 'read' }), { code: 'EACCES' });
    // Its group may act as its owner, as anyone may on another unowned mailbox.
    await end.chmod(0o600);
    assert.equal((await holder.stat(id)).mode, 0o600);
    await end.delete();
    await stranger.close();
    await holder.close();
  });

  test('a passkey that is not a string, or a create asking for one with a value that is not true or false, is EINVAL', async () => {
    const p = await join();
    const { id, reader, writer } = await pipe(p);
    await assert.rejects(p.conn.call('open', { id, passkey: 7 }), {
      code: 'EINVAL',
      message: /passkey must be a string/,
    });
    await assert.rejects(p.conn.call('create', { name: 'pk-bad', passkey: 'yes' }), {
      code: 'EINVAL',
      message: /passkey must be true or false/,
    });
    assert.equal(
      (await p.mailboxes()).some((m) => m.name === 'pk-bad'),
      false,
    );
    await assert.rejects(p.openMailbox(id, { passkey: 7 as unknown as string }), { code: 'EINVAL' });
    await assert.rejects(p.openMailbox('pk-bad', { create: true, passkey: 'ab' }), { code: 'EINVAL' });
    reader.destroy();
    writer.destroy();
  });

  test('a write larger than a message is split, not refused: every byte arrives once, in order', async () => {
    const p = await join();
    const { reader, writer } = await pipe(p);
    const chunks: Buffer[] = [];
    reader.on('data', (c: Buffer) => chunks.push(c));
    const big = Buffer.alloc(200_000);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    // Before, the 200,000-byte write failed (EMSGSIZE) while the writes around it went through:
    // the reader saw a clean end of file with the middle missing.
    writer.write('head');
    writer.write(big);
    writer.end('tail');
    await within(once(reader, 'end'), BOUND_MS, 'end of file');
    assert.ok(Buffer.concat(chunks).equals(Buffer.concat([Buffer.from('head'), big, Buffer.from('tail')])));
  });

  test('a write of exactly a message is one message, and one byte more is two: no empty message between', async () => {
    const p = await join();
    const { reader, writer } = await pipe(p);
    writer.write(Buffer.alloc(64 * 1024, 1));
    writer.write(Buffer.alloc(64 * 1024 + 1, 2));
    writer.end();
    const sizes: number[] = [];
    await within(
      (async () => {
        for await (const m of reader.messages()) sizes.push(m.data.length);
      })(),
      BOUND_MS,
      'end of file',
    );
    assert.deepEqual(sizes, [64 * 1024, 64 * 1024, 1]);
    reader.destroy();
  });

  test("under a kernel's message limit smaller than a pipe, a write is split at that limit, not refused", async () => {
    // The writer split at 64 KiB whatever the limit: with --max-message-size 1000 a write of
    // 5000 bytes was refused (EMSGSIZE) and the reader saw the stream end without it.
    const k = await startTestKernel({ args: ['--max-message-size', '1000'] });
    const p = await connect({ socket: k.socket });
    try {
      const { reader, writer } = await pipe(p);
      let failed: Error | null = null;
      writer.on('error', (err) => {
        failed = err;
      });
      const chunks: Buffer[] = [];
      reader.on('data', (c: Buffer) => chunks.push(c));
      const big = Buffer.alloc(5000);
      for (let i = 0; i < big.length; i++) big[i] = i % 251;
      writer.write(big);
      writer.end('tail');
      await within(once(reader, 'end'), BOUND_MS, 'end of file');
      assert.equal(failed, null);
      assert.ok(Buffer.concat(chunks).equals(Buffer.concat([big, Buffer.from('tail')])));
    } finally {
      await p.close();
      await k.stop();
    }
  });

  test("openFifo 'w' waits for a reader, as open(2) does; its signal stops the wait", async () => {
    const p = await join();
    const other = await join();
    await mkfifo(p, 'pipe-test-wait');
    try {
      let opened = false;
      const writing = openFifo(p, 'pipe-test-wait', 'w').then((w) => {
        opened = true;
        return w;
      });
      // The write end is open in the kernel, and the open has not returned: nobody reads yet.
      await within(
        (async () => {
          while ((await p.stat('pipe-test-wait')).writers === 0) await new Promise((r) => setImmediate(r));
        })(),
        BOUND_MS,
        'the write end to open',
      );
      // One more round trip: an open that did not wait would have returned by now.
      await p.stat('pipe-test-wait');
      assert.equal(opened, false);
      const reader = await openFifo(other, 'pipe-test-wait', 'r');
      const writer = await within(writing, BOUND_MS, 'the writer to find its reader');
      const chunks: Buffer[] = [];
      reader.on('data', (c: Buffer) => chunks.push(c));
      writer.end('met\n');
      await within(once(reader, 'end'), BOUND_MS, 'end of file');
      assert.equal(Buffer.concat(chunks).toString(), 'met\n');

      // With nobody reading, an aborted wait fails and leaves no write end open.
      const ac = new AbortController();
      const stopped = openFifo(p, 'pipe-test-wait', 'w', { signal: ac.signal });
      ac.abort();
      await assert.rejects(stopped, { code: 'ECANCELED' });
      await within(
        (async () => {
          while ((await p.stat('pipe-test-wait')).writers > 0) await new Promise((r) => setImmediate(r));
        })(),
        BOUND_MS,
        'the aborted write end to close',
      );
    } finally {
      await unlinkFifo(p, 'pipe-test-wait');
      await other.close();
    }
  });

  test('openFifo checks the FIFO’s mode at the open, as open(2) does: a writer it refuses fails at once, not once a reader came', async () => {
    // The write end was opened unchecked and waited for a reader; only its first write was
    // refused (EACCES), and the reader that had come met end of file.
    const owner = await join();
    const other = await join();
    await mkfifo(owner, 'pipe-test-mode', 0o644);
    try {
      await assert.rejects(within(openFifo(other, 'pipe-test-mode', 'w'), BOUND_MS, 'the refused open'), {
        code: 'EACCES',
      });
      const reader = await openFifo(other, 'pipe-test-mode', 'r');
      reader.destroy();
      const handle = await owner.openMailbox('pipe-test-mode', { role: 'none' });
      await handle.chmod(0o622);
      handle.close();
      await assert.rejects(openFifo(other, 'pipe-test-mode', 'r'), { code: 'EACCES' });
      assert.equal((await owner.stat('pipe-test-mode')).writers, 0, 'no write end was left open');
    } finally {
      await unlinkFifo(owner, 'pipe-test-mode');
      await other.close();
    }
  });

  test("openFifo 'w' aborted while the kernel's answer to its wait is on its way fails with ECANCELED, and leaves no write end", async () => {
    // The signal was looked at before the wait was asked for and listened to after its answer
    // came: an abort in between was never heard, and the open waited for good, the kernel
    // keeping the FIFO's write end and the wait until the process ended.
    const p = await join();
    await mkfifo(p, 'pipe-test-between');
    try {
      const ac = new AbortController();
      const conn = p.conn;
      const call = conn.call.bind(conn);
      conn.call = ((method: string, ...rest: unknown[]) => {
        const answer = (call as (m: string, ...r: unknown[]) => Promise<unknown>)(method, ...rest);
        if (method === 'awaitReader') ac.abort();
        return answer;
      }) as typeof conn.call;
      const outcome = openFifo(p, 'pipe-test-between', 'w', { signal: ac.signal }).then(
        () => 'opened',
        (e: PostboxError) => e.code,
      );
      assert.equal(await within(outcome, BOUND_MS, 'the aborted open to settle'), 'ECANCELED');
      conn.call = call;
      await within(
        (async () => {
          while ((await p.stat('pipe-test-between')).writers > 0) await new Promise((r) => setImmediate(r));
        })(),
        BOUND_MS,
        'the aborted write end to close',
      );
      assert.deepEqual((await p.processes()).find((q) => q.id === p.id)?.blockedOn, []);
    } finally {
      await unlinkFifo(p, 'pipe-test-between');
    }
  });

  test("openFifo 'w' already waiting for a reader: an abort fails it with ECANCELED, and so does its process closing, with no write end left", async () => {
    const p = await join();
    await mkfifo(p, 'pipe-test-stop');
    try {
      for (const how of ['aborted', 'closed'] as const) {
        const waiter = await join();
        const ac = new AbortController();
        const waiting = openFifo(waiter, 'pipe-test-stop', 'w', { signal: ac.signal });
        const outcome = waiting.then(
          () => 'opened',
          (e: PostboxError) => e.code,
        );
        await within(
          (async () => {
            while (((await p.processes()).find((q) => q.id === waiter.id)?.blockedOn ?? []).length === 0)
              await new Promise((r) => setImmediate(r));
          })(),
          BOUND_MS,
          'the writer to wait for a reader',
        );
        if (how === 'aborted') ac.abort();
        else await waiter.close();
        const code = await within(outcome, BOUND_MS, `the open to fail once ${how}`);
        assert.notEqual(code, 'opened');
        if (how === 'aborted') assert.equal(code, 'ECANCELED');
        await within(
          (async () => {
            while ((await p.stat('pipe-test-stop')).writers > 0) await new Promise((r) => setImmediate(r));
          })(),
          BOUND_MS,
          'no write end left open',
        );
        await waiter.close();
      }
    } finally {
      await unlinkFifo(p, 'pipe-test-stop');
    }
  });

  test('a writer waiting for a reader is told when the FIFO is deleted, and one that leaves is forgotten', async () => {
    const p = await join();
    const other = await join();
    await mkfifo(p, 'pipe-test-gone');
    const waiting = openFifo(other, 'pipe-test-gone', 'w');
    // The write end opens before the writer asks to wait for a reader: wait for the asking itself,
    // which is what ps shows.
    const blockedOn = async (): Promise<string[]> =>
      (await p.processes()).find((q) => q.id === other.id)?.blockedOn ?? [];
    await within(
      (async () => {
        while ((await blockedOn()).length === 0) await new Promise((r) => setImmediate(r));
      })(),
      BOUND_MS,
      'the writer to wait for a reader',
    );
    assert.deepEqual(await blockedOn(), ["reader mailbox 'pipe-test-gone'"], 'ps shows what it waits for');
    const fifo = await p.openMailbox('pipe-test-gone', { role: 'none' });
    await fifo.delete();
    await within(
      assert.rejects(waiting, (e: PostboxError) => e.code === 'ENOENT' || e.code === 'EIDRM'),
      BOUND_MS,
      'the waiting writer to fail',
    );

    // A writer that leaves while it waits: the reader who comes later opens as usual, and the
    // kernel has nobody left to tell.
    await mkfifo(p, 'pipe-test-left');
    const leaver = await join();
    void openFifo(leaver, 'pipe-test-left', 'w').catch(() => {});
    await within(
      (async () => {
        while ((await p.stat('pipe-test-left')).writers === 0) await new Promise((r) => setImmediate(r));
      })(),
      BOUND_MS,
      'the write end to open',
    );
    await leaver.close();
    const reader = await openFifo(p, 'pipe-test-left', 'r');
    const writer = await within(openFifo(other, 'pipe-test-left', 'w'), BOUND_MS, 'a writer with a reader');
    writer.end('still here\n');
    const chunks: Buffer[] = [];
    reader.on('data', (c: Buffer) => chunks.push(c));
    await within(once(reader, 'end'), BOUND_MS, 'end of file');
    assert.equal(Buffer.concat(chunks).toString(), 'still here\n');
    await unlinkFifo(p, 'pipe-test-left');
    await other.close();
  });

  test("spawn 'r': a reader that stops early ends the child's output, and this process carries on", async () => {
    const p = await join();
    const before = await pipes(p);
    // `yes` writes for ever, until its output is closed.
    const child = await spawn(p, 'yes', ['postbox'], 'r');
    for await (const chunk of child.reader!) {
      assert.ok((chunk as Buffer).length > 0);
      break;
    }
    const { code, signal } = await within(child.wait(), BOUND_MS, 'the child to exit');
    assert.ok(code !== 0 || signal !== null, 'the child met a closed pipe');
    await pipesBackTo(p, before.length);
  });

  test("spawn 'w': once the child has exited, writes fail with EPIPE instead of filling the pipe and waiting", async () => {
    const p = await join();
    const child = await spawn(
      p,
      process.execPath,
      ['-e', "process.stdin.once('data', () => process.exit(0))"],
      'w',
    );
    const failed = once(child.writer!, 'error');
    child.writer!.write('first\n');
    assert.equal((await within(child.wait(), BOUND_MS, 'the child to exit')).code, 0);
    // More than the pipe holds: without EPIPE the writer would wait for a reader forever.
    for (let i = 0; i < 20_000 && !child.writer!.destroyed; i++) {
      if (!child.writer!.write(`line ${i}\n`)) await Promise.race([once(child.writer!, 'drain'), failed]);
    }
    const [err] = (await within(failed, BOUND_MS, 'EPIPE')) as [Error & { code?: string }];
    assert.equal(err.code, 'EPIPE');
  });

  test("spawn 'w': a child that closes its standard input and runs on makes the writes fail with EPIPE", async () => {
    // Not the exit this time: only the child's end of the OS pipe tells, when a write meets it.
    const p = await join();
    const child = await spawn(
      p,
      process.execPath,
      ['-e', "require('node:fs').closeSync(0); setInterval(() => {}, 60_000)"],
      'w',
    );
    try {
      const failed = once(child.writer!, 'error');
      for (let i = 0; i < 20_000 && !child.writer!.destroyed; i++) {
        if (!child.writer!.write(`line ${i}\n`)) await Promise.race([once(child.writer!, 'drain'), failed]);
      }
      const [err] = (await within(failed, BOUND_MS, 'EPIPE')) as [Error & { code?: string }];
      assert.equal(err.code, 'EPIPE');
      assert.equal(child.child.exitCode, null, 'the child still runs');
    } finally {
      child.child.kill('SIGKILL');
      await within(child.wait(), BOUND_MS, 'the child to exit');
    }
  });

  test('spawn of a command that does not exist: spawn() itself fails with ENOENT, and its pipe is not left behind', async () => {
    // It used to resolve, leave the reader to fail with ERR_STREAM_PREMATURE_CLOSE, and end the
    // process with an unhandled rejection unless wait() had been called first.
    const p = await join();
    const before = await pipes(p);
    for (const mode of ['r', 'w'] as const) {
      await assert.rejects(spawn(p, 'postbox-test-no-such-command', [], mode as 'r'), (e: PostboxError) => {
        assert.equal(e.code, 'ENOENT');
        assert.match(e.message, /cannot run 'postbox-test-no-such-command'/);
        return true;
      });
    }
    await pipesBackTo(p, before.length);
  });

  test("spawn's bad arguments are EINVAL naming them, not Node's TypeError, and leave no pipe behind", async () => {
    // Node checked them only once the pipe was made: a TypeError, and the pipe's mailbox stayed.
    const p = await join();
    try {
      const before = (await pipes(p)).length;
      const bad: [() => Promise<unknown>, RegExp][] = [
        [
          () => spawn(p, 'ls', '-l' as unknown as string[], 'r'),
          /args must be an array of strings .*the string '-l'/,
        ],
        [() => spawn(p, 5 as unknown as string, [], 'r'), /the command must be a non-empty string, not 5/],
        [() => spawn(p, 'ls', [], 'r', { cwd: 5 as unknown as string }), /cannot run 'ls': .*options\.cwd/],
        [() => spawn(p, 'ls', ['a\0b'], 'w', { handOver: true }), /cannot run 'ls': .*null bytes/],
        [() => spawn(p, 'ls', [], 'x' as 'r'), /mode must be 'r' or 'w', not the string 'x'/],
      ];
      for (const [run, message] of bad)
        await assert.rejects(run(), (e: PostboxError) => e.code === 'EINVAL' && message.test(e.message));
      await pipesBackTo(p, before);
    } finally {
      await p.close();
    }
  });

  test('spawn with handOver: a child that joins a kernel started again with the same pid is refused the pipe, not given what has its id there', async () => {
    // POSTBOX_PIPE named the kernel by its pid alone, and a kernel started again (a container's
    // first process, kernels a program runs with startKernel) often has the pid of the one before:
    // a child that joined the new one opened whatever had the pipe's id there and wrote into it,
    // and exited 0. Two kernels in this one process have the same pid.
    const dir = mkdtempSync(joinPath(tmpdir(), 'pbt-pid-'));
    const first = await startKernel({ socket: joinPath(dir, 'first.sock') });
    const again = await startKernel({ socket: joinPath(dir, 'again.sock') });
    const parent = await connect({ socket: first.socketPath });
    const stranger = await connect({ socket: again.socketPath });
    try {
      // Mailboxes in the new kernel with the ids a pipe of the old one may have.
      for (let i = 0; i < 20; i++) await stranger.createMailbox(`stranger-${i}`, { mode: 0o666 });
      const client = new URL('../src/client/mod.js', import.meta.url).href;
      const face = new URL('../src/faces/pipe.js', import.meta.url).href;
      const script = `
        import { connect } from ${JSON.stringify(client)};
        import { pipeFromEnv } from ${JSON.stringify(face)};
        const me = await connect({ socket: process.env.AGAIN });
        try {
          const w = await pipeFromEnv(me);
          await new Promise((r) => w.end('written\\n', r));
        } catch (err) {
          console.error(err.code + ': ' + err.message);
          process.exitCode = 3;
        }
        await me.close();`;
      const child = await spawn(parent, process.execPath, ['--input-type=module', '-e', script], 'r', {
        handOver: true,
        env: { ...process.env, AGAIN: again.socketPath },
      });
      let text = '';
      child.reader.setEncoding('utf8');
      for await (const chunk of child.reader) text += chunk;
      assert.equal(text, '', 'nothing came through the pipe');
      assert.deepEqual(await child.wait(), { code: 3, signal: null });
      assert.ok(
        (await stranger.mailboxes()).every((m) => m.count === 0),
        "nothing went into the new kernel's mailboxes",
      );
    } finally {
      await stranger.close();
      await parent.close();
      await again.close();
      await first.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("spawn with handOver: the child joins the parent's kernel and writes its end itself; a pipe of another kernel is refused", async () => {
    // POSTBOX_PIPE carried only the pipe's id: a child whose environment led it to another
    // kernel opened whatever had that id there, and wrote into a stranger's mailbox.
    const p = await join();
    const other = await startTestKernel();
    const stranger = await connect({ socket: other.socket });
    try {
      // Mailboxes in the other kernel with the ids a pipe of this one may have.
      for (let i = 0; i < 20; i++) await stranger.createMailbox(`stranger-${i}`, { mode: 0o666 });
      const client = new URL('../src/client/mod.js', import.meta.url).href;
      const face = new URL('../src/faces/pipe.js', import.meta.url).href;
      const script = `
        import { connect } from ${JSON.stringify(client)};
        import { pipeFromEnv } from ${JSON.stringify(face)};
        const me = await connect();
        const w = await pipeFromEnv(me);
        for (let i = 0; i < 3; i++) w.write('line ' + i + '\\n');
        await new Promise((r) => w.end(r));
        await me.close();`;
      // Its environment names the other kernel, as a parent's may when it joined by options.
      const child = await spawn(p, process.execPath, ['--input-type=module', '-e', script], 'r', {
        handOver: true,
        env: { ...process.env, POSTBOX_SOCKET: other.socket, POSTBOX_URL: undefined },
      });
      let text = '';
      child.reader.setEncoding('utf8');
      for await (const chunk of child.reader) text += chunk;
      assert.equal(text, 'line 0\nline 1\nline 2\n');
      assert.deepEqual(await child.wait(), { code: 0, signal: null });
      assert.ok(
        (await stranger.mailboxes()).every((m) => m.count === 0),
        'nothing went to the other kernel',
      );
      // A pipe handed over by another kernel: refused, whatever has its id here.
      const mine = await pipe(p);
      await assert.rejects(
        pipeFromEnv(stranger, { POSTBOX_PIPE: `${mine.id}:w:${p.conn.info.kernel.pid}` }),
        (e: PostboxError) =>
          e.code === 'EINVAL' && /of the kernel with pid \d+, but this process joined/.test(e.message),
      );
      mine.reader.destroy();
      mine.writer.destroy();
    } finally {
      await stranger.close();
      await other.stop();
    }
  });

  test('spawn with handOver over TCP: the child is given the token the parent joined with', async () => {
    // The child was given POSTBOX_URL only: a parent that joined with connect({ token }) rather
    // than $POSTBOX_TOKEN had its child refused ("a token is required over TCP").
    const k = await startTestKernel({ tcp: true });
    const p = await connect({ url: k.tcpUrl!, token: k.token });
    try {
      const client = new URL('../src/client/mod.js', import.meta.url).href;
      const face = new URL('../src/faces/pipe.js', import.meta.url).href;
      const script = `
        import { connect } from ${JSON.stringify(client)};
        import { pipeFromEnv } from ${JSON.stringify(face)};
        const me = await connect();
        const w = await pipeFromEnv(me);
        w.write(me.conn.transport + '\\n');
        await new Promise((r) => w.end(r));
        await me.close();`;
      const child = await spawn(p, process.execPath, ['--input-type=module', '-e', script], 'r', {
        handOver: true,
        env: { ...process.env, POSTBOX_TOKEN: undefined, POSTBOX_URL: undefined, POSTBOX_SOCKET: undefined },
      });
      let text = '';
      child.reader.setEncoding('utf8');
      for await (const chunk of child.reader) text += chunk;
      assert.equal(text, 'tcp\n');
      assert.deepEqual(await child.wait(), { code: 0, signal: null });
    } finally {
      await p.close();
      await k.stop();
    }
  });

  test("spawn 'r' with handOver: end of file when the child closes its end, not when it exits; a child that never opens its end ends the pipe by exiting", async () => {
    // This process held a write end of its own until the child exited: a child that closed its
    // end and went on working left the reader waiting for its exit, where popen's fgets gets
    // end of file at once.
    const p = await join();
    const hold = await p.createMailbox('pipe-test-hold', { system: true, mode: 0o666 });
    const client = new URL('../src/client/mod.js', import.meta.url).href;
    const face = new URL('../src/faces/pipe.js', import.meta.url).href;
    const script = `
      import { connect } from ${JSON.stringify(client)};
      import { pipeFromEnv } from ${JSON.stringify(face)};
      const me = await connect();
      const w = await pipeFromEnv(me);
      await new Promise((r) => w.end('done\\n', r));
      // Goes on working until the parent says: the pipe must have ended before.
      await (await me.openMailbox('pipe-test-hold')).receive();
      await me.close();`;
    const child = await spawn(p, process.execPath, ['--input-type=module', '-e', script], 'r', {
      handOver: true,
    });
    let text = '';
    child.reader.setEncoding('utf8');
    await within(
      (async () => {
        for await (const chunk of child.reader) text += chunk;
      })(),
      BOUND_MS,
      'end of file while the child still runs',
    );
    assert.equal(text, 'done\n');
    assert.equal(child.child.exitCode, null, 'the child is still running');
    await hold.send('go');
    assert.deepEqual(await within(child.wait(), BOUND_MS, 'the child to exit'), { code: 0, signal: null });
    await hold.delete();

    const silent = await spawn(p, process.execPath, ['-e', ''], 'r', { handOver: true });
    let got = 0;
    await within(
      (async () => {
        for await (const chunk of silent.reader) got += (chunk as Buffer).length;
      })(),
      BOUND_MS,
      'end of file once the child that never opened its end exits',
    );
    assert.equal(got, 0);
  });

  test("spawn 'w' with handOver: what is written before the child opens its end waits for it, not EPIPE", async () => {
    const p = await join();
    const hold = await p.createMailbox('pipe-test-hold-early', { system: true, mode: 0o666 });
    const got = await p.createMailbox('pipe-test-got-early', { system: true, mode: 0o666 });
    const client = new URL('../src/client/mod.js', import.meta.url).href;
    const face = new URL('../src/faces/pipe.js', import.meta.url).href;
    const script = `
      import { connect } from ${JSON.stringify(client)};
      import { pipeFromEnv } from ${JSON.stringify(face)};
      const me = await connect();
      // Opens its end only when the parent says, after the parent has written.
      await (await me.openMailbox('pipe-test-hold-early')).receive();
      const r = await pipeFromEnv(me);
      r.setEncoding('utf8');
      let text = '';
      for await (const chunk of r) text += chunk;
      await (await me.openMailbox('pipe-test-got-early')).send(text);
      await me.close();`;
    const child = await spawn(p, process.execPath, ['--input-type=module', '-e', script], 'w', {
      handOver: true,
    });
    try {
      let failed: Error | null = null;
      child.writer.on('error', (err) => {
        failed = err;
      });
      // Round trips: the kernel has answered spawn()'s wait for the child's reader by now, and
      // a parent that let go of its own read end at that answer has done so.
      await p.stat(child.writer.mailbox.id);
      await p.stat(child.writer.mailbox.id);
      await new Promise<void>((resolve) => child.writer.write('early\n', () => resolve()));
      await hold.send('go');
      child.writer.end('late\n');
      const text = await within(got.receive(), BOUND_MS, "the child's text");
      assert.equal(failed, null);
      assert.equal(text?.body, 'early\nlate\n');
      assert.deepEqual(await within(child.wait(), BOUND_MS, 'the child to exit'), { code: 0, signal: null });
    } finally {
      if (child.child.exitCode === null) child.child.kill();
      await hold.delete();
      await got.delete();
    }
  });

  test("spawn 'w' with handOver: a child that closes its read end and works on fails the writer with EPIPE then, not at its exit", async () => {
    // This process held a read end of its own until the child exited: writes after the child
    // closed its end were taken into the pipe, then waited for room, until the child's exit,
    // where popen's writer gets EPIPE (SIGPIPE) at once.
    const p = await join();
    const hold = await p.createMailbox('pipe-test-hold-w', { system: true, mode: 0o666 });
    const closed = await p.createMailbox('pipe-test-closed-w', { system: true, mode: 0o666 });
    const client = new URL('../src/client/mod.js', import.meta.url).href;
    const face = new URL('../src/faces/pipe.js', import.meta.url).href;
    const script = `
      import { connect } from ${JSON.stringify(client)};
      import { pipeFromEnv } from ${JSON.stringify(face)};
      const me = await connect();
      const r = await pipeFromEnv(me);
      r.setEncoding('utf8');
      let line = '';
      for await (const chunk of r) { line += chunk; if (line.includes('\\n')) break; }
      await (await me.openMailbox('pipe-test-closed-w')).send(line);
      // Goes on working until the parent says: the writer must have failed before.
      await (await me.openMailbox('pipe-test-hold-w')).receive();
      await me.close();`;
    const child = await spawn(p, process.execPath, ['--input-type=module', '-e', script], 'w', {
      handOver: true,
    });
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => child.writer.once('error', resolve));
    child.writer.write('first\n');
    assert.equal((await within(closed.receive(), BOUND_MS, "the child's first line"))?.body, 'first\n');
    // The child has closed its read end (`break` closes the reader before the send above).
    const error = await within(
      (async () => {
        for (let i = 0; i < 1000 && !child.writer.destroyed; i++)
          await new Promise<void>((resolve) => child.writer.write(`more ${i}\n`, () => resolve()));
        return failed;
      })(),
      BOUND_MS,
      'EPIPE while the child still runs',
    );
    assert.equal(error.code, 'EPIPE');
    assert.equal(child.child.exitCode, null, 'the child is still running');
    await hold.send('go');
    assert.deepEqual(await within(child.wait(), BOUND_MS, 'the child to exit'), { code: 0, signal: null });
    // Readers to count beyond are a whole number.
    for (const beyond of [-1, 0.5, '1'])
      await assert.rejects(
        p.conn.call('awaitReader', { id: hold.id, beyond }),
        (e: PostboxError) => e.code === 'EINVAL',
      );
    await hold.delete();
    await closed.delete();
  });

  test('FIFOs by name: bad arguments are EINVAL, and an ordinary mailbox is neither opened nor unlinked as one', async () => {
    const p = await join();
    const einval = (e: PostboxError): boolean => e.code === 'EINVAL';
    await assert.rejects(mkfifo(p, undefined as never), einval);
    await assert.rejects(mkfifo(p, ''), einval);
    await mkfifo(p, 'pipe-test-fifo');
    await assert.rejects(openFifo(p, 'pipe-test-fifo', 'x' as never), einval);
    const plain = await p.createMailbox('pipe-test-plain');
    await assert.rejects(openFifo(p, 'pipe-test-plain', 'r'), einval);
    await assert.rejects(unlinkFifo(p, 'pipe-test-plain'), (e: PostboxError) => e.code === 'ENOENT');
    assert.ok(
      (await p.mailboxes()).some((m) => m.name === 'pipe-test-plain'),
      'the mailbox is still there',
    );
    // The FIFO itself: written, read, unlinked.
    const reader = await openFifo(p, 'pipe-test-fifo', 'r');
    const writer = await openFifo(p, 'pipe-test-fifo', 'w');
    writer.end('through the fifo\n');
    const chunks: Buffer[] = [];
    reader.on('data', (c: Buffer) => chunks.push(c));
    await within(once(reader, 'end'), BOUND_MS, 'end of file');
    assert.equal(Buffer.concat(chunks).toString(), 'through the fifo\n');
    await unlinkFifo(p, 'pipe-test-fifo');
    await plain.delete();
  });
});

/**
 * A send that would not wait (nowait, onFull drop / replace-oldest) to a rendezvous (capacity 0)
 * passes only to a receiver waiting then. If that receiver is an iterator that gives the message
 * back unread (its loop ends, its process dies), the send must not turn into one that waits: with
 * no other receiver waiting it fails with EAGAIN, as it would have had it come then; with one, it
 * meets it. Against a real kernel process, the receiver in this process or killed with SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const READER = fileURLToPath(new URL('./fixtures/stopped-batch-reader.js', import.meta.url));

describe('a rendezvous send that would not wait, given back by its receiver', { timeout: 60_000 }, () => {
  let kernel: TestKernel;
  let sender: PostboxProcess;
  let receiver: PostboxProcess;

  before(async () => {
    kernel = await startTestKernel();
    sender = await connect({ socket: kernel.socket });
    receiver = await connect({ socket: kernel.socket });
  });
  after(async () => {
    await sender.close();
    await receiver.close();
    assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
  });

  /** Waits until the kernel has the message in a receiver's hands, or has let it go. */
  const inflight = (box: Mailbox<string>, n: number, what: string) =>
    until(
      () => box.stat(),
      (s) => s.inflight === n,
      10_000,
      what,
    );

  /** A rendezvous mailbox of the receiver's, the sender's handle on it, and an iterator waiting on it. */
  const iteratorWaiting = async () => {
    const mine = await receiver.createMailbox<string>(null, { capacity: 0, mode: 0o666 });
    const out = await sender.openMailbox<string>(mine.id);
    const it = mine.messages({ prefetch: 4 });
    await until(
      () => mine.stat(),
      (s) => s.waitingReceivers.length === 1,
      10_000,
      'the iterator to wait',
    );
    return { mine, out, it };
  };

  for (const options of [{ nowait: true }, { onFull: 'drop' }, { onFull: 'replace-oldest' }] as const) {
    test(`${JSON.stringify(options)}: the loop ends without taking it, so the send fails with EAGAIN`, async () => {
      const { mine, out, it } = await iteratorWaiting();
      const sent = out.send('m', options);
      sent.catch(() => {});
      await inflight(mine, 1, 'the message pushed to the iterator');
      await it.return();
      await inflight(mine, 0, 'the message given back');
      const s = await mine.stat();
      assert.deepEqual(s.waitingSenders, [], 'the send does not wait for a receiver');
      await assert.rejects(sent, { code: 'EAGAIN' });
      assert.equal(s.count, 0);
      // Nothing of it is left to be received later.
      assert.equal(await mine.receive({ nowait: true }), null);
      await mine.delete();
    });
  }

  test('another receiver waiting when it comes back meets it: the send completes as received by it', async () => {
    const { mine, out, it } = await iteratorWaiting();
    const sent = out.send('m', { nowait: true });
    await inflight(mine, 1, 'the message pushed to the iterator');
    const other = await connect({ socket: kernel.socket });
    try {
      const theirs = await other.openMailbox<string>(mine.id);
      const got = theirs.receive();
      await until(
        () => mine.stat(),
        (s) => s.waitingReceivers.length === 2,
        10_000,
        'the second receiver to wait',
      );
      await it.return();
      assert.equal((await got)?.body, 'm');
      const r = await sent;
      assert.equal(r.outcome, 'received');
      assert.equal(r.receiver, other.id);
    } finally {
      await other.close();
    }
    await mine.delete();
  });

  test('its receiver killed (SIGKILL) holding it unread: the send fails with EAGAIN', async () => {
    const mine = await receiver.createMailbox<string>(null, { capacity: 0, mode: 0o666 });
    const out = await sender.openMailbox<string>(mine.id);
    const child = spawn(process.execPath, [READER, String(mine.id)], {
      env: kernel.env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    try {
      await within(new ChildOutput(child).line('ready'), 20_000, 'the reader to be ready');
      // Stopped, it cannot read what it is pushed, let alone take it.
      await until(
        async () => readFileSync(`/proc/${child.pid}/stat`, 'utf8'),
        (st) => /^\d+ \(.*\) T /.test(st),
        10_000,
        'the reader to be stopped',
      );
      const sent = out.send('m', { nowait: true });
      sent.catch(() => {});
      await inflight(mine, 1, 'the message pushed to the stopped reader');
      child.kill('SIGKILL');
      await exited;
      await inflight(mine, 0, 'the message given back');
      assert.deepEqual((await mine.stat()).waitingSenders, [], 'the send does not wait for a receiver');
      await assert.rejects(sent, { code: 'EAGAIN' });
      assert.equal(await mine.receive({ nowait: true }), null);
    } finally {
      child.kill('SIGKILL');
    }
    await mine.delete();
  });
});

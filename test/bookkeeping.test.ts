/**
 * The kernel's bookkeeping after an operation ends: what a finished send, receive or mailbox
 * leaves behind must be nothing. Each test pins one line that a mutation audit found could be
 * removed with every other test still passing (MUTANTS.md): the leak it guards against shows only
 * later, through what `ps`, `usage()` or `stat()` report, or through a limit met too soon.
 * One test pins a kernel fault the audit found on the way (see its comment).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { Op, ReceiveFlag } from '../src/protocol/frame.js';
import { type Agent, type AgentEvent, startAgent } from './helpers/agent.js';
import { kernelForTests } from './helpers/kernel.js';
import { headFrame, RawPeer, receiveFrame, takeFrame, within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const SHARE = 64 * 1024;
const BOUND_MS = 20_000;

const PER_PROCESS = 16;

const { join, env } = kernelForTests({
  args: ['--max-waiting-bytes', '64K', '--max-per-process', String(PER_PROCESS)],
});

/** What `ps` says the process is blocked on. */
async function blockedOn(observer: PostboxProcess, id: number): Promise<string[]> {
  const row = (await observer.processes()).find((p) => p.id === id);
  assert.ok(row !== undefined, `process ${id} is listed`);
  return row.blockedOn;
}

/** The error code a promise rejects with, or 'ok'. */
function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: { code: string }) => e.code,
  );
}

// Pins Mailbox.completeSend's `sw.peer.sends.delete(sw.request)` (MUTANTS.md M03).
test('a send that completed, by receipt or by admission from the line, leaves its process blocked on nothing', async () => {
  const sender = await join();
  const receiver = await join();
  const box = await sender.createMailbox('done-sends', { capacity: 1, mode: 0o666 });
  const theirs = await receiver.openMailbox('done-sends');

  // A receipt completes when the message is taken.
  const receipt = box.send('with receipt', { receipt: true });
  await until(
    () => blockedOn(receiver, sender.id),
    (b) => b.length === 1,
    BOUND_MS,
    'the receipt send waiting',
  );
  assert.equal((await theirs.receive())?.text(), 'with receipt');
  await receipt;
  assert.deepEqual(await blockedOn(receiver, sender.id), [], 'nothing left once the receipt came');

  // A send that waited for room completes when it is let in.
  await box.send('filler');
  const blocked = box.send('waited');
  await until(
    () => box.stat(),
    (s) => s.waitingSendersCount === 1,
    BOUND_MS,
    'the send blocked on the full mailbox',
  );
  assert.deepEqual(await blockedOn(receiver, sender.id), ["send mailbox 'done-sends'"]);
  assert.equal((await theirs.receive())?.text(), 'filler');
  await blocked;
  assert.deepEqual(await blockedOn(receiver, sender.id), [], 'nothing left once it was let in');
  assert.equal((await theirs.receive())?.text(), 'waited');
});

// Pins Mailbox.settleSender's `sw.peer.waitingBytes -= sw.heldBytes` (M05).
test('sends that fail while they wait (timeout, abort, removal) give back their share of the waiting bytes', async () => {
  const greedy = await join();
  const observer = await join();
  const body = 'w'.repeat(1000);
  const box = await greedy.createMailbox('failing-waits', { capacity: 1, mode: 0o666 });
  await box.send('filler');
  // Well past the share in all, a handful at a time: each round fails before the next starts.
  for (let round = 0; round < 8; round++) {
    const timedOut = Array.from({ length: 10 }, () => outcome(box.send(body, { timeout: 1 })));
    assert.deepEqual(new Set(await Promise.all(timedOut)), new Set(['ETIMEDOUT']));
    const ac = new AbortController();
    const aborted = Array.from({ length: 10 }, () => outcome(box.send(body, { signal: ac.signal })));
    await until(
      () => box.stat(),
      (s) => s.waitingSendersCount === 10,
      BOUND_MS,
      'the sends to abort waiting',
    );
    ac.abort();
    assert.deepEqual(new Set(await Promise.all(aborted)), new Set(['ECANCELED']));
  }
  let usage = await observer.usage();
  assert.equal(usage.mostWaitingBytes, 0, 'every failed send gave its bytes back');
  // The share is whole again: a full share's worth of sends waits, and none is refused ENOMEM.
  const fits = Math.floor(SHARE / (body.length + 512)) - 1;
  const waiting = Array.from({ length: fits }, () => outcome(box.send(body)));
  await until(
    () => box.stat(),
    (s) => s.waitingSendersCount === fits,
    BOUND_MS,
    `${fits} sends waiting`,
  );
  // Removing the mailbox fails them (EIDRM), and they give their bytes back too.
  await box.delete();
  assert.deepEqual(new Set(await Promise.all(waiting)), new Set(['EIDRM']));
  usage = await observer.usage();
  assert.equal(usage.mostWaitingBytes, 0);
});

/**
 * A sender's receipt message is in a receiver's hands, untaken, when the sender goes (`end`):
 * its send fails as `failed` says, and the mailbox no longer counts it as waiting for a receipt,
 * before the message is taken and after.
 */
async function receiptHeldAsSenderGoes(
  name: string,
  end: (sender: Agent) => Promise<unknown>,
  failed: (event: AgentEvent) => void,
): Promise<void> {
  const owner = await join();
  const box = await owner.createMailbox(name, { mode: 0o666 });
  const sender = await startAgent(env());
  // A receiver that takes its time: the message delivered to it stays in its hands, untaken.
  const receiver = await RawPeer.open(env().POSTBOX_SOCKET!);
  try {
    assert.equal((await receiver.hello()).op, Op.WELCOME, receiver.describe());
    await sender.do({ cmd: 'open', name });
    const receipt = sender.start({ cmd: 'send', mb: name, body: 'with receipt', opts: { receipt: true } });
    await until(
      () => box.stat(),
      (s) => s.count === 1 && s.waitingReceiptsCount === 1,
      BOUND_MS,
      'the message queued, its receipt awaited',
    );
    receiver.write(receiveFrame({ request: 1, target: box.id }));
    await receiver.waitFor((f) => f.op === Op.DELIVER && f.request === 1, BOUND_MS, 'DELIVER');
    const held = await box.stat();
    assert.equal(held.inflight, 1);
    assert.deepEqual(held.waitingReceipts, [sender.pid]);
    // The kernel tells its monitors of an end after it has withdrawn the process's sends.
    const down = owner.monitor(sender.pid);
    await end(sender);
    failed(await receipt);
    await down;
    const s = await box.stat();
    assert.equal(s.inflight, 1, "the message is still in the receiver's hands");
    assert.deepEqual(s.waitingReceipts, [], 'nobody waits for its receipt now');
    assert.equal(s.waitingReceiptsCount, 0);
    // Taken, it leaves the mailbox, and nothing of the dead send is left.
    receiver.write(takeFrame(1, 1, 0));
    const after = await until(
      () => box.stat(),
      (t) => t.count === 0,
      BOUND_MS,
      'the message taken',
    );
    assert.equal(after.waitingReceiptsCount, 0);
  } finally {
    await receiver.destroy();
    await sender.kill();
  }
}

// Pins Mailbox.withdrawSend's `if (sw.peer.terminated || sw.peer.saidBye) this.receiptWaits?.delete(sw)` (M09).
test('a sender killed while a receiver holds its receipt message untaken no longer counts as waiting for a receipt', () =>
  receiptHeldAsSenderGoes(
    'dead-receipt',
    (sender) => sender.kill(),
    (event) => assert.equal(event.event, 'exited'),
  ));

// Found by the audit, and fixed: goodbye() withdraws the sends while the process is not yet
// terminated, and at the socket's close its table of sends is already empty, so Mailbox.withdrawSend
// kept the receipt in Mailbox.receiptWaits (its `sw.peer.saidBye`), and stat listed the process
// until the message was taken or given back.
test('a sender that says goodbye while a receiver holds its receipt message untaken no longer counts as waiting for a receipt', () =>
  receiptHeldAsSenderGoes(
    'bye-receipt',
    (sender) => sender.stop(),
    (event) => assert.equal(event.code, 'ENOTCONN'),
  ));

// Pins Mailbox.returned's `this.store.releaseSlot(off / this.frameBytes)` (M26).
test('a fixed-size mailbox gets back the ring slot of every message recalled from a stream', async () => {
  const receiver = await join();
  const sender = await join();
  const box = await receiver.createMailbox<string>('ring-recall', {
    capacity: 2,
    messageSize: 6,
    mode: 0o666,
  });
  const out = await sender.openMailbox<string>(box.id);
  // More rounds than the ring has slots: each round one message is recalled and given back.
  for (let round = 0; round < 4; round++) {
    // Both queued first, in the ring; then pushed to the stream, which takes only the first.
    const first = out.send('first1', { receipt: true });
    const controller = new AbortController();
    const gaveUp = out.send('second', { receipt: true, signal: controller.signal });
    await until(
      () => box.stat(),
      (s) => s.queued === 2,
      BOUND_MS,
      'both messages queued',
    );
    const it = box.messages({ prefetch: 8 });
    assert.equal((await it.next()).value?.text(), 'first1');
    await first;
    await until(
      () => box.stat(),
      (s) => s.inflight === 1 && s.queued === 0,
      BOUND_MS,
      'the second message pushed ahead',
    );
    controller.abort();
    await assert.rejects(gaveUp, { code: 'ECANCELED' });
    await it.return();
    const s = await box.stat();
    assert.equal(s.count, 0, `round ${round}: nothing held`);
  }
  // The whole ring is free: two messages fill it, and each is read back as it was sent.
  await out.send('third3');
  await out.send('fourth');
  assert.equal((await box.stat()).count, 2);
  assert.equal((await box.receive({ nowait: true }))?.text(), 'third3');
  assert.equal((await box.receive({ nowait: true }))?.text(), 'fourth');
});

// Pins Mailbox.returned's `if (w.stream && !w.ended) w.credit++` (M27).
test('a stream of prefetch 1 gets its credit back with a message recalled from it, and goes on receiving', async () => {
  const receiver = await join();
  const sender = await join();
  const box = await receiver.createMailbox<string>('credit-recall', { mode: 0o666 });
  const out = await sender.openMailbox<string>(box.id);
  const it = box.messages({ prefetch: 1 });
  for (let round = 0; round < 3; round++) {
    const first = out.send(`first ${round}`, { receipt: true });
    const step = await within(it.next(), BOUND_MS, `round ${round}: the stream receiving`);
    assert.equal(step.value?.text(), `first ${round}`);
    await first;
    // The stream's one credit came back with the take: the next message is pushed ahead.
    const controller = new AbortController();
    const gaveUp = out.send('recalled', { receipt: true, signal: controller.signal });
    await until(
      () => box.stat(),
      (s) => s.inflight === 1,
      BOUND_MS,
      'the message pushed ahead',
    );
    controller.abort();
    await assert.rejects(gaveUp, { code: 'ECANCELED' });
  }
  // Given back, the message returned the credit it held: the stream still receives.
  const last = out.send('last', { receipt: true });
  const step = await within(it.next(), BOUND_MS, 'the stream receiving after the recalls');
  assert.equal(step.value?.text(), 'last');
  await last;
  await it.return();
});

// Pins Mailbox.giveBack's ring branch: `this.host.totalBytes += body` (M30) and
// `this.receiptBySlot.set(slot, sw)` (M31).
test("a receipt message given back into a fixed-size mailbox's ring is counted again, and its receipt comes when it is taken", async () => {
  const receiver = await join();
  const sender = await join();
  const box = await receiver.createMailbox<string>('ring-give-back', {
    capacity: 4,
    messageSize: 6,
    mode: 0o666,
  });
  const out = await sender.openMailbox<string>(box.id);
  const before = (await receiver.usage()).totalBytes;
  await out.send('plain1');
  const receipt = out.send('second', { receipt: true });
  await until(
    () => box.stat(),
    (s) => s.queued === 2,
    BOUND_MS,
    'both messages queued',
  );
  const queuedTotal = (await receiver.usage()).totalBytes;
  // A stream takes the first; the second is pushed ahead; the stream ends and gives it back.
  const it = box.messages({ prefetch: 8 });
  assert.equal((await it.next()).value?.text(), 'plain1');
  await until(
    () => box.stat(),
    (s) => s.inflight === 1 && s.queued === 0,
    BOUND_MS,
    'the receipt message pushed ahead',
  );
  await it.return();
  const back = await until(
    () => box.stat(),
    (s) => s.queued === 1 && s.inflight === 0,
    BOUND_MS,
    'the receipt message back in the ring',
  );
  assert.equal(back.waitingReceiptsCount, 1, 'its send still waits for its receipt');
  // Back in the queue, it counts toward the kernel's memory as it did before it went out.
  assert.equal((await receiver.usage()).totalBytes, queuedTotal - 6, 'the queued bytes, less the one taken');
  // Taken by another receive, it completes its receipt.
  assert.equal((await box.receive({ nowait: true }))?.text(), 'second');
  const result = await within(receipt, BOUND_MS, 'the receipt');
  assert.equal(result.outcome, 'received');
  assert.equal((await receiver.usage()).totalBytes, before, 'nothing of the two is counted any more');
});

// Pins Mailbox.giveBack's `this.store.releaseSlot(off / this.frameBytes)` for a send that gave up (M29).
test('a fixed-size mailbox gets back the ring slot of a message dropped when a stream gives it back after its send gave up', async () => {
  const owner = await join();
  const sender = await join();
  const box = await owner.createMailbox<string>('ring-expired', { capacity: 2, messageSize: 6, mode: 0o666 });
  const out = await sender.openMailbox<string>(box.id);
  // A stream that does not answer RECALL (it did not say it would): what it holds stays there.
  const stream = await RawPeer.open(env().POSTBOX_SOCKET!);
  try {
    assert.equal((await stream.hello()).op, Op.WELCOME, stream.describe());
    // More rounds than the ring has slots: each drops one message given back after its send gave up.
    for (let request = 1; request <= 4; request++) {
      const controller = new AbortController();
      const gaveUp = out.send('gaveup', { receipt: true, signal: controller.signal });
      await until(
        () => box.stat(),
        (s) => s.queued === 1,
        BOUND_MS,
        `round ${request}: the message queued in the ring`,
      );
      stream.write(receiveFrame({ request, target: box.id, flags: ReceiveFlag.STREAM, credit: 4 }));
      await stream.waitFor((f) => f.op === Op.DELIVER && f.request === request, BOUND_MS, 'DELIVER');
      controller.abort();
      await until(
        () => box.stat(),
        (s) => s.inflight === 1 && s.waitingReceiptsCount === 1,
        BOUND_MS,
        `round ${request}: the message held by the stream`,
      );
      stream.write(headFrame(Op.CANCEL, request));
      await assert.rejects(gaveUp, { code: 'ECANCELED' });
      assert.equal((await box.stat()).count, 0, `round ${request}: the message was dropped`);
    }
    // The whole ring is free: two messages fill it, and each is read back as it was sent.
    await out.send('third3');
    await out.send('fourth');
    assert.equal((await box.receive({ nowait: true }))?.text(), 'third3');
    assert.equal((await box.receive({ nowait: true }))?.text(), 'fourth');
  } finally {
    await stream.destroy();
  }
});

// Pins Mailbox.timeOutReceive's `w.peer.receives.delete(w.request)` (M42).
test("receives that time out leave the process's table: more of them than --max-per-process, one after another", async () => {
  const p = await join();
  const box = await p.createMailbox<string>('timed-out-receives');
  for (let i = 0; i < PER_PROCESS + 4; i++)
    await assert.rejects(box.receive({ timeout: 1 }), { code: 'ETIMEDOUT' }, `receive ${i}`);
  // The table is empty: a receive still waits, and gets what comes.
  const got = box.receive();
  await box.send('still received');
  assert.equal((await got)?.text(), 'still received');
});

// Pins Mailbox.endReceive's `w.peer.receives.delete(w.request)` (M44).
test("receives refused E2BIG leave the process's table: more of them than --max-per-process, one after another", async () => {
  const p = await join();
  const box = await p.createMailbox<string>('too-big-receives');
  await box.send('a message longer than the receiver takes');
  for (let i = 0; i < PER_PROCESS + 4; i++)
    await assert.rejects(box.receive({ maxSize: 1 }), { code: 'E2BIG' }, `receive ${i}`);
  assert.equal((await box.receive({ nowait: true }))?.text(), 'a message longer than the receiver takes');
});

// Pins Mailbox.endIfSenderGone's `w.peer.receives.delete(w.request)` (M43).
test("receives from a process that ends leave the process's table: more of them than --max-per-process", async () => {
  const p = await join();
  const box = await p.createMailbox<string>('gone-sender-receives', { mode: 0o666 });
  for (let i = 0; i < PER_PROCESS + 4; i++) {
    const sender = await connect({ socket: env().POSTBOX_SOCKET! });
    const waiting = box.receive({ from: sender.id });
    await until(
      () => box.stat(),
      (s) => s.waitingReceiversCount === 1,
      BOUND_MS,
      `receive ${i} waiting`,
    );
    const refused = assert.rejects(waiting, { code: 'ESRCH' }, `receive ${i}`);
    await sender.close();
    await refused;
  }
  const got = box.receive();
  await box.send('still received');
  assert.equal((await got)?.text(), 'still received');
});

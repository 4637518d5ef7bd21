// A receive that names its sender (`from`) can only be satisfied by that process. Once it has
// terminated, and nothing of its is left queued, the receive ends with ESRCH: it must not wait
// for its timeout, or for ever, for a message that cannot come. What the sender left queued is
// still received first.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  connect,
  type Mailbox,
  type Message,
  NoProcessError,
  type PostboxProcess,
} from '../src/client/mod.js';
import { startAgent } from './helpers/agent.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

let kernel: TestKernel;
const procs: PostboxProcess[] = [];
let seq = 0;
const boxName = (): string => `from-${++seq}`;

before(async () => {
  kernel = await startTestKernel();
});
after(async () => {
  for (const p of procs) await p.close();
  assert.equal(await kernel.stop(), 0);
});

async function join(): Promise<PostboxProcess> {
  const p = await connect({ socket: kernel.socket });
  procs.push(p);
  return p;
}

const isESRCH = (err: unknown): boolean => err instanceof NoProcessError && err.code === 'ESRCH';

/**
 * A mailbox of `me`'s that anyone may use, a process to send to it, and another process's
 * iterator on it, which is pushed up to `prefetch` messages ahead.
 */
async function boxWithHolder(prefetch: number): Promise<{
  me: PostboxProcess;
  sender: PostboxProcess;
  other: PostboxProcess;
  name: string;
  box: Mailbox;
  holder: AsyncIterator<Message>;
}> {
  const [me, sender, other] = [await join(), await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const holder = (await other.openMailbox(name)).messages({ prefetch });
  return { me, sender, other, name, box, holder };
}

/** Waits until `n` of the mailbox's messages are in receivers' hands, pushed ahead and untaken. */
const inflightIs = (box: Mailbox, n: number, what: string): Promise<unknown> =>
  until(
    () => box.stat(),
    (s) => s.inflight === n,
    10_000,
    what,
  );

test('a receive waiting on a sender that exits ends with ESRCH, not at its timeout', {
  timeout: 20_000,
}, async () => {
  const [me, sender, other] = [await join(), await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const fromOther = await other.openMailbox(name);
  // No timeout: before, this waited for ever.
  const ended = assert.rejects(box.receive({ from: sender.id }), isESRCH);
  await fromOther.send('not from the sender');
  await sender.close();
  await ended;
  // The other process's message was not taken by the ended receive.
  assert.equal((await box.receive({ nowait: true }))?.body, 'not from the sender');
});

test('what the sender left queued is received first, then ESRCH at once (also nowait)', {
  timeout: 20_000,
}, async () => {
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const out = await sender.openMailbox(name);
  await out.send('one');
  await out.send('two');
  const id = sender.id;
  await sender.close();
  assert.equal((await box.receive({ from: id }))?.body, 'one');
  assert.equal((await box.receive({ from: id, timeout: 60_000 }))?.body, 'two');
  await assert.rejects(box.receive({ from: id, timeout: 60_000 }), isESRCH);
  await assert.rejects(box.receive({ from: id, nowait: true }), isESRCH);
});

test('a receive from a process id nobody has is ESRCH at once', { timeout: 20_000 }, async () => {
  const me = await join();
  const box = await me.createMailbox(boxName());
  await assert.rejects(box.receive({ from: 0x7fff_fff0 }), (err: unknown) => {
    assert.ok(isESRCH(err), String(err));
    assert.match((err as Error).message, /2147483632 has terminated \(or never was\)/);
    return true;
  });
});

test('a stream from a sender that exits yields all it sent, then fails with ESRCH', {
  timeout: 20_000,
}, async () => {
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const out = await sender.openMailbox(name);
  // A small prefetch: part of what was sent is still queued in the kernel when the sender goes.
  const stream = box.messages({ from: sender.id, prefetch: 2 });
  await out.sendMany(['a', 'b', 'c', 'd', 'e']);
  await sender.close();
  const got: unknown[] = [];
  await assert.rejects(async () => {
    for await (const m of stream) got.push(m.body);
  }, isESRCH);
  assert.deepEqual(got, ['a', 'b', 'c', 'd', 'e']);
  assert.equal((await box.stat()).count, 0);

  // All five pushed before the sender goes, and the error in before the loop starts: the takes of
  // what is yielded after the error must still reach the kernel, or they stay in flight for ever.
  const sender2 = await join();
  const out2 = await sender2.openMailbox(name);
  await out2.sendMany(['v', 'w', 'x', 'y', 'z']);
  const stream2 = box.messages({ from: sender2.id, prefetch: 8 });
  await sender2.close();
  assert.equal((await box.stat()).inflight, 5); // in order: the ESRCH is in too
  const got2: unknown[] = [];
  await assert.rejects(async () => {
    for await (const m of stream2) got2.push(m.body);
  }, isESRCH);
  assert.deepEqual(got2, ['v', 'w', 'x', 'y', 'z']);
  const st = await box.stat();
  assert.deepEqual([st.count, st.inflight], [0, 0]);
});

test('leaving such a stream early gives back what it had not yielded, even after the error came', {
  timeout: 20_000,
}, async () => {
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const out = await sender.openMailbox(name);
  await out.sendMany(['a', 'b', 'c', 'd', 'e']);
  const stream = box.messages({ from: sender.id, prefetch: 8 });
  await sender.close();
  // Answers come in order: once this stat is back, so are all five messages and the ESRCH.
  assert.equal((await box.stat()).inflight, 5);
  const got: unknown[] = [];
  for await (const m of stream) {
    got.push(m.body);
    if (got.length === 2) break;
  }
  assert.deepEqual(got, ['a', 'b']);
  const rest: unknown[] = [];
  for (let m = await box.receive({ timeout: 10_000 }); ; m = await box.receive({ nowait: true })) {
    if (m === null) break;
    rest.push(m.body);
  }
  assert.deepEqual(rest, ['c', 'd', 'e']);
  const st = await box.stat();
  assert.deepEqual([st.count, st.inflight], [0, 0]);
});

test('on an inbox, from a process that is killed: ESRCH, and the kernel carries on', {
  timeout: 20_000,
}, async () => {
  const me = await join();
  const agent = await startAgent(kernel.env);
  await agent.do({ cmd: 'send', to: me.id, body: 'hello' });
  assert.equal((await me.receive({ from: agent.pid }))?.body, 'hello');
  const ended = assert.rejects(me.receive({ from: agent.pid, timeout: 120_000 }), isESRCH);
  await agent.kill('SIGKILL');
  await ended;
  // Receives from a live process are untouched by another's end.
  const friend = await join();
  const fromFriend = me.receive({ from: friend.id });
  await friend.send(me.id, 'still here');
  assert.equal((await fromFriend)?.body, 'still here');
});

test('a name names whoever has it now: after its process is gone and another takes the name, sends and receives reach the new one', {
  timeout: 20_000,
}, async () => {
  const me = await join();
  const first = await connect({ socket: kernel.socket, name: 'renamed-peer' });
  await me.send('renamed-peer', 'to the first');
  assert.equal((await first.receive())?.body, 'to the first');
  await first.close();
  const second = await connect({ socket: kernel.socket, name: 'renamed-peer' });
  procs.push(second);
  // Before, the name stayed bound to the first process's id in this process: ESRCH for ever.
  await me.send('renamed-peer', 'to the second');
  assert.equal((await second.receive())?.body, 'to the second');
  await second.send(me.id, 'back');
  assert.equal((await me.receive({ from: 'renamed-peer' }))?.body, 'back');
});

test('a receive from a name already used selects the process that has the name now, not what a former one left', {
  timeout: 20_000,
}, async () => {
  const me = await join();
  const old = await connect({ socket: kernel.socket, name: 'recycled-peer' });
  for (const body of ['old1', 'old2', 'old3']) await old.send(me.id, body);
  // The name is now known to this process, bound to the first process's id.
  assert.equal((await me.receive({ from: 'recycled-peer' }))?.body, 'old1');
  await old.close();
  await assert.rejects(me.receive({ from: 'recycled-peer', nowait: true }), isESRCH);
  const fresh = await connect({ socket: kernel.socket, name: 'recycled-peer' });
  procs.push(fresh);
  await fresh.send(me.id, 'new1');
  assert.equal((await me.receive({ from: 'recycled-peer', nowait: true }))?.body, 'new1');
  // What the first left is still there, by its id.
  assert.equal((await me.receive({ from: old.id, nowait: true }))?.body, 'old2');
});

// A message of the sender's pushed ahead to another process's iterator and not yet taken is
// still the mailbox's: if that iterator gives it back, it is queued again. Until it is taken or
// back, a receive from the terminated sender cannot know whether it will come, so it waits (with
// nowait: nothing yet) rather than failing with ESRCH; it was ESRCH at once, and a message given
// back then sat in the mailbox where no receive by its sender could select it.

/** A mailbox `me` reads, another process's iterator holding messages of a sender that has gone. */
async function heldAfterSenderGone(
  prefetch = 4,
  messages = 1,
): Promise<{
  me: PostboxProcess;
  box: Mailbox;
  holder: AsyncIterator<Message>;
  senderId: number;
}> {
  const [me, sender, other] = [await join(), await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const holder = (await other.openMailbox(name)).messages({ prefetch });
  const out = await sender.openMailbox(name);
  for (let i = 1; i <= messages; i++) {
    // Each sent once the one before is in the iterator's hands: pushed to it one at a time.
    await out.send(i === 1 ? 'held' : `held ${i}`, { type: 1 });
    await inflightIs(box, i, 'the message pushed ahead to the iterator');
  }
  const senderId = sender.id;
  await sender.close();
  return { me, box, holder, senderId };
}

const waitingIn = (box: Mailbox, id: number): Promise<unknown> =>
  until(
    () => box.stat(),
    (s) => s.waitingReceivers.includes(id),
    10_000,
    'the receive from the sender waiting',
  );

test('a receive from a terminated sender waits while its message is pushed ahead to another iterator, and gets it when the iterator breaks', {
  timeout: 20_000,
}, async () => {
  const { me, box, holder, senderId } = await heldAfterSenderGone();
  assert.equal(await box.receive({ from: senderId, nowait: true }), null, 'nothing yet: not ESRCH');
  const got = box.receive({ from: senderId, timeout: 60_000 });
  await waitingIn(box, me.id);
  await holder.return?.();
  const m = await got;
  assert.deepEqual([m?.body, m?.sender], ['held', senderId]);
  await assert.rejects(box.receive({ from: senderId, nowait: true }), isESRCH);
});

test('a receive from a terminated sender that waited on its message in another iterator fails with ESRCH once the iterator takes it', {
  timeout: 20_000,
}, async () => {
  const { me, box, holder, senderId } = await heldAfterSenderGone();
  const got = box.receive({ from: senderId });
  await waitingIn(box, me.id);
  const r = await holder.next();
  assert.equal((r.value as Message).body, 'held');
  // No timeout: without the take looking again, it waited for ever.
  await assert.rejects(got, isESRCH);
  await holder.return?.();
  assert.equal((await box.stat()).count, 0);
});

test('a receive from a terminated sender waits while an iterator holds two of its messages and takes one, and gets the other when it comes back', {
  timeout: 20_000,
}, async () => {
  const { me, box, holder, senderId } = await heldAfterSenderGone(4, 2);
  const got = box.receive({ from: senderId, timeout: 60_000 });
  await waitingIn(box, me.id);
  const r = await holder.next();
  assert.equal((r.value as Message).body, 'held');
  // Both were pushed to the iterator one at a time: the take of the first leaves the second in
  // its hands, so the receive still waits for it (counted once, not once per push, it ended
  // with ESRCH here and the second, given back, sat where no receive from its sender came).
  await holder.return?.();
  const m = await got;
  assert.deepEqual([m?.body, m?.sender], ['held 2', senderId]);
});

test('a receive from a terminated sender fails with ESRCH once an iterator takes three of its messages pushed to it together', {
  timeout: 20_000,
}, async () => {
  const { me, sender, name, box, holder } = await boxWithHolder(8);
  // One write of three sends: the kernel pushes them to the iterator as one run, and the
  // iterator's takes of all three, made in one turn, go back as one.
  await (await sender.openMailbox(name)).sendMany(['a', 'b', 'c']);
  await inflightIs(box, 3, 'the three pushed ahead to the iterator');
  const senderId = sender.id;
  await sender.close();
  const got = box.receive({ from: senderId });
  await waitingIn(box, me.id);
  const bodies = [];
  for (let i = 0; i < 3; i++) bodies.push(((await holder.next()).value as Message).body);
  assert.deepEqual(bodies, ['a', 'b', 'c']);
  // No timeout: with the three counted down as one, the receive waited for ever.
  await assert.rejects(got, isESRCH);
  await holder.return?.();
});

test("a receive from a terminated sender fails with ESRCH once an iterator takes its message, queued right after another sender's", {
  timeout: 20_000,
}, async () => {
  const [me, a, b, other] = [await join(), await join(), await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  // Queued with no receiver: the two lie back to back in the kernel's store, and go out to the
  // iterator together, but are two senders' and counted as such.
  await (await a.openMailbox(name)).send('from a');
  await (await b.openMailbox(name)).send('from b');
  const bId = b.id;
  await b.close();
  const holder = (await other.openMailbox(name)).messages({ prefetch: 8 });
  const bodies = [];
  for (let i = 0; i < 2; i++) bodies.push(((await holder.next()).value as Message).body);
  assert.deepEqual(bodies, ['from a', 'from b']);
  await until(
    () => box.stat(),
    (s) => s.inflight === 0 && s.count === 0,
    10_000,
    'both taken',
  );
  // Taken as one run counted as a's, b's message stayed "in hands" for good: nowait said "not
  // yet" (null) and a waiting receive waited for ever.
  await assert.rejects(box.receive({ from: bId, nowait: true }), isESRCH);
  await holder.return?.();
});

test('a receive from a terminated sender is ESRCH at once while another iterator holds its message sent with a receipt (given back, it would be dropped)', {
  timeout: 20_000,
}, async () => {
  const { sender, name, box, holder } = await boxWithHolder(4);
  const sending = (await sender.openMailbox(name))
    .send('with a receipt', { receipt: true })
    .catch((e: unknown) => e);
  await inflightIs(box, 1, 'the message pushed ahead to the iterator');
  const senderId = sender.id;
  await sender.close();
  assert.equal(((await sending) as { code?: string }).code, 'ENOTCONN');
  // Nothing of the sender's can come back to the queue: a receipt's message whose sender has
  // gone is dropped when it is given back. Counted as the sender's, it made this wait.
  await assert.rejects(box.receive({ from: senderId, nowait: true }), isESRCH);
  await holder.return?.();
  assert.equal((await box.stat()).count, 0, 'given back, it was dropped');
});

test("taking a terminated sender's message sent with a receipt leaves its plain one counted: a receive from it still waits for that one", {
  timeout: 20_000,
}, async () => {
  const { me, sender, other, name, box, holder } = await boxWithHolder(4);
  const out = await sender.openMailbox(name);
  const receipted = out.send('with a receipt', { receipt: true });
  await out.send('plain');
  await inflightIs(box, 2, 'both pushed ahead to the iterator');
  assert.equal(((await holder.next()).value as Message).body, 'with a receipt');
  assert.equal((await receipted).receiver, other.id);
  const senderId = sender.id;
  await sender.close();
  // The receipt's message was never counted as the sender's; its take counted down the plain
  // one instead, and this was ESRCH with 'plain' still to come back.
  assert.equal(await box.receive({ from: senderId, nowait: true }), null, 'nothing yet: not ESRCH');
  const got = box.receive({ from: senderId });
  await waitingIn(box, me.id);
  await holder.return?.();
  assert.equal((await got)?.body, 'plain');
});

test('an iterator from a sender that took its message sent with a receipt ends with ESRCH once the sender has gone', {
  timeout: 20_000,
}, async () => {
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const mine = box.messages({ from: sender.id, prefetch: 4 });
  const receipted = (await sender.openMailbox(name)).send('with a receipt', { receipt: true });
  assert.equal(((await mine.next()).value as Message).body, 'with a receipt');
  assert.equal((await receipted).receiver, me.id);
  await sender.close();
  // A receipt's message is not counted as its sender's; its take counted this loop's own below
  // nothing, and the loop then waited for ever on messages in "other hands".
  await assert.rejects(mine.next(), isESRCH);
});

test('an iterator from a terminated sender that took two of its messages still waits for one another iterator holds, and yields it when given back', {
  timeout: 20_000,
}, async () => {
  const [me, sender, other] = [await join(), await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const out = await sender.openMailbox(name);
  // The other iterator, with room for one, holds the first message.
  const holder = (await other.openMailbox(name)).messages({ prefetch: 1 });
  await out.send('held');
  await inflightIs(box, 1, 'the first message pushed ahead to the other iterator');
  const mine = box.messages({ from: sender.id, prefetch: 4 });
  await out.send('one');
  await out.send('two');
  const bodies = [];
  for (let i = 0; i < 2; i++) bodies.push(((await mine.next()).value as Message).body);
  assert.deepEqual(bodies, ['one', 'two']);
  await sender.close();
  const third = mine.next();
  await waitingIn(box, me.id);
  // The two this iterator took no longer count as its own: with them still counted, the message
  // in the other's hands looked like its own, and the loop ended with ESRCH at once.
  await holder.return?.();
  assert.equal(((await third).value as Message).body, 'held');
  await assert.rejects(mine.next(), isESRCH);
});

test('a receive of one type from a terminated sender waits while another type of its is out, then ends with ESRCH when it comes back', {
  timeout: 20_000,
}, async () => {
  const { me, box, holder, senderId } = await heldAfterSenderGone();
  const got = box.receive({ from: senderId, type: 2 });
  await waitingIn(box, me.id);
  await holder.return?.();
  await assert.rejects(got, isESRCH);
  // The message of type 1 is back in the queue, for a receive that selects it.
  assert.equal((await box.receive({ from: senderId, nowait: true }))?.body, 'held');
});

test('an iterator from a terminated sender waits on its message in another process that is killed, and yields it', {
  timeout: 20_000,
}, async () => {
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox(name, { mode: 0o666 });
  const agent = await startAgent(kernel.env);
  await agent.do({ cmd: 'open', name });
  // The agent's iterator is opened and left holding what it is pushed.
  await agent.do({ cmd: 'consume', mb: name, count: 0, opts: { prefetch: 8 } });
  await (await sender.openMailbox(name)).sendMany(['a', 'b']);
  await inflightIs(box, 2, 'both pushed ahead to the agent');
  const senderId = sender.id;
  await sender.close();
  const got: unknown[] = [];
  const ended = assert.rejects(async () => {
    for await (const m of box.messages({ from: senderId })) got.push(m.body);
  }, isESRCH);
  await waitingIn(box, me.id);
  await agent.kill('SIGKILL');
  await ended;
  assert.deepEqual(got, ['a', 'b']);
});

test('131,072 receives waiting from one sender, from three processes, are kept, and the next is served', {
  timeout: 120_000,
}, async () => {
  // The kernel sweeps a sender's list of receives when its length reaches a power of two. The
  // live ones were spread into a push: at 131,072 the stack overflowed, and the process whose
  // receive it was got EPROTO and was ended. Three processes, as one may wait at most 65,536.
  const [me, sender] = [await join(), await join()];
  const name = boxName();
  const box = await me.createMailbox<string>(name, { mode: 0o666 });
  const per = Math.ceil(2 ** 17 / 3) + 1; // 3 × 43,692 = 131,076: past the sweep at 131,072
  const waiting: Promise<unknown>[] = [];
  const receivers: PostboxProcess[] = [];
  for (let j = 0; j < 3; j++) {
    const r = await join();
    receivers.push(r);
    const theirs = await r.openMailbox<string>(name);
    for (let i = 0; i < per; i++)
      waiting.push(
        theirs.receive({ from: sender.id }).then(
          (m) => m?.body,
          (err: unknown) => err,
        ),
      );
    // Answered after the kernel has handled every receive before it on this connection.
    await r.processes();
  }
  assert.equal((await box.stat()).waitingReceiversCount, 3 * per, 'every receive waits');
  const mine = await sender.openMailbox<string>(name);
  await mine.send('the first');
  assert.equal(await Promise.race(waiting), 'the first', 'the first receive gets it');
  for (const r of receivers) await r.close();
  const ended = await Promise.all(waiting);
  assert.equal(ended.filter((e) => e === 'the first').length, 1);
  assert.ok(
    ended.every(
      (e) => e === 'the first' || (e instanceof Error && (e as { code?: string }).code !== 'EPROTO'),
    ),
    'none ended EPROTO',
  );
});

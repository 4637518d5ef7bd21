/**
 * Selection, order, sharing, ownership and termination (issue: selection/ownership), each rule
 * against a real kernel process with real client processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type MailboxStat, type PostboxProcess } from '../src/client/mod.js';
import { type Agent, type AgentEvent, startAgent } from './helpers/agent.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

describe('sharing, rights and termination', () => {
  let kernel: TestKernel;
  let me: PostboxProcess;
  const agents: Agent[] = [];
  let n = 0;
  const agent = async (): Promise<Agent & { pid: number }> => {
    const a = await startAgent(kernel.env);
    agents.push(a);
    return a;
  };
  const box = (): string => `share-${++n}`;
  const stat = async (name: string): Promise<MailboxStat> => (await me.openMailbox(name)).stat();
  const body = (e: AgentEvent): unknown => (e.message as AgentEvent | null)?.body;
  /** Resolves once `name` has no owner (its owner was killed). */
  const unowned = (name: string): Promise<MailboxStat> =>
    until(
      () => stat(name),
      (s) => s.owner === null,
      10_000,
      'unowned',
    );
  /** Resolves once process `pid` waits to receive from `name`. */
  const waiting = (name: string, pid: number): Promise<MailboxStat> =>
    until(
      () => stat(name),
      (s) => s.waitingReceivers.includes(pid),
      10_000,
      'receiver waiting',
    );

  before(async () => {
    kernel = await startTestKernel();
    me = await connect({ socket: kernel.socket });
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await me.close();
    await kernel.stop();
  });

  test('round-robin: waiting receivers take turns (P2, P3, P4, P2 …) and each receipt names the taker', async () => {
    const name = box();
    const p1 = await agent();
    const receivers = [await agent(), await agent(), await agent()];
    await p1.do({ cmd: 'create', name, opts: { policy: 'round-robin', mode: 0o666 } });
    for (const r of receivers) {
      await r.do({ cmd: 'open', name });
      void r.start({ cmd: 'consume', mb: name, count: 100, opts: { prefetch: 1 } });
      await waiting(name, r.pid);
    }
    const takers: number[] = [];
    for (let i = 0; i < 9; i++) {
      // Wait until all three are waiting again, so the turn order is the only thing deciding.
      await until(
        () => stat(name),
        (s) => s.count === 0 && s.waitingReceivers.length === 3,
        10_000,
        'all waiting',
      );
      const r = await p1.do({ cmd: 'send', mb: name, body: `m${i}`, opts: { receipt: true } });
      takers.push((r.result as { receiver: number }).receiver);
    }
    const ids = receivers.map((r) => r.pid);
    assert.deepEqual(takers, [...ids, ...ids, ...ids]);
    // The receipt can overtake the receiver's own report of the message: wait for the reports.
    for (const r of receivers) await r.waitFor(() => r.messages().length === 3);
    receivers.forEach((r, k) => {
      assert.deepEqual(
        r.messages().map((m) => m.body),
        [`m${k}`, `m${k + 3}`, `m${k + 6}`],
      );
    });
  });

  test('round-robin: a waiting receiver passed over for a type it does not select still gets its turn', async () => {
    // P2 waits for type 1 only; P3 and P4 take anything and ask again after each message. A
    // receiver that asks again goes to the back of the line, behind P2, not ahead of it.
    const name = box();
    const p1 = await agent();
    const [p2, p3, p4] = [await agent(), await agent(), await agent()];
    await p1.do({ cmd: 'create', name, opts: { policy: 'round-robin', mode: 0o666 } });
    const selects = new Map<Agent & { pid: number }, Record<string, unknown>>([
      [p2, { type: 1 }],
      [p3, {}],
      [p4, {}],
    ]);
    const pending = new Map<number, Promise<AgentEvent>>();
    for (const [r, opts] of selects) {
      await r.do({ cmd: 'open', name });
      pending.set(r.pid, r.start({ cmd: 'receive', mb: name, opts }));
      await waiting(name, r.pid);
    }
    const takers: number[] = [];
    for (const type of [2, 2, 1, 2, 1, 2]) {
      await until(
        () => stat(name),
        (s) => s.count === 0 && s.waitingReceivers.length === 3,
        10_000,
        'all three waiting',
      );
      const r = await p1.do({ cmd: 'send', mb: name, body: `t${type}`, opts: { type, receipt: true } });
      const taker = (r.result as { receiver: number }).receiver;
      takers.push(taker);
      const who = [...selects.keys()].find((a) => a.pid === taker)!;
      assert.equal(body(await pending.get(taker)!), `t${type}`);
      pending.set(taker, who.start({ cmd: 'receive', mb: name, opts: selects.get(who)! }));
    }
    assert.deepEqual(takers, [p3.pid, p4.pid, p2.pid, p3.pid, p4.pid, p3.pid]);
  });

  test('first: whoever asked first gets the message', async () => {
    const name = box();
    const [a, b] = [await agent(), await agent()];
    await a.do({ cmd: 'create', name, opts: { mode: 0o666 } });
    await b.do({ cmd: 'open', name });
    const rb = b.start({ cmd: 'receive', mb: name });
    await until(
      () => stat(name),
      (s) => s.waitingReceivers.length === 1,
      10_000,
      'b waiting',
    );
    const ra = a.start({ cmd: 'receive', mb: name });
    await until(
      () => stat(name),
      (s) => s.waitingReceivers.length === 2,
      10_000,
      'a waiting',
    );
    await me.openMailbox(name).then((m) => m.send('one'));
    assert.equal(body(await rb), 'one');
    await me.openMailbox(name).then((m) => m.send('two'));
    assert.equal(body(await ra), 'two');
  });

  test('exclusive: one process holds the receive right; others get EBUSY until it is released or its holder ends', async () => {
    const name = box();
    const [owner, p2, p3] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { policy: 'exclusive', mode: 0o666 } });
    await p2.do({ cmd: 'open', name });
    await p3.do({ cmd: 'open', name });
    await owner.do({ cmd: 'sendMany', mb: name, count: 3, prefix: 'x' });
    assert.equal(body(await p2.do({ cmd: 'receive', mb: name })), 'x0');
    const busy = await p3.do({ cmd: 'receive', mb: name });
    assert.equal(busy.code, 'EBUSY');
    assert.match(
      busy.message as string,
      new RegExp(`process ${p2.pid} holds the receive right of mailbox '${name}'`),
    );
    await p2.do({ cmd: 'release', mb: name });
    assert.equal(body(await p3.do({ cmd: 'receive', mb: name })), 'x1');
    assert.equal((await p2.do({ cmd: 'receive', mb: name })).code, 'EBUSY');
    // p3's take of x1 goes at the end of its turn, maybe after it reported x1: a kill before
    // the kernel has it would give x1 back (at least once across a crash), so wait for it.
    await until(
      () => stat(name),
      (s) => s.received === 2,
      10_000,
      "p3's take of x1",
    );
    await p3.kill('SIGKILL');
    await until(
      () => stat(name),
      (s) => s.holders.length === 0,
      10_000,
      'right released by termination',
    );
    assert.equal(body(await p2.do({ cmd: 'receive', mb: name })), 'x2');
    // Closing its last handle gives the right up too: with no handle it could not receive.
    await owner.do({ cmd: 'send', mb: name, body: 'x3' });
    assert.equal((await owner.do({ cmd: 'receive', mb: name, opts: { nowait: true } })).code, 'EBUSY');
    await p2.do({ cmd: 'close', mb: name });
    assert.deepEqual((await stat(name)).holders, []);
    assert.equal(body(await owner.do({ cmd: 'receive', mb: name })), 'x3');
  });

  test('release ends the releaser’s receives still waiting there, so the next holder gets what is sent after; a pair’s waiting send is withdrawn', async () => {
    // Left waiting, an iterator went on taking every message sent after its process gave the
    // right up, while the process that took the right next got nothing.
    const name = box();
    const owner = await me.createMailbox<string>(name, { policy: 'exclusive', mode: 0o666 });
    const [p, q] = [
      await connect({ socket: kernel.socket }),
      await connect({ socket: kernel.socket, name: 'release-q' }),
    ];
    try {
      const onP = await p.openMailbox<string>(name);
      const onQ = await q.openMailbox<string>(name);
      const it = onP.messages({ prefetch: 4 })[Symbol.asyncIterator]();
      await owner.send('a');
      assert.equal((await it.next()).value?.body, 'a');
      await owner.send('b');
      await owner.send('c');
      await until(
        () => stat(name),
        (s) => s.inflight === 2,
        10_000,
        "b and c pushed to p's iterator",
      );
      const single = onP.receive({ type: 7 });
      const ended = assert.rejects(single, { code: 'ECANCELED' });
      await onP.release();
      // What was pushed before the release was p's already, and the iterator hands it out; then
      // it ends, and what is sent after goes to the next holder.
      assert.equal((await it.next()).value?.body, 'b');
      assert.equal((await it.next()).value?.body, 'c');
      await assert.rejects(within(it.next(), 10_000, "p's iterator"), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ECANCELED');
        assert.match(err.message, new RegExp(`gave up its receive right on mailbox '${name}'`));
        return true;
      });
      await within(ended, 10_000, "p's single receive");
      await owner.send('d');
      assert.equal((await onQ.receive({ timeout: 10_000 }))?.body, 'd');
      assert.deepEqual((await stat(name)).holders, [q.id]);
      // The holder is named as other errors name a process: by its name too, when it has one.
      await assert.rejects(onP.receive({ nowait: true }), {
        code: 'EBUSY',
        message: `process ${q.id} ('release-q') holds the receive right of mailbox '${name}'`,
      });

      const pairName = box();
      const pair = await p.createMailbox<string>(pairName, { policy: 'pair', mode: 0o666, capacity: 1 });
      await pair.send('x');
      const blocked = pair.send('y');
      await until(
        () => stat(pairName),
        (s) => s.waitingSenders.includes(p.id),
        10_000,
        'p blocked on the full pair',
      );
      await pair.release();
      await assert.rejects(within(blocked, 10_000, "p's send y"), { code: 'ECANCELED' });
      const onPair = await q.openMailbox<string>(pairName);
      assert.equal((await onPair.receive({ timeout: 10_000 }))?.body, 'x');
      assert.equal((await stat(pairName)).count, 0, 'y was withdrawn, never delivered');
    } finally {
      await p.close();
      await q.close();
    }
  });

  test('pair: a link between exactly two processes; a third is refused', async () => {
    const name = box();
    const [a, b, c] = [await agent(), await agent(), await agent()];
    await a.do({ cmd: 'create', name, opts: { policy: 'pair', mode: 0o666 } });
    await b.do({ cmd: 'open', name });
    await c.do({ cmd: 'open', name });
    assert.equal((await a.do({ cmd: 'send', mb: name, body: 'hi b' })).event, 'ok');
    assert.equal(body(await b.do({ cmd: 'receive', mb: name })), 'hi b');
    const third = await c.do({ cmd: 'send', mb: name, body: 'me too' });
    assert.equal(third.code, 'EBUSY');
    assert.match(third.message as string, /pair/);
    // Its place given up, a may not send again once c has taken it, though it sent a moment ago.
    await a.do({ cmd: 'release', mb: name });
    assert.equal((await c.do({ cmd: 'send', mb: name, body: 'c now' })).event, 'ok');
    assert.deepEqual(new Set((await stat(name)).holders), new Set([b.pid, c.pid]));
    const gone = await a.do({ cmd: 'send', mb: name, body: 'a again' });
    assert.equal(gone.code, 'EBUSY');
    assert.equal(body(await b.do({ cmd: 'receive', mb: name })), 'c now');
    assert.equal((await stat(name)).count, 0, 'nothing of a got in');
  });

  test('rights: by default only the owner receives; grant, revoke, chmod and transfer are the owner’s, refusals are EACCES naming the right', async () => {
    const name = box();
    const [owner, p2, p3] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name });
    await p2.do({ cmd: 'open', name });
    await p3.do({ cmd: 'open', name });
    assert.equal((await stat(name)).mode, 0o662);
    assert.equal((await p2.do({ cmd: 'send', mb: name, body: 'anyone may send' })).event, 'ok');
    const refused = await p2.do({ cmd: 'receive', mb: name, opts: { nowait: true } });
    assert.equal(refused.code, 'EACCES');
    assert.match(
      refused.message as string,
      new RegExp(`may not receive from mailbox '${name}' \\(mode 0662\\): it lacks the receive right`),
    );
    assert.equal(
      (await p2.do({ cmd: 'grant', mb: name, process: p2.pid })).code,
      'EACCES',
      'only the owner grants',
    );
    await owner.do({ cmd: 'grant', mb: name, process: p2.pid });
    assert.equal(
      body(await p2.do({ cmd: 'receive', mb: name })),
      'anyone may send',
      'granted: the receiving privilege passed',
    );
    await owner.do({ cmd: 'revoke', mb: name, process: p2.pid });
    assert.equal((await p2.do({ cmd: 'receive', mb: name, opts: { nowait: true } })).code, 'EACCES');
    assert.equal((await p3.do({ cmd: 'send', mb: name, body: 'before chmod' })).event, 'ok');
    await owner.do({ cmd: 'chmod', mb: name, mode: 0o600 });
    const noSend = await p3.do({ cmd: 'send', mb: name, body: 'x' });
    assert.equal(noSend.code, 'EACCES');
    assert.match(noSend.message as string, /lacks the send right/);
    assert.equal((await p3.do({ cmd: 'chmod', mb: name, mode: 0o666 })).code, 'EACCES');
    await owner.do({ cmd: 'transfer', mb: name, process: p3.pid });
    assert.equal(
      (await owner.do({ cmd: 'chmod', mb: name, mode: 0o666 })).code,
      'EACCES',
      'no longer the owner',
    );
    assert.equal((await p3.do({ cmd: 'chmod', mb: name, mode: 0o662 })).event, 'ok');
    await owner.kill('SIGKILL');
    // Only once the kernel has ended the old owner does the stat say anything about its death.
    await until(
      () => me.processes(),
      (ps) => !ps.some((p) => p.id === owner.pid),
      10_000,
      'the old owner ended',
    );
    assert.equal((await stat(name)).owner, p3.pid, 'the mailbox lives with its new owner');
  });

  test('unlink, delete and setLimits are the owner’s: another process with a handle open is refused EACCES, and the mailbox stays as it was', async () => {
    const name = box();
    const owner = await connect({ socket: kernel.socket });
    try {
      await owner.createMailbox(name, { mode: 0o666, capacity: 2 });
      const other = await me.openMailbox(name);
      for (const [what, act] of [
        ['unlink', () => other.unlink()],
        ['delete', () => other.delete()],
        ['change the limits of', () => other.setLimits({ capacity: 5 })],
      ] as const) {
        await assert.rejects(act(), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'EACCES', what);
          assert.match(err.message, new RegExp(`may not ${what} mailbox '${name}': only its owner`));
          return true;
        });
      }
      const s = await stat(name);
      assert.equal(s.unlinked, false, 'not unlinked');
      assert.equal(s.capacity, 2, 'its limits unchanged');
      assert.equal(s.owner, owner.id);
      await other.close();
    } finally {
      await owner.close();
    }
  });

  test('a removed mailbox’s name is free at once, deleted or gone with its owner: open is ENOENT, and a create makes a new mailbox', async () => {
    const name = box();
    const owner = await connect({ socket: kernel.socket });
    const first = await owner.createMailbox(name);
    await first.delete();
    await assert.rejects(me.openMailbox(name), (err: Error & { code?: string }) => err.code === 'ENOENT');
    const second = await owner.createMailbox(name);
    assert.notEqual(second.id, first.id);
    await owner.close();
    await assert.rejects(me.openMailbox(name), (err: Error & { code?: string }) => err.code === 'ENOENT');
    const third = await me.createMailbox(name);
    assert.notEqual(third.id, second.id);
    await third.delete();
  });

  test('a revoke or a transfer takes the send right from the very next send, though the process sent a moment before', async () => {
    const name = box();
    const owner = await connect({ socket: kernel.socket });
    const member = await connect({ socket: kernel.socket });
    const lacksSend = (err: Error & { code?: string }): boolean => {
      assert.equal(err.code, 'EACCES');
      assert.match(err.message, /\(mode 0620\): it lacks the send right/);
      return true;
    };
    try {
      // Owner rw, group w, others nothing.
      const mine = await owner.createMailbox(name, { mode: 0o620 });
      const theirs = await member.openMailbox(name);
      await mine.grant(member.id);
      await theirs.send('granted');
      await mine.revoke(member.id);
      await assert.rejects(theirs.send('revoked'), lacksSend);
      await mine.send('owner');
      await mine.transfer(member.id);
      await assert.rejects(mine.send('given away'), lacksSend);
      assert.equal((await theirs.receive({ nowait: true }))?.body, 'granted');
      assert.equal((await theirs.receive({ nowait: true }))?.body, 'owner');
      assert.equal(await theirs.receive({ nowait: true }), null, 'nothing else went in');
    } finally {
      await owner.close();
      await member.close();
    }
  });

  test('system-owned: outlives its owner, then anyone may act as owner', async () => {
    const name = box();
    const [owner, other] = [await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { system: true } });
    await other.do({ cmd: 'open', name });
    assert.equal((await stat(name)).mode, 0o666);
    await owner.do({ cmd: 'send', mb: name, body: 'kept' });
    await owner.kill('SIGKILL');
    await unowned(name);
    assert.equal(body(await other.do({ cmd: 'receive', mb: name })), 'kept');
    assert.equal((await other.do({ cmd: 'delete', mb: name })).event, 'ok');
  });

  test("a process's grants end with it: it leaves the group, which a long-lived mailbox does not collect", async () => {
    const name = box();
    const owner = await agent();
    await owner.do({ cmd: 'create', name, opts: { system: true, mode: 0o660 } });
    // A worker granted the right to receive, then ended (killed or closed), as a supervisor's come and go.
    const [killed, closed, alive] = [await agent(), await agent(), await agent()];
    for (const w of [killed, closed, alive])
      assert.equal((await owner.do({ cmd: 'grant', mb: name, process: w.pid })).event, 'ok');
    assert.deepEqual((await stat(name)).group, [killed.pid, closed.pid, alive.pid]);
    // Monitors are told after the kernel has let go of all a process held (noproc: already so).
    const ended = [me.monitor(killed.pid), me.monitor(closed.pid)];
    await killed.kill('SIGKILL');
    await closed.stop();
    await Promise.all(ended);
    // Before, both stayed in the group for good, and revoking them was ESRCH (no such process).
    assert.deepEqual((await stat(name)).group, [alive.pid]);
    assert.equal((await owner.do({ cmd: 'revoke', mb: name, process: killed.pid })).code, 'ESRCH');
    // A process whose mailbox went first ends without error; the grant of one still alive holds.
    const other = box();
    await owner.do({ cmd: 'create', name: other, opts: { mode: 0o660 } });
    await owner.do({ cmd: 'grant', mb: other, process: alive.pid });
    await owner.do({ cmd: 'delete', mb: other });
    await alive.do({ cmd: 'open', name });
    assert.equal((await alive.do({ cmd: 'receive', mb: name, opts: { nowait: true } })).event, 'ok');
    const last = me.monitor(alive.pid);
    await alive.stop();
    await last;
    assert.deepEqual((await stat(name)).group, []);
    await owner.do({ cmd: 'delete', mb: name });
  });

  test('unowned system mailbox: a third process that never had it does the owner operations, until it passes ownership on', async () => {
    const name = box();
    const [owner, third, fourth] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { system: true, mode: 0o600 } });
    await owner.kill('SIGKILL');
    await unowned(name);
    await third.do({ cmd: 'open', name });
    await fourth.do({ cmd: 'open', name });
    // The mode still binds everyone: owner operations are open, sending and receiving are not.
    assert.equal((await third.do({ cmd: 'send', mb: name, body: 'x' })).code, 'EACCES');
    assert.equal((await third.do({ cmd: 'chmod', mb: name, mode: 0o640 })).event, 'ok');
    assert.equal((await third.do({ cmd: 'grant', mb: name, process: fourth.pid })).event, 'ok');
    assert.equal((await fourth.do({ cmd: 'receive', mb: name, opts: { nowait: true } })).event, 'ok');
    assert.equal((await third.do({ cmd: 'revoke', mb: name, process: fourth.pid })).event, 'ok');
    assert.equal((await third.do({ cmd: 'transfer', mb: name, process: fourth.pid })).event, 'ok');
    const refused = await third.do({ cmd: 'chmod', mb: name, mode: 0o666 });
    assert.equal(refused.code, 'EACCES', 'owned again: only its owner may');
    assert.match(
      refused.message as string,
      new RegExp(`mailbox '${name}': only its owner, process ${fourth.pid}`),
    );
    assert.equal((await fourth.do({ cmd: 'delete', mb: name })).event, 'ok');
  });

  test('transferred, a process-owned mailbox goes with its new owner: a sender waiting at a rendezvous gets EIDRM', async () => {
    const name = box();
    const [owner, heir, sender] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { capacity: 0, mode: 0o666 } });
    await owner.do({ cmd: 'transfer', mb: name, process: heir.pid });
    await owner.kill('SIGKILL');
    await sender.do({ cmd: 'open', name });
    const waiting = sender.start({ cmd: 'send', mb: name, body: 'meet me' });
    await until(
      () => stat(name),
      (s) => s.waitingSenders.length === 1 && s.owner === heir.pid,
      10_000,
      'sender waiting, the heir owning it',
    );
    await heir.kill('SIGKILL');
    const e = await waiting;
    assert.equal(e.code, 'EIDRM');
    assert.match(
      e.message as string,
      new RegExp(`mailbox '${name}' was removed \\(its owner process ${heir.pid} terminated\\)`),
    );
    const later = await sender.do({ cmd: 'send', mb: name, body: 'too late' });
    assert.equal(later.code, 'ENOENT', 'later senders are told it is gone');
  });

  test('fixed-size mailbox: exactly n bytes or EMSGSIZE; the preallocated ring survives wrap-around and give-backs intact', async () => {
    const name = box();
    const [owner, victim, reader] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { capacity: 8, messageSize: 4, mode: 0o666 } });
    await victim.do({ cmd: 'open', name });
    await reader.do({ cmd: 'open', name });
    const wrong = await owner.do({ cmd: 'send', mb: name, body: 'five!' });
    assert.equal(wrong.code, 'EMSGSIZE');
    assert.match(wrong.message as string, /exactly 4 bytes/);
    const bad = await owner.do({ cmd: 'create', name: `${name}-x`, opts: { messageSize: 4 } });
    assert.equal(bad.code, 'EINVAL', 'a ring needs a bounded capacity');
    const none = await owner.do({ cmd: 'create', name: `${name}-y`, opts: { messageSize: 4, capacity: 0 } });
    assert.equal(none.code, 'EINVAL', 'a ring needs a capacity of at least 1');
    assert.match(none.message as string, /at least 1/);
    const sending = owner.start({ cmd: 'sendMany', mb: name, count: 40, prefix: 'm', width: 3 });
    await until(
      () => stat(name),
      (s) => s.count === 8,
      10_000,
      'ring full',
    );
    // A prefetching receiver takes one, holds the rest of the ring, and dies.
    void victim.start({ cmd: 'consume', mb: name, count: 40, opts: { prefetch: 8 }, delayMs: 60_000 });
    await victim.waitFor((ev) => ev.some((e) => e.event === 'message'));
    // The take of m000 must have reached the kernel (received), not only the push (inflight).
    await until(
      () => stat(name),
      (s) => s.received === 1 && s.inflight === 8,
      10_000,
      'm000 taken and the ring pushed ahead',
    );
    await victim.kill('SIGKILL');
    const r = await reader.do({ cmd: 'consume', mb: name, count: 39, opts: { prefetch: 3 } });
    assert.equal(r.count, 39);
    assert.equal((await sending).sent, 40);
    assert.deepEqual(
      reader.messages().map((m) => m.body),
      Array.from({ length: 39 }, (_, i) => `m${String(i + 1).padStart(3, '0')}`),
    );
    assert.equal((await stat(name)).messageSize, 4);
  });

  test('a terminated sender’s queued messages are kept', async () => {
    const name = box();
    const [owner, sender] = [await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { mode: 0o666 } });
    await sender.do({ cmd: 'open', name });
    await sender.do({ cmd: 'sendMany', mb: name, count: 3, prefix: 'legacy' });
    await sender.kill('SIGKILL');
    await until(
      () => me.processes(),
      (ps) => !ps.some((p) => p.id === sender.pid),
      10_000,
      'the sender ended',
    );
    const r = await owner.do({ cmd: 'consume', mb: name, count: 3 });
    assert.equal(r.count, 3);
    assert.deepEqual(
      owner.messages().map((m) => [m.body, m.sender]),
      [0, 1, 2].map((i) => [`legacy${i}`, sender.pid]),
    );
  });

  test('owner killed with SIGKILL while others are blocked sending and receiving: all get EIDRM naming the mailbox', async () => {
    const name = box();
    const [owner, sender, receiver] = [await agent(), await agent(), await agent()];
    await owner.do({ cmd: 'create', name, opts: { capacity: 1, mode: 0o666 } });
    await sender.do({ cmd: 'open', name });
    await receiver.do({ cmd: 'open', name });
    await owner.do({ cmd: 'send', mb: name, body: 'type one', opts: { type: 1 } });
    const s = sender.start({ cmd: 'send', mb: name, body: 'blocked', opts: { type: 9 } });
    const r = receiver.start({ cmd: 'receive', mb: name, opts: { type: 9 } });
    await until(
      () => stat(name),
      (x) => x.waitingSenders.length === 1 && x.waitingReceivers.length === 1,
      10_000,
      'both blocked',
    );
    await owner.kill('SIGKILL');
    for (const e of [await s, await r]) {
      assert.equal(e.code, 'EIDRM');
      assert.match(
        e.message as string,
        new RegExp(`mailbox '${name}' was removed \\(its owner process ${owner.pid} terminated\\)`),
      );
    }
  });

  test('selection by type (System V msgrcv) and by sender; priority order; E2BIG and truncation', async () => {
    const name = box();
    const p = await agent();
    const q = await agent();
    await p.do({ cmd: 'create', name, opts: { mode: 0o666 } });
    await q.do({ cmd: 'open', name });
    for (const [t, text] of [
      [3, 'c'],
      [1, 'a'],
      [2, 'b'],
      [1, 'a2'],
    ] as const) {
      await p.do({ cmd: 'send', mb: name, body: text, opts: { type: t } });
    }
    await q.do({ cmd: 'send', mb: name, body: 'from-q', opts: { type: 5 } });
    assert.equal(body(await q.do({ cmd: 'receive', mb: name, opts: { type: 2 } })), 'b');
    assert.equal(body(await q.do({ cmd: 'receive', mb: name, opts: { type: 1, except: true } })), 'c');
    assert.equal(body(await q.do({ cmd: 'receive', mb: name, opts: { type: -5, from: q.pid } })), 'from-q');
    assert.equal(body(await q.do({ cmd: 'receive', mb: name, opts: { type: -3 } })), 'a');
    const big = await q.do({ cmd: 'receive', mb: name, opts: { maxSize: 1 } });
    assert.equal(big.code, 'E2BIG');
    // Receives resolve on delivery and their TAKEs follow: wait for the kernel to see them.
    await until(
      () => stat(name),
      (x) => x.count === 1 && x.received === 4,
      10_000,
      'the too-big message stays queued',
    );
    const cut = await q.do({ cmd: 'receive', mb: name, opts: { maxSize: 1, truncate: true } });
    assert.equal(body(cut), 'a', 'truncated to maxSize and consumed (MSG_NOERROR)');
    await until(
      () => stat(name),
      (x) => x.count === 0,
      10_000,
      'consumed',
    );

    const prio = box();
    await p.do({ cmd: 'create', name: prio, opts: { order: 'priority', mode: 0o666 } });
    for (const [pr, text] of [
      [1, 'low'],
      [5, 'high-1'],
      [3, 'mid'],
      [5, 'high-2'],
      [0, 'lowest'],
    ] as const) {
      await p.do({ cmd: 'send', mb: prio, body: text, opts: { priority: pr } });
    }
    await q.do({ cmd: 'open', name: prio });
    await q.do({ cmd: 'consume', mb: prio, count: 5 });
    assert.deepEqual(
      q.messages().map((m) => m.body),
      ['high-1', 'high-2', 'mid', 'low', 'lowest'],
    );
  });
});

test('a TCP process gone silent is terminated by heartbeat, and monitors are told: timeout', async () => {
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '200'] });
  const watcher = await connect({ socket: kernel.socket });
  const silent = await startAgent({ ...kernel.env, POSTBOX_URL: kernel.tcpUrl! });
  try {
    const down = watcher.monitor(silent.pid);
    await watcher.lookup(silent.pid); // the monitor is set before the process goes silent
    silent.proc.kill('SIGSTOP');
    const started = Date.now();
    const event = await down;
    assert.equal(event.reason, 'timeout');
    assert.ok(Date.now() - started < 5000, 'noticed within a bounded time (3 heartbeats plus one check)');
  } finally {
    silent.proc.kill('SIGCONT');
    await silent.kill('SIGKILL');
    await watcher.close();
    await kernel.stop();
  }
});

test('a TCP consumer stalled inside a handler past the heartbeat hands out none of the rest of that read', {
  timeout: 60_000,
}, async () => {
  // It handed the rest of the read to its handler when it came back, though the kernel had
  // ended it and given those messages to another receiver: each handled twice.
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '200'] });
  const me = await connect({ socket: kernel.socket });
  const dir = mkdtempSync(join(tmpdir(), 'postbox-stall-'));
  const go = join(dir, 'go');
  try {
    const box = await me.createMailbox('stalled-read', { mode: 0o666 });
    await box.sendMany([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('./fixtures/stalled-receiver.js', import.meta.url)),
        'stalled-read',
        'busy-consume',
      ],
      {
        env: { ...kernel.env, POSTBOX_URL: kernel.tcpUrl!, STALL_UNTIL: go },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const out = new ChildOutput(child);
    const busy = out.line('busy');
    const exited = once(child, 'close');
    await within(busy, 20_000, 'the handler to stall on its first message');
    const down = me.monitor(`stalled-${child.pid}`);
    assert.equal((await within(down, 20_000, 'the heartbeat to end it')).reason, 'timeout');
    const others: unknown[] = [];
    for (let m = await box.receive({ nowait: true }); m !== null; m = await box.receive({ nowait: true }))
      others.push(m.body);
    // Its first message was in the handler, not yet taken: it went back too (at least once).
    assert.deepEqual(others, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    writeFileSync(go, '');
    await within(exited, 20_000, 'the child to finish');
    const result = JSON.parse(out.text.split('\n').filter(Boolean).at(-1)!) as {
      got: unknown[];
      error: string | null;
    };
    assert.deepEqual(result.got, [1], `the stalled consumer went on with ${JSON.stringify(result.got)}`);
    assert.equal(result.error, 'ETIMEDOUT', 'told why, not reset');
    await box.delete();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await me.close();
    await kernel.stop();
  }
});

test('a TCP process stalled in the middle of a read runs no holdCredit handler and resolves no receive of the rest of it', {
  timeout: 60_000,
}, async () => {
  // One read brings a holdCredit consumer (an RPC server's way) three messages, a consumer the
  // message its handler stalls on, and a waiting receive() its message. Once the stall ended,
  // the receive resolved, and the held handlers ran after their takes went out, though the
  // kernel had ended the process and given all of them to others.
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '200'] });
  const me = await connect({ socket: kernel.socket });
  const dir = mkdtempSync(join(tmpdir(), 'postbox-stall-'));
  const go = join(dir, 'go');
  try {
    const held = await me.createMailbox('mixed', { mode: 0o666 });
    const recv = await me.createMailbox('mixed-recv', { mode: 0o666 });
    const busy = await me.createMailbox('mixed-busy', { mode: 0o666 });
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/stalled-receiver.js', import.meta.url)), 'mixed', 'busy-mixed'],
      {
        env: { ...kernel.env, POSTBOX_URL: kernel.tcpUrl!, STALL_UNTIL: go },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const out = new ChildOutput(child);
    const exited = once(child, 'close');
    await within(out.line('ready'), 20_000, 'the child to be ready');
    const down = me.monitor(`stalled-${child.pid}`);
    await me.lookup(`stalled-${child.pid}`);
    for (const b of [held, recv, busy])
      await until(
        () => b.stat(),
        (st) => st.waitingReceivers.length === 1,
        10_000,
        'its receivers to wait',
      );
    // Written in one flush, handled in one turn of the kernel's: pushed to the child in one write.
    const sent = [held.sendMany([1, 2, 3]), busy.send('stall'), recv.send('only one')];
    await Promise.all(sent);
    await within(out.line('busy'), 20_000, 'the handler to stall');
    assert.equal((await within(down, 20_000, 'the heartbeat to end it')).reason, 'timeout');
    const others = async (b: typeof held): Promise<unknown[]> => {
      const got: unknown[] = [];
      for (let m = await b.receive({ nowait: true }); m !== null; m = await b.receive({ nowait: true }))
        got.push(m.body);
      return got;
    };
    assert.deepEqual(await others(held), [1, 2, 3]);
    assert.deepEqual(await others(recv), ['only one']);
    // The message in the stalled handler, not yet taken, went back too (at least once).
    assert.deepEqual(await others(busy), ['stall']);
    writeFileSync(go, '');
    await within(exited, 20_000, 'the child to finish');
    const result = JSON.parse(out.text.split('\n').filter(Boolean).at(-1)!) as {
      got: unknown[];
      error: string | null;
    };
    assert.deepEqual(result.got, [], `after the stall it handed out ${JSON.stringify(result.got)}`);
    assert.equal(result.error, 'ETIMEDOUT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await me.close();
    await kernel.stop();
  }
});

type StallMode = 'iterate' | 'receive' | 'consume' | 'consume-hold';

/**
 * Runs fixtures/stalled-receiver in `mode` over TCP, stops it while it holds messages (or waits
 * for them), waits for the kernel to end it for silence and takes back what it held, then
 * continues it, and checks it handed out none of that. With `writeFirst` its first act once
 * continued is a write that goes out before it reads or asks for anything.
 */
async function stopPastHeartbeat(modes: StallMode[], writeFirst: boolean): Promise<void> {
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', '200'] });
  const me = await connect({ socket: kernel.socket });
  try {
    for (const mode of modes) {
      const name = `stalled-${mode}${writeFirst ? '-write' : ''}`;
      const box = await me.createMailbox(name, { mode: 0o666 });
      if (mode === 'iterate') for (let i = 1; i <= 10; i++) await box.send(i);
      const child = spawn(
        process.execPath,
        [fileURLToPath(new URL('./fixtures/stalled-receiver.js', import.meta.url)), name, mode],
        {
          env: { ...kernel.env, POSTBOX_URL: kernel.tcpUrl!, WRITE_FIRST: writeFirst ? '1' : '0' },
          stdio: ['pipe', 'pipe', 'inherit'],
        },
      );
      const out = new ChildOutput(child);
      const ready = out.line('ready');
      const exited = once(child, 'close');
      await within(ready, 20_000, 'the child to be ready');
      const down = me.monitor(`stalled-${child.pid}`);
      await me.lookup(`stalled-${child.pid}`); // the monitor is set before it stops
      if (mode !== 'iterate')
        await until(
          () => box.stat(),
          (st) => st.waitingReceivers.length === 1,
          10_000,
          'its receive to wait',
        );
      child.stdin.write('stop\n');
      await until(
        async () => readFileSync(`/proc/${child.pid}/stat`, 'utf8'),
        (st) => /^\d+ \(.*\) T /.test(st),
        10_000,
        'the child to be stopped',
      );
      // Stopped while holding messages (iterate: 2–10 pushed ahead) or with a receive waiting
      // (receive: the one sent now is delivered to it, unread).
      // consume: ten pushed to its socket while it cannot read them.
      if (mode === 'receive') await box.send('only one');
      if (mode === 'consume' || mode === 'consume-hold') await box.sendMany([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal((await within(down, 20_000, 'the heartbeat to end it')).reason, 'timeout');
      const others: unknown[] = [];
      for (let m = await box.receive({ nowait: true }); m !== null; m = await box.receive({ nowait: true }))
        others.push(m.body);
      assert.deepEqual(
        others,
        mode === 'iterate'
          ? [2, 3, 4, 5, 6, 7, 8, 9, 10]
          : mode === 'receive'
            ? ['only one']
            : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      );
      child.kill('SIGCONT');
      await within(exited, 20_000, 'the child to finish');
      const result = JSON.parse(out.text.split('\n').filter(Boolean).at(-1)!) as {
        got: unknown[];
        error: string | null;
      };
      // Before, it handed out all it held (or resolved the receive) before reading the kernel's
      // notice: every one of those messages handled twice.
      assert.deepEqual(
        result.got,
        [],
        `the stalled process (${mode}) handed out ${JSON.stringify(result.got)}`,
      );
      assert.equal(result.error, 'ETIMEDOUT');
      await box.delete();
    }
  } finally {
    await me.close();
    await kernel.stop();
  }
}

test(
  'a TCP process stopped past the heartbeat, once continued, hands out nothing the kernel gave back to others',
  {
    timeout: 60_000,
  },
  () => stopPastHeartbeat(['iterate', 'receive', 'consume', 'consume-hold'], false),
);

test(
  'a TCP process stopped past the heartbeat hands out nothing given back even when it writes before it reads',
  {
    timeout: 60_000,
  },
  () =>
    // Its write (a heartbeat, a send, a TAKE) counted as heard: it saw no silence, and handed out,
    // ran the handlers of, or returned what the kernel had given another receiver (chaos test,
    // heartbeat, seed 316: an iterator's message received twice, RPC requests run twice).
    stopPastHeartbeat(['iterate', 'receive', 'consume', 'consume-hold'], true),
);

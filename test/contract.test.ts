/**
 * The contract (BRIEF.md, "The contract") against a real kernel process and real client
 * processes, over the Unix socket and over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  connect,
  type MailboxStat,
  type Message,
  type MessageStream,
  type PostboxProcess,
} from '../src/client/mod.js';
import { type Agent, type AgentEvent, startAgent } from './helpers/agent.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

for (const transport of ['unix', 'tcp'] as const) {
  describe(`contract over ${transport}`, () => {
    let kernel: TestKernel;
    let env: NodeJS.ProcessEnv;
    let me: PostboxProcess;
    const agents: Agent[] = [];
    let boxSeq = 0;

    const agent = async (name?: string): Promise<Agent & { pid: number }> => {
      const a = await startAgent(env, name === undefined ? {} : { name });
      agents.push(a);
      return a;
    };
    const box = (): string => `${transport}-box-${++boxSeq}`;
    const stat = async (name: string): Promise<MailboxStat> => (await me.openMailbox(name)).stat();

    before(async () => {
      kernel = await startTestKernel({ tcp: transport === 'tcp' });
      env = transport === 'tcp' ? { ...kernel.env, POSTBOX_URL: kernel.tcpUrl! } : kernel.env;
      me = await connect(
        transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket: kernel.socket },
      );
    });
    after(async () => {
      await Promise.all(agents.map((a) => a.stop()));
      await me.close();
      assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
    });

    test('producer/consumer over a bounded mailbox: no loss, no duplicate, order kept, the producer waits at capacity', async () => {
      const name = box();
      const producer = await agent();
      const consumer = await agent();
      await producer.do({ cmd: 'create', name, opts: { capacity: 5, mode: 0o666 } });
      await consumer.do({ cmd: 'open', name });
      const sending = producer.start({ cmd: 'sendMany', mb: name, count: 200, prefix: 'm' });
      const full = await until(
        () => stat(name),
        (s) => s.count === 5 && s.waitingSenders.length > 0,
        10_000,
        'mailbox full with a blocked sender',
      );
      assert.equal(full.count, 5);
      assert.deepEqual(
        [...new Set(full.waitingSenders)],
        [producer.pid],
        'every blocked send is the producer',
      );
      let sendDone = false;
      void sending.then(() => {
        sendDone = true;
      });
      assert.equal(sendDone, false, 'the producer is still blocked');
      const consumed = await consumer.do({ cmd: 'consume', mb: name, count: 200, opts: { prefetch: 3 } });
      assert.equal(consumed.count, 200);
      const r = await sending;
      assert.equal(r.sent, 200);
      const bodies = consumer.messages().map((m) => m.body);
      assert.deepEqual(
        bodies,
        Array.from({ length: 200 }, (_, i) => `m${i}`),
      );
      const seqs = consumer.messages().map((m) => m.seq as number);
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => i + 1),
      );
      // A receive resolves on delivery; its TAKE reaches the kernel just after.
      const end = await until(
        () => stat(name),
        (x) => x.count === 0,
        10_000,
        'all taken',
      );
      assert.ok(end.lastReceiveProcess === consumer.pid && end.lastSendProcess === producer.pid);
    });

    test('holdCredit: prefetch bounds what a worker holds, pushed ahead or in hand, until it gives credit back', async () => {
      const name = box();
      const mb = await me.createMailbox<string>(name, { mode: 0o600 });
      for (let i = 0; i < 10; i++) await mb.send(`j${i}`);
      const jobs = mb.messages({ prefetch: 3, holdCredit: true }); // typed with returnCredit()
      const take = async (): Promise<string> => {
        const r = await jobs.next();
        assert.equal(r.done, false);
        return (r.value as Message<string>).body;
      };
      assert.deepEqual([await take(), await take(), await take()], ['j0', 'j1', 'j2']);
      // Three in hand and no credit given back: they are taken, and nothing more is pushed.
      const busy = await until(
        () => mb.stat(),
        (s) => s.inflight === 0,
        10_000,
        'the three takes reach the kernel',
      );
      assert.equal(busy.queued, 7, 'the rest waits in the mailbox for any worker');
      assert.throws(
        () => jobs.returnCredit(4),
        /returnCredit\(4\): 3 taken messages have not given theirs back/,
      );
      jobs.returnCredit(2);
      await until(
        () => mb.stat(),
        (s) => s.queued === 5,
        10_000,
        'two more pushed after returnCredit(2)',
      );
      assert.deepEqual([await take(), await take()], ['j3', 'j4']);
      // Two given back and two more taken: three in hand again, and no more than that to give.
      assert.throws(
        () => jobs.returnCredit(4),
        /returnCredit\(4\): 3 taken messages have not given theirs back/,
      );
      await jobs.return();
      const after = await until(
        () => mb.stat(),
        (s) => s.inflight === 0,
        10_000,
        'the loop ended with nothing untaken',
      );
      assert.equal(after.count, 5, 'five taken, five still queued: none lost, none given twice');
      assert.equal(((await mb.receive()) as Message<string>).body, 'j5');
      // returnCredit() belongs to holdCredit iterators.
      const plain = mb.messages({ prefetch: 2 }) as MessageStream<string>;
      assert.throws(
        () => plain.returnCredit(),
        /returnCredit\(\) is for an iterator opened with holdCredit: true/,
      );
      await plain.return();
      assert.throws(
        () => mb.messages({ prefetch: -3 }),
        /prefetch must be a whole number of messages, not -3/,
      );
      assert.throws(
        () => mb.messages({ holdCredit: 'yes' as unknown as boolean }),
        /holdCredit must be true or false, not the string 'yes'/,
      );
      assert.throws(
        () => mb.messages({ prefetch: 0, holdCredit: true }),
        /holdCredit needs an iterator that is pushed ahead; prefetch 0 is read one message at a time/,
      );
      await mb.delete();
    });

    test('a prefetching iterator reports a lone take by the end of the turn, not at a full batch', async () => {
      const name = box();
      const mb = await me.createMailbox<string>(name, { mode: 0o600, capacity: 1 });
      await mb.send('first');
      // Full: this send waits until the kernel hears that 'first' was taken.
      const second = mb.send('second');
      // prefetch 64 reports takes in batches of 16; one take must still reach the kernel.
      const it = mb.messages({ prefetch: 64 });
      const r = await it.next();
      assert.equal((r.value as Message<string>).body, 'first');
      assert.equal((await second).outcome, 'queued');
      const r2 = await it.next();
      assert.equal((r2.value as Message<string>).body, 'second');
      const taken = await until(
        () => mb.stat(),
        (st) => st.count === 0,
        10_000,
        'the second take reported',
      );
      assert.equal(taken.inflight, 0);
      await it.return?.();
      await mb.delete();
    });

    test('rendezvous: at capacity 0 the send completes only when a receiver takes the message', async () => {
      const name = box();
      const sender = await agent();
      const receiver = await agent();
      await sender.do({ cmd: 'create', name, opts: { capacity: 0, mode: 0o666 } });
      await receiver.do({ cmd: 'open', name });
      let completed = false;
      const sending = sender.start({ cmd: 'send', mb: name, body: 'meet me' }).then((r) => {
        completed = true;
        return r;
      });
      await until(
        () => stat(name),
        (s) => s.waitingSenders.length === 1,
        10_000,
        'sender blocked',
      );
      assert.equal(completed, false);
      assert.equal((await stat(name)).count, 0, 'nothing is buffered at capacity 0');
      const got = await receiver.do({ cmd: 'receive', mb: name });
      assert.equal((got.message as { body: string }).body, 'meet me');
      const r = await sending;
      assert.equal(r.event, 'ok');
      assert.deepEqual((r.result as { outcome: string; receiver: number }).outcome, 'received');
      assert.equal((r.result as { receiver: number }).receiver, receiver.pid);
      const nowait = await sender.do({ cmd: 'send', mb: name, body: 'x', opts: { nowait: true } });
      assert.equal(nowait.code, 'EAGAIN', 'no receiver waiting: a non-blocking rendezvous send would block');
    });

    test('unbounded: sends never wait', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      const r = await p.do({ cmd: 'sendMany', mb: name, count: 5000, opts: { nowait: true } });
      assert.deepEqual(r.failed, []);
      assert.equal((await stat(name)).count, 5000);
      // Nor past the kernel's default byte limit of a mailbox (the test kernel's is 64 MiB):
      // an unbounded mailbox has none of its own unless asked, only the kernel's total.
      const big = box();
      await p.do({ cmd: 'create', name: big, opts: { mode: 0o666 } });
      const mib = 'x'.repeat(1024 * 1024 - 100);
      const many = await p.do({ cmd: 'sendMany', mb: big, count: 70, prefix: mib, opts: { nowait: true } });
      assert.deepEqual(many.failed, []);
      assert.equal((await stat(big)).count, 70);
    });

    test('non-blocking send on a full mailbox fails with EAGAIN and queues nothing; non-blocking receive on empty returns null', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { capacity: 2, mode: 0o666 } });
      await p.do({ cmd: 'sendMany', mb: name, count: 2, prefix: 'keep' });
      const r = await p.do({ cmd: 'send', mb: name, body: 'extra', opts: { nowait: true } });
      assert.equal(r.event, 'error');
      assert.equal(r.code, 'EAGAIN');
      assert.match(r.message as string, new RegExp(`'${name}' is full`));
      assert.equal((await stat(name)).count, 2);
      const other = box();
      await p.do({ cmd: 'create', name: other, opts: { mode: 0o666 } });
      const empty = await p.do({ cmd: 'receive', mb: other, opts: { nowait: true } });
      assert.equal(empty.message, null);
    });

    test('a byte limit counts too: full is whichever limit is reached first', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { capacity: 100, maxBytes: 10, mode: 0o666 } });
      assert.equal((await p.do({ cmd: 'send', mb: name, body: '12345678' })).event, 'ok');
      const r = await p.do({ cmd: 'send', mb: name, body: '123', opts: { nowait: true } });
      assert.equal(r.code, 'EAGAIN');
    });

    test('timeouts and aborts give up cleanly, and a send that gave up is never delivered', async () => {
      const name = box();
      const p = await agent();
      const q = await agent();
      await p.do({ cmd: 'create', name, opts: { capacity: 1, mode: 0o666 } });
      await q.do({ cmd: 'open', name });
      const rt = await q.do({ cmd: 'receive', mb: name, opts: { timeout: 50 } });
      assert.equal(rt.code, 'ETIMEDOUT');
      assert.match(rt.message as string, /timed out/);
      const ra = await q.do({ cmd: 'receive', mb: name, abortAfterMs: 30 });
      assert.equal(ra.code, 'ECANCELED');
      await p.do({ cmd: 'send', mb: name, body: 'first' });
      const st = await p.do({ cmd: 'send', mb: name, body: 'timed-out', opts: { timeout: 50 } });
      assert.equal(st.code, 'ETIMEDOUT');
      const sa = await p.do({ cmd: 'send', mb: name, body: 'aborted', abortAfterMs: 30 });
      assert.equal(sa.code, 'ECANCELED');
      await p.do({ cmd: 'send', mb: name, body: 'x', opts: { nowait: true } }); // still full: EAGAIN
      const got: unknown[] = [];
      for (;;) {
        const r = await q.do({ cmd: 'receive', mb: name, opts: { nowait: true } });
        if (r.message === null) break;
        got.push((r.message as { body: unknown }).body);
      }
      assert.deepEqual(got, ['first'], 'neither the timed-out nor the aborted message was delivered');
      const after = await p.do({ cmd: 'send', mb: name, body: 'later' });
      assert.equal(after.event, 'ok');
      const r = await q.do({ cmd: 'receive', mb: name });
      assert.equal((r.message as { body: string }).body, 'later', 'an aborted receive took nothing');
    });

    test('until received with a timeout or a signal: a message queued but not taken in time is withdrawn', async () => {
      const name = box();
      const p = await agent();
      const q = await agent();
      const bytesBefore = (await me.usage()).totalBytes;
      await p.do({ cmd: 'create', name, opts: { capacity: 5, mode: 0o666 } });
      await q.do({ cmd: 'open', name });
      const timedOut = await p.do({
        cmd: 'send',
        mb: name,
        body: 'late',
        opts: { receipt: true, timeout: 50 },
      });
      assert.equal(timedOut.code, 'ETIMEDOUT');
      const aborted = await p.do({
        cmd: 'send',
        mb: name,
        body: 'gone',
        opts: { receipt: true },
        abortAfterMs: 30,
      });
      assert.equal(aborted.code, 'ECANCELED');
      assert.equal((await stat(name)).count, 0, 'both were queued, and both left with their sends');
      assert.equal((await q.do({ cmd: 'receive', mb: name, opts: { nowait: true } })).message, null);
      // The next message takes a place one of them left: it carries no receipt of theirs.
      const next = await p.do({ cmd: 'send', mb: name, body: 'next' });
      assert.equal(next.event, 'ok');
      const pending = await stat(name);
      assert.equal(pending.waitingReceiptsCount, 0, 'no receipt waits for it');
      const r = await q.do({ cmd: 'receive', mb: name });
      assert.equal((r.message as { body: string }).body, 'next');
      const taken = await stat(name);
      assert.equal(taken.waitingReceiptsCount, 0, "nor once it is in a receiver's hands");
      assert.equal(taken.count, 0);
      // A withdrawn send's held bytes were given back once: taken for another, they were given
      // back again, and the kernel's count of what it holds fell below what it holds.
      assert.equal((await me.usage()).totalBytes, bytesBefore, 'the kernel holds what it held before');
    });

    test('direct links: symmetric and asymmetric receive, sender reported', async () => {
      const a = await agent(`${transport}-A`);
      const b = await agent(`${transport}-B`);
      const c = await agent(`${transport}-C`);
      await b.do({ cmd: 'send', to: `${transport}-A`, body: 'b1' });
      await c.do({ cmd: 'send', to: a.pid, body: 'c1' });
      await b.do({ cmd: 'send', to: `${transport}-A`, body: 'b2' });
      const fromC = await a.do({ cmd: 'receive', inbox: true, opts: { from: `${transport}-C` } });
      assert.deepEqual(
        [(fromC.message as AgentEvent).body, (fromC.message as AgentEvent).sender],
        ['c1', c.pid],
      );
      const any1 = await a.do({ cmd: 'receive', inbox: true });
      const any2 = await a.do({ cmd: 'receive', inbox: true });
      assert.deepEqual(
        [any1.message, any2.message].map((m) => [(m as AgentEvent).body, (m as AgentEvent).sender]),
        [
          ['b1', b.pid],
          ['b2', b.pid],
        ],
      );
      const none = await a.do({ cmd: 'receive', inbox: true, opts: { nowait: true } });
      assert.equal(none.message, null);
      const info = (await b.do({ cmd: 'lookup', process: a.pid })).info as { inbox: number };
      const opened = await b.do({ cmd: 'open', name: info.inbox, as: 'a-inbox' });
      assert.equal(opened.event, 'ok', 'an inbox can be opened by its mailbox id');
      const steal = await b.do({ cmd: 'receive', mb: 'a-inbox', opts: { nowait: true } });
      assert.equal(steal.code, 'EACCES', 'only its process receives from an inbox');
      await c.stop();
      const gone = await b.do({ cmd: 'send', to: c.pid, body: 'hello?' });
      assert.equal(gone.code, 'ESRCH');
      assert.match(gone.message as string, /terminated/);
    });

    test('two receivers share a mailbox: each message goes to exactly one', async () => {
      const name = box();
      const p1 = await agent();
      const p2 = await agent();
      const p3 = await agent();
      await p1.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      await p2.do({ cmd: 'open', name });
      await p3.do({ cmd: 'open', name });
      void p2.start({ cmd: 'consume', mb: name, count: 1000, opts: { prefetch: 16 } });
      void p3.start({ cmd: 'consume', mb: name, count: 1000, opts: { prefetch: 16 } });
      await until(
        () => stat(name),
        (s) => s.waitingReceivers.length === 2,
        10_000,
        'both receivers waiting',
      );
      await p1.do({ cmd: 'sendMany', mb: name, count: 600, prefix: 's' });
      await until(
        async () => p2.messages().length + p3.messages().length,
        (n) => n >= 600,
        15_000,
        'all delivered',
      );
      const bodies = [...p2.messages(), ...p3.messages()].map((m) => m.body);
      assert.equal(bodies.length, 600, 'no duplicate');
      assert.deepEqual(new Set(bodies), new Set(Array.from({ length: 600 }, (_, i) => `s${i}`)), 'no loss');
      assert.ok(p2.messages().length > 0 && p3.messages().length > 0, 'both took a share');
      await until(
        () => stat(name),
        (x) => x.count === 0,
        10_000,
        'all taken',
      );
    });

    test('a prefetching receiver killed with SIGKILL gives its untaken messages back, in order', async () => {
      const name = box();
      const owner = await agent();
      const victim = await agent();
      const heir = await agent();
      await owner.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      await victim.do({ cmd: 'open', name });
      await heir.do({ cmd: 'open', name });
      await owner.do({ cmd: 'sendMany', mb: name, count: 100, prefix: 'p' });
      void victim.start({ cmd: 'consume', mb: name, count: 100, opts: { prefetch: 50 }, delayMs: 60_000 });
      await victim.waitFor((ev) => ev.some((e) => e.event === 'message'));
      const s = await until(
        () => stat(name),
        (x) => x.count === 99,
        10_000,
        'the first message taken',
      );
      assert.equal(s.inflight, 50, 'the kernel pushed ahead within the credit, refilled by the take');
      await victim.kill('SIGKILL');
      await until(
        () => stat(name),
        (x) => x.inflight === 0 && x.queued === 99,
        10_000,
        'untaken messages given back',
      );
      const r = await heir.do({ cmd: 'consume', mb: name, count: 99 });
      assert.equal(r.count, 99);
      assert.deepEqual(
        heir.messages().map((m) => m.body),
        Array.from({ length: 99 }, (_, i) => `p${i + 1}`),
      );
    });

    test('an iterator holding more than the kernel first made room for (4,096) takes and gives back exactly the right ones', async () => {
      // The kernel's record of what a receiver holds starts at 4,096 entries and doubles when
      // more come; here it doubles after takes have moved its start, where the old order must be
      // kept. A fixed-size mailbox's messages are each their own entry.
      const name = box();
      const mb = await me.createMailbox<string>(name, { capacity: 8192, messageSize: 4 });
      const body = (i: number): string => String(i).padStart(4, '0');
      await mb.sendMany(Array.from({ length: 4096 }, (_, i) => body(i)));
      const it = mb.messages({ prefetch: 8192 });
      await until(
        () => mb.stat(),
        (s) => s.inflight === 4096,
        20_000,
        'all 4,096 pushed ahead',
      );
      const take = async (): Promise<string> => ((await it.next()).value as Message<string>).body;
      for (let i = 0; i < 10; i++) assert.equal(await take(), body(i));
      await until(
        () => mb.stat(),
        (s) => s.inflight === 4086,
        10_000,
        'the ten takes reach the kernel',
      );
      // Twenty more, from two processes in turn so that none joins the entry before it.
      const connectOptions =
        transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket: kernel.socket };
      const [a, b] = [await connect(connectOptions), await connect(connectOptions)];
      try {
        const outs = [await a.openMailbox<string>(name), await b.openMailbox<string>(name)];
        for (let i = 4096; i < 4116; i++) await outs[i % 2]!.send(body(i));
      } finally {
        await a.close();
        await b.close();
      }
      await until(
        () => mb.stat(),
        (s) => s.inflight === 4106,
        10_000,
        'the twenty pushed ahead too',
      );
      assert.equal(await take(), body(10));
      await it.return?.();
      await until(
        () => mb.stat(),
        (s) => s.inflight === 0,
        10_000,
        'the rest given back',
      );
      const left: string[] = [];
      for (let i = 0; i < 4200; i++) {
        const m = await mb.receive({ nowait: true });
        if (m === null) break;
        left.push(m.body);
      }
      // Copied out of order, the kernel took another message for the eleventh, gave the eleventh
      // back to be received twice, and lost the one it had counted as taken.
      assert.deepEqual(
        left,
        Array.from({ length: 4105 }, (_, i) => body(i + 11)),
      );
      await mb.close();
    });

    test("an iterator gives back exactly its mailbox's messages, though another mailbox's lay between them in one write", async () => {
      const x = await me.createMailbox<string>(box());
      const y = await me.createMailbox<string>(box());
      const it = x.messages({ prefetch: 8 });
      // Sent in one turn: one write, one read in the kernel, the frames back to back in it.
      const sent = Promise.all([x.send('x1'), y.send('y1'), x.send('x2')]);
      await sent;
      await until(
        () => x.stat(),
        (s) => s.inflight === 2,
        10_000,
        'both pushed ahead',
      );
      await it.return?.();
      // Joined as if they lay side by side, the give-back put y's message in x in place of x2.
      assert.deepEqual(
        [(await x.receive({ nowait: true }))?.body, (await x.receive({ nowait: true }))?.body],
        ['x1', 'x2'],
      );
      assert.equal(await x.receive({ nowait: true }), null);
      assert.equal((await y.receive({ nowait: true }))?.body, 'y1');
      await x.close();
      await y.close();
    });

    test('a process killed while blocked takes nothing with it, and the kernel carries on', async () => {
      const name = box();
      const owner = await agent();
      const sender = await agent();
      const receiver = await agent();
      await owner.do({ cmd: 'create', name, opts: { capacity: 1, mode: 0o666 } });
      await sender.do({ cmd: 'open', name });
      await receiver.do({ cmd: 'open', name });
      await owner.do({ cmd: 'send', mb: name, body: 'queued' });
      void sender.start({ cmd: 'send', mb: name, body: 'from-the-dead' });
      await until(
        () => stat(name),
        (s) => s.waitingSenders.length === 1,
        10_000,
        'sender blocked',
      );
      await sender.kill('SIGKILL');
      await until(
        () => stat(name),
        (s) => s.waitingSenders.length === 0,
        10_000,
        'dead sender withdrawn',
      );
      const first = await receiver.do({ cmd: 'receive', mb: name });
      assert.equal((first.message as AgentEvent).body, 'queued');
      const none = await receiver.do({ cmd: 'receive', mb: name, opts: { nowait: true } });
      assert.equal(none.message, null, "the dead sender's message was never delivered");
      // A receiver killed while blocked: the next message goes to a live one.
      const doomed = await agent();
      await doomed.do({ cmd: 'open', name });
      void doomed.start({ cmd: 'receive', mb: name });
      await until(
        () => stat(name),
        (s) => s.waitingReceivers.length === 1,
        10_000,
        'receiver blocked',
      );
      await doomed.kill('SIGKILL');
      await until(
        () => stat(name),
        (s) => s.waitingReceivers.length === 0,
        10_000,
        'dead receiver gone',
      );
      await owner.do({ cmd: 'send', mb: name, body: 'for the living' });
      const r = await receiver.do({ cmd: 'receive', mb: name });
      assert.equal((r.message as AgentEvent).body, 'for the living');
    });

    test('a process killed while its send waits for a receipt, or for a rendezvous, takes that message with it', async () => {
      // Its client reports such a send failed (ENOTCONN, or nothing at all once killed): the
      // message must not be delivered after its sender has gone. Before, both stayed, and the
      // dead sender was listed among the rendezvous's waiting senders.
      const queued = box();
      const sender = await agent();
      await sender.do({ cmd: 'create', name: queued, opts: { mode: 0o666, system: true } });
      void sender.start({ cmd: 'send', mb: queued, body: 'receipt-from-the-dead', opts: { receipt: true } });
      await until(
        () => stat(queued),
        (s) => s.count === 1 && s.waitingReceipts.length === 1,
        10_000,
        'queued, waiting for its receipt',
      );
      await sender.kill('SIGKILL');
      await until(
        () => stat(queued),
        (s) => s.waitingReceipts.length === 0,
        10_000,
        'dead sender gone',
      );
      assert.equal((await stat(queued)).count, 0, 'the message went with its sender');
      const q = await me.openMailbox(queued);
      assert.equal(await q.receive({ nowait: true }), null);

      // A rendezvous whose message a stream holds, pushed ahead and not yet handed out, when its
      // sender dies: it is recalled or, when the stream gives it back, dropped; never delivered.
      const meet = box();
      const rdv = await me.createMailbox(meet, { capacity: 0, mode: 0o666 });
      const [living, dying] = [await agent(), await agent()];
      await living.do({ cmd: 'open', name: meet });
      await dying.do({ cmd: 'open', name: meet });
      const lived = living.start({ cmd: 'send', mb: meet, body: 'from the living' });
      await until(
        () => rdv.stat(),
        (s) => s.waitingSenders.length === 1,
        10_000,
        'the first sender waiting',
      );
      void dying.start({ cmd: 'send', mb: meet, body: 'from the dead' });
      await until(
        () => rdv.stat(),
        (s) => s.waitingSenders.length === 2,
        10_000,
        'both senders waiting',
      );
      const stream = rdv.messages({ prefetch: 4 });
      const loop = stream[Symbol.asyncIterator]();
      assert.equal((await loop.next()).value?.body, 'from the living');
      assert.equal(((await lived).result as { outcome: string }).outcome, 'received');
      await until(
        () => rdv.stat(),
        (s) => s.inflight === 1,
        10_000,
        "the second pushed to the stream, in the loop's hands",
      );
      await dying.kill('SIGKILL');
      await until(
        () => rdv.stat(),
        (s) => s.inflight === 0 && s.waitingSenders.length === 0,
        10_000,
        'the dead sender and its message gone',
      );
      await loop.return?.();
      assert.equal(
        await rdv.receive({ nowait: true }),
        null,
        "the dead sender's message was never delivered",
      );
    });

    test('receipt: the sender learns which process took its message', async () => {
      const name = box();
      const s = await agent();
      const r = await agent();
      await s.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      await r.do({ cmd: 'open', name });
      const sending = s.start({ cmd: 'send', mb: name, body: 'signed', opts: { receipt: true } });
      await until(
        () => stat(name),
        (x) => x.count === 1,
        10_000,
        'queued',
      );
      await r.do({ cmd: 'receive', mb: name });
      const res = (await sending).result as { outcome: string; receiver: number };
      assert.deepEqual([res.outcome, res.receiver], ['received', r.pid]);
    });

    test("a receipt's message, taken or replaced, leaves nothing of its send in its place for the next message", async () => {
      // The kernel finds a queued message's receipt by its place in the store, and places are
      // used again: one left behind would be taken for the next message's, and that send given
      // back its held bytes a second time (the kernel's count of what it holds falls below it).
      const name = box();
      const s = await agent();
      const r = await agent();
      const bytesBefore = (await me.usage()).totalBytes;
      await s.do({ cmd: 'create', name, opts: { capacity: 1, mode: 0o666 } });
      await r.do({ cmd: 'open', name });
      const queued = (): Promise<MailboxStat> =>
        until(
          () => stat(name),
          (x) => x.count === 1,
          10_000,
          'queued',
        );
      const signed = s.start({ cmd: 'send', mb: name, body: 'signed', opts: { receipt: true } });
      await queued();
      assert.equal(((await r.do({ cmd: 'receive', mb: name })).message as AgentEvent).body, 'signed');
      assert.equal(((await signed).result as { outcome: string }).outcome, 'received');
      assert.equal((await s.do({ cmd: 'send', mb: name, body: 'after taken' })).event, 'ok');
      assert.equal(((await r.do({ cmd: 'receive', mb: name })).message as AgentEvent).body, 'after taken');

      const old = s.start({ cmd: 'send', mb: name, body: 'old', opts: { receipt: true } });
      await queued();
      const rep = await s.do({
        cmd: 'send',
        mb: name,
        body: 'after replaced',
        opts: { onFull: 'replace-oldest' },
      });
      assert.equal((rep.result as { outcome: string }).outcome, 'replaced');
      assert.equal((await old).event, 'error', 'the replaced message was never received');
      assert.equal(((await r.do({ cmd: 'receive', mb: name })).message as AgentEvent).body, 'after replaced');
      assert.equal((await stat(name)).waitingReceiptsCount, 0);
      assert.equal((await me.usage()).totalBytes, bytesBefore, 'the kernel holds what it held before');
    });

    test('when full, the header can say: replace the oldest, or drop this one (counted)', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { capacity: 2, mode: 0o666 } });
      await p.do({ cmd: 'sendMany', mb: name, count: 2, prefix: 'v' });
      const rep = await p.do({ cmd: 'send', mb: name, body: 'v2', opts: { onFull: 'replace-oldest' } });
      assert.equal((rep.result as { outcome: string }).outcome, 'replaced');
      const drop = await p.do({ cmd: 'send', mb: name, body: 'v3', opts: { onFull: 'drop' } });
      assert.deepEqual(drop.result, { outcome: 'dropped' }, 'no sequence number: it was never queued');
      const s = await stat(name);
      assert.deepEqual([s.count, s.replaced, s.dropped], [2, 1, 1]);
      const a = await p.do({ cmd: 'receive', mb: name });
      const b = await p.do({ cmd: 'receive', mb: name });
      assert.deepEqual([(a.message as AgentEvent).body, (b.message as AgentEvent).body], ['v1', 'v2']);
    });

    test('messages larger than the mailbox allows are EMSGSIZE, never truncated', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { maxMessageSize: 10, mode: 0o666 } });
      const r = await p.do({ cmd: 'send', mb: name, body: '12345678901' });
      assert.equal(r.code, 'EMSGSIZE');
      assert.match(r.message as string, new RegExp(name));
      assert.equal((await p.do({ cmd: 'send', mb: name, body: '1234567890' })).event, 'ok');
    });

    test('typed bodies and headers arrive as sent', async () => {
      const name = box();
      const p = await agent();
      await p.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      const value = { n: 1, s: 'two', list: [1, 2, 3], nested: { ok: true }, nil: null };
      await p.do({
        cmd: 'send',
        mb: name,
        body: value,
        opts: { type: 7, priority: 3, headers: { trace: 'abc' } },
      });
      const r = await p.do({ cmd: 'receive', mb: name });
      const m = r.message as AgentEvent;
      assert.deepEqual(m.body, value);
      assert.deepEqual([m.type, m.priority, m.headers], [7, 3, { trace: 'abc' }]);
    });

    test("when a mailbox's owner terminates, the mailbox goes: waiters get EIDRM, later senders are told", async () => {
      const name = box();
      const owner = await agent();
      const waiter = await agent();
      await owner.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      await waiter.do({ cmd: 'open', name });
      const receiving = waiter.start({ cmd: 'receive', mb: name });
      await until(
        () => stat(name),
        (s) => s.waitingReceivers.length === 1,
        10_000,
        'receiver blocked',
      );
      await owner.kill('SIGKILL');
      const r = await receiving;
      assert.equal(r.code, 'EIDRM');
      assert.match(r.message as string, new RegExp(`'${name}' was removed`));
      const later = await waiter.do({ cmd: 'send', mb: name, body: 'anyone?' });
      assert.equal(later.code, 'ENOENT');
      assert.match(later.message as string, new RegExp(`mailbox '${name}' \\(#\\d+\\) was removed`), 'named');
      const receive = await waiter.do({ cmd: 'receive', mb: name });
      assert.equal(receive.code, 'ENOENT');
      assert.match(receive.message as string, new RegExp(`mailbox '${name}' \\(#\\d+\\) was removed`));
    });

    test('a message receive() has handed over is taken: its receiver dying at once does not give it back', async () => {
      const name = box();
      const owner = await agent();
      await owner.do({ cmd: 'create', name, opts: { mode: 0o666 } });
      for (let round = 0; round < 6; round++) {
        const receiver = await agent();
        await receiver.do({ cmd: 'open', name });
        await owner.do({ cmd: 'send', mb: name, body: `m${round}` });
        const got = await receiver.do({ cmd: 'receiveAndDie', mb: name });
        await receiver.kill('SIGKILL'); // already dead: waits for it to be gone
        assert.equal((got.message as { body: string }).body, `m${round}`);
        const after = await until(
          () => stat(name),
          (s) => s.inflight === 0,
          10_000,
          'the take, or the killed receiver given back',
        );
        assert.equal(after.count, 0, `round ${round}: m${round} came back after its receive() returned it`);
      }
    });

    test('process names are unique; monitors learn how a process ended', async () => {
      const taken = `${transport}-unique`;
      await agent(taken);
      await assert.rejects(
        connect(
          transport === 'tcp'
            ? { url: kernel.tcpUrl!, token: kernel.token, name: taken }
            : { socket: kernel.socket, name: taken },
        ),
        (err: Error & { code?: string }) => err.code === 'EEXIST' && err.message.includes(taken),
      );
      const crasher = await agent();
      const leaver = await agent();
      const crash = me.monitor(crasher.pid);
      const exit = me.monitor(leaver.pid);
      await me.lookup(leaver.pid); // requests are answered in order: both monitors are now set
      await crasher.do({ cmd: 'crash' });
      await leaver.stop();
      assert.equal((await crash).reason, 'crash');
      assert.equal((await exit).reason, 'exit');
      // Already gone: told at once, naming the process it was asked about.
      assert.deepEqual(await me.monitor(crasher.pid), { process: crasher.pid, name: null, reason: 'noproc' });
    });
  });
}

test('kernel shutdown: every waiting sender and receiver gets a clear ESHUTDOWN', async () => {
  const kernel = await startTestKernel();
  const a = await connect({ socket: kernel.socket });
  const mb = await a.createMailbox('full', { capacity: 1 });
  await mb.send('one');
  const blockedSend = mb.send('two');
  const blockedReceive = (await a.createMailbox('empty')).receive();
  const checks = [blockedSend, blockedReceive].map((p) =>
    assert.rejects(
      p,
      (err: Error & { code?: string }) => err.code === 'ESHUTDOWN' && /shutting down/.test(err.message),
    ),
  );
  await until(
    () => mb.stat(),
    (s) => s.waitingSenders.length === 1,
    10_000,
    'sender blocked',
  );
  assert.equal(await kernel.stop(), 0);
  await Promise.all(checks);
  await a.close();
});

test('a process that only waits learns the kernel is gone from closed; close() resolves it with null', async () => {
  const kernel = await startTestKernel();
  const idle = await connect({ socket: kernel.socket });
  const leaver = await connect({ socket: kernel.socket });
  await leaver.close();
  assert.equal(await leaver.closed, null);
  assert.equal(await kernel.stop(), 0);
  const err = await idle.closed;
  assert.equal(err?.code, 'ESHUTDOWN');
  await assert.rejects(idle.usage(), (e: Error & { code?: string }) => e.code === 'ESHUTDOWN');
});

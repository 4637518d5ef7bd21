/**
 * The contract's rules at sizes a user moving from NATS or Redis reaches: tens of thousands of
 * receives waiting on one mailbox, long queues given back to, many priorities. Each rule is the
 * one the small cases check elsewhere; here it must hold where the kernel's structures are large
 * (docs/performance.md, "What an operation costs as things grow"). Nothing here is timed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { connect, type MailboxStat, type Message, type PostboxProcess } from '../src/client/mod.js';
import { LIST_PAGE } from '../src/client/process.js';
import { STAT_IDS } from '../src/kernel/limits.js';
import { Op } from '../src/protocol/frame.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { callFrame, framePayload, RawPeer, within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const MANY = 20_000;
const run = promisify(execFile);

describe('rules at scale', () => {
  let kernel: TestKernel;
  let me: PostboxProcess;
  let n = 0;
  const box = (): string => `scale-${++n}`;

  before(async () => {
    kernel = await startTestKernel();
    me = await connect({ socket: kernel.socket });
  });
  after(async () => {
    await me.close();
    await kernel.stop();
  });

  /** What `postbox ARGS` prints. */
  async function cli(args: string[]): Promise<string> {
    const { stdout } = await run(process.execPath, [CLI, ...args], {
      env: kernel.env,
      timeout: 30_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  }

  /** Starts `count` single receives on `name` from a new process, once all are waiting. */
  async function receivesWaiting(
    name: string,
    count: number,
  ): Promise<{ proc: PostboxProcess; got: Promise<Message<string> | null>[] }> {
    const proc = await connect({ socket: kernel.socket });
    const mb = await proc.openMailbox<string>(name);
    const before = (await me.stat(name)).waitingReceiversCount;
    const got: Promise<Message<string> | null>[] = [];
    for (let i = 0; i < count; i++) {
      const r = mb.receive();
      r.catch(() => {}); // those still waiting when the process closes
      got.push(r);
    }
    await until(
      () => me.stat(name),
      (s) => s.waitingReceiversCount === before + count,
      30_000,
      `${count} receives waiting`,
    );
    return { proc, got };
  }

  test(`${MANY} receives waiting on a 'first' mailbox get the messages in the order they asked`, async () => {
    const name = box();
    const mb = await me.createMailbox<string>(name, { mode: 0o666 });
    const { proc, got } = await receivesWaiting(name, MANY);
    // Every other receive is answered, from the front of the line and from its middle.
    const sends = Array.from({ length: MANY / 2 }, (_, i) => `m${i}`);
    await mb.sendMany(sends);
    const bodies = await Promise.all(got.slice(0, MANY / 2).map(async (r) => (await r)?.body));
    assert.deepEqual(bodies, sends);
    const s = await me.stat(name);
    assert.equal(s.waitingReceiversCount, MANY / 2);
    assert.deepEqual(s.waitingReceivers, Array(STAT_IDS).fill(proc.id), 'the first 100 listed');
    assert.equal(s.queued, 0);
    // The command line counts those the kernel did not list.
    const stat = await cli(['stat', name]);
    assert.match(stat, new RegExp(`waiting receivers +${proc.id} ×100 \\+${MANY / 2 - 100} more\n`));
    const row = (await cli(['ls'])).split('\n').find((line) => line.includes(` ${name} `));
    assert.match(row ?? '', / 0 +1\+$/, 'one process among the first 100 receivers, and more');
    await proc.close();
  });

  test(`round robin takes turns by process while one process has ${MANY} receives waiting`, async () => {
    const name = box();
    const mb = await me.createMailbox<string>(name, { mode: 0o666, policy: 'round-robin' });
    const many = await receivesWaiting(name, MANY);
    const few = await receivesWaiting(name, 3);
    const receipts: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await mb.send(`m${i}`, { receipt: true });
      assert.equal(r.outcome, 'received');
      if (r.outcome === 'received') receipts.push(r.receiver);
    }
    // Turns alternate between the two processes, whatever the length of the one's line.
    for (let i = 1; i < receipts.length; i++) assert.notEqual(receipts[i], receipts[i - 1], `turn ${i}`);
    assert.deepEqual(
      (await Promise.all(few.got)).map((m) => m?.body),
      ['m1', 'm3', 'm5'],
    );
    await many.proc.close();
    await few.proc.close();
  });

  test(`a process ending with ${MANY} receives waiting leaves none behind, and the next receiver gets the next message`, async () => {
    const name = box();
    const mb = await me.createMailbox<string>(name, { mode: 0o666 });
    const many = await receivesWaiting(name, MANY);
    const after = await receivesWaiting(name, 1);
    await many.proc.close();
    await until(
      () => me.stat(name),
      (s) => s.waitingReceivers.length === 1,
      30_000,
      'its receives gone',
    );
    await mb.send('next');
    assert.equal((await after.got[0]!)?.body, 'next');
    await after.proc.close();
  });

  test(`stat counts ${MANY} sends waiting for their receipt and ${MANY} blocked, lists the first 100 of each, and only where they wait`, async () => {
    const receipts = await me.createMailbox<string>(box(), { mode: 0o666 });
    const full = await me.createMailbox<string>(box(), { mode: 0o666, capacity: 1 });
    const quiet = await me.createMailbox<string>(box(), { mode: 0o666 });
    const s1 = await connect({ socket: kernel.socket });
    const s2 = await connect({ socket: kernel.socket });
    const r1 = await s1.openMailbox<string>(receipts.id);
    const f2 = await s2.openMailbox<string>(full.id);
    for (let i = 0; i < MANY; i++) r1.send(`r${i}`, { receipt: true }).catch(() => {});
    for (let i = 0; i <= MANY; i++) f2.send(`f${i}`).catch(() => {});
    await until(
      () => Promise.all([receipts.stat(), full.stat()]),
      ([r, f]) => r.waitingReceiptsCount === MANY && f.waitingSendersCount === MANY,
      30_000,
      'every send waiting',
    );
    const [r, f, q] = await Promise.all([receipts.stat(), full.stat(), quiet.stat()]);
    assert.deepEqual(r.waitingReceipts, Array(STAT_IDS).fill(s1.id));
    assert.deepEqual([r.waitingSendersCount, r.waitingSenders], [0, []]);
    assert.deepEqual(f.waitingSenders, Array(STAT_IDS).fill(s2.id));
    assert.deepEqual([f.waitingReceiptsCount, f.waitingReceipts], [0, []]);
    assert.deepEqual(
      [q.waitingReceiptsCount, q.waitingSendersCount, q.waitingReceiversCount],
      [0, 0, 0],
      'none waits on a mailbox nobody sent to',
    );

    // Taken: their sends complete and are counted no more.
    let taken = 0;
    for await (const batch of receipts.batches()) {
      taken += batch.length;
      if (taken >= 5_000) break;
    }
    await until(
      () => receipts.stat(),
      (st) => st.inflight === 0,
      30_000,
      'what the loop held given back',
    );
    assert.equal((await receipts.stat()).waitingReceiptsCount, MANY - taken);
    await s1.close();
    await s2.close();
    await until(
      () => Promise.all([receipts.stat(), full.stat()]),
      ([rs, fs]) => rs.waitingReceiptsCount === 0 && fs.waitingSendersCount === 0,
      30_000,
      'their sends withdrawn with their processes',
    );
  });

  test("a send whose process ended is not waiting for its receipt, while its message is in a loop's hands", async () => {
    const mb = await me.createMailbox<string>(box(), { mode: 0o666 });
    const sender = await connect({ socket: kernel.socket });
    const theirs = await sender.openMailbox<string>(mb.id);
    for (let i = 0; i < 3; i++) theirs.send(`m${i}`, { receipt: true }).catch(() => {});
    await until(
      () => mb.stat(),
      (s) => s.waitingReceiptsCount === 3,
      10_000,
      'three receipts',
    );
    const worker = await connect({ socket: kernel.socket });
    const wb = await worker.openMailbox<string>(mb.id);
    for await (const m of wb.messages({ prefetch: 10 })) {
      assert.equal(m.body, 'm0');
      // m0 is taken; m1 and m2 are pushed ahead, untaken, their sends still waiting.
      await until(
        () => mb.stat(),
        (s) => s.waitingReceiptsCount === 2 && s.inflight === 2,
        10_000,
        "two in the loop's hands",
      );
      await sender.close();
      await until(
        () => mb.stat(),
        (s) => s.waitingReceiptsCount === 0,
        10_000,
        'the ended process waits for nothing',
      );
      assert.deepEqual((await mb.stat()).waitingReceipts, []);
      break;
    }
    await until(
      () => mb.stat(),
      (s) => s.inflight === 0 && s.queued === 0,
      10_000,
      'given back, and dropped: their sends were withdrawn',
    );
    await worker.close();
  });

  test('a priority mailbox with 20,000 messages over 10,000 priorities gives the highest first, in arrival order within one', async () => {
    const mb = await me.createMailbox<number>(box(), { order: 'priority' });
    const count = 20_000;
    // Priorities scattered over 0..32767, each used twice, neither in order nor in reverse.
    const priorityOf = (i: number): number => ((i % 10_000) * 7_919) % 32_768;
    const sent = Array.from({ length: count }, (_, i) => i);
    await Promise.all(sent.map((i) => mb.send(i, { priority: priorityOf(i) })));
    // Half taken, then as many more sent, above, below and among those left.
    const got: { body: number; priority: number }[] = [];
    const take = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const m = (await mb.receive({ nowait: true }))!;
        got.push({ body: m.body, priority: m.priority });
      }
    };
    await take(count / 2);
    const more = Array.from({ length: count / 2 }, (_, i) => count + i);
    await Promise.all(more.map((i) => mb.send(i, { priority: priorityOf(i * 3) })));
    const expectFirst = [...sent].sort((a, b) => priorityOf(b) - priorityOf(a) || a - b).slice(0, count / 2);
    assert.deepEqual(
      got.map((m) => m.body),
      expectFirst,
    );
    const taken = new Set(expectFirst);
    const left = sent.filter((i) => !taken.has(i));
    const now = [
      ...left.map((i) => ({ body: i, priority: priorityOf(i) })),
      ...more.map((i) => ({ body: i, priority: priorityOf(i * 3) })),
    ];
    now.sort((a, b) => b.priority - a.priority || a.body - b.body);
    got.length = 0;
    await take(now.length);
    assert.deepEqual(got, now);
    assert.equal(await mb.receive({ nowait: true }), null);
  });

  test('what an iterator held goes back to its place, in order, in front of a queue of 20,000', async () => {
    const name = box();
    const mb = await me.createMailbox<string>(name, { mode: 0o666 });
    const total = 22_000;
    const bodies = Array.from({ length: total }, (_, i) => `m${i}`);
    await mb.sendMany(bodies);
    const worker = await connect({ socket: kernel.socket });
    const wb = await worker.openMailbox<string>(name);
    let first: string | undefined;
    for await (const m of wb.messages({ prefetch: 2_000 })) {
      first = m.body;
      break; // the 1,999 pushed ahead and not taken go back
    }
    assert.equal(first, 'm0');
    await until(
      () => me.stat(name),
      (s) => s.inflight === 0,
      30_000,
      'given back',
    );
    const rest: string[] = [];
    for await (const batch of mb.batches()) {
      for (const m of batch) rest.push(m.body);
      if (rest.length === total - 1) break;
    }
    assert.deepEqual(rest, bodies.slice(1));
    await worker.close();
  });

  test('a queue that never empties moves its messages into fewer slots, and the sends waiting for their receipt follow theirs', async () => {
    const name = box();
    const mb = await me.createMailbox<string>(name, { mode: 0o666, maxBytes: 'unbounded' });
    const sender = await connect({ socket: kernel.socket });
    const into = await sender.openMailbox<string>(name);
    /** Takes n of type 1, by type: the store's lists of types are built. */
    const take = async (n: number): Promise<void> => {
      let got = 0;
      for await (const batch of mb.batches({ type: 1 })) {
        got += batch.length;
        if (got === n) break;
      }
    };
    // 100,000 queued grow the store's slots to 131,072. Two messages that no receive here takes
    // keep the queue from emptying, their sends waiting for a receipt. Then as many again go
    // through it, never more than 10,002 queued, under an eighth: the two move from the slots
    // after the 100,000 to the first.
    for (let i = 0; i < 10; i++) await into.sendMany(Array(10_000).fill('x'), { type: 1 });
    const receipts = [
      into.send('two', { type: 2, receipt: true }),
      into.send('three', { type: 3, receipt: true }),
    ];
    await take(100_000);
    for (let round = 0; round < 14; round++) {
      await into.sendMany(Array(10_000).fill('x'), { type: 1 });
      await take(10_000);
    }
    assert.equal((await mb.stat()).queued, 2);
    assert.equal((await mb.receive({ type: 3 }))?.body, 'three');
    assert.equal((await mb.receive({ type: 2 }))?.body, 'two');
    const settled = await within(Promise.all(receipts), 10_000, 'both receipts');
    assert.deepEqual(
      settled.map((r) => [r.outcome, r.outcome === 'received' ? r.receiver : 0]),
      [
        ['received', me.id],
        ['received', me.id],
      ],
    );
    await sender.close();
  });

  test('the kernel lists mailboxes a page at a time, by id, and mailboxes() gathers every page', async () => {
    const owner = await connect({ socket: kernel.socket });
    const count = 2 * LIST_PAGE + 500;
    const made = await Promise.all(Array.from({ length: count }, (_, i) => owner.createMailbox(`page-${i}`)));
    const ids = made.map((mb) => mb.id);
    const listed = (await me.mailboxes()).map((s) => s.id).filter((id) => ids.includes(id));
    assert.deepEqual(listed, ids, 'every one, once, in id order');
    const sizes: number[] = [];
    for await (const p of me.mailboxPages()) sizes.push(p.length);
    assert.ok(
      sizes.length >= 3 && sizes.every((n) => n > 0 && n <= LIST_PAGE),
      `pages of ${sizes.join(', ')}`,
    );
    // The command line writes the JSON a page at a time, and the table from each page's rows.
    const json = JSON.parse(await cli(['ls', '--json'])) as MailboxStat[];
    assert.deepEqual(
      json.map((s) => s.id).filter((id) => ids.includes(id)),
      ids,
      'ls --json: every one, once, in id order',
    );
    const table = (await cli(['ls'])).trimEnd().split('\n');
    const named = table
      .filter((line) => / page-\d+ /.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[1]));
    assert.deepEqual(named, ids, 'ls: a line for each, in id order');

    // One CALL answers at most `limit`, from the first id after `after`.
    const raw = await RawPeer.open(kernel.socket);
    try {
      await raw.hello();
      const page = async (request: number, args: Record<string, unknown>): Promise<unknown> => {
        raw.write(callFrame(request, { op: 'list', ...args }));
        return framePayload(await raw.waitFor((f) => f.request === request, 10_000, `list ${request}`));
      };
      const first = (await page(1, { after: ids[9]!, limit: 100 })) as MailboxStat[];
      assert.deepEqual(
        first.map((s) => s.id),
        ids.slice(10, 110),
      );
      // Pages pass over mailboxes removed, whether the kernel's order of ids still holds them
      // or has been rebuilt without them (once they are as many as those left).
      const kept = made.filter((_, i) => i % 3 !== 0);
      for (let i = 0; i < made.length; i += 3) await made[i]!.delete();
      let request = 100;
      const pages = async (after: number): Promise<number[]> => {
        const seen: number[] = [];
        for (let from = after, n = 0; n < 100; n++) {
          request++;
          const got = (await page(request, { after: from, limit: 700 })) as MailboxStat[];
          seen.push(...got.map((s) => s.id));
          if (got.length < 700) return seen.filter((id) => ids.includes(id));
          from = got.at(-1)!.id;
        }
        throw new Error('more pages than mailboxes');
      };
      assert.deepEqual(
        await pages(ids[4]!),
        kept.map((mb) => mb.id).filter((id) => id > ids[4]!),
      );
      for (const mb of kept.slice(0, kept.length - 10)) await mb.delete();
      assert.deepEqual(
        await pages(0),
        kept.slice(-10).map((mb) => mb.id),
        'the last ten, after most were removed',
      );
      raw.write(callFrame(2, { op: 'list', limit: 0 }));
      const refused = await raw.waitFor((f) => f.request === 2, 10_000, 'refusal');
      assert.equal(refused.op, Op.ERROR);
    } finally {
      await raw.destroy();
      await owner.close();
    }
  });

  test('the kernel lists processes a page at a time, by id, and processes() gathers every page', async () => {
    const count = LIST_PAGE + 50;
    const made: PostboxProcess[] = [];
    try {
      for (let i = 0; i < count; i += 50)
        made.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(50, count - i) }, (_, j) =>
              connect({ socket: kernel.socket, name: `paged-${i + j}` }),
            ),
          )),
        );
      const ids = made.map((p) => p.id).sort((a, b) => a - b);
      const listed = (await me.processes()).map((p) => p.id);
      assert.deepEqual(
        listed.filter((id) => ids.includes(id)),
        ids,
        'every one, once, in id order',
      );
      assert.deepEqual(
        listed,
        [...listed].sort((a, b) => a - b),
      );
      const sizes: number[] = [];
      for await (const p of me.processPages()) sizes.push(p.length);
      assert.deepEqual(sizes, [LIST_PAGE, listed.length - LIST_PAGE], 'whole pages, then the rest');
      // `ps` writes each page as it comes; its own process is not among the rows.
      const table = (await cli(['ps'])).trimEnd().split('\n');
      assert.deepEqual(
        table.slice(1).map((row) => Number(row.trim().split(/ +/)[0])),
        listed,
      );
      const json = JSON.parse(await cli(['ps', '--json'])) as { id: number }[];
      assert.deepEqual(
        json.map((p) => p.id),
        listed,
      );
      const raw = await RawPeer.open(kernel.socket);
      try {
        await raw.hello();
        let request = 0;
        const page = async (args: Record<string, unknown>): Promise<{ id: number }[]> => {
          const r = ++request;
          raw.write(callFrame(r, { op: 'processes', ...args }));
          const f = await raw.waitFor((g) => g.request === r, 10_000, `processes ${r}`);
          assert.equal(f.op, Op.RESULT, JSON.stringify(framePayload(f)));
          return framePayload(f) as { id: number }[];
        };
        assert.deepEqual(
          (await page({ after: ids[9]!, limit: 100 })).map((p) => p.id),
          ids.slice(10, 110),
        );
        // Pages pass over processes that ended, before and after the order is rebuilt.
        const ended = made.filter((_, i) => i % 3 === 0);
        await Promise.all(ended.map((p) => p.close()));
        const gone = new Set(ended.map((p) => p.id));
        await until(
          () => me.processes(),
          (all) => !all.some((p) => gone.has(p.id)),
          10_000,
          'the closed processes to end',
        );
        const left = ids.filter((id) => !gone.has(id));
        const walk = async (): Promise<number[]> => {
          const seen: number[] = [];
          for (let from = 0, n = 0; n < 100; n++) {
            const got = await page({ after: from, limit: 300 });
            seen.push(...got.map((p) => p.id));
            if (got.length < 300) return seen.filter((id) => ids.includes(id));
            from = got.at(-1)!.id;
          }
          throw new Error('more pages than processes');
        };
        assert.deepEqual(await walk(), left);
        const rest = made.filter((p) => !gone.has(p.id));
        await Promise.all(rest.slice(0, rest.length - 10).map((p) => p.close()));
        const lastTen = left.slice(-10);
        await until(
          () => me.processes(),
          (all) => all.filter((p) => ids.includes(p.id)).length === 10,
          10_000,
          'all but ten to end',
        );
        assert.deepEqual(await walk(), lastTen, 'the last ten, after most ended');
        raw.write(callFrame(9999, { op: 'processes', after: -1 }));
        const refused = await raw.waitFor((f) => f.request === 9999, 10_000, 'refusal');
        assert.equal(refused.op, Op.ERROR);
      } finally {
        await raw.destroy();
      }
    } finally {
      await Promise.all(made.map((p) => p.close()));
    }
  });
});

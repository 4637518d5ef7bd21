/**
 * Churn: waves of real processes (test/fixtures/churner.ts), over the Unix socket and over TCP,
 * each leaving the kernel holding something of every kind — blocked sends, waiting receives,
 * messages pushed ahead, pipes, POSIX and System V queues, RPC calls and servers, connections,
 * monitors — are killed or close while busy. Afterwards the kernel must hold exactly what it
 * held before, apart from what outlives a process by design (system-owned queues), and once
 * those are deleted its usage must be what it was: no process, mailbox, waiter or byte leaks.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type MailboxStat, type PostboxProcess } from '../src/client/mod.js';
import { startTestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const CHURNER = fileURLToPath(new URL('./fixtures/churner.js', import.meta.url));
const WAVES = 5;
const PER_WAVE = 4;
const FEED = 2000;

interface Churner {
  child: ChildProcess;
  id: number;
  exited: Promise<number | null>;
}

function startChurner(index: number, env: NodeJS.ProcessEnv): Promise<Churner> {
  const child = spawn(process.execPath, [CHURNER, String(index)], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`churner ${index} not ready in 20 s: ${stderr}`));
    }, 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^ready (\d+)$/.exec(line);
      if (m === null) return;
      clearTimeout(timer);
      resolve({ child, id: Number(m[1]), exited });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`churner ${index} exited with ${code} before ready: ${stderr}`));
    });
  });
}

async function byName(proc: PostboxProcess): Promise<Map<string, MailboxStat>> {
  return new Map((await proc.mailboxes()).filter((m) => m.name !== null).map((m) => [m.name!, m]));
}

test('churn: busy processes holding every kind of state die or close over Unix and TCP; the kernel ends as it began', {
  timeout: 120_000,
}, async (t) => {
  const kernel = await startTestKernel({ tcp: true });
  const started: Churner[] = [];
  const observer = await connect({ socket: kernel.socket });
  try {
    const full = await observer.createMailbox('churn-full', { capacity: 1, mode: 0o666 });
    await full.send('filler');
    await observer.createMailbox('churn-empty', { mode: 0o666 });
    const feed = await observer.createMailbox('churn-feed', { mode: 0o666 });
    await feed.sendMany(Array.from({ length: FEED }, (_, i) => i));
    const before = await observer.usage();
    const feedBytes = (await feed.stat()).bytes;
    const beforeIds = new Set((await observer.mailboxes()).map((m) => m.id));
    const env = { ...kernel.env, CHURN_OBSERVER: String(observer.id) };
    const tcpEnv = { ...env, POSTBOX_URL: kernel.tcpUrl! };

    for (let wave = 0; wave < WAVES; wave++) {
      const churners = await Promise.all(
        Array.from({ length: PER_WAVE }, (_, i) => {
          const index = wave * PER_WAVE + i;
          return startChurner(index, index % 2 === 0 ? env : tcpEnv);
        }),
      );
      started.push(...churners);
      const ids = churners.map((c) => c.id);
      // While they live, the kernel holds what they left: their blocked sends and receives.
      const held = await byName(observer);
      ids.forEach((id, i) => {
        assert.ok(held.get('churn-full')!.waitingSenders.includes(id), `process ${id} blocked sending`);
        assert.ok(held.get('churn-empty')!.waitingReceivers.includes(id), `process ${id} waiting to receive`);
        assert.equal(held.get(`churn-own-${wave * PER_WAVE + i}`)?.owner, id, `process ${id} owns a mailbox`);
      });
      // Half are killed mid-loop, half close (over each transport, since the index alternates them).
      const ends = churners.map(async (c, i) => {
        if (i % 4 < 2) c.child.kill('SIGKILL');
        else c.child.stdin!.write('close\n');
        return c.exited;
      });
      const codes = await Promise.all(ends);
      codes.forEach((code, i) => {
        if (i % 4 >= 2) assert.equal(code, 0, `churner ${ids[i]} closed and exited 0`);
      });
    }
    t.diagnostic(`${started.length} processes came and went`);

    // Every process is gone from the kernel, and with it every waiter and push.
    await until(
      () => observer.usage(),
      (u) => u.processes === before.processes,
      10_000,
      'the churners gone from the kernel',
    );
    const dead = new Set(started.map((c) => c.id));
    const after = await observer.mailboxes();
    for (const m of after) {
      assert.ok(m.owner === null || !dead.has(m.owner), `${m.name ?? `#${m.id}`} went with its owner`);
      assert.deepEqual(m.waitingSenders, [], `${m.name ?? `#${m.id}`}: no dead sender waits`);
      assert.deepEqual(m.waitingReceivers, [], `${m.name ?? `#${m.id}`}: no dead receiver waits`);
      assert.equal(m.inflight, 0, `${m.name ?? `#${m.id}`}: nothing is out with a dead process`);
      assert.deepEqual(
        m.holders.filter((h) => dead.has(h)),
        [],
      );
    }
    const named = new Map(after.filter((m) => m.name !== null).map((m) => [m.name!, m]));
    assert.equal(named.get('churn-full')!.count, 1, 'the filler only: no blocked send got in');
    // Each took 5 of what was pushed to it; everything else went back.
    const fed = named.get('churn-feed')!;
    assert.equal(fed.received, 5 * started.length);
    assert.equal(fed.count, FEED - fed.received, 'every message pushed and not taken went back');

    // What outlives a process by design: its POSIX and System V queues (system-owned) and the
    // RPC service mailbox. Nothing else of theirs may be left.
    const left = after.filter((m) => !beforeIds.has(m.id));
    for (const m of left)
      assert.ok(m.system, `only system-owned mailboxes outlive their owner: ${JSON.stringify(m)}`);
    assert.equal(left.filter((m) => /^\/churn-\d+$/.test(m.name ?? '')).length, started.length);
    assert.equal(left.filter((m) => m.key === 0 && m.name === null).length, started.length);
    for (const m of left) {
      const h = await observer.openMailbox(m.id, { role: 'none' });
      await h.delete();
    }
    // The same processes and mailboxes as before, and the bytes it counts are those it holds:
    // what was there before, less the messages the churners took.
    const now = await observer.usage();
    assert.equal(now.processes, before.processes);
    assert.equal(now.mailboxes, before.mailboxes);
    const held = (await observer.mailboxes()).reduce((sum, m) => sum + m.bytes, 0);
    assert.equal(now.totalBytes, held, 'the byte count is what the mailboxes hold');
    assert.equal(now.totalBytes, before.totalBytes - (feedBytes - fed.bytes));

    // And it still works, over both transports.
    const overTcp = await connect({ url: kernel.tcpUrl!, token: kernel.token });
    try {
      await (await overTcp.openMailbox('churn-empty')).send('still here');
      assert.equal((await (await observer.openMailbox('churn-empty')).receive())?.text(), 'still here');
    } finally {
      await overTcp.close();
    }
    assert.equal(kernel.proc.exitCode, null, 'the kernel is running');
  } finally {
    for (const c of started) c.child.kill('SIGKILL');
    await Promise.all(started.map((c) => c.exited));
    await observer.close();
    await kernel.stop();
  }
});

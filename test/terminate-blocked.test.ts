/**
 * Several sends blocked on one full mailbox, withdrawn together: their process was killed, or
 * the last reader of their pipe was. The mailbox keeps what was sent before them and nothing
 * after. Withdrawn one at a time, each withdrawal admitted the next blocked send that fitted (a
 * small one behind a big one): a stream (a FIFO, a pipe) then got a later write without the one
 * before it, so its reader saw a hole in the bytes, and a writer saw a write succeed after one
 * that failed with EPIPE.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import { type Agent, startAgent } from './helpers/agent.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const BOUND_MS = 10_000;

let kernel: TestKernel;
let me: PostboxProcess;
const agents: Agent[] = [];

before(async () => {
  kernel = await startTestKernel();
  me = await connect({ socket: kernel.socket });
});

after(async () => {
  for (const a of agents) await a.kill();
  await me.close();
  await kernel.stop();
});

/** Kills a writer with a big and then a small send blocked behind what it sent first. */
async function killWithBlockedSends(name: string, role?: 'write'): Promise<void> {
  const w = await startAgent(kernel.env);
  agents.push(w);
  const opened = await w.do({ cmd: 'open', name, opts: role === undefined ? {} : { role } });
  assert.equal(opened.event, 'ok', JSON.stringify(opened));
  // 90 of the 100 bytes: the 50-byte send waits for room, and the 3-byte one (which would fit)
  // waits behind it, as sends to a mailbox are admitted in order.
  const first = await w.do({ cmd: 'send', mb: name, body: 'a'.repeat(90) });
  assert.equal(first.event, 'ok', JSON.stringify(first));
  w.start({ cmd: 'send', mb: name, body: 'b'.repeat(50) });
  w.start({ cmd: 'send', mb: name, body: 'c'.repeat(3) });
  await until(
    () => me.stat(name),
    (s) => s.waitingSenders.length === 2,
    BOUND_MS,
    'both sends blocked',
  );
  await w.kill();
  await until(
    () => me.processes(),
    (ps) => ps.every((p) => p.id !== w.pid),
    BOUND_MS,
    'the writer to be gone',
  );
}

test('a killed process leaves no later send of its own in a full mailbox', async () => {
  const mb = await me.createMailbox('full', { maxBytes: 100 });
  await killWithBlockedSends('full');
  const s = await me.stat('full');
  assert.deepEqual(s.waitingSenders, []);
  const m = await mb.receive({ nowait: true });
  assert.equal(m?.text(), 'a'.repeat(90));
  // The 3-byte send came after the 50-byte one the kernel withdrew: it must not be there alone.
  assert.equal(await mb.receive({ nowait: true }), null);
  await mb.delete();
});

test("another process's send waiting behind a killed process's goes in once the killed one's is withdrawn", async () => {
  const mb = await me.createMailbox('behind', { maxBytes: 100 });
  await mb.send('a'.repeat(90));
  const w = await startAgent(kernel.env);
  agents.push(w);
  assert.equal((await w.do({ cmd: 'open', name: 'behind' })).event, 'ok');
  w.start({ cmd: 'send', mb: 'behind', body: 'b'.repeat(50) });
  await until(
    () => me.stat('behind'),
    (s) => s.waitingSenders.length === 1,
    BOUND_MS,
    "the killed process's send blocked",
  );
  // 3 bytes would fit, but sends go in in order: it waits behind the 50.
  const other = await connect({ socket: kernel.socket });
  try {
    const sent = other.sendTo(mb.id, 'c'.repeat(3));
    await until(
      () => me.stat('behind'),
      (s) => s.waitingSenders.length === 2,
      BOUND_MS,
      'both sends blocked',
    );
    await w.kill();
    await within(sent, BOUND_MS, 'the send behind it');
    assert.equal((await mb.receive({ nowait: true }))?.text(), 'a'.repeat(90));
    assert.equal((await mb.receive({ nowait: true }))?.text(), 'c'.repeat(3));
  } finally {
    await other.close();
    await mb.delete();
  }
});

test("a FIFO's reader sees what a killed writer sent before its blocked writes, then end of file", async () => {
  await mkfifo(me, 'killed-writer');
  // Open but not read from until the writer is dead: its sends fill the FIFO and wait.
  const reader = await openFifo(me, 'killed-writer', 'r');
  // The FIFO holds 64 KiB: lower it to 100 bytes, as the mailbox above.
  await within(
    (async () => {
      const h = await me.openMailbox('killed-writer', { role: 'none' });
      await h.setLimits({ maxBytes: 100 });
      h.close();
    })(),
    BOUND_MS,
    'the limit to change',
  );
  await killWithBlockedSends('killed-writer', 'write');
  const chunks: Buffer[] = [];
  reader.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    reader.once('end', resolve);
    reader.once('error', reject);
  });
  await within(ended, BOUND_MS, 'end of file');
  assert.equal(Buffer.concat(chunks).toString(), 'a'.repeat(90));
  reader.destroy();
});

test('a writer whose reader is killed gets EPIPE for every blocked write, none queued after one that failed', async () => {
  await mkfifo(me, 'killed-reader');
  const h = await me.openMailbox('killed-reader', { role: 'none' });
  await h.setLimits({ maxBytes: 100 });
  h.close();
  const r = await startAgent(kernel.env);
  agents.push(r);
  const opened = await r.do({ cmd: 'open', name: 'killed-reader', opts: { role: 'read' } });
  assert.equal(opened.event, 'ok', JSON.stringify(opened));
  const w = await me.openMailbox('killed-reader', { role: 'write' });
  await w.send('a'.repeat(90));
  // The 50-byte write waits for room, the 3-byte one behind it.
  const outcome = (p: Promise<unknown>): Promise<string> =>
    p.then(
      () => 'sent',
      (err: Error & { code?: string }) => err.code ?? err.message,
    );
  const big = outcome(w.send('b'.repeat(50)));
  const small = outcome(w.send('c'.repeat(3)));
  await until(
    () => me.stat('killed-reader'),
    (s) => s.waitingSenders.length === 2,
    BOUND_MS,
    'both writes blocked',
  );
  await r.kill();
  assert.deepEqual(await within(Promise.all([big, small]), BOUND_MS, 'the writes to fail'), [
    'EPIPE',
    'EPIPE',
  ]);
  // Only what was written while the reader lived stays for the next reader.
  assert.equal((await me.stat('killed-reader')).count, 1);
  w.close();
});

/**
 * What one process may hold (`--max-per-process`): open handles, monitors, waits for a reader and waiting receives,
 * each counted apart, as RLIMIT_NOFILE bounds a Unix process's descriptors. Past the limit the
 * request is refused (ENOMEM, naming the flag) and nothing is created; giving one back makes room.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, OutOfMemoryError, type PostboxProcess } from '../src/client/mod.js';
import { startKernel } from '../src/kernel/mod.js';
import { Op, ReceiveFlag } from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import {
  callFrame,
  frameError,
  framePayload,
  headFrame,
  type RawFrame,
  RawPeer,
  receiveFrame,
} from './helpers/raw-peer.js';

const LIMIT = 4;
let kernel: TestKernel;
const clients: PostboxProcess[] = [];
after(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  await kernel?.stop();
});

async function client(): Promise<PostboxProcess> {
  kernel ??= await startTestKernel({ args: ['--max-per-process', String(LIMIT)] });
  const c = await connect({ socket: kernel.socket });
  clients.push(c);
  return c;
}

const refusal = (what: string) => (err: unknown) => {
  assert.ok(err instanceof OutOfMemoryError, String(err));
  assert.match(
    err.message,
    new RegExp(`has ${LIMIT} ${what}, the kernel's limit per process \\(postbox kernel --max-per-process\\)`),
  );
  return true;
};

test('handles: past the limit an open or a create is refused, and creates nothing', async () => {
  const p = await client();
  const first = await p.createMailbox('held-0');
  const more = [];
  for (let i = 1; i < LIMIT; i++) more.push(await p.openMailbox('held-0'));
  await assert.rejects(p.openMailbox('held-0'), refusal('handles open'));
  await assert.rejects(p.createMailbox('held-1'), refusal('handles open'));
  await assert.rejects(p.stat('held-1'), { code: 'ENOENT' }, 'the refused create made no mailbox');
  await more.pop()!.close();
  const again = await p.openMailbox('held-0');
  await again.send('through the handle opened after one closed');
  assert.equal((await first.receive({ nowait: true }))?.body, 'through the handle opened after one closed');
});

test('monitors: past the limit monitor() is refused; one taken back, or told its process ended, makes room', async () => {
  const p = await client();
  const watched = await client();
  const stops = Array.from({ length: LIMIT }, () => new AbortController());
  const downs = stops.map((s) => p.monitor(watched.id, { signal: s.signal }).catch((e: unknown) => e));
  // The monitors are set once the kernel has answered a later call of the same process.
  await p.usage();
  // Bounded: without the limit this monitor would wait for as long as `watched` lives.
  await assert.rejects(p.monitor(watched.id, { signal: AbortSignal.timeout(5000) }), refusal('monitors set'));
  stops[0]!.abort();
  assert.equal(((await downs[0]) as { code: string }).code, 'ECANCELED');
  const down = p.monitor(watched.id);
  await watched.close();
  assert.equal((await down).reason, 'exit');
  for (const d of downs.slice(1)) assert.equal(((await d) as { reason: string }).reason, 'exit');
  // Monitors told of their process's end count no more: as many can be set again.
  const next = await client();
  const again = Array.from({ length: LIMIT }, () => p.monitor(next.id).catch((e: unknown) => e));
  // Set (or refused) once the kernel has answered a later call.
  await p.usage();
  await next.close();
  for (const d of again) assert.equal(((await d) as { reason: string }).reason, 'exit');
});

test('waits for a reader: past the limit awaitReader is refused; one taken back, or told its reader came, makes room', async () => {
  const owner = await client();
  const fifo = await owner.createMailbox('reader-waited', { system: true, mode: 0o666 });
  // The owner's own handle reads: with it closed, nobody has the mailbox open for reading.
  await fifo.close();
  const peer = await RawPeer.open(kernel.socket);
  try {
    assert.equal((await peer.hello()).op, Op.WELCOME, peer.describe());
    const answer = async (request: number, payload: Record<string, unknown>): Promise<RawFrame> => {
      peer.write(callFrame(request, payload));
      return peer.waitFor(
        (f) => f.op !== Op.EVENT && f.request === request,
        5000,
        `answer to CALL ${request}`,
      );
    };
    const events: number[] = [];
    for (let r = 1; r <= LIMIT; r++) {
      const set = await answer(r, { op: 'awaitReader', id: fifo.id });
      assert.equal(set.op, Op.RESULT, peer.describe());
      events.push((framePayload(set) as { event: number }).event);
    }
    // Bounded as monitors are: without the limit each such CALL grew the kernel's maps for as
    // long as no reader came.
    const refused = await answer(LIMIT + 1, { op: 'awaitReader', id: fifo.id });
    assert.equal(refused.op, Op.ERROR, peer.describe());
    assert.equal(frameError(refused).code, 'ENOMEM');
    assert.match(
      frameError(refused).message,
      new RegExp(`has ${LIMIT} waits for a reader set, the kernel's limit per process`),
    );
    // One taken back makes room for one.
    assert.equal(
      (await answer(LIMIT + 2, { op: 'awaitReader', id: fifo.id, on: false, event: events[0] })).op,
      Op.RESULT,
    );
    assert.equal(
      (await answer(LIMIT + 3, { op: 'awaitReader', id: fifo.id })).op,
      Op.RESULT,
      peer.describe(),
    );
    assert.equal((await answer(LIMIT + 4, { op: 'awaitReader', id: fifo.id })).op, Op.ERROR, peer.describe());
    // A reader comes: every wait is told, and counts no more.
    const reader = await owner.openMailbox(fifo.id);
    await peer.waitFor((f) => f.op === Op.EVENT && f.request === events[LIMIT - 1], 5000, 'the EVENT');
    await reader.close();
    for (let r = 1; r <= LIMIT; r++)
      assert.equal(
        (await answer(LIMIT + 4 + r, { op: 'awaitReader', id: fifo.id })).op,
        Op.RESULT,
        peer.describe(),
      );
  } finally {
    await peer.destroy();
  }
});

test('receives: past the limit a RECEIVE is refused on its own id; the connection goes on', async () => {
  const owner = await client();
  const box = await owner.createMailbox<string>('waited-on', { system: true });
  const peer = await RawPeer.open(kernel.socket);
  try {
    const welcome = await peer.hello();
    assert.equal(welcome.op, Op.WELCOME, peer.describe());
    const id = (framePayload(welcome) as { process: { id: number } }).process.id;
    for (let r = 1; r <= LIMIT + 1; r++) peer.write(receiveFrame({ request: r, target: box.id }));
    const refused = await peer.waitFor(
      (f) => f.request === LIMIT + 1,
      5000,
      'answer to the receive past the limit',
    );
    assert.equal(refused.op, Op.ERROR, peer.describe());
    assert.deepEqual(frameError(refused), {
      code: 'ENOMEM',
      message: `process ${id} has ${LIMIT} receives waiting, the kernel's limit per process (postbox kernel --max-per-process)`,
    });
    assert.equal((await box.stat()).waitingReceivers.length, LIMIT);
    // A CANCEL gives one back; the next RECEIVE waits, and gets the next message.
    peer.write(headFrame(Op.CANCEL, 1));
    await peer.waitFor((f) => f.request === 1 && f.op === Op.ERROR, 5000, 'ECANCELED');
    peer.write(receiveFrame({ request: 99, target: box.id, flags: ReceiveFlag.NOWAIT }));
    const empty = await peer.waitFor((f) => f.request === 99, 5000, 'answer to the receive after a cancel');
    assert.equal(empty.op, Op.EMPTY, peer.describe());
    assert.ok(peer.isOpen);
  } finally {
    await peer.destroy();
  }
});

test('handles on a mailbox that is removed are dropped with it, and count no more', async () => {
  const owner = await client();
  const holder = await client();
  const handlesOf = async (id: number): Promise<number | undefined> =>
    (await owner.processes()).find((p) => p.id === id)?.handles;
  // Deleted by its owner while another process holds the limit's worth of handles on it.
  await owner.createMailbox('short-lived', { system: true });
  const held = [];
  for (let i = 0; i < LIMIT; i++) held.push(await holder.openMailbox('short-lived'));
  await assert.rejects(holder.openMailbox('short-lived'), refusal('handles open'));
  assert.equal(await handlesOf(holder.id), LIMIT);
  await (await owner.openMailbox('short-lived')).delete();
  assert.equal(await handlesOf(holder.id), 0, 'the holder has no handle left on a removed mailbox');
  await assert.rejects(
    held[0]!.send('late'),
    { code: 'ENOENT', message: /mailbox 'short-lived' \(#\d+\) was removed/ },
    'a send on a dropped handle says the mailbox went',
  );
  await held[1]!.close(); // closing one is still fine: an unknown handle closes without error

  // Removed because its owner ended: the holder's handle goes too, and the limit has room again.
  const mortal = await client();
  await mortal.createMailbox('owned-by-mortal');
  const onOwned = await holder.openMailbox('owned-by-mortal');
  assert.equal(await handlesOf(holder.id), 1);
  await mortal.close();
  await assert.rejects(onOwned.send('after its owner'), { code: 'ENOENT', message: /was removed/ });
  assert.equal(await handlesOf(holder.id), 0);
  for (let i = 0; i < LIMIT; i++) await owner.createMailbox(`fresh-${i}`, { system: true });
  for (let i = 0; i < LIMIT; i++) await holder.openMailbox(`fresh-${i}`);
});

test('a removed mailbox lets its messages go, though a sender still remembers it as its last', async () => {
  // In this process, to look at the kernel's own objects: the sender's cache of the mailbox it
  // last sent to keeps the removed Mailbox reachable, and it must not keep its messages.
  const dir = mkdtempSync(join(tmpdir(), 'pbt-'));
  const running = await startKernel({ socket: join(dir, 'k.sock') });
  try {
    const p = await connect({ socket: running.socketPath });
    const box = await p.createMailbox<Buffer>('heavy', { system: true });
    const mb = running.kernel.mailboxes.get(box.id)!;
    for (let i = 0; i < 64; i++) await box.send(Buffer.alloc(64 * 1024, i));
    assert.equal(mb.store.count, 64);
    await box.delete();
    assert.ok(mb.removed);
    assert.deepEqual({ count: mb.store.count, bytes: mb.store.bytes }, { count: 0, bytes: 0 });
    assert.equal(running.kernel.totalBytes, 0);
    await p.close();
  } finally {
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

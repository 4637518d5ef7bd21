/**
 * Frames that have begun to arrive and not yet ended: the kernel holds their first bytes, so it
 * bounds what they may hold together (`--max-partial-bytes`), and, before HELLO, what
 * connections that have not said who they are may hold at all. Raw peers write half frames; a
 * real kernel process is asked what it holds.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { Op } from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { frameError, framePayload, RawPeer, sendFrame } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const KiB = 1024;
const kernels: TestKernel[] = [];
const peers: RawPeer[] = [];
const clients: PostboxProcess[] = [];
after(async () => {
  for (const p of peers.splice(0)) await p.destroy().catch(() => {});
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  for (const k of kernels.splice(0)) await k.stop();
});

async function kernelWith(args: string[], tcp = false): Promise<TestKernel> {
  const k = await startTestKernel({ args, tcp });
  kernels.push(k);
  return k;
}

async function client(k: TestKernel): Promise<PostboxProcess> {
  const c = await connect({ socket: k.socket });
  clients.push(c);
  return c;
}

/** A raw process, HELLO accepted: its id. */
async function rawProcess(address: string | { host: string; port: number }, token?: string) {
  const peer = await RawPeer.open(address);
  peers.push(peer);
  const welcome = await peer.hello({ pid: process.pid, ...(token === undefined ? {} : { token }) });
  assert.equal(welcome.op, Op.WELCOME, peer.describe());
  return { peer, id: (framePayload(welcome) as { process: { id: number } }).process.id };
}

/** A SEND of `bodyBytes` bytes of `fill` to mailbox `target`. */
function bigSend(request: number, target: number, fill: string, bodyBytes: number): Buffer {
  return sendFrame({ request, target, body: Buffer.alloc(bodyBytes, fill) });
}

/** Resolves once frames in progress hold exactly `bytes` of room. */
function roomGiven(owner: PostboxProcess, bytes: number, what: string) {
  return until(
    () => owner.usage(),
    (u) => u.partialBytes === bytes,
    10_000,
    what,
  );
}

/** Resolves with the process list once process `id` waits for room ("room for a frame …"). */
function waitsForRoom(owner: PostboxProcess, id: number, what: string) {
  return until(
    () => owner.processes(),
    (ps) => ps.some((p) => p.id === id && p.blockedOn.some((w) => w.startsWith('room for a frame'))),
    10_000,
    what,
  );
}

function tcpAddress(k: TestKernel): { host: string; port: number } {
  const { hostname, port } = new URL(k.tcpUrl!.replace(/^tcp:/, 'http:'));
  return { host: hostname, port: Number(port) };
}

test('a large frame waits, unread, for room another holds; then both arrive whole and in order', {
  timeout: 30_000,
}, async () => {
  const k = await kernelWith(['--max-partial-bytes', '1M']);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const a = await rawProcess(k.socket);
  const b = await rawProcess(k.socket);
  const frameA = bigSend(1, box.id, 'a', 900 * KiB);
  const frameB = bigSend(1, box.id, 'b', 900 * KiB);

  // A sends most of its frame and stops: its frame has the room, all of it.
  a.peer.write(frameA.subarray(0, 700 * KiB));
  await roomGiven(owner, frameA.length, "A's frame given room");
  // B sends all of its frame: there is no room for it next to A's, so the kernel stops reading it.
  b.peer.write(frameB);
  const waiting = await waitsForRoom(owner, b.id, 'B waiting for room');
  assert.deepEqual(waiting.find((p) => p.id === b.id)!.blockedOn, [
    `room for a frame of ${frameB.length} bytes (--max-partial-bytes)`,
  ]);
  assert.equal((await owner.usage()).partialBytes, frameA.length, "B's frame holds no room");
  assert.equal((await box.stat()).count, 0);

  // A finishes: its room comes back, B is read again, and both messages are queued whole.
  a.peer.write(frameA.subarray(700 * KiB));
  const first = await box.receive({ timeout: 10_000 });
  const second = await box.receive({ timeout: 10_000 });
  assert.deepEqual(
    [first?.body.length, first?.body[0], second?.body.length, second?.body[0]],
    [900 * KiB, 'a'.charCodeAt(0), 900 * KiB, 'b'.charCodeAt(0)],
  );
  assert.ok(
    first!.body.every((x) => x === 'a'.charCodeAt(0)) && second!.body.every((x) => x === 'b'.charCodeAt(0)),
  );
  await roomGiven(owner, 0, 'no room held');
  assert.ok(a.peer.isOpen && b.peer.isOpen, 'nobody was ended');
});

test('room is given in the order asked: a frame that would fit waits behind a larger one that asked first', {
  timeout: 30_000,
}, async () => {
  const k = await kernelWith(['--max-partial-bytes', '1M']);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const [a, b, c] = [await rawProcess(k.socket), await rawProcess(k.socket), await rawProcess(k.socket)];
  const frameA = bigSend(1, box.id, 'a', 600 * KiB);
  const frameB = bigSend(1, box.id, 'b', 900 * KiB);
  const frameC = bigSend(1, box.id, 'c', 300 * KiB);
  a.peer.write(frameA.subarray(0, 500 * KiB));
  await roomGiven(owner, frameA.length, "A's frame given room");
  b.peer.write(frameB);
  await waitsForRoom(owner, b.id, 'B waiting for room');
  // C's frame would fit beside A's, but B asked first: a stream of frames that each fit would
  // otherwise keep B waiting for good.
  c.peer.write(frameC);
  await waitsForRoom(owner, c.id, 'C waiting behind B');
  assert.equal((await owner.usage()).partialBytes, frameA.length);
  a.peer.write(frameA.subarray(500 * KiB));
  const order: string[] = [];
  for (let i = 0; i < 3; i++) {
    const m = await box.receive({ timeout: 10_000 });
    order.push(String.fromCharCode(m!.body[0]!));
  }
  assert.deepEqual(order, ['a', 'b', 'c']);
});

test('frames that together fill the budget exactly both have room', { timeout: 30_000 }, async () => {
  const body = 300 * KiB;
  const size = bigSend(1, 1, 'x', body).length;
  const k = await kernelWith(['--max-partial-bytes', String(2 * size)]);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const [a, b] = [await rawProcess(k.socket), await rawProcess(k.socket)];
  const frames = [bigSend(1, box.id, 'a', body), bigSend(1, box.id, 'b', body)];
  a.peer.write(frames[0]!.subarray(0, 200 * KiB));
  await roomGiven(owner, size, "A's frame given room");
  b.peer.write(frames[1]!.subarray(0, 200 * KiB));
  await roomGiven(owner, 2 * size, "B's frame given room beside it");
  a.peer.write(frames[0]!.subarray(200 * KiB));
  b.peer.write(frames[1]!.subarray(200 * KiB));
  for (let i = 0; i < 2; i++) assert.equal((await box.receive({ timeout: 10_000 }))?.body.length, body);
});

test('a frame larger than the whole budget is slowed by it, never stopped: alone, it proceeds', {
  timeout: 30_000,
}, async () => {
  const k = await kernelWith(['--max-partial-bytes', '256K']);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const d = await rawProcess(k.socket);
  const frame = bigSend(1, box.id, 'd', 900 * KiB);
  d.peer.write(frame.subarray(0, 500 * KiB));
  await roomGiven(owner, frame.length, 'the frame given room, over the budget');
  d.peer.write(frame.subarray(500 * KiB));
  const got = await box.receive({ timeout: 10_000 });
  assert.deepEqual([got?.body.length, got?.body[0]], [900 * KiB, 'd'.charCodeAt(0)]);
});

test('a frame stalled half-way keeps its room while nobody waits, and is ended once someone does', {
  timeout: 40_000,
}, async () => {
  // Heartbeats of 200 ms: the kernel's limit for a frame in progress is 3 of them.
  const k = await kernelWith(['--max-partial-bytes', '1M', '--heartbeat-ms', '200'], true);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const stalled = await rawProcess(k.socket);
  const frame = bigSend(1, box.id, 's', 900 * KiB);
  stalled.peer.write(frame.subarray(0, 500 * KiB));
  await roomGiven(owner, frame.length, 'its frame given room');

  // A TCP process that says nothing is ended for it after 3 heartbeats: the clock of this test.
  // By then the stalled frame is as old as the limit, and it stays, for nobody waits.
  const silent = await rawProcess(tcpAddress(k), k.token);
  const silentEnd = await silent.peer.waitFor((f) => f.op === Op.ERROR, 10_000, 'silent ended');
  assert.equal(frameError(silentEnd).code, 'ETIMEDOUT');
  // Asked of the kernel, which answers after that check: an ERROR on the stalled socket could
  // still be on its way.
  assert.ok(
    (await owner.processes()).some((p) => p.id === stalled.id),
    'a slow frame costs nobody anything while nobody waits',
  );
  assert.ok(stalled.peer.isOpen);
  assert.ok(
    !stalled.peer.frames.some((f) => f.op === Op.ERROR),
    `the stalled process was told nothing: ${stalled.peer.describe()}`,
  );

  // Now another frame needs the room: the stalled one is ended and its room passes on.
  const waiter = await rawProcess(k.socket);
  waiter.peer.write(bigSend(1, box.id, 'w', 900 * KiB));
  const ended = await stalled.peer.waitFor((f) => f.op === Op.ERROR, 10_000, 'stalled frame ended');
  assert.equal(frameError(ended).code, 'ETIMEDOUT');
  assert.match(frameError(ended).message, /frame of \d+ bytes was still incomplete after 600 ms/);
  const got = await box.receive({ timeout: 10_000 });
  assert.equal(got?.body[0], 'w'.charCodeAt(0), 'the waiting frame arrived');
  assert.equal(await box.receive({ nowait: true }), null, 'nothing of the ended frame was queued');
  assert.ok(waiter.peer.isOpen);
});

test('connections that have not said HELLO cannot together hold more than a bounded amount', {
  timeout: 60_000,
}, async () => {
  const k = await kernelWith([]);
  // Each announces a HELLO of the largest size allowed before HELLO (64 KiB) and sends 1 KB of
  // it. The kernel holds 256 of those at most (16 MiB); each one past that is closed, told why.
  const announced = 64 * KiB - 4;
  const head = Buffer.alloc(4);
  head.writeUInt32LE(announced, 0);
  const part = Buffer.concat([head, Buffer.alloc(1000)]);
  const crowd: RawPeer[] = [];
  for (let i = 0; i < 300; i++) {
    const peer = await RawPeer.open(k.socket);
    peers.push(peer);
    crowd.push(peer);
    peer.write(part);
  }
  // Each connection's part is counted once read; the crowd's last is closed or still waiting.
  const closedWithError = (p: RawPeer): boolean => p.frames.some((f) => f.op === Op.ERROR);
  const refused = await until(
    async () => crowd.filter(closedWithError).length,
    (n) => n >= 300 - 256,
    20_000,
    'connections past the bound refused',
  );
  assert.equal(refused, 300 - 256);
  const reason = frameError(crowd.find(closedWithError)!.frames.find((f) => f.op === Op.ERROR)!);
  assert.equal(reason.code, 'EPROTO');
  assert.match(reason.message, /connections that have not said HELLO hold \d+ bytes of unfinished frames/);
  // The kernel goes on serving real processes meanwhile.
  const c = await client(k);
  const box = await c.createMailbox<string>('still-here');
  await box.send('yes');
  assert.equal((await box.receive())?.body, 'yes');
});

test('a process that ends half-way through a frame frees its room; the kernel says what it dropped', {
  timeout: 30_000,
}, async () => {
  const k = await kernelWith(['--max-partial-bytes', '1M']);
  const owner = await client(k);
  const box = await owner.createMailbox<Buffer>('big', { system: true });
  const quitter = await rawProcess(k.socket);
  const frame = bigSend(1, box.id, 'q', 900 * KiB);
  quitter.peer.write(frame.subarray(0, 300 * KiB));
  await roomGiven(owner, frame.length, 'its frame given room');
  const next = await rawProcess(k.socket);
  next.peer.write(bigSend(1, box.id, 'n', 900 * KiB));
  await waitsForRoom(owner, next.id, 'the next frame waiting for room');
  await quitter.peer.destroy();
  const got = await box.receive({ timeout: 10_000 });
  assert.equal(got?.body[0], 'n'.charCodeAt(0), 'the waiting frame got the room and arrived');
  assert.equal(await box.receive({ nowait: true }), null, 'nothing of the unfinished frame');
  assert.ok(
    k.log.some((l) =>
      new RegExp(`process ${quitter.id} terminated \\(crash\\); 307200 bytes it sent were not handled`).test(
        l,
      ),
    ),
    k.log.join('\n'),
  );
});

/**
 * Request ids (protocol.md, "Request ids"): the ids of operations outstanding at once must be
 * distinct, whatever their kinds. A third-party client that reuses one gets ERROR EPROTO on it
 * for the newcomer, naming what holds the id, and the operation already there goes on as it
 * was: its answers, its TAKE and its CANCEL still reach it, and nothing of the refused one
 * happens. Written with hand-made frames, as such a client would send them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { Op, RECALL_FRAME_BYTES, ReceiveFlag, writeHead, writeInt64 } from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import {
  callFrame,
  frameError,
  headFrame,
  type RawFrame,
  RawPeer,
  receiveFrame,
  sendFrame,
  takeFrame,
} from './helpers/raw-peer.js';

let kernel: TestKernel;
let owner: PostboxProcess;
const peers: RawPeer[] = [];

before(async () => {
  kernel = await startTestKernel();
  owner = await connect({ socket: kernel.socket });
});
after(async () => {
  for (const p of peers.splice(0)) await p.destroy();
  await owner.close();
  await kernel.stop();
});

async function rawProcess(): Promise<RawPeer> {
  const peer = await RawPeer.open(kernel.socket);
  peers.push(peer);
  assert.equal((await peer.hello()).op, Op.WELCOME, peer.describe());
  return peer;
}

/** The frames on `request` from index `from` on, once a CALL written after them is answered. */
async function answersAfter(
  peer: RawPeer,
  from: number,
  request: number,
  fence: number,
): Promise<RawFrame[]> {
  // The kernel handles a connection's frames in order and answers in order: once the fence's
  // RESULT is here, everything before it has been answered.
  peer.write(callFrame(fence, { op: 'usage' }));
  await peer.waitFor((f) => f.op === Op.RESULT && f.request === fence, 10_000, `RESULT ${fence}`);
  return peer.frames.slice(from).filter((f) => f.request === request);
}

function refusal(f: RawFrame | undefined): { code: string; message: string } | undefined {
  return f === undefined || f.op !== Op.ERROR ? undefined : frameError(f);
}

describe('a request id in use is refused for a newcomer of any kind', () => {
  test('a SEND and a CALL under the id of a waiting RECEIVE; the receive still gets its message', async () => {
    const box = await owner.createMailbox<string>(null, { mode: 0o666 });
    const peer = await rawProcess();
    peer.write(receiveFrame({ request: 5, target: box.id }));
    const mark = peer.frames.length;
    peer.write(sendFrame({ request: 5, target: box.id, body: Buffer.from('under-5'), codec: 1 }));
    peer.write(callFrame(5, { op: 'stat', id: box.id }));
    const answers = await answersAfter(peer, mark, 5, 6);
    const held = { code: 'EPROTO', message: 'request id 5 is already in use by a receive still open' };
    assert.deepEqual(answers.map(refusal), [held, held], peer.describe());
    assert.equal((await box.stat()).count, 0, 'the refused send queued nothing');
    peer.write(sendFrame({ request: 7, target: box.id, body: Buffer.from('for-5'), codec: 1 }));
    const d = await peer.waitFor((f) => f.op === Op.DELIVER && f.request === 5, 10_000, 'DELIVER 5');
    assert.equal(d.bytes.subarray(56).toString(), 'for-5');
    peer.write(takeFrame(5, 1, 0));
    await box.delete();
  });

  test('a RECEIVE and a CALL under the id of a blocked SEND; a CANCEL then withdraws the send', async () => {
    const full = await owner.createMailbox<string>(null, { capacity: 1, mode: 0o666 });
    await full.send('filler');
    const other = await owner.createMailbox<string>(null, { mode: 0o666 });
    const peer = await rawProcess();
    peer.write(sendFrame({ request: 5, target: full.id, body: Buffer.from('blocked'), codec: 1 }));
    await peer.waitFor((f) => f.op === Op.BLOCKED && f.request === 5, 10_000, 'BLOCKED 5');
    const mark = peer.frames.length;
    peer.write(receiveFrame({ request: 5, target: other.id, flags: ReceiveFlag.NOWAIT }));
    peer.write(callFrame(5, { op: 'usage' }));
    const answers = await answersAfter(peer, mark, 5, 6);
    const held = { code: 'EPROTO', message: 'request id 5 is already in use by a send still waiting' };
    assert.deepEqual(answers.map(refusal), [held, held], peer.describe());
    // The CANCEL reaches the send: there is no receive under 5 to stop instead.
    peer.write(headFrame(Op.CANCEL, 5));
    const e = await peer.waitFor(
      (f) => f.op === Op.ERROR && f.request === 5 && frameError(f).code === 'ECANCELED',
      10_000,
      'ECANCELED 5',
    );
    assert.match(frameError(e).message, /^send to .* was aborted$/);
    assert.deepEqual((await full.stat()).waitingSenders, []);
    // The id is free again.
    peer.write(receiveFrame({ request: 5, target: other.id, flags: ReceiveFlag.NOWAIT }));
    await peer.waitFor((f) => f.op === Op.EMPTY && f.request === 5, 10_000, 'EMPTY 5');
    await full.delete();
    await other.delete();
  });

  test('a SEND in a burst of plain sends under the id of an open STREAM', async () => {
    const streamed = await owner.createMailbox<string>(null, { mode: 0o666 });
    const target = await owner.createMailbox<string>(null, { mode: 0o666 });
    const peer = await rawProcess();
    peer.write(receiveFrame({ request: 5, target: streamed.id, flags: ReceiveFlag.STREAM, credit: 8 }));
    const mark = peer.frames.length;
    // One write: the kernel takes the sends after a first that completes at once as one run.
    peer.write(
      Buffer.concat([
        sendFrame({ request: 6, target: target.id, body: Buffer.from('first'), codec: 1 }),
        sendFrame({ request: 5, target: target.id, body: Buffer.from('under-5'), codec: 1 }),
        sendFrame({ request: 7, target: target.id, body: Buffer.from('third'), codec: 1 }),
      ]),
    );
    const answers = await answersAfter(peer, mark, 5, 8);
    assert.deepEqual(
      answers.map(refusal),
      [{ code: 'EPROTO', message: 'request id 5 is already in use by a receive still open' }],
      peer.describe(),
    );
    assert.equal((await target.receive({ nowait: true }))?.body, 'first');
    assert.equal((await target.receive({ nowait: true }))?.body, 'third');
    assert.equal(await target.receive({ nowait: true }), null, 'the refused send queued nothing');
    // The stream is as it was: it gets what comes, and a CANCEL ends it.
    await streamed.send('streamed');
    const d = await peer.waitFor((f) => f.op === Op.DELIVER && f.request === 5, 10_000, 'DELIVER 5');
    assert.equal(d.bytes.subarray(56).toString(), 'streamed');
    peer.write(takeFrame(5, 1, 1));
    peer.write(headFrame(Op.CANCEL, 5));
    await peer.waitFor(
      (f) => f.op === Op.ERROR && f.request === 5 && frameError(f).code === 'ECANCELED',
      10_000,
      'ECANCELED 5',
    );
    assert.equal((await streamed.stat()).count, 0, 'the message taken stays taken');
    await streamed.delete();
    await target.delete();
  });

  test('a RECEIVE answered with DELIVER holds its id until its TAKE', async () => {
    const box = await owner.createMailbox<string>(null, { mode: 0o666 });
    await box.send('waiting');
    const peer = await rawProcess();
    peer.write(receiveFrame({ request: 5, target: box.id }));
    await peer.waitFor((f) => f.op === Op.DELIVER && f.request === 5, 10_000, 'DELIVER 5');
    const mark = peer.frames.length;
    peer.write(sendFrame({ request: 5, target: box.id, body: Buffer.from('under-5'), codec: 1 }));
    assert.deepEqual(
      (await answersAfter(peer, mark, 5, 6)).map(refusal),
      [{ code: 'EPROTO', message: 'request id 5 is already in use by a receive still open' }],
      peer.describe(),
    );
    peer.write(takeFrame(5, 1, 0));
    const after = peer.frames.length;
    peer.write(sendFrame({ request: 5, target: box.id, body: Buffer.from('after-take'), codec: 1 }));
    // Accepted once the TAKE freed the id: ACK through 5, and no ERROR before it.
    const acked = await peer.waitFor((f) => f.op === Op.ACK && f.request === 5, 10_000, 'ACK 5');
    assert.ok(
      !peer.frames.slice(after, peer.frames.indexOf(acked)).some((f) => f.op === Op.ERROR),
      peer.describe(),
    );
    assert.equal((await box.receive({ nowait: true }))?.body, 'after-take');
    await box.delete();
  });
});

describe('what the kernel ignores (protocol.md, "What the kernel ignores")', () => {
  test('a TAKE, RETURN or CANCEL under an id nothing holds', async () => {
    const peer = await rawProcess();
    const mark = peer.frames.length;
    peer.write(takeFrame(40, 1, 0));
    const back = Buffer.alloc(RECALL_FRAME_BYTES);
    writeHead(back, 0, RECALL_FRAME_BYTES, Op.RETURN, 0, 0, 41);
    writeInt64(back, 1, 12);
    peer.write(back);
    peer.write(headFrame(Op.CANCEL, 42));
    await answersAfter(peer, mark, 0, 43);
    assert.deepEqual(
      peer.frames.slice(mark).map((f) => [f.op, f.request]),
      [[Op.RESULT, 43]],
      `nothing answers them: ${peer.describe()}`,
    );
  });

  test('flag bits version 1 does not define, on SEND, RECEIVE and PING', async () => {
    const box = await owner.createMailbox<string>(null, { mode: 0o666 });
    const peer = await rawProcess();
    peer.write(
      sendFrame({ request: 5, target: box.id, body: Buffer.from('odd-flags'), codec: 1, flags: 0xf8 }),
    );
    await peer.waitFor((f) => f.op === Op.ACK && f.request === 5, 10_000, 'ACK 5');
    // 0xc0 sets no flag RECEIVE defines (0x20 is HOLD): a blocking single receive, as flags 0.
    peer.write(receiveFrame({ request: 6, target: box.id, flags: 0xc0 }));
    const d = await peer.waitFor((f) => f.op === Op.DELIVER && f.request === 6, 10_000, 'DELIVER 6');
    assert.equal(d.flags, 0, 'DELIVER carries flags 0 whatever the SEND had');
    assert.equal(d.bytes.subarray(56).toString(), 'odd-flags');
    peer.write(takeFrame(6, 1, 0));
    // Its TAKE ended it, as a plain receive's does (a HOLD receive would still hold id 6).
    const mark = peer.frames.length;
    peer.write(receiveFrame({ request: 6, target: box.id, flags: ReceiveFlag.NOWAIT }));
    const again = await answersAfter(peer, mark, 6, 8);
    assert.deepEqual(
      again.map((f) => f.op),
      [Op.EMPTY],
      `id 6 is free after its TAKE: ${peer.describe()}`,
    );
    peer.write(headFrame(Op.PING, 7, 0xfe, 9));
    const pong = await peer.waitFor((f) => f.op === Op.PONG && f.request === 7, 10_000, 'PONG 7');
    assert.deepEqual([pong.flags, pong.bytes.length], [0, 12], 'a PONG without the clock: CLOCK was not set');
    assert.ok(!peer.frames.some((f) => f.op === Op.ERROR), peer.describe());
    assert.equal((await box.stat()).count, 0, 'the message was taken');
    await box.delete();
  });
});

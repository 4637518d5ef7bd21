// Runs of sends: the kernel handles consecutive plain SENDs to one mailbox together (one lookup,
// one rights check, one write for the deliveries). These tests put every kind of frame that must
// break a run in the middle of one, in a single write, and check that each message and each
// answer is what it would be one frame at a time.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from '../src/client/mod.js';
import {
  MESSAGE_HEAD_BYTES,
  Off,
  OnFull,
  Op,
  ReceiveFlag,
  readInt64,
  SendFlag,
} from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import {
  callFrame,
  frameError,
  framePayload,
  headFrame,
  type RawFrame,
  RawPeer,
  receiveFrame,
  sendFrame,
  takeFrame,
} from './helpers/raw-peer.js';

let kernel: TestKernel;
const peers: RawPeer[] = [];

before(async () => {
  kernel = await startTestKernel();
});

after(async () => {
  for (const p of peers) if (p.isOpen) await p.destroy(2000);
  await kernel.stop();
});

async function peer(): Promise<{ peer: RawPeer; id: number }> {
  const p = await RawPeer.open(kernel.socket);
  peers.push(p);
  const welcome = await p.hello();
  assert.equal(welcome.op, Op.WELCOME);
  return { peer: p, id: (framePayload(welcome) as { process: { id: number } }).process.id };
}

async function create(p: RawPeer, request: number, attrs: Record<string, unknown>): Promise<number> {
  p.write(callFrame(request, { op: 'create', mode: 0o666, ...attrs }));
  const r = await p.waitFor((f) => f.request === request && f.op !== Op.ACK, 5000, `create ${request}`);
  assert.equal(r.op, Op.RESULT, JSON.stringify(framePayload(r)));
  return (framePayload(r) as { id: number }).id;
}

const body = (f: RawFrame): string => {
  const headers = f.bytes.readUInt16LE(Off.HEADERS_LENGTH);
  return f.bytes.toString('utf8', MESSAGE_HEAD_BYTES + headers);
};
const delivered = (p: RawPeer, request: number): RawFrame[] =>
  p.frames.filter((f) => f.op === Op.DELIVER && f.request === request);

describe('a run of sends in one write', () => {
  test('each frame that breaks a run is answered on its own; the messages keep their order', async () => {
    const { peer: r } = await peer();
    const { peer: s, id: sender } = await peer();
    const a = await create(r, 1, { name: 'run-a' });
    const b = await create(r, 2, { name: 'run-b' });
    const full = await create(r, 3, { name: 'run-full', capacity: 2 });
    r.write(receiveFrame({ request: 50, target: a, flags: ReceiveFlag.STREAM, credit: 3 }));
    // The RECEIVE is in place once a later frame on the same connection is answered.
    r.write(headFrame(Op.PING, 51));
    await r.waitFor((f) => f.op === Op.PONG && f.request === 51, 5000, 'PONG 51');

    const plain = (request: number, target = a): Buffer =>
      sendFrame({ request, target, body: Buffer.from(`m${request}`) });
    s.write(
      Buffer.concat([
        plain(1),
        plain(2),
        plain(3), // the receiver's credit ends here: the rest are queued
        plain(4),
        plain(5),
        sendFrame({ request: 6, target: a, headers: Buffer.from('{"k":"v"}'), body: Buffer.from('m6') }),
        sendFrame({ request: 7, target: a, type: 0, body: Buffer.from('bad type') }),
        plain(8),
        plain(9, b),
        plain(10),
        sendFrame({ request: 11, target: a, flags: SendFlag.RECEIPT, body: Buffer.from('m11') }),
        plain(12),
        sendFrame({ request: 13, target: a, codec: 9, body: Buffer.from('bad codec') }),
        plain(14),
        sendFrame({ request: 20, target: full, onFull: OnFull.FAIL, body: Buffer.from('f20') }),
        sendFrame({ request: 21, target: full, onFull: OnFull.FAIL, body: Buffer.from('f21') }),
        sendFrame({ request: 22, target: full, onFull: OnFull.FAIL, body: Buffer.from('f22') }),
        sendFrame({ request: 23, target: full, onFull: OnFull.DROP_NEW, body: Buffer.from('f23') }),
        plain(24),
        headFrame(Op.PING, 30),
      ]),
    );
    await s.waitFor((f) => f.op === Op.PONG && f.request === 30, 5000, 'PONG 30');
    const errors = s.frames.filter((f) => f.op === Op.ERROR).map((f) => [f.request, frameError(f).code]);
    assert.deepEqual(errors, [
      [7, 'EINVAL'],
      [13, 'EINVAL'],
      [22, 'EAGAIN'],
    ]);
    const sent = s.frames.filter((f) => f.op === Op.SENT).map((f) => f.request);
    assert.deepEqual(sent, [23], 'the dropped send is told so on its own');
    const acks = s.frames.filter((f) => f.op === Op.ACK).map((f) => f.request);
    assert.equal(acks.at(-1), 24, 'the cumulative ACK reaches the last send that completed at once');
    // A run that ends the write: the ACK names its last frame (not the request id it was relabelled with).
    s.write(Buffer.concat([plain(40), plain(41), plain(42), plain(43)]));
    await s.waitFor((f) => f.op === Op.ACK && f.request === 43, 5000, 'ACK 43');

    // The first three went straight to the receiver, as one delivery, each with its own fields.
    await r.waitFor(() => delivered(r, 50).length === 3, 5000, 'three DELIVERs');
    const first = delivered(r, 50);
    assert.deepEqual(first.map(body), ['m1', 'm2', 'm3']);
    for (const f of first) {
      assert.equal(f.bytes.readUInt32LE(Off.TARGET), a);
      assert.equal(f.bytes.readUInt32LE(Off.SENDER), sender);
      assert.equal(f.bytes[Off.FLAGS], 0);
    }
    // The rest follow once the receiver takes these, in order, with rising sequence numbers.
    r.write(takeFrame(50, 3, 20));
    await r.waitFor(() => delivered(r, 50).length === 16, 5000, 'sixteen DELIVERs');
    const all = delivered(r, 50);
    assert.deepEqual(all.map(body), [
      'm1',
      'm2',
      'm3',
      'm4',
      'm5',
      'm6',
      'm8',
      'm10',
      'm11',
      'm12',
      'm14',
      'm24',
      'm40',
      'm41',
      'm42',
      'm43',
    ]);
    const seqs = all.map((f) => readInt64(f.bytes, Off.SEQ));
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => seqs[0]! + i),
      'sequence numbers rise by one',
    );
    assert.equal(all[5]!.bytes.readUInt16LE(Off.HEADERS_LENGTH), 9, 'm6 keeps its headers');
    for (const f of all) assert.equal(f.bytes.readUInt32LE(Off.SENDER), sender);
    // Taking the receipted message answers its sender.
    r.write(takeFrame(50, 13, 0));
    await s.waitFor((f) => f.op === Op.SENT && f.request === 11, 5000, 'SENT 11');

    r.write(callFrame(60, { op: 'stat', id: b }));
    const stat = framePayload(await r.waitFor((f) => f.request === 60, 5000, 'stat b')) as { count: number };
    assert.equal(stat.count, 1, 'the send to another mailbox in the middle of the run landed there');
    r.write(callFrame(61, { op: 'stat', id: full }));
    const statFull = framePayload(await r.waitFor((f) => f.request === 61, 5000, 'stat full')) as {
      count: number;
    };
    assert.equal(statFull.count, 2);
  });

  test("a send over the mailbox's maxMessageSize or maxBytes, or not of its fixed size, breaks a run: EMSGSIZE on its own", async () => {
    const { peer: r } = await peer();
    const { peer: s } = await peer();
    const small = await create(r, 1, { name: 'run-small', maxMessageSize: 4 });
    const tight = await create(r, 2, { name: 'run-tight', maxBytes: 4 });
    const fixed = await create(r, 3, { name: 'run-fixed', messageSize: 2, capacity: 4 });
    const send = (request: number, target: number, text: string): Buffer =>
      sendFrame({ request, target, body: Buffer.from(text) });
    s.write(
      Buffer.concat([
        send(1, small, 'ok'),
        send(2, small, 'too long'),
        send(3, small, 'ok3'),
        send(4, tight, 'a'),
        send(5, tight, 'never fits'),
        send(6, tight, 'b'),
        send(7, fixed, 'ab'),
        send(8, fixed, 'abc'),
        send(9, fixed, 'cd'),
        headFrame(Op.PING, 10),
      ]),
    );
    await s.waitFor((f) => f.op === Op.PONG && f.request === 10, 5000, 'PONG 10');
    const errors = s.frames.filter((f) => f.op === Op.ERROR).map((f) => [f.request, frameError(f).code]);
    assert.deepEqual(errors, [
      [2, 'EMSGSIZE'],
      [5, 'EMSGSIZE'],
      [8, 'EMSGSIZE'],
    ]);
    for (const [request, id, count] of [
      [20, small, 2],
      [21, tight, 2],
      [22, fixed, 2],
    ] as const) {
      r.write(callFrame(request, { op: 'stat', id }));
      const stat = framePayload(await r.waitFor((f) => f.request === request, 5000, `stat ${id}`)) as {
        count: number;
      };
      assert.equal(stat.count, count, `mailbox ${id} holds only the sends that fit`);
    }
  });

  // Frames of one length are counted past; of varied lengths, walked: both ways are checked.
  for (const shape of ['of one length', 'of varied lengths'] as const) {
    test(`taking part of a run of messages ${shape}, then giving the rest back, loses and repeats nothing`, async () => {
      const { peer: r } = await peer();
      const { peer: s } = await peer();
      const a = await create(r, 1, { name: `run-giveback-${shape.length}` });
      r.write(receiveFrame({ request: 70, target: a, flags: ReceiveFlag.STREAM, credit: 8 }));
      r.write(headFrame(Op.PING, 71));
      await r.waitFor((f) => f.op === Op.PONG && f.request === 71, 5000, 'PONG 71');
      const text = (i: number): string =>
        shape === 'of one length' ? `g${String(i).padStart(2, '0')}` : `g${'.'.repeat(i)}${i}`;
      const frames = [];
      for (let i = 1; i <= 12; i++)
        frames.push(sendFrame({ request: i, target: a, body: Buffer.from(text(i)) }));
      s.write(Buffer.concat(frames));
      await r.waitFor(() => delivered(r, 70).length === 8, 5000, 'eight DELIVERs');
      // Take three of the run of eight, then cancel: the five untaken go back ahead of the queued four.
      r.write(takeFrame(70, 3, 0));
      r.write(headFrame(Op.CANCEL, 70));
      await r.waitFor((f) => f.op === Op.ERROR && f.request === 70, 5000, 'ECANCELED');
      const { peer: r2 } = await peer();
      r2.write(receiveFrame({ request: 80, target: a, flags: ReceiveFlag.STREAM, credit: 100 }));
      await r2.waitFor(() => delivered(r2, 80).length === 9, 5000, 'nine DELIVERs');
      assert.deepEqual(delivered(r2, 80).map(body), [4, 5, 6, 7, 8, 9, 10, 11, 12].map(text));
      r2.write(callFrame(90, { op: 'stat', id: a }));
      const st = framePayload(await r2.waitFor((f) => f.request === 90, 5000, 'stat')) as {
        count: number;
        bytes: number;
      };
      const held = [4, 5, 6, 7, 8, 9, 10, 11, 12].reduce((n, i) => n + text(i).length, 0);
      assert.deepEqual([st.count, st.bytes], [9, held], 'the mailbox counts exactly what is held');
    });
  }
});

test('ten thousand pipelined sends through the client: every one settles, every message arrives in order', {
  timeout: 30_000,
}, async () => {
  const receiver = await connect({ socket: kernel.socket });
  const sender = await connect({ socket: kernel.socket });
  try {
    const box = await receiver.createMailbox<number>('run-pipelined', { mode: 0o666 });
    const out = await sender.openMailbox<number>('run-pipelined');
    const n = 10_000;
    const got: number[] = [];
    const reading = (async () => {
      for await (const m of box.messages({ prefetch: 256 })) {
        got.push(m.body);
        if (got.length === n) break;
      }
    })();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) sends.push(out.send(i));
    await Promise.all(sends);
    await reading;
    assert.equal(got.length, n);
    assert.ok(
      got.every((v, i) => v === i),
      'in order',
    );
  } finally {
    await sender.close();
    await receiver.close();
  }
});

test('large frames joined from several chunks are queued as they are, and come out intact', async () => {
  const { peer: r } = await peer();
  const { peer: s } = await peer();
  const a = await create(r, 1, { name: 'run-large' });
  const bodies = [1, 2, 3].map((k) => Buffer.alloc(100 * 1024 + k, 0x30 + k));
  for (const [i, b] of bodies.entries()) {
    const f = sendFrame({ request: i + 1, target: a, body: b });
    // In three pieces, each its own turn: the kernel joins the frame itself.
    for (const cut of [0, 1000, 60_000]) {
      s.write(f.subarray(cut, cut === 0 ? 1000 : cut === 1000 ? 60_000 : f.length));
      await new Promise((done) => setImmediate(done));
    }
  }
  s.write(headFrame(Op.PING, 9));
  await s.waitFor((f) => f.op === Op.PONG && f.request === 9, 5000, 'PONG 9');
  // A receiver takes the first, is cancelled holding the second (given back), and a second one
  // reads the rest.
  r.write(receiveFrame({ request: 20, target: a, flags: ReceiveFlag.STREAM, credit: 2 }));
  await r.waitFor(() => delivered(r, 20).length === 2, 5000, 'two large DELIVERs');
  r.write(takeFrame(20, 1, 0));
  r.write(headFrame(Op.CANCEL, 20));
  await r.waitFor((f) => f.op === Op.ERROR && f.request === 20, 5000, 'ECANCELED');
  r.write(receiveFrame({ request: 21, target: a, flags: ReceiveFlag.STREAM, credit: 5 }));
  await r.waitFor(() => delivered(r, 21).length === 2, 5000, 'the rest');
  const got = [delivered(r, 20)[0]!, ...delivered(r, 21)].map((f) => f.bytes.subarray(MESSAGE_HEAD_BYTES));
  assert.equal(got.length, 3);
  for (const [i, b] of bodies.entries()) assert.ok(got[i]!.equals(b), `message ${i + 1} intact`);
});

test("at the kernel's memory limit a run is refused as each send would be, receiver or not", async () => {
  const small = await startTestKernel({ args: ['--max-total-bytes', '1000'] });
  const open: RawPeer[] = [];
  try {
    const join = async (): Promise<RawPeer> => {
      const p = await RawPeer.open(small.socket);
      open.push(p);
      assert.equal((await p.hello()).op, Op.WELCOME);
      return p;
    };
    const r = await join();
    const s = await join();
    const make = async (request: number, name: string): Promise<number> => {
      r.write(callFrame(request, { op: 'create', name, mode: 0o666 }));
      const f = await r.waitFor((x) => x.request === request && x.op !== Op.ACK, 5000, `create ${name}`);
      return (framePayload(f) as { id: number }).id;
    };
    const held = await make(1, 'mem-held');
    const live = await make(2, 'mem-live');
    r.write(receiveFrame({ request: 30, target: live, flags: ReceiveFlag.STREAM, credit: 50 }));
    r.write(headFrame(Op.PING, 31));
    await r.waitFor((f) => f.op === Op.PONG && f.request === 31, 5000, 'PONG 31');
    // 900 bytes queued where nobody reads; then sends to a mailbox with a receiver waiting.
    const frames = [];
    for (let i = 1; i <= 9; i++)
      frames.push(sendFrame({ request: i, target: held, body: Buffer.alloc(100) }));
    frames.push(sendFrame({ request: 10, target: live, body: Buffer.alloc(50) }));
    for (let i = 11; i <= 13; i++)
      frames.push(sendFrame({ request: i, target: live, body: Buffer.alloc(200) }));
    frames.push(headFrame(Op.PING, 14));
    s.write(Buffer.concat(frames));
    await s.waitFor((f) => f.op === Op.PONG && f.request === 14, 5000, 'PONG 14');
    const refused = s.frames.filter((f) => f.op === Op.ERROR).map((f) => [f.request, frameError(f).code]);
    assert.deepEqual(refused, [
      [11, 'ENOMEM'],
      [12, 'ENOMEM'],
      [13, 'ENOMEM'],
    ]);
    await r.waitFor(() => delivered(r, 30).length === 1, 5000, 'the one that fit');
  } finally {
    for (const p of open) if (p.isOpen) await p.destroy(2000);
    await small.stop();
  }
});

test('a run does not carry past a receiver ahead in line that selects by type', async () => {
  const { peer: r } = await peer();
  const { peer: s } = await peer();
  const a = await create(r, 1, { name: 'run-select' });
  // First in line: a receiver of type 5 only; behind it, one that takes anything.
  r.write(receiveFrame({ request: 40, target: a, flags: ReceiveFlag.STREAM, credit: 10, type: 5 }));
  r.write(receiveFrame({ request: 41, target: a, flags: ReceiveFlag.STREAM, credit: 10 }));
  r.write(headFrame(Op.PING, 42));
  await r.waitFor((f) => f.op === Op.PONG && f.request === 42, 5000, 'PONG 42');
  const types = [1, 1, 5, 1, 1, 5, 5, 1];
  s.write(
    Buffer.concat(
      types.map((type, i) =>
        sendFrame({ request: i + 1, target: a, type, body: Buffer.from(`t${type}-${i}`) }),
      ),
    ),
  );
  await r.waitFor(() => delivered(r, 40).length + delivered(r, 41).length === 8, 5000, 'eight DELIVERs');
  assert.deepEqual(delivered(r, 40).map(body), ['t5-2', 't5-5', 't5-6']);
  assert.deepEqual(delivered(r, 41).map(body), ['t1-0', 't1-1', 't1-3', 't1-4', 't1-7']);
});

test('a broken frame after a run closes only that connection; the run before it and everyone else are intact', async () => {
  const { peer: r } = await peer();
  const { peer: bad } = await peer();
  const { peer: good } = await peer();
  const a = await create(r, 1, { name: 'run-broken' });
  r.write(receiveFrame({ request: 60, target: a, flags: ReceiveFlag.STREAM, credit: 100 }));
  r.write(headFrame(Op.PING, 61));
  await r.waitFor((f) => f.op === Op.PONG && f.request === 61, 5000, 'PONG 61');
  const plain = (request: number, text: string): Buffer =>
    sendFrame({ request, target: a, body: Buffer.from(text) });
  // A SEND head whose length says 7: no frame can be that short. The run before it stands, then
  // the connection ends.
  const broken = plain(99, 'x'.repeat(20));
  broken.writeUInt32LE(7, 0);
  bad.write(Buffer.concat([plain(1, 'b1'), plain(2, 'b2'), plain(3, 'b3'), broken, plain(4, 'lost')]));
  assert.equal(await bad.waitClosed(5000), true, 'the kernel closes the broken connection');
  const fatal = bad.frames.find((f) => f.op === Op.ERROR && f.request === 0);
  assert.ok(fatal !== undefined, 'a fatal ERROR before the close');
  assert.equal(frameError(fatal).code, 'EPROTO');
  good.write(Buffer.concat([plain(1, 'g1'), plain(2, 'g2'), headFrame(Op.PING, 3)]));
  await good.waitFor((f) => f.op === Op.PONG && f.request === 3, 5000, 'PONG 3');
  await r.waitFor(() => delivered(r, 60).length === 5, 5000, 'five DELIVERs');
  assert.deepEqual(delivered(r, 60).map(body), ['b1', 'b2', 'b3', 'g1', 'g2']);
});

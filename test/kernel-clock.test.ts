/**
 * The kernel's clock, which every process reads through its offset to it: message times and RPC
 * deadlines are the kernel's, so processes on machines whose clocks differ agree on them. The
 * offset is measured at the handshake (WELCOME's `kernel.time`) and, over TCP, at each heartbeat
 * (a PING with the CLOCK flag), so it follows a clock stepped while the process runs.
 * test/rpc.test.ts has processes whose clocks run 60 s off the kernel's.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from '../src/client/mod.js';
import { HEAD_BYTES, Op, PingFlag } from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { headFrame, RawPeer } from './helpers/raw-peer.js';

const HEARTBEAT_MS = 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let kernel: TestKernel;
before(async () => {
  kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', String(HEARTBEAT_MS)] });
});
after(() => kernel.stop());

test('a PING with the CLOCK flag is answered with the kernel’s clock; a plain one with the head only', async () => {
  const peer = await RawPeer.open(kernel.socket);
  try {
    const welcome = await peer.hello();
    assert.equal(welcome.op, Op.WELCOME);
    const before = Date.now();
    peer.write(headFrame(Op.PING, 7, PingFlag.CLOCK));
    const pong = await peer.waitFor((f) => f.op === Op.PONG && f.request === 7, 5000, 'PONG with the clock');
    const after = Date.now();
    assert.equal(pong.flags, PingFlag.CLOCK);
    assert.equal(pong.bytes.length, HEAD_BYTES + 8);
    // Same machine, same clock: the kernel read it between our two readings.
    const time = pong.bytes.readDoubleLE(HEAD_BYTES);
    assert.ok(time >= before && time <= after, `kernel time ${time} not within [${before}, ${after}]`);

    peer.write(headFrame(Op.PING, 8));
    const plain = await peer.waitFor((f) => f.op === Op.PONG && f.request === 8, 5000, 'plain PONG');
    assert.deepEqual({ flags: plain.flags, length: plain.bytes.length }, { flags: 0, length: HEAD_BYTES });
  } finally {
    await peer.destroy();
  }
});

test('over TCP the offset follows this machine’s clock when it is stepped, at the next heartbeats', async () => {
  const me = await connect({ url: kernel.tcpUrl!, token: kernel.token });
  const machineNow = Date.now;
  try {
    assert.ok(Math.abs(me.kernelClockOffset) < 1000, `offset ${me.kernelClockOffset} ms before the step`);
    // The clock is stepped 30 s ahead, as NTP might. Timers do not move, so the waits below are
    // bounded by count: 100 waits of 50 ms, against heartbeats every 100 ms.
    Date.now = () => machineNow() + 30_000;
    for (let i = 0; i < 100 && Math.abs(me.kernelClockOffset + 30_000) >= 1000; i++) await sleep(50);
    assert.ok(
      Math.abs(me.kernelClockOffset + 30_000) < 1000,
      `offset ${me.kernelClockOffset} ms after a +30 s step`,
    );
    Date.now = machineNow;
    for (let i = 0; i < 100 && Math.abs(me.kernelClockOffset) >= 1000; i++) await sleep(50);
    assert.ok(Math.abs(me.kernelClockOffset) < 1000, `offset ${me.kernelClockOffset} ms after stepping back`);
  } finally {
    Date.now = machineNow;
    await me.close();
  }
});

test('over the Unix socket the offset is measured at the handshake (the kernel’s own machine)', async () => {
  const me = await connect({ socket: kernel.socket });
  try {
    assert.ok(Math.abs(me.kernelClockOffset) < 1000, `offset ${me.kernelClockOffset} ms`);
    // A message's time is the kernel's: its age by the kernel's clock is small and not negative
    // beyond the offset's error.
    const box = await me.createMailbox();
    await box.send('now');
    const m = await box.receive();
    const age = Date.now() + me.kernelClockOffset - m!.time;
    assert.ok(age > -1000 && age < 5000, `age ${age} ms`);
  } finally {
    await me.close();
  }
});

/**
 * Network faults between TCP processes and their kernel, over real sockets: a link that goes
 * dark without a FIN or RST (a fault proxy in between drops what it reads), a kernel stopped
 * past its heartbeat and continued, a kernel killed with a joining connection still in its
 * listening socket's backlog. What users of NATS, ZeroMQ and AMQP clients complain of is the
 * target: calls that hang when the link dies, and not knowing that the other side is gone.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { connect, type PostboxError } from '../src/client/mod.js';
import { Op } from '../src/protocol/frame.js';
import { type Direction, FaultProxy } from './helpers/fault-proxy.js';
import { freePortBelowEphemeral, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { headFrame, RawPeer, within } from './helpers/raw-peer.js';

const HEARTBEAT_MS = 200;
/** Far past the 4 heartbeats either side takes to notice, for a loaded machine. */
const BOUND_MS = 10_000;

/** Resolves with the error a promise rejects with; fails if it resolves. */
async function rejection(p: Promise<unknown>, what: string): Promise<PostboxError> {
  try {
    await within(p, BOUND_MS, what);
  } catch (err) {
    return err as PostboxError;
  }
  assert.fail(`${what} resolved; it should have failed when the link went dark`);
}

for (const direction of ['both', 'toClient'] as Direction[]) {
  test(`a TCP process whose link goes dark (${direction === 'both' ? 'both ways' : 'kernel to process only'}, no FIN, no RST) fails every pending call with ECONNRESET within 4 heartbeats, and the kernel ends it`, async (t) => {
    const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', String(HEARTBEAT_MS)] });
    t.after(() => kernel.stop());
    const proxy = await FaultProxy.start(Number(new URL(kernel.tcpUrl!).port));
    t.after(() => proxy.close());
    const observer = await connect({ socket: kernel.socket });
    t.after(() => observer.close());
    const far = await connect({ url: proxy.url, token: kernel.token, name: 'far' });
    t.after(() => far.close());
    const own = await far.openMailbox('far-own', { create: {} });
    const watched = observer.monitor('far');

    const started = Date.now();
    proxy.dark(direction);
    // Calls that wait on the kernel and nothing else: before, each hung for as long as TCP kept
    // the dead connection (its retransmissions give up after some 15 minutes; a connection only
    // read from, never).
    const pending = {
      receive: far.receive(),
      iterator: own.messages()[Symbol.asyncIterator]().next(),
      'send with receipt': own.send('r', { receipt: true }),
      monitor: far.monitor(observer.id),
    };
    // Checked below; a failure before then must not leave them unhandled.
    for (const p of Object.values(pending)) p.catch(() => {});
    const ended = await within(far.closed, BOUND_MS, 'closed');
    const noticedMs = Date.now() - started;
    assert.equal(ended?.code, 'ECONNRESET');
    assert.match(ended!.message, /heard nothing from it for over 600 ms \(3 heartbeats\)/);
    // 3 heartbeats of silence, seen at the next one; generous for a loaded machine.
    assert.ok(noticedMs >= 3 * HEARTBEAT_MS, `noticed after ${noticedMs} ms, before 3 heartbeats`);
    // Counted, not timed: each heartbeat writes one PING, and the third quiet one gives up. A
    // heartbeat that runs late (a loaded machine) starts the count again, so a few more are
    // allowed; a client that waited 30 heartbeats wrote 29 (found by a mutation audit: within
    // BOUND_MS it passed).
    assert.ok(
      proxy.pingsSinceDark >= 2 && proxy.pingsSinceDark <= 12,
      `the process wrote ${proxy.pingsSinceDark} PINGs to the dark link before giving up, not 2 to 4`,
    );
    for (const [what, p] of Object.entries(pending))
      assert.equal((await rejection(p, what)).code, 'ECONNRESET', what);
    assert.equal((await rejection(own.send('late'), 'a send after the end')).code, 'ECONNRESET');
    // close() does not wait on the dead link either.
    await within(far.close(), BOUND_MS, 'close()');

    // The kernel ends it too, so monitors fire for the others and what it owned goes: after
    // 3 heartbeats of silence (both ways dark), or at the end of its connection, which the
    // process closes once it gives up (kernel to process only).
    const down = await within(watched, BOUND_MS, "the observer's monitor");
    assert.equal(down.reason, direction === 'both' ? 'timeout' : 'crash');
    await assert.rejects(observer.openMailbox('far-own'), { code: 'ENOENT' });
  });
}

test('a kernel stopped past 3 heartbeats, then continued, does not end the TCP processes that kept sending meanwhile', async (t) => {
  const kernel = await startTestKernel({ tcp: true, args: ['--heartbeat-ms', String(HEARTBEAT_MS)] });
  t.after(async () => {
    kernel.proc.kill('SIGCONT');
    await kernel.stop();
  });
  const url = new URL(kernel.tcpUrl!);
  // A raw peer, which keeps sending PINGs whatever the kernel does: a process stopped along
  // with the kernel (a machine suspended, a VM paused), or one that has not yet given the
  // kernel up. The reference client itself gives a kernel silent for 3 heartbeats up.
  const peer = await RawPeer.open({ host: url.hostname, port: Number(url.port) });
  t.after(() => peer.destroy());
  assert.equal((await peer.hello({ pid: process.pid, token: kernel.token })).op, Op.WELCOME);
  const pinging = setInterval(() => peer.write(headFrame(Op.PING, 0)), HEARTBEAT_MS / 4);
  t.after(() => clearInterval(pinging));

  kernel.proc.kill('SIGSTOP');
  // The fault itself: the kernel does not run for 5 heartbeats while the peer's PINGs queue in
  // its socket.
  await new Promise((resolve) => setTimeout(resolve, 5 * HEARTBEAT_MS));
  kernel.proc.kill('SIGCONT');
  // Before, its first heartbeat check after the stop ran before it read those PINGs, and
  // ended every TCP process ("heard nothing from it") for the kernel's own stall.
  peer.write(headFrame(Op.PING, 77));
  await peer.waitFor((f) => f.op === Op.PONG && f.request === 77, BOUND_MS, 'the PONG after the stop');
  assert.deepEqual(
    peer.frames.filter((f) => f.op === Op.ERROR).map((f) => f.request),
    [],
    'the kernel sent an error after it was continued',
  );
});

test('waitForKernel waits through a kernel killed while a TCP join was in its backlog, and joins the next one', async (t) => {
  const port = await freePortBelowEphemeral();
  const first: TestKernel = await startTestKernel({ tcpPort: port });
  t.after(async () => {
    first.proc.kill('SIGCONT');
    await first.stop();
  });
  // Stopped, the kernel takes no connection itself, but its listening socket completes the
  // handshakes and holds them: killed now, it resets them before the client reads its connect.
  first.proc.kill('SIGSTOP');
  // Settled into a value at once: a join that fails early must fail the assertion below, not
  // go unhandled while the next kernel starts (the test would end with that kernel running).
  const joining = connect({ url: first.tcpUrl!, token: first.token, waitForKernel: BOUND_MS }).then(
    (p) => p,
    (err: PostboxError) => err,
  );
  // The client's connect is issued on the next tick (net.connect to an address).
  await new Promise((resolve) => process.nextTick(resolve));
  first.proc.kill('SIGKILL');
  // Hold this event loop while the reset arrives, so the client sees it at its connect.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  const second = await startTestKernel({ tcpPort: port, socket: `${first.socket}.2` });
  t.after(() => second.stop());
  // Before, the reset was taken as "no kernel, for good" and the join failed at once with
  // ECONNREFUSED, though docs/api.md says waitForKernel waits out a kernel that drops the
  // connection before it answers.
  const joined = await within(joining, BOUND_MS, 'the join');
  if (joined instanceof Error) assert.fail(`the join failed: ${joined.code} ${joined.message}`);
  t.after(() => joined.close());
  assert.equal(joined.conn.info.kernel.pid, second.proc.pid);
});

test("connect()'s timeout covers reaching the kernel: a listener whose SYNs are dropped fails ETIMEDOUT, not after the OS's two minutes", async (t) => {
  // A listener that takes no connection (its event loop held, as a stopped kernel's is) with a
  // backlog of 1: once two handshakes wait in its queue, Linux drops every further SYN, as a
  // firewall or a host that is down would. The connect then waited for the OS to give up (some
  // 130 s), whatever `timeout` said.
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
        process.stdout.write(s.address().port + '\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  const [line] = (await within(
    once(createInterface({ input: holder.stdout! }), 'line'),
    BOUND_MS,
    'the port',
  )) as [string];
  const url = `tcp://127.0.0.1:${line}`;
  const fillers = [0, 1].map(() => netConnect(Number(line), '127.0.0.1'));
  t.after(() => {
    for (const s of fillers) s.destroy();
  });
  await within(Promise.all(fillers.map((s) => once(s, 'connect'))), BOUND_MS, 'the backlog to fill');
  const timedOut = await rejection(connect({ url, token: 'x', timeout: 300 }), 'the join');
  assert.equal(timedOut.code, 'ETIMEDOUT');
  assert.match(timedOut.message, /^nothing at tcp:\/\/127\.0\.0\.1:\d+ took the connection within 300 ms/);
  // With waitForKernel it is tried again, as a kernel that does not answer is, until the wait ends.
  const waited = await rejection(connect({ url, token: 'x', timeout: 200, waitForKernel: 500 }), 'the wait');
  assert.equal(waited.code, 'ECONNREFUSED');
  assert.match(waited.message, /after waiting 500 ms \(ETIMEDOUT\)/);
});

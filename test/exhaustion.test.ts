/**
 * The kernel as a daemon at the edge of its resources, facing peers that take what they can:
 * file descriptors run out, strangers on TCP connect and never say HELLO, or are refused over and
 * over. Each kernel runs as its own OS process (under `prlimit` where the descriptors matter), and
 * the test looks from the outside: what a client is told, what the log says, who is still served.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { connect, PostboxError, type PostboxProcess } from '../src/client/mod.js';
import { Op } from '../src/protocol/frame.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { frameError, RawPeer, within } from './helpers/raw-peer.js';

/** Enough for the kernel's own descriptors and a few dozen connections. */
const NOFILE = 64;

/** Waits for a line of the kernel's log (its stderr), bounded in time. */
async function logLine(kernel: TestKernel, match: RegExp, ms: number, what: string): Promise<string> {
  const deadline = Date.now() + ms;
  for (let seen = 0; Date.now() < deadline; ) {
    for (; seen < kernel.log.length; seen++) if (match.test(kernel.log[seen]!)) return kernel.log[seen]!;
    await once(kernel.proc.stderr!, 'data');
  }
  throw new Error(`${what}: no log line ${match} within ${ms} ms; log:\n${kernel.log.join('\n')}`);
}

function tcpAddress(kernel: TestKernel): { host: string; port: number } {
  const { hostname, port } = new URL(kernel.tcpUrl!.replace(/^tcp:/, 'http:'));
  return { host: hostname, port: Number(port) };
}

/** Runs `postbox ARGS` against the kernel; its exit code and output. */
async function cli(
  kernel: TestKernel,
  args: string[],
): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: kernel.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const [code] = (await within(once(child, 'exit'), 20_000, `postbox ${args.join(' ')}`)) as [number | null];
  return { code, out, err };
}

test('out of file descriptors, the kernel refuses new processes with ENOMEM naming ulimit -n, says so once, serves the others, lets `postbox ps` in, and takes processes again once some leave', {
  timeout: 90_000,
}, async () => {
  const kernel = await startTestKernel({ tcp: true, nofile: NOFILE });
  const procs: PostboxProcess[] = [];
  try {
    // Until the descriptors run out: well before NOFILE, since the kernel has some of its own.
    let refusal: unknown = null;
    for (let i = 0; i < NOFILE && refusal === null; i++) {
      try {
        const options =
          i % 2 === 0 ? { socket: kernel.socket } : { url: kernel.tcpUrl!, token: kernel.token };
        procs.push(await within(connect(options), 10_000, `join ${i}`));
      } catch (err) {
        refusal = err;
      }
    }
    assert.ok(
      refusal instanceof PostboxError,
      `a join past the descriptors fails with a Postbox error: ${String(refusal)}`,
    );
    assert.equal(refusal.code, 'ENOMEM', refusal.message);
    assert.match(refusal.message, /out of file descriptors/);
    assert.match(refusal.message, new RegExp(`limit of ${NOFILE} open files \\(ulimit -n\\)`));
    assert.ok(procs.length >= 4, `a few processes joined first (${procs.length})`);

    // More of them, over both doors, each told at once, none left hanging.
    for (let i = 0; i < 20; i++) {
      const options = i % 2 === 0 ? { socket: kernel.socket } : { url: kernel.tcpUrl!, token: kernel.token };
      await assert.rejects(within(connect(options), 10_000, `refused join ${i}`), (err: unknown) => {
        assert.ok(err instanceof PostboxError && err.code === 'ENOMEM', String(err));
        return true;
      });
    }
    // The log said it once, not once per refusal (the rest are summed up later).
    const closings = kernel.log.filter((l) => /closing connection: .*out of file descriptors/.test(l));
    assert.equal(closings.length, 1, kernel.log.join('\n'));

    // Those in are served as before.
    const [a, b] = procs as [PostboxProcess, PostboxProcess];
    const box = await a.createMailbox<string>('still-served', { mode: 0o666 });
    await (await b.openMailbox<string>('still-served')).send('hello');
    assert.equal((await box.receive({ timeout: 10_000 }))?.body, 'hello');

    // An operator gets in to see who holds them.
    const ps = await cli(kernel, ['ps', '--json']);
    assert.equal(ps.code, 0, ps.err);
    assert.equal(ps.out.trim().split('\n').length >= 1, true);

    // Three leave: the kernel says it has room again, and the next process joins.
    for (const p of procs.splice(-3)) await p.close();
    await logLine(kernel, /file descriptors are free again/, 10_000, 'room again');
    procs.push(await within(connect({ socket: kernel.socket }), 10_000, 'join once room is back'));
  } finally {
    for (const p of procs) await p.close().catch(() => {});
    await kernel.stop();
  }
});

test("`postbox limits` shows the connections the descriptors allow and those in use, and the kernel takes processes up to that room less the operators' four", {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel({ nofile: NOFILE });
  const procs: PostboxProcess[] = [];
  try {
    for (let i = 0; i < 3; i++)
      procs.push(await within(connect({ socket: kernel.socket }), 10_000, `join ${i}`));
    const json = await cli(kernel, ['limits', '--json']);
    assert.equal(json.code, 0, json.err);
    const l = JSON.parse(json.out) as {
      limits: Record<string, number | null>;
      inUse: Record<string, number>;
    };
    assert.equal(l.limits.openFiles, NOFILE);
    const room = l.limits.maxConnections;
    assert.ok(
      typeof room === 'number' && room > 4 && room <= NOFILE - 16,
      `the room is what ${NOFILE} open files leave past the kernel's own and 16 spare: ${room}`,
    );
    assert.equal(l.inUse.maxConnections, 3, 'the three processes, not the command itself');
    const text = await cli(kernel, ['limits']);
    assert.equal(text.code, 0, text.err);
    assert.match(
      text.out,
      new RegExp(`max connections +${room} +3 +ulimit -n \\(${NOFILE} open files\\), then restart\n`),
    );
    // The figure is the kernel's own: processes join up to it, less the four kept for operators.
    let refusal: unknown = null;
    while (refusal === null && procs.length < NOFILE) {
      try {
        procs.push(await within(connect({ socket: kernel.socket }), 10_000, `join ${procs.length}`));
      } catch (err) {
        refusal = err;
      }
    }
    assert.ok(refusal instanceof PostboxError && refusal.code === 'ENOMEM', String(refusal));
    assert.equal(procs.length, room - 4, `joined before the refusal, against the room of ${room}`);
  } finally {
    for (const p of procs) await p.close().catch(() => {});
    await kernel.stop();
  }
});

test('connections that never say HELLO cannot take the descriptors: past the room, a new one is told ENOMEM at once', {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel({ tcp: true, nofile: NOFILE });
  const peers: RawPeer[] = [];
  try {
    const watcher = await within(connect({ socket: kernel.socket }), 10_000, 'the watcher joins');
    // Silent connections over the Unix socket, each staying until its HELLO deadline, until one
    // finds no room. After each, a round trip of the watcher's: by its answer the kernel has
    // accepted the connection made before it, and answered it if it refused it.
    let refused: { code: string; message: string } | null = null;
    for (let i = 0; i < NOFILE && refused === null; i++) {
      const peer = await RawPeer.open(kernel.socket);
      peers.push(peer);
      await watcher.usage();
      if (peer.frames.length > 0) refused = frameError(peer.frames[0]!);
      else assert.ok(peer.isOpen, `silent connection ${i} was closed without a word`);
    }
    await watcher.close();
    assert.ok(refused !== null, 'a connection past the descriptors is told why');
    assert.equal(refused.code, 'ENOMEM', refused.message);
    assert.match(refused.message, /out of file descriptors/);
  } finally {
    for (const p of peers) await p.destroy();
    await kernel.stop();
  }
});

test('TCP strangers that never say HELLO hold at most half the connections: the next one is told ENOMEM, a process over the Unix socket still joins', {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel({ tcp: true, nofile: NOFILE });
  const peers: RawPeer[] = [];
  const procs: PostboxProcess[] = [];
  try {
    let refused: { code: string; message: string } | null = null;
    for (let i = 0; i < NOFILE && refused === null; i++) {
      const peer = await RawPeer.open(tcpAddress(kernel));
      peers.push(peer);
      // A live process joins between strangers: its WELCOME means the kernel has accepted every
      // connection before it, so a refusal, if any, has been written.
      const probe = await within(connect({ socket: kernel.socket }), 10_000, `probe ${i}`);
      await probe.close();
      if (peer.frames.length > 0) refused = frameError(peer.frames[0]!);
    }
    assert.ok(refused !== null, 'a stranger is refused before the descriptors run out');
    assert.equal(refused.code, 'ENOMEM', refused.message);
    assert.match(refused.message, /TCP connections have not said HELLO yet/);
    const silent = peers.length - 1;
    assert.ok(silent >= 2 && silent < NOFILE / 2, `strangers let in: ${silent}`);

    // The strangers hold their places, and still a process over the Unix socket joins and works.
    const p = await within(connect({ socket: kernel.socket }), 10_000, 'join beside the strangers');
    procs.push(p);
    await p.send(p.id, 'mine');
    assert.equal((await p.receive({ timeout: 10_000 }))?.body, 'mine');
  } finally {
    for (const p of peers) await p.destroy();
    for (const p of procs) await p.close().catch(() => {});
    await kernel.stop();
  }
});

test('a wrong token tried once is logged once, and the kernel says no count for it at shutdown', {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel({ tcp: true });
  try {
    const peer = await RawPeer.open(tcpAddress(kernel));
    const answer = await peer.hello({ pid: process.pid, token: 'a-guess' });
    assert.equal(frameError(answer).code, 'ECONNREFUSED');
    await peer.destroy();
    await kernel.stop();
    if (!kernel.proc.stderr!.closed) await once(kernel.proc.stderr!, 'close');
    assert.equal(
      kernel.log.filter((l) => /closing connection: wrong token/.test(l)).length,
      1,
      kernel.log.join('\n'),
    );
    // A summary of nothing ("0 more connections were closed") was the throttle counting none.
    assert.ok(!kernel.log.some((l) => /more connections? w(?:ere|as) closed/.test(l)), kernel.log.join('\n'));
  } finally {
    await kernel.stop();
  }
});

test('a wrong token tried again and again is refused each time, and logged once with a count, not once per try', {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel({ tcp: true });
  try {
    const tries = 30;
    for (let i = 0; i < tries; i++) {
      const peer = await RawPeer.open(tcpAddress(kernel));
      const answer = await peer.hello({ pid: process.pid, token: `guess-${i}` });
      assert.equal(answer.op, Op.ERROR);
      assert.equal(frameError(answer).code, 'ECONNREFUSED');
      await peer.destroy();
    }
    // The right token still works at once: a refused stranger costs others nothing.
    const p = await within(connect({ url: kernel.tcpUrl!, token: kernel.token }), 10_000, 'the right token');
    await p.close();
    const wrong = kernel.log.filter((l) => /closing connection: wrong token/.test(l));
    assert.equal(wrong.length, 1, kernel.log.join('\n'));
    // At shutdown what was counted is said.
    await kernel.stop();
    if (!kernel.proc.stderr!.closed) await once(kernel.proc.stderr!, 'close');
    assert.ok(
      kernel.log.some((l) => new RegExp(`${tries - 1} more connections were closed before HELLO`).test(l)),
      kernel.log.join('\n'),
    );
  } finally {
    await kernel.stop();
  }
});

/**
 * A CALL whose handler throws what no refusal throws: a bug in the kernel. It was answered EINVAL
 * with the exception's own message, as if the request were at fault, and nothing was logged. A
 * frame whose handling throws ended its process EPROTO, as if it had broken the protocol, and
 * its monitors were told so ('protocol').
 *
 * No real input reaches that (the fuzzers of hostile-peers.test.ts and robustness.test.ts look
 * for one and fail if they find it), so the catch is driven at the function level: the kernel's
 * own `answerCall`, in a real kernel run in this process, with a handler that throws, answering a
 * real peer over its socket.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, KernelFaultError } from '../src/client/mod.js';
import { answerCall } from '../src/kernel/control.js';
import { startKernel } from '../src/kernel/mod.js';
import { errorFromWire } from '../src/protocol/errors.js';
import { encodeJsonFrame, Off, Op } from '../src/protocol/frame.js';
import { framePayload, RawPeer } from './helpers/raw-peer.js';

/** A handler with a bug: what a kernel handler would throw reading a field of undefined. */
function buggyHandler(): never {
  throw new TypeError("Cannot read properties of undefined (reading 'id')");
}

test("a CALL handler's exception is the kernel's fault: logged (summed up when repeated), answered EIO, and the kernel carries on", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbkf-'));
  const log: string[] = [];
  const running = await startKernel({ socket: join(dir, 'k.sock'), log: (line) => log.push(line) });
  const peer = await RawPeer.open(running.socketPath);
  try {
    const welcome = await peer.hello();
    assert.equal(welcome.op, Op.WELCOME);
    const id = (framePayload(welcome) as { process: { id: number } }).process.id;
    const kp = running.kernel.processes.get(id)!;
    for (const request of [41, 42, 43])
      answerCall(running.kernel, kp, request, { op: 'usage' }, buggyHandler);
    running.kernel.flush();

    const answers = [];
    for (const request of [41, 42, 43])
      answers.push(await peer.waitFor((f) => f.request === request, 5000, `the answer to ${request}`));
    for (const f of answers) {
      assert.equal(f.op, Op.ERROR);
      const { message } = framePayload(f) as { message: string };
      const err = errorFromWire(f.aux, message);
      assert.equal(err.code, 'EIO', message);
      assert.equal(err.name, 'KernelFaultError');
      assert.match(
        message,
        /^internal error in the kernel's 'usage': TypeError: Cannot read properties of undefined/,
      );
      assert.match(message, /the kernel's fault, not the request's/);
    }

    // Said once, where it happened; the repeats are counted for the end of the window.
    const faults = log.filter((l) => /internal error/.test(l));
    assert.equal(faults.length, 1, faults.join('\n'));
    assert.match(
      faults[0]!,
      new RegExp(
        `^internal error in CALL 'usage' from process ${id}: TypeError: Cannot read properties of undefined \\(reading 'id'\\) \\(at buggyHandler \\(.*kernel-fault\\.test\\.js:\\d+:\\d+\\)\\)$`,
      ),
    );

    // The kernel carries on: the same peer's next CALL, and another process's, are answered.
    peer.write(encodeJsonFrame(Op.CALL, 0, 0, 44, { op: 'usage' }));
    const usage = await peer.waitFor((f) => f.request === 44, 5000, 'the answer to a usage');
    assert.equal(usage.op, Op.RESULT);
    const other = await connect({ socket: running.socketPath });
    assert.equal((await other.usage()).processes, 2);
    await other.close();
  } finally {
    await peer.destroy();
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // The window's count is said when the kernel stops.
  assert.ok(
    log.some((l) => /^2 more internal errors in CALL 'usage' in the last 10 s; the last: /.test(l)),
    log.join('\n'),
  );
});

test("an exception handling a frame is the kernel's fault: logged (summed up when repeated), the process ended EIO, and its monitors told the kernel ended it", async () => {
  // No real input reaches that catch either: the kernel's own handleFrame is wrapped, on this one
  // kernel object, to throw what a bug would for the frames of the processes marked, and to
  // handle every other frame as it does. The frames come over real sockets, through the real
  // read, decoder and catch.
  const dir = mkdtempSync(join(tmpdir(), 'pbkf-'));
  const log: string[] = [];
  const running = await startKernel({ socket: join(dir, 'k.sock'), log: (line) => log.push(line) });
  const kernel = running.kernel;
  const faulty = new Set<number>();
  const handleFrame = kernel.handleFrame.bind(kernel);
  kernel.handleFrame = function handleFrameWithBug(p, buf, start, end, limit) {
    if (faulty.has(p.id) && buf[start + Off.OPCODE] === Op.CALL)
      throw new TypeError("Cannot read properties of undefined (reading 'holders')");
    handleFrame(p, buf, start, end, limit);
  };
  const watcher = await connect({ socket: running.socketPath });
  try {
    for (const name of ['frame-fault-1', 'frame-fault-2']) {
      const victim = await connect({ socket: running.socketPath, name });
      const down = watcher.monitor(victim.id);
      await watcher.usage(); // the monitor is set: the kernel answers in order
      faulty.add(victim.id);
      await assert.rejects(victim.usage(), (err: unknown) => {
        assert.ok(err instanceof KernelFaultError, String(err));
        assert.match(
          err.message,
          /^internal error in the kernel handling a frame of this process: TypeError: Cannot read properties of undefined \(reading 'holders'\) \(the kernel's fault, not the process's; the kernel's log has it\)$/,
        );
        return true;
      });
      assert.equal((await victim.closed)?.code, 'EIO');
      assert.deepEqual(await down, { process: victim.id, name, reason: 'crash', kernelFault: true });
    }
    // Said once, where it was thrown; the second is counted for the end of the window.
    const faults = log.filter((l) => /internal error/.test(l));
    assert.equal(faults.length, 1, log.join('\n'));
    assert.match(
      faults[0]!,
      /^internal error handling a frame from process \d+ \('frame-fault-1'\), which is ended: TypeError: Cannot read properties of undefined \(reading 'holders'\) \(at .*handleFrameWithBug .*kernel-fault\.test\.js:\d+:\d+\)\)$/,
    );
    assert.ok(!log.some((l) => /closing connection/.test(l)), log.join('\n'));
    // The kernel carries on.
    assert.equal((await watcher.usage()).processes, 1);
  } finally {
    await watcher.close();
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(
    log.some((l) =>
      /^1 more internal error handling a frame in the last 10 s; the last: internal error handling a frame from process \d+ \('frame-fault-2'\)/.test(
        l,
      ),
    ),
    log.join('\n'),
  );
});

/**
 * An operation stopped by an AbortSignal fails with AbortedError (ECANCELED) whose `cause` is the
 * signal's `reason`, whether the client gave up by itself (aborted before it started, a wait this
 * side keeps) or the kernel answered ECANCELED to the CANCEL the abort sent: a program can tell
 * `AbortSignal.timeout()` from its own shutdown. A loop ended by its signal ends quietly, with no
 * error to carry it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { connect, type Mailbox } from '../src/client/mod.js';
import { dial, listen } from '../src/faces/connection.js';
import { mkfifo, openFifo } from '../src/faces/fifo.js';
import { type CallContext, call, serve } from '../src/faces/rpc.js';
import { IPC_CREAT, SysvError, sysv } from '../src/faces/sysv.js';
import { AbortedError } from '../src/protocol/errors.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

/** Awaits op's failure: an AbortedError whose cause is `reason`. */
async function abortedBy(op: Promise<unknown>, reason: unknown): Promise<AbortedError> {
  const err = await op.then(
    (v) => assert.fail(`expected ECANCELED, got ${String(v)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof AbortedError, `expected an AbortedError, got ${String(err)}`);
  assert.equal(err.code, 'ECANCELED');
  assert.equal(err.cause, reason);
  return err;
}

/** Resolves once the kernel has a receive of this mailbox waiting: an abort now reaches it. */
function receiveWaits(box: Mailbox): Promise<unknown> {
  return until(
    () => box.stat(),
    (st) => st.waitingReceiversCount === 1,
    10_000,
    'a waiting receive',
  );
}

describe('an AbortedError carries its signal’s reason as its cause', { timeout: 60_000 }, () => {
  const k = kernelForTests();

  test('receive: aborted before it started, and while the kernel had it waiting', async () => {
    const me = await k.join();
    const box = await me.createMailbox(null);
    const early = new Error('stopped before');
    await abortedBy(box.receive({ signal: AbortSignal.abort(early) }), early);

    const shutdown = new AbortController();
    const why = new Error('shutting down');
    const waiting = box.receive({ signal: shutdown.signal });
    await receiveWaits(box);
    shutdown.abort(why);
    await abortedBy(waiting, why);
  });

  test("receive: AbortSignal.timeout()'s reason is a TimeoutError DOMException; abort() an AbortError", async () => {
    const me = await k.join();
    const err = await me.receive({ signal: AbortSignal.timeout(20) }).then(
      () => assert.fail('expected ECANCELED'),
      (e: unknown) => e as AbortedError,
    );
    assert.equal(err.code, 'ECANCELED');
    assert.ok(err.cause instanceof DOMException);
    assert.equal(err.cause.name, 'TimeoutError');

    const plain = new AbortController();
    const waiting = me.receive({ signal: plain.signal });
    plain.abort();
    const aborted = await abortedBy(waiting, plain.signal.reason);
    assert.equal((aborted.cause as DOMException).name, 'AbortError');
  });

  test('send: aborted before it started, and while it waited for room in the kernel', async () => {
    const me = await k.join();
    const box = await me.createMailbox(null, { capacity: 1 });
    const early = new Error('stopped before');
    await abortedBy(box.send('x', { signal: AbortSignal.abort(early) }), early);

    await box.send('fills it');
    const stop = new AbortController();
    const why = new Error('shutting down');
    const waiting = box.send('waits', { signal: stop.signal });
    await until(
      () => box.stat(),
      (st) => st.waitingSendersCount === 1,
      10_000,
      'a waiting send',
    );
    stop.abort(why);
    await abortedBy(waiting, why);
    // Each message of a batch the abort stopped carries it too.
    const batch = new AbortController();
    const many = box.sendMany(['a', 'b'], { signal: batch.signal });
    await until(
      () => box.stat(),
      (st) => st.waitingSendersCount === 2,
      10_000,
      'a waiting batch',
    );
    batch.abort(why);
    const err = await many.then(
      () => assert.fail('expected the batch to fail'),
      (e: unknown) => e as { code: string; failures: { error: Error }[] },
    );
    assert.equal(err.code, 'ECANCELED');
    assert.deepEqual(
      err.failures.map((f) => f.error.cause),
      [why, why],
    );
  });

  test('a messages() loop ended by its signal ends quietly: no error, so nothing to carry', async () => {
    const me = await k.join();
    const box = await me.createMailbox(null);
    await box.send('one');
    const stop = new AbortController();
    const seen: unknown[] = [];
    for await (const m of box.messages({ signal: stop.signal })) {
      seen.push(m.body);
      stop.abort(new Error('enough'));
    }
    assert.deepEqual(seen, ['one']);
  });

  test('connect: aborted while waiting for a kernel', async () => {
    const stop = new AbortController();
    const why = new Error('shutting down');
    const joining = connect({
      socket: join(k.env().POSTBOX_SOCKET!, '..', 'nobody.sock'),
      waitForKernel: 30_000,
      signal: stop.signal,
    });
    stop.abort(why);
    await abortedBy(joining, why);
    const early = new Error('stopped before');
    await abortedBy(connect({ socket: k.env().POSTBOX_SOCKET!, signal: AbortSignal.abort(early) }), early);
  });

  test('monitor: stopped watching by its signal', async () => {
    const me = await k.join();
    const other = await k.join();
    const stop = new AbortController();
    const why = new Error('not interested');
    // Aborted while the kernel sets it up, and (below) once it is set up.
    const watching = me.monitor(other.id, { signal: stop.signal });
    stop.abort(why);
    await abortedBy(watching, why);
    const later = new AbortController();
    const watchingLong = me.monitor(other.id, { signal: later.signal });
    await me.lookup(other.id); // answered after the monitor's own answer: it is set up by now
    later.abort(why);
    await abortedBy(watchingLong, why);
    // Stopped watching means the kernel forgets the monitor too, not only this side.
    const mine = (await me.processes()).find((p) => p.id === me.id)!;
    assert.equal(mine.watching, 0, 'both monitors taken back in the kernel');
  });

  test('RPC: a call aborted while its server runs it, and one aborted before it was sent', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const server = await serve(await k.join(), 'abort-cause', {
      wait(ctx?: CallContext) {
        started();
        return new Promise((resolve) => ctx!.signal.addEventListener('abort', resolve, { once: true }));
      },
    });
    const caller = await k.join();
    const stop = new AbortController();
    const why = new Error('user pressed cancel');
    const answer = call(caller, 'abort-cause', 'wait', [], { signal: stop.signal });
    await running;
    stop.abort(why);
    await abortedBy(answer, why);
    const early = new Error('stopped before');
    await abortedBy(call(caller, 'abort-cause', 'wait', [], { signal: AbortSignal.abort(early) }), early);
    await server.close();
  });

  test('dial and accept: aborted while nobody answers', async () => {
    const me = await k.join();
    const port = await listen(me, 'abort-cause');
    const why = new Error('shutting down');
    const stopAccept = new AbortController();
    const accepting = port.accept({ signal: stopAccept.signal });
    await until(
      () => me.stat('port:abort-cause'),
      (st) => st.waitingReceiversCount === 1,
      10_000,
      'a waiting accept',
    );
    stopAccept.abort(why);
    await abortedBy(accepting, why);

    const stopDial = new AbortController();
    const dialing = dial(await k.join(), 'abort-cause', { signal: stopDial.signal });
    await until(
      () => me.stat('port:abort-cause'),
      (st) => st.waitingReceiptsCount === 1,
      10_000,
      'a dial waiting to be accepted',
    );
    stopDial.abort(why);
    await abortedBy(dialing, why);
    await port.close();
  });

  test("a connection's send aborted before it started, and its receive while it waits", async () => {
    const port = await listen(await k.join(), 'abort-cause-recv');
    const accepting = port.accept();
    const conn = await dial(await k.join(), 'abort-cause-recv');
    const peer = await accepting;
    const early = new Error('stopped before');
    await abortedBy(conn.send('x', { signal: AbortSignal.abort(early) }), early);
    const stop = new AbortController();
    const why = new Error('shutting down');
    const waiting = conn.receive({ signal: stop.signal });
    stop.abort(why);
    await abortedBy(waiting, why);
    await conn.close();
    await peer.close();
    await port.close();
  });

  test('FIFO: an open for writing aborted while no reader comes', async () => {
    const me = await k.join();
    await mkfifo(me, 'abort-cause.fifo');
    const stop = new AbortController();
    const why = new Error('shutting down');
    const opening = openFifo(me, 'abort-cause.fifo', 'w', { signal: stop.signal });
    stop.abort(why);
    await abortedBy(opening, why);
  });

  test("System V: msgrcv's EINTR has the AbortedError as its cause, and the reason as that one's", async () => {
    const ipc = sysv(await k.join());
    const id = await ipc.msgget(0, IPC_CREAT | 0o600);
    const stop = new AbortController();
    const why = new Error('shutting down');
    const waiting = ipc.msgrcv(id, 100, 0, 0, { signal: stop.signal });
    stop.abort(why);
    const err = await waiting.then(
      () => assert.fail('expected EINTR'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof SysvError);
    assert.equal(err.code, 'EINTR');
    assert.ok(err.cause instanceof AbortedError);
    assert.equal(err.cause.cause, why);
  });
});

/**
 * A closed RPC server lets go of what it held: its write handles on callers' reply mailboxes
 * (the kernel counts them as the mailbox's writers), and itself (a process that serves and
 * closes servers for hours must not keep each one).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PostboxError } from '../src/client/mod.js';
import { type CallContext, serve, stub } from '../src/faces/rpc.js';
import { kernelForTests } from './helpers/kernel.js';

const handlers = { add: (a: number, b: number): number => a + b };

/**
 * A full collection. No handle or count shows whether an object is still referenced from a
 * promise reaction, so here a WeakRef and the collector are the only witness.
 */
function collect(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** A turn of the event loop: a WeakRef keeps its target alive until the job that read it ends. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('an RPC server that is closed', { timeout: 60_000 }, () => {
  const k = kernelForTests();

  test("closes its handles on its callers' reply mailboxes", async () => {
    const server = await k.join();
    const callers = [await k.join(), await k.join(), await k.join()];
    const s = await serve(server, 'reply-handles', handlers);
    const replies = [];
    for (const [i, caller] of callers.entries()) {
      // The documented wire form (docs/rpc.md), so the test knows each reply mailbox's id.
      const reply = await caller.createMailbox(null, { mode: 0o622 });
      const writers = (await reply.stat()).writers;
      const service = await caller.openMailbox('rpc:reply-handles');
      await service.send([1, 'add', [i, 1], reply.id], { codec: 'msgpack' });
      const answer = await reply.receive({ timeout: 10_000 });
      assert.deepEqual(answer?.body, [1, 0, i + 1]);
      assert.equal((await reply.stat()).writers, writers + 1, 'the server holds a handle to answer on');
      await service.close();
      replies.push({ reply, writers });
    }
    await s.close();
    for (const { reply, writers } of replies)
      assert.equal((await reply.stat()).writers, writers, 'closed with the server');
    for (const { reply } of replies) await reply.delete();
  });

  test('is closed only once every answer is in the kernel, one sent again as an error too', async () => {
    // An answer over the kernel's size limit is refused, and the server sends the caller an
    // EMSGSIZE error instead: a second send, made only once the first one's refusal came back.
    // A server counted as closed before that would have let go of the reply mailbox (and its
    // process might have gone), and the caller would wait for an answer that never comes.
    const server = await k.join();
    const caller = await k.join();
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    let finish: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const s = await serve(server, 'resent-answer', {
      async big(n: number): Promise<Uint8Array> {
        started();
        await gate;
        return new Uint8Array(n);
      },
    });
    const call = stub<{ big(n: number): Promise<Uint8Array> }>(caller, 'resent-answer', {
      timeout: 20_000,
    }).big(server.limits.maxMessageSize + 1);
    // Checked as it settles: the answer may come before the closes below are done.
    const answered = assert.rejects(call, (e: unknown) => {
      assert.ok(e instanceof PostboxError && e.code === 'EMSGSIZE', String(e));
      assert.match(e.message, /^resent-answer\.big: the answer cannot be sent: /);
      return true;
    });
    await running;
    const closing = s.close();
    finish();
    await closing;
    await server.close();
    await answered;
  });

  test('is not kept alive by its process', async () => {
    const gc = collect();
    const server = await k.join();
    const caller = await k.join();
    const svc = stub<typeof handlers>(caller, 'kept-alive');
    // In a function of its own: a suspended async frame may still hold the last server it had.
    const cycle = async (i: number): Promise<WeakRef<object>> => {
      const s = await serve(server, 'kept-alive', handlers);
      assert.equal(await svc.add(i, 1), i + 1);
      await s.close();
      return new WeakRef(s);
    };
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 10; i++) refs.push(await cycle(i));
    await nextTurn();
    gc();
    await nextTurn();
    gc();
    // Kept by their process, all ten stayed. A collector may leave the last one or two to a later
    // cycle (a frame or a queued callback can still reach them), so that much is not a leak.
    const alive = refs.filter((r) => r.deref() !== undefined).length;
    assert.ok(alive <= 2, `${alive} of 10 closed servers still alive after two collections`);
    // The server serving now still stops its handler when the process's connection goes.
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      started = resolve;
    });
    const live = await serve(server, 'kept-alive', {
      wait(ctx?: CallContext): Promise<string> {
        started();
        return new Promise((resolve) => ctx?.signal.addEventListener('abort', () => resolve('aborted')));
      },
    });
    stub<{ wait(): Promise<string> }>(caller, 'kept-alive')
      .wait()
      .catch(() => {});
    await running;
    await server.close();
    await live.closed;
  });
});

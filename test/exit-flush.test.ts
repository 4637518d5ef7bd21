/**
 * A program that ends in the turn it sent in (`process.exit()` right after `send()`, an uncaught
 * exception, a `close()` not awaited) still has those sends delivered: the connection writes
 * what it gathered for the turn when Node emits 'exit' (src/client/exit-flush.ts). They were
 * lost without a word, the loss users of Node's IPC, node-ipc and Bun report (USERS.md #2).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/mod.js';
import { listen } from '../src/faces/connection.js';
import { O_CREAT, O_NONBLOCK, O_RDWR, posix } from '../src/faces/posix.js';
import { serve } from '../src/faces/rpc.js';
import { IPC_CREAT, IPC_NOWAIT, sysv } from '../src/faces/sysv.js';
import { kernelForTests } from './helpers/kernel.js';

const LAST_TURN = fileURLToPath(new URL('./fixtures/last-turn.js', import.meta.url));
const LAST_TURN_FACES = fileURLToPath(new URL('./fixtures/last-turn-faces.js', import.meta.url));

describe('a program that exits in the turn it sent in', { timeout: 120_000 }, () => {
  const k = kernelForTests();

  /** Runs the fixture to its end; returns its exit code and what it printed. */
  async function lastTurn(
    mode: string,
    box: string,
    fixture = LAST_TURN,
  ): Promise<{ code: number | null; out: string }> {
    const child = spawn(process.execPath, [fixture, mode, box], {
      env: k.env(),
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code] = (await once(child, 'close')) as [number | null];
    clearTimeout(timer);
    return { code, out };
  }

  test('one listener on exit for all of a program’s connections, gone when they close', async () => {
    const before = process.listenerCount('exit');
    const socket = k.env().POSTBOX_SOCKET!;
    const procs = await Promise.all(Array.from({ length: 12 }, () => connect({ socket })));
    // Twelve listeners would draw Node's MaxListenersExceededWarning.
    assert.equal(process.listenerCount('exit'), before + 1);
    await Promise.all(procs.map((p) => p.close()));
    assert.equal(process.listenerCount('exit'), before);
  });

  for (const [mode, code] of [
    ['exit', 0],
    ['throw', 1],
    ['reject', 1],
    ['close', 0],
    ['unref-close', 0],
  ] as const) {
    test(`a send not awaited is delivered after ${mode}`, async () => {
      const me = await k.join();
      const box = await me.openMailbox(`last-${mode}`, { create: { system: true } });
      const ended = await lastTurn(mode, `last-${mode}`);
      assert.equal(ended.code, code);
      const m = await box.receive({ nowait: true });
      assert.equal(m?.body, `sent before ${mode}`);
      await box.delete();
    });
  }

  test('in a worker thread, a send before its process.exit() is delivered', async () => {
    const me = await k.join();
    const box = await me.openMailbox('last-worker', { create: { system: true } });
    const ended = await lastTurn('worker', 'last-worker');
    assert.equal(ended.code, 0);
    assert.equal(ended.out, 'worker exited 3\n');
    const m = await box.receive({ nowait: true });
    assert.equal(m?.body, 'sent before worker');
    await box.delete();
  });

  test('a message a loop handed out before process.exit() is taken, and what was sent on it delivered', async () => {
    const me = await k.join();
    const box = await me.openMailbox('last-take', { create: { system: true } });
    const out = await me.openMailbox('last-take-out', { create: { system: true } });
    await box.sendMany(['job 1', 'job 2']);
    const ended = await lastTurn('take', 'last-take');
    assert.equal(ended.code, 0);
    assert.equal((await out.receive({ nowait: true }))?.body, 'took job 1');
    // Not given back to be taken twice: only what was pushed ahead and not handed out returns.
    assert.equal((await box.receive({ nowait: true }))?.body, 'job 2');
    assert.equal(await box.receive({ nowait: true }), null);
    await box.delete();
    await out.delete();
  });

  describe("a face's call made in the last turn, on what the face already has open", () => {
    let nextKey = 0x7e000000 + Math.floor(Math.random() * 0x10000) * 0x100;

    for (const mode of ['posix', 'posix-bound']) {
      test(`${mode}: an mq_send not awaited before process.exit() is delivered`, async () => {
        const mq = posix(await k.join());
        const name = `last-${mode}`;
        const mqd = await mq.mq_open(`/${name}`, O_CREAT | O_RDWR | O_NONBLOCK, 0o666);
        const ended = await lastTurn(mode, name, LAST_TURN_FACES);
        assert.deepEqual(ended, { code: 0, out: 'ready\n' });
        const m = await mq.mq_receive(mqd, 8192);
        assert.equal(m.data.toString(), 'sent before exit');
        await mq.mq_unlink(`/${name}`);
      });
    }

    test('sysv: a msgsnd not awaited before process.exit() is delivered', async () => {
      const ipc = sysv(await k.join());
      const key = ++nextKey;
      const id = await ipc.msgget(key, IPC_CREAT | 0o666);
      const ended = await lastTurn('sysv', String(key), LAST_TURN_FACES);
      assert.deepEqual(ended, { code: 0, out: 'ready\n' });
      assert.equal((await ipc.msgrcv(id, 100, 0, IPC_NOWAIT)).mtext.toString(), 'sent before exit');
    });

    test('sysv: on a msqid used before, a msgsnd not awaited before process.exit() is delivered', async () => {
      const ipc = sysv(await k.join());
      const id = await ipc.msgget(++nextKey, IPC_CREAT | 0o666);
      const ended = await lastTurn('sysv-used', String(id), LAST_TURN_FACES);
      assert.deepEqual(ended, { code: 0, out: 'ready\n' });
      assert.equal((await ipc.msgrcv(id, 100, 0, IPC_NOWAIT)).mtext.toString(), 'first');
      assert.equal((await ipc.msgrcv(id, 100, 0, IPC_NOWAIT)).mtext.toString(), 'sent before exit');
    });

    test('sysv: a msgctl(IPC_RMID) not awaited before process.exit() removes the queue', async () => {
      const ipc = sysv(await k.join());
      const key = ++nextKey;
      const ended = await lastTurn('sysv-rmid', String(key), LAST_TURN_FACES);
      assert.deepEqual(ended, { code: 0, out: 'ready\n' });
      await assert.rejects(ipc.msgget(key, 0), { code: 'ENOENT' });
    });

    test("connection: a write() and a send() not awaited before process.exit() reach the peer's mailbox", async () => {
      const port = await listen(await k.join(), 'last-conn');
      const ending = lastTurn('connection', 'last-conn', LAST_TURN_FACES);
      const conn = await port.accept();
      assert.deepEqual(await ending, { code: 0, out: 'ready\n' });
      assert.equal((await conn.receive())?.text(), 'written');
      assert.equal((await conn.receive())?.text(), 'sent');
      await port.close();
    });

    test('rpc: a stub call not awaited before process.exit() reaches the kernel', async () => {
      const me = await k.join();
      const server = await serve(me, 'last-rpc', { note() {} });
      const ended = await lastTurn('rpc', 'last-rpc', LAST_TURN_FACES);
      assert.deepEqual(ended, { code: 0, out: 'ready\n' });
      // Whether a server then runs it is a race with the caller's end, which withdraws the calls
      // no server has started (rpc.md): the kernel's count of requests says it came.
      assert.equal((await me.stat('rpc:last-rpc')).sent, 2);
      await server.close();
    });
  });
});

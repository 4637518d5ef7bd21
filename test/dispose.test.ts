/**
 * `await using` (TypeScript 5.2's explicit resource management, on Node 20) closes what the
 * library opens, as `close()` does, so a block that throws still lets go of it: the process, a
 * mailbox handle, a consumer, an RPC server, a port, and a connection (closed gracefully: the
 * peer reads the end, not the reset that a Node stream's own disposal would give it); and a
 * kernel started in the program with startKernel().
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, type PostboxError } from '../src/client/mod.js';
import { dial, listen } from '../src/faces/connection.js';
import { serve } from '../src/faces/rpc.js';
import { startKernel } from '../src/kernel/mod.js';
import { startTestKernel } from './helpers/kernel.js';

const closedHandle = (e: PostboxError): boolean => e.code === 'ENOTCONN';

test('await using closes each thing when its block ends, even one left by a throw', {
  timeout: 30_000,
}, async () => {
  const kernel = await startTestKernel();
  try {
    await using me = await connect({ socket: kernel.socket });
    const box = await me.createMailbox('disposed');

    let down: ReturnType<typeof me.monitor> | undefined;
    await assert.rejects(
      (async () => {
        await using other = await connect({ socket: kernel.socket });
        down = me.monitor(other.id);
        await me.lookup(other.id); // answered after the monitor is set: one connection, in order
        throw new Error('the block fails');
      })(),
      /the block fails/,
    );
    assert.equal((await down)?.reason, 'exit', 'the process was closed, not left to crash');

    let handle = box;
    {
      await using opened = await me.openMailbox('disposed');
      handle = opened;
    }
    await assert.rejects(handle.send('x'), closedHandle, 'the handle was closed');
    await box.send('still open');

    let consumer: ReturnType<typeof box.consume> | undefined;
    {
      await using c = box.consume(() => {});
      consumer = c;
    }
    assert.equal(await consumer?.closed, undefined, 'the consumer was stopped');

    let stopped: Promise<PostboxError | null> | undefined;
    {
      await using server = await serve(me, 'disposed-svc', { ping: () => 'pong' });
      stopped = server.closed;
    }
    assert.equal(await stopped, null, 'the server was closed');

    {
      await using port = await listen(me, 'disposed-port');
      const accepted = port.accept();
      const client = await dial(me, 'disposed-port');
      {
        await using _conn = await accepted;
      }
      assert.equal(await client.receive(), null, 'the peer read the end, not a reset');
      await client.close();
    }
    await assert.rejects(me.stat('port:disposed-port'), (e: PostboxError) => e.code === 'ENOENT');
  } finally {
    await kernel.stop();
  }
});

test('await using shuts down a kernel started with startKernel(), even when its block throws', {
  timeout: 30_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pbt-dispose-'));
  const socket = join(dir, 'k.sock');
  // With no token given, the kernel writes one to a file, which the shutdown must remove.
  delete process.env.POSTBOX_TOKEN;
  try {
    let client: Awaited<ReturnType<typeof connect>> | undefined;
    await assert.rejects(
      (async () => {
        await using k = await startKernel({ socket, listen: ['tcp://127.0.0.1:0'] });
        assert.deepEqual(readdirSync(dir).sort(), ['k.sock', 'k.token']);
        client = await connect({ socket: k.socketPath });
        throw new Error('the block fails');
      })(),
      /the block fails/,
    );
    // The kernel told its process it was going, and left neither its socket nor its token file.
    assert.equal((await client?.closed)?.code, 'ESHUTDOWN');
    assert.deepEqual(readdirSync(dir), []);
    await assert.rejects(connect({ socket }), (e: PostboxError) => e.code === 'ECONNREFUSED');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

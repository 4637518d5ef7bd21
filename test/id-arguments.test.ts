/**
 * Ids a client passes (protocol.md, "Control plane"): a value that can name no mailbox, process,
 * handle, monitor or wait (0, 1.5, a negative number, one past the ids there can be, a string
 * where a number goes) is EINVAL naming the argument, from the kernel itself. The reference client
 * checks them before sending; a client in another language learns from the kernel, which
 * answered ENOENT ("mailbox #1.5 was removed"), ESRCH ("no process 4294967296"), or ignored a
 * close or a demonitor of 1.5 as if it had done something. Ids that could name something and do
 * not are still ENOENT and ESRCH (or ignored where the protocol says so).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Op, SendFlag } from '../src/protocol/frame.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { callFrame, frameError, framePayload, RawPeer, receiveFrame, sendFrame } from './helpers/raw-peer.js';

let kernel: TestKernel;
let peer: RawPeer;
let nextRequest = 1;

before(async () => {
  kernel = await startTestKernel();
  peer = await RawPeer.open(kernel.socket);
  assert.equal((await peer.hello()).op, Op.WELCOME, peer.describe());
});
after(async () => {
  await peer.destroy();
  await kernel.stop();
});

/** Writes a frame under a fresh request id and resolves with its answer: an error, or a result. */
async function answer(
  frame: (request: number) => Buffer,
): Promise<{ code: string; message: string } | { result: unknown }> {
  const request = nextRequest++;
  peer.write(frame(request));
  const f = await peer.waitFor((x) => x.request === request, 10_000, `the answer to ${request}`);
  return f.op === Op.ERROR ? frameError(f) : { result: framePayload(f) };
}

const call = (payload: Record<string, unknown>) => answer((r) => callFrame(r, payload));

const MAX = 4294967295;

test('a mailbox id that can name no mailbox is EINVAL naming id, key or name', async () => {
  for (const id of [0, 1.5, -1, MAX + 1, '7', true]) {
    assert.deepEqual(await call({ op: 'stat', id }), {
      code: 'EINVAL',
      message: `id must be a mailbox id (a whole number from 1 to ${MAX}), not ${JSON.stringify(id)}`,
    });
  }
  assert.deepEqual(await call({ op: 'open', key: 1.5 }), {
    code: 'EINVAL',
    message: 'key must be an integer, not 1.5',
  });
  assert.deepEqual(await call({ op: 'open', key: '0x51' }), {
    code: 'EINVAL',
    message: 'key must be an integer, not "0x51"',
  });
  assert.deepEqual(await call({ op: 'delete', name: 7 }), {
    code: 'EINVAL',
    message: 'name must be a mailbox name (a string), not 7',
  });
  // One that could be an id and is not is still ENOENT; null names nothing, as leaving it out.
  assert.deepEqual(await call({ op: 'stat', id: MAX }), { code: 'ENOENT', message: `no mailbox #${MAX}` });
  assert.deepEqual(await call({ op: 'stat', id: null, name: 'nobody' }), {
    code: 'ENOENT',
    message: "no mailbox 'nobody'",
  });
});

test('a process id that can name no process is EINVAL naming process, not a process that ended', async () => {
  for (const op of ['lookup', 'monitor']) {
    for (const process of [0, 1.5, -3, MAX + 1]) {
      assert.deepEqual(await call({ op, process }), {
        code: 'EINVAL',
        message: `process must be a process id (a whole number from 1 to ${MAX}), not ${process}`,
      });
    }
    assert.deepEqual(await call({ op, process: '' }), {
      code: 'EINVAL',
      message: 'process must be a process id or name, not ""',
    });
    assert.deepEqual(await call({ op, process: [2] }), {
      code: 'EINVAL',
      message: 'process must be a process id (a number) or name (a string), not [2]',
    });
  }
  assert.deepEqual(await call({ op: 'lookup', process: MAX }), {
    code: 'ESRCH',
    message: `no process ${MAX}`,
  });
});

test('a handle, monitor or wait id that can name none is EINVAL; an unknown one is still ignored', async () => {
  const created = (await call({ op: 'create', name: 'ids-box' })) as { result: { id: number } };
  const box = created.result.id;
  for (const [payload, arg, what] of [
    [{ op: 'close', handle: 1.5 }, 'handle', 'a handle'],
    [{ op: 'close', handle: '1' }, 'handle', 'a handle'],
    [{ op: 'close', handle: 0 }, 'handle', 'a handle'],
    [{ op: 'demonitor', monitor: -1 }, 'monitor', 'a monitor'],
    [{ op: 'awaitReader', id: box, on: false, event: 2.5 }, 'event', 'the awaitReader'],
  ] as const) {
    const value = (payload as Record<string, unknown>)[arg];
    assert.deepEqual(await call(payload), {
      code: 'EINVAL',
      message: `${arg} must be ${what} id (a whole number from 1 to ${Number.MAX_SAFE_INTEGER}), not ${JSON.stringify(value)}`,
    });
  }
  assert.deepEqual(await call({ op: 'close', handle: 999_999 }), { result: {} });
  assert.deepEqual(await call({ op: 'demonitor', monitor: 999_999 }), { result: {} });
  assert.deepEqual(await call({ op: 'delete', id: box }), { result: {} });
});

test('a SEND or RECEIVE whose target is 0 is EINVAL naming target', async () => {
  const mailbox = {
    code: 'EINVAL',
    message: `target must be a mailbox id (a whole number from 1 to ${MAX}), not 0`,
  };
  assert.deepEqual(await answer((request) => sendFrame({ request, target: 0 })), mailbox);
  assert.deepEqual(await answer((request) => receiveFrame({ request, target: 0 })), mailbox);
  assert.deepEqual(await answer((request) => sendFrame({ request, target: 0, flags: SendFlag.TO_PROCESS })), {
    code: 'EINVAL',
    message: `target must be a process id (a whole number from 1 to ${MAX}), not 0`,
  });
  assert.deepEqual(await answer((request) => sendFrame({ request, target: MAX })), {
    code: 'ENOENT',
    message: `no mailbox #${MAX}`,
  });
});

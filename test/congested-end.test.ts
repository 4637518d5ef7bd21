/**
 * A process the kernel had stopped decoding (congested: it was not reading what it was sent)
 * ends: the frames it sent before its end are handled first, as they are for any process. Its
 * TAKE above all: a message its receive() returned was its, and must not go back to the mailbox
 * for another receiver. Found by test/chaos.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const RECEIVER = fileURLToPath(new URL('./fixtures/congested-receiver.js', import.meta.url));
const k = kernelForTests();

test('a message a congested process took is not given back when it dies', async () => {
  const me = await k.join();
  const m = await me.createMailbox<string>('m', { mode: 0o666 });
  const child = spawn(process.execPath, [RECEIVER], { env: k.env(), stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const ready = (await lines.next()).value as string;
  const id = Number(ready.split(' ')[1]);
  await until(
    () => m.stat(),
    (s) => s.waitingReceivers.length === 1,
    10_000,
    'receiver waiting',
  );
  // Stopped, it reads nothing: its DELIVER waits in the socket, and 64 MB pushed to its inbox's
  // iterator behind it make the kernel stop decoding what it sends.
  child.kill('SIGSTOP');
  await m.send('job');
  const big = 'x'.repeat(32 * 1024);
  await Promise.all(Array.from({ length: 2000 }, () => me.send(id, big)));
  child.kill('SIGCONT');
  // Its receive() returned the job: its TAKE was written in that read, while the kernel holds
  // its input undecoded behind 64 MB it has not read yet.
  assert.equal((await lines.next()).value, 'got job');
  child.kill('SIGKILL');
  await exited;
  await until(
    () =>
      me.lookup(id).then(
        () => true,
        () => false,
      ),
    (alive) => !alive,
    10_000,
    'receiver ended',
  );
  assert.equal(await m.receive({ nowait: true }), null, 'the job went back to the mailbox: received twice');
  assert.equal((await m.stat()).received, 1);
});

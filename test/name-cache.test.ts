/**
 * A process remembers the ids of the process names it sends to, so a send by name costs no
 * lookup: at most 4096 of them, the oldest dropped first. A process that sends to a new name per
 * job (workers that come and go) must not keep every name for as long as it lives.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { startTestKernel } from './helpers/kernel.js';

/** The bound (MAX_KNOWN_NAMES in src/client/process.ts). */
const BOUND = 4096;

/** The names a process remembers: private, read here to see the bound from outside. */
function knownNames(p: PostboxProcess): Map<string, number> {
  return Reflect.get(p, 'ids') as Map<string, number>;
}

describe('process names remembered', { timeout: 120_000 }, () => {
  test('at most 4096, the oldest dropped first; a dropped name is looked up again', async () => {
    const kernel = await startTestKernel();
    try {
      const me = await connect({ socket: kernel.socket });
      const total = BOUND + 16;
      // Workers come a batch at a time and go once sent to, as short-lived jobs do.
      for (let first = 0; first < total; first += 128) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(128, total - first) }, (_, k) =>
            connect({ socket: kernel.socket, name: `job-${first + k}` }),
          ),
        );
        await Promise.all(batch.map((w) => me.send(w.name!, 'work')));
        await Promise.all(batch.map((w) => w.close()));
      }
      const known = knownNames(me);
      assert.equal(known.size, BOUND);
      assert.equal(known.has('job-0'), false, 'the oldest is dropped');
      assert.equal(known.has(`job-${total - 1}`), true, 'the newest is kept');
      // job-0 again, a new process: its name is looked up afresh, and the send reaches it.
      const again = await connect({ socket: kernel.socket, name: 'job-0' });
      await me.send('job-0', 'again');
      assert.equal((await again.receive({ timeout: 10_000 }))?.body, 'again');
      assert.equal(known.size, BOUND);
      await again.close();
      await me.close();
    } finally {
      await kernel.stop();
    }
  });

  test('a batch to a remembered name whose process ended reaches the process that has the name now', async () => {
    const kernel = await startTestKernel();
    try {
      const me = await connect({ socket: kernel.socket });
      const first = await connect({ socket: kernel.socket, name: 'restarted' });
      await me.sendMany('restarted', ['to the first']);
      assert.equal(knownNames(me).get('restarted'), first.id);
      await first.close();
      const second = await connect({ socket: kernel.socket, name: 'restarted' });
      // Before, the batch went to the remembered id alone: ESRCH for every message, where send()
      // to the same name reached the new process. A generator is read once, and sent whole.
      function* bodies(): Generator<string> {
        yield 'a';
        yield 'b';
      }
      assert.deepEqual(await me.sendMany('restarted', bodies()), { sent: 2 });
      const got = [await second.receive({ nowait: true }), await second.receive({ nowait: true })];
      assert.deepEqual(
        got.map((m) => [m?.body, m?.sender]),
        [
          ['a', me.id],
          ['b', me.id],
        ],
      );
      await second.close();
      // With nobody of that name, the error says so, as send()'s does.
      await assert.rejects(
        me.sendMany('restarted', ['c']),
        (e: Error & { code?: string }) =>
          e.code === 'ESRCH' && /no process named 'restarted'/.test(e.message),
      );
      await me.close();
    } finally {
      await kernel.stop();
    }
  });
});

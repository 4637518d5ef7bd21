/**
 * A batch reader waiting for its next batch is woken by a delivery; if the kernel recalls that
 * message in the same read (its send gave up), the reader has nothing to yield. That is not the
 * end of the stream: the loop must wait on, and yield what comes next. (Ending there looked like
 * END to the loop and left the stream open in the kernel, never cancelled: it went on taking
 * what it was pushed, which then no receiver could have, and rendezvous sends to it waited for
 * ever.) Against a real kernel process, with the reader a process stopped (SIGSTOP) while the
 * message comes and is recalled, so that it reads both in one chunk.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/client/mod.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';
import { until } from './helpers/wait.js';

const READER = fileURLToPath(new URL('./fixtures/stopped-batch-reader.js', import.meta.url));

test('a batch reader whose only message is recalled in the same read waits on for the next', {
  timeout: 60_000,
}, async () => {
  const kernel = await startTestKernel();
  const me = await connect({ socket: kernel.socket });
  try {
    const box = await me.createMailbox<string>(null, { capacity: 4, mode: 0o666 });
    const reader = spawn(process.execPath, [READER, String(box.id)], {
      env: kernel.env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const out = new ChildOutput(reader);
    const done = once(reader, 'exit');
    try {
      await within(out.line('ready'), 20_000, 'the reader to be ready');
      await until(
        async () => readFileSync(`/proc/${reader.pid}/stat`, 'utf8'),
        (st) => /^\d+ \(.*\) T /.test(st),
        10_000,
        'the reader to be stopped',
      );
      // Pushed to the stopped reader's waiting batch, then given up: the kernel recalls it.
      const controller = new AbortController();
      const gaveUp = box.send('recalled', { receipt: true, signal: controller.signal });
      gaveUp.catch(() => {});
      await until(
        () => box.stat(),
        (s) => s.inflight === 1,
        10_000,
        'the message pushed to the reader',
      );
      controller.abort();
      // Once this is answered the kernel has had the CANCEL and written the RECALL.
      await box.stat();
      reader.kill('SIGCONT');
      // The reader gave it back unread (RETURN), so the send fails as given up.
      await assert.rejects(gaveUp, { code: 'ECANCELED' });
      await box.send('after');
      await within(done, 20_000, 'the reader to finish');
      const result = JSON.parse(out.text.split('\n').filter(Boolean).at(-1)!) as unknown;
      assert.deepEqual(result, { done: false, bodies: ['after'] });
      const s = await box.stat();
      assert.equal(s.count, 0, 'nothing left: the recalled message was dropped, "after" taken');
      assert.deepEqual(s.waitingReceivers, []);
    } finally {
      reader.kill('SIGKILL');
    }
  } finally {
    await me.close();
    assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
  }
});

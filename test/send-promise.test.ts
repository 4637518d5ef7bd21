/**
 * What send() returns (src/client/send-promise.ts): a promise made only when asked for. Checked
 * directly for promise behaviour, and in child processes for the one thing a test process cannot
 * watch without failing: a rejection nobody handles is reported as unhandled, as a native one is.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type PostboxError, TimeoutError } from '../src/client/mod.js';
import { SendPromise } from '../src/client/send-promise.js';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const MODULE = fileURLToPath(new URL('../src/client/send-promise.js', import.meta.url));
const QUEUED = { outcome: 'queued' } as const;

test('a send answered before anyone asks gives its answer to whoever asks later', async () => {
  const p = new SendPromise();
  p.resolve(QUEUED, 1);
  assert.deepEqual(await p, QUEUED);
  assert.deepEqual(await p.then((r) => r.outcome), 'queued');
  const [a, b] = await Promise.all([p, p]);
  assert.equal(a, b);
});

test('a send asked for before its answer settles when the answer comes, once', async () => {
  const p = new SendPromise();
  const seen: string[] = [];
  const done = p.then((r) => seen.push(r.outcome));
  await Promise.resolve();
  assert.deepEqual(seen, [], 'nothing before the answer');
  p.resolve(QUEUED, 1);
  p.resolve({ outcome: 'dropped' }, 1);
  p.reject(new TimeoutError('late'), 1);
  await done;
  assert.deepEqual(seen, ['queued']);
});

test('a failed send rejects its then, catch and finally, and await throws', async () => {
  const p = new SendPromise();
  const caught = p.catch((e) => (e as PostboxError).code);
  let finished = false;
  const fin = p.finally(() => {
    finished = true;
  });
  p.reject(new TimeoutError('no answer'), 7);
  assert.equal(await caught, 'ETIMEDOUT');
  await assert.rejects(fin, TimeoutError);
  assert.ok(finished);
  await assert.rejects(p, { code: 'ETIMEDOUT' });
});

test('it is a thenable, not a native promise; Promise.resolve makes it one', async () => {
  const p = new SendPromise();
  assert.ok(!(p instanceof Promise));
  assert.equal(Object.prototype.toString.call(p), '[object SendPromise]');
  const native = Promise.resolve(p);
  assert.ok(native instanceof Promise);
  p.resolve(QUEUED, 1);
  assert.deepEqual(await native, QUEUED);
  assert.equal(await Promise.race([p, new Promise(() => {})]), QUEUED);
});

function runChild(script: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: r.status, stderr: r.stderr };
}

test('a failure nobody handles is an unhandled rejection, as with a native promise', () => {
  const lost = runChild(
    `import { SendPromise } from ${JSON.stringify(MODULE)};
     const p = new SendPromise();
     p.reject(new Error('nobody listened'), 1);`,
  );
  assert.notEqual(lost.status, 0, 'the process fails');
  assert.match(lost.stderr, /nobody listened/);

  const handled = runChild(
    `import { SendPromise } from ${JSON.stringify(MODULE)};
     const p = new SendPromise();
     p.reject(new Error('handled'), 1);
     p.catch(() => {});`,
  );
  assert.equal(handled.status, 0, handled.stderr);
});

describe('through a kernel', () => {
  const { join } = kernelForTests();

  test('sends nobody awaits are delivered; one awaited long after its ACK still answers', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('sp-plain');
    const first = box.send('m0');
    assert.ok(first instanceof SendPromise, 'a plain send takes the lazy road');
    for (let i = 1; i < 1000; i++) void box.send(`m${i}`);
    // A round trip behind all of them: their ACKs are in before this answers.
    assert.equal((await box.stat()).count, 1000);
    assert.deepEqual(await first, { outcome: 'queued' });
    const got: string[] = [];
    for await (const m of box.messages()) if (got.push(m.body) === 1000) break;
    assert.deepEqual(
      got,
      Array.from({ length: 1000 }, (_, i) => `m${i}`),
    );
  });

  test('a send blocked on a full mailbox settles when room is made', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('sp-full', { capacity: 1 });
    await box.send('a');
    const blocked = box.send('b');
    await until(
      () => box.stat(),
      (s) => s.waitingSenders.length === 1,
      10_000,
      'sender blocked',
    );
    assert.equal((await box.receive())?.body, 'a');
    assert.equal((await blocked).outcome, 'queued');
    assert.equal((await box.receive())?.body, 'b');
  });

  test('a send the kernel refuses rejects with its error', async () => {
    const owner = await join();
    const other = await join();
    const mine = await owner.createMailbox<string>('sp-gone', { mode: 0o666 });
    const theirs = await other.openMailbox<string>('sp-gone');
    await mine.delete();
    const refused = theirs.send('anyone?');
    assert.ok(refused instanceof SendPromise);
    await assert.rejects(refused, { code: 'ENOENT' });
  });
});

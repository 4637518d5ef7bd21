/**
 * `unref()` and `ref()` of a process: whether its link to the kernel keeps Node running. Each
 * case is a real child process that leaves its link open and never calls close().
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { ChildOutput } from './helpers/child-output.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';

const CLIENT = fileURLToPath(new URL('../src/client/mod.js', import.meta.url));

let kernel: TestKernel;
let me: PostboxProcess;

before(async () => {
  kernel = await startTestKernel();
  me = await connect({ socket: kernel.socket, name: 'ref-test' });
});

after(async () => {
  await me.close();
  await kernel.stop();
});

/** Runs `body` (ES module code with `connect` imported) in a child on the test kernel. */
function child(body: string): { output: ChildOutput; exited: Promise<number | null>; kill(): void } {
  const script = `import { connect } from ${JSON.stringify(CLIENT)};\n${body}`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...kernel.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Bounded: a link that wrongly keeps Node running fails the test instead of hanging it.
  const exited = Promise.race([
    once(c, 'exit').then(([code]) => code as number | null),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('the child did not exit within 20 s')), 20_000).unref(),
    ),
  ]);
  return { output: new ChildOutput(c), exited, kill: () => c.kill('SIGKILL') };
}

test('unref(): a process waiting only on its link lets Node exit, and the kernel ends it', async () => {
  const c = child(`
    const me = (await connect({ name: 'unref-child' })).unref();
    me.receive().then((m) => console.log('got', m?.text()));
    console.log('waiting');
  `);
  try {
    await c.output.line('waiting');
    const down = me.monitor('unref-child');
    assert.equal(await c.exited, 0, c.output.text);
    assert.doesNotMatch(c.output.text, /got/);
    assert.equal((await down).name, 'unref-child');
    await assert.rejects(me.lookup('unref-child'), { code: 'ESRCH' });
  } finally {
    c.kill();
  }
});

test('ref() after unref(): the link keeps Node running until the message it waits for', async () => {
  const c = child(`
    const me = (await connect({ name: 'ref-child' })).unref().ref();
    me.receive().then(async (m) => { console.log('got', m?.text()); await me.close(); });
    console.log('waiting');
  `);
  try {
    await c.output.line('waiting');
    await me.send('ref-child', 'hello');
    assert.equal(await c.exited, 0, c.output.text);
    assert.match(c.output.text, /got hello\n/);
  } finally {
    c.kill();
  }
});

test('unref(), then await close() at the top level: the close finishes, and the program exits 0', async () => {
  // Node ended in the middle of the close (the link let it), with an unsettled top-level await:
  // exit code 13, and 'closed' never printed. The child waits for 'go' so that the monitor is in
  // place before it closes: a monitor set after the end reads 'noproc', not how it ended (the same
  // in the next test).
  const c = child(`
    const me = await connect({ name: 'unref-close-child' });
    console.log('joined');
    await me.receive();
    me.unref();
    await me.close();
    console.log('closed');
  `);
  try {
    await c.output.line('joined');
    const down = me.monitor('unref-close-child');
    await me.send('unref-close-child', 'go'); // after the monitor: it closes once it has this
    assert.equal(await c.exited, 0, c.output.text);
    assert.match(c.output.text, /closed\n/);
    assert.equal((await down).reason, 'exit');
  } finally {
    c.kill();
  }
});

test('close() again while a close is under way: one goodbye, and Node exits', async () => {
  // A beforeExit handler runs each time the loop empties; each close() sent a goodbye of its own
  // and added a socket listener: 26 runs and MaxListenersExceededWarning.
  const c = child(`
    const me = await connect({ name: 'close-twice-child' });
    console.log('joined');
    await me.receive();
    me.unref();
    let runs = 0;
    process.on('warning', (w) => console.log('warning', w.name));
    process.on('beforeExit', () => { runs++; void me.close(); });
    process.on('exit', () => console.log('beforeExit ran', runs));
  `);
  try {
    await c.output.line('joined');
    const down = me.monitor('close-twice-child');
    await me.send('close-twice-child', 'go'); // after the monitor: it ends once it has this
    assert.equal(await c.exited, 0, c.output.text);
    // Once to close, and once more when the loop empties after it: nothing is left to do then.
    assert.match(c.output.text, /beforeExit ran 2\n/);
    assert.doesNotMatch(c.output.text, /warning/);
    assert.equal((await down).reason, 'exit');
  } finally {
    c.kill();
  }
});

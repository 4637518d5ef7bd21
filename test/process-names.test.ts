/**
 * Naming a process (api.md, PostboxProcess): by id or by its unique name, for send, lookup,
 * monitor and the owner's grant, revoke and transfer. A name is free again once its process has
 * terminated, before its monitors are told, so a supervisor restarts a worker under the same name
 * as soon as it hears the worker is down.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PostboxError } from '../src/client/mod.js';
import { startAgent } from './helpers/agent.js';
import { kernelForTests } from './helpers/kernel.js';

const isCode =
  (code: string, message: RegExp) =>
  (e: PostboxError): boolean =>
    e.code === code && message.test(e.message);

describe('process names', () => {
  const { join, env } = kernelForTests();

  test('something that names no process is EINVAL, not a process that has ended', async () => {
    const me = await join();
    const box = await me.createMailbox(null, { mode: 0o660 });
    // Before, monitor() resolved with 'noproc' for each of these, and lookup() was ESRCH
    // ('process 1.5 has terminated'): a typo read as a process that had ended.
    for (const [ref, why] of [
      [0, /a process id is a positive integer, not 0/],
      [-5, /a process id is a positive integer, not -5/],
      [1.5, /a process id is a positive integer, not 1.5/],
      ['', /a process name cannot be empty/],
    ] as const) {
      await assert.rejects(me.monitor(ref), isCode('EINVAL', why), `monitor(${ref})`);
      await assert.rejects(me.lookup(ref), isCode('EINVAL', why), `lookup(${ref})`);
      await assert.rejects(box.grant(ref), isCode('EINVAL', why), `grant(${ref})`);
    }
    // What could name a process and does not is still ESRCH, and noproc to a monitor.
    await assert.rejects(me.lookup('nobody-here'), isCode('ESRCH', /no process named 'nobody-here'/));
    assert.equal((await me.monitor('nobody-here')).reason, 'noproc');
    await box.delete();
  });

  test('a supervisor restarts a killed worker under the same name as soon as it hears it is down', async () => {
    const supervisor = await join();
    const client = await join();
    let worker = await startAgent(env(), { name: 'restarted-worker' });
    try {
      for (let round = 0; round < 3; round++) {
        // The client sends by name: the name is remembered with the worker's id.
        assert.equal((await client.send('restarted-worker', `before ${round}`)).outcome, 'queued');
        const down = supervisor.monitor('restarted-worker');
        await supervisor.lookup(supervisor.id); // answered in order: the monitor is set
        const killed = worker.pid;
        await worker.kill('SIGKILL');
        assert.deepEqual(await down, { process: killed, name: 'restarted-worker', reason: 'crash' });
        // Between the end and the restart, the name names nobody, and says so.
        await assert.rejects(
          client.send('restarted-worker', 'between'),
          isCode('ESRCH', /no process named 'restarted-worker'/),
        );
        worker = await startAgent(env(), { name: 'restarted-worker' });
        assert.notEqual(worker.pid, killed, 'ids are never reused');
        await client.send('restarted-worker', `after ${round}`);
        const got = await worker.do({ cmd: 'receive', inbox: true, opts: { nowait: true } });
        assert.equal((got.message as { body: string }).body, `after ${round}`);
      }
    } finally {
      await worker.stop();
    }
  });
});

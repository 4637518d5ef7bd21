/**
 * The kernel's bookkeeping after an operation ends, continued from bookkeeping.test.ts: the lines
 * the second round of the mutation audit (MUTANTS.md, the 35 mutants the first round had not run)
 * found could be removed with every other test still passing: a receive that ended and stayed in
 * its process's table, which shows only when more of them than --max-per-process have ended one
 * after another and the next receive meets ENOMEM.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernelForTests } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const BOUND_MS = 20_000;

const PER_PROCESS = 16;

const { join } = kernelForTests({ args: ['--max-per-process', String(PER_PROCESS)] });

// Pins Mailbox.checkEnd's `w.peer.receives.delete(w.request)` (MUTANTS.md M45).
test("receives waiting when a pipe's last writer goes get the end and leave the process's table: more of them than --max-per-process", async () => {
  const owner = await join();
  const reader = await join();
  const writer = await join();
  await owner.createMailbox('ends-while-waiting', { mode: 0o666, endOnLastWriter: true, role: 'none' });
  const theirs = await reader.openMailbox<string>('ends-while-waiting', { role: 'read' });
  for (let i = 0; i < PER_PROCESS + 4; i++) {
    const out = await writer.openMailbox('ends-while-waiting', { role: 'write' });
    const got = theirs.receive();
    await until(
      () => theirs.stat(),
      (s) => s.waitingReceiversCount === 1,
      BOUND_MS,
      `receive ${i} waiting`,
    );
    await out.close();
    assert.equal(await got, null, `receive ${i}: the end`);
  }
  // The table is empty: a receive still waits, and gets what comes.
  const out = await writer.openMailbox('ends-while-waiting', { role: 'write' });
  const got = theirs.receive();
  await out.send('still received');
  assert.equal((await got)?.text(), 'still received');
});

// Pins Mailbox.receive's `w.peer.receives.delete(w.request)` for a pipe already at its end (M47).
test("receives at a pipe's end get the end at once and leave the process's table: more of them than --max-per-process", async () => {
  const owner = await join();
  const reader = await join();
  const writer = await join();
  await owner.createMailbox('at-end', { mode: 0o666, endOnLastWriter: true, role: 'none' });
  const theirs = await reader.openMailbox<string>('at-end', { role: 'read' });
  const out = await writer.openMailbox('at-end', { role: 'write' });
  await out.close();
  for (let i = 0; i < PER_PROCESS + 4; i++)
    assert.equal(await theirs.receive(), null, `receive ${i}: the end`);
  const again = await writer.openMailbox('at-end', { role: 'write' });
  const got = theirs.receive();
  await again.send('still received');
  assert.equal((await got)?.text(), 'still received');
});

// Pins Mailbox.receive's `w.peer.receives.delete(w.request)` for a receive that does not wait (M48).
test("receives that do not wait and find nothing leave the process's table: more of them than --max-per-process", async () => {
  const p = await join();
  const box = await p.createMailbox<string>('nowait-empty');
  for (let i = 0; i < PER_PROCESS + 4; i++)
    assert.equal(await box.receive({ nowait: true }), null, `receive ${i}: nothing there`);
  const got = box.receive();
  await box.send('still received');
  assert.equal((await got)?.text(), 'still received');
});

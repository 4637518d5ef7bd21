/**
 * `postbox watch` on a terminal fits its frame to the screen, as top does: a view that scrolls
 * its first rows away is no view. When not every row fits, the busiest mailboxes and processes
 * are shown, in id order, and a line counts the rest; a pipe, --once and --json get every row.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { frame, pace } from '../src/cli/commands/watch.js';
import { displayWidth } from '../src/cli/display-width.js';
import { connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';
import { CLI, startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const MAILBOXES = 30;
const PROCESSES = 12;

describe('watch fits the screen', () => {
  let kernel: TestKernel;
  let me: PostboxProcess;
  const others: PostboxProcess[] = [];
  const boxes: Mailbox[] = [];
  let blocked: Promise<unknown>;

  before(async () => {
    kernel = await startTestKernel();
    me = await connect({ socket: kernel.socket, name: 'setup' });
    for (let i = 1; i <= MAILBOXES; i++)
      boxes.push(await me.createMailbox(`w-${String(i).padStart(2, '0')}`));
    for (let i = 1; i <= PROCESSES; i++)
      others.push(await connect({ socket: kernel.socket, name: `proc-${String(i).padStart(2, '0')}` }));
    // The busy ones: w-07 holds 5 messages, w-22 3, w-15 1; proc-05 waits on w-30 (so w-30 has
    // a receiver waiting); proc-09 has 4 messages in its inbox.
    for (let i = 0; i < 5; i++) await boxes[6]!.send(`m${i}`);
    for (let i = 0; i < 3; i++) await boxes[21]!.send(`m${i}`);
    await boxes[14]!.send('m');
    await boxes[29]!.grant(others[4]!.id);
    const w30 = await others[4]!.openMailbox('w-30');
    blocked = w30.receive();
    blocked.catch(() => {});
    for (let i = 0; i < 4; i++) await me.send(others[8]!.id, `hello ${i}`);
    await until(
      () => me.stat('w-30'),
      (s) => s.waitingReceiversCount === 1,
      10_000,
      'proc-05 to wait on w-30',
    );
  });
  after(async () => {
    await Promise.all(others.map((p) => p.close()));
    await me.close();
    await kernel.stop();
  });

  async function snapshot(): Promise<Parameters<typeof frame>[0]> {
    const [mailboxes, processes] = await Promise.all([me.mailboxes(), me.processes()]);
    return { mailboxes, mailboxCount: mailboxes.length, processes: processes.sort((a, b) => a.id - b.id) };
  }

  test("the kernel's busiest mailboxes give a frame the same rows as the whole list", async () => {
    // What watch asks for on a terminal: as many of the busiest as the screen has rows.
    const whole = await snapshot();
    for (const rows of [6, 10, 14, 20, 60]) {
      const { total, mailboxes } = await me.busiestMailboxes(rows);
      assert.equal(total, MAILBOXES);
      assert.equal(mailboxes.length, Math.min(rows, MAILBOXES));
      const busiest = { ...whole, mailboxes: mailboxes.sort((a, b) => a.id - b.id), mailboxCount: total };
      assert.equal(
        frame(busiest, { rows, columns: 200 }),
        frame(whole, { rows, columns: 200 }),
        `${rows} rows`,
      );
    }
  });

  test('the busiest rows, in id order, and a line for the rest', async () => {
    const snap = await snapshot();
    // 14 rows: 3 for the headers and the blank line, 2 for the lines counting the rest, and 9
    // for rows: 4 processes, 5 mailboxes.
    const text = frame(snap, { rows: 14, columns: 200 });
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 14, text);
    const names = (prefix: string): string[] =>
      lines.map((l) => l.split(/\s+/)[0]!).filter((word) => word.startsWith(prefix));
    assert.deepEqual(names('w-'), ['w-01', 'w-07', 'w-15', 'w-22', 'w-30'], text);
    assert.match(
      text,
      new RegExp(`^… ${MAILBOXES - 5} more mailboxes, quieter \\(postbox ls shows them all\\)$`, 'm'),
    );
    const procs = names('proc-').concat(names('setup'));
    assert.equal(procs.length, 4, text);
    assert.ok(
      procs.some((p) => p.startsWith('proc-05(')),
      text,
    );
    assert.ok(
      procs.some((p) => p.startsWith('proc-09(')),
      text,
    );
    assert.match(
      text,
      new RegExp(`^… ${PROCESSES + 1 - 4} more processes, quieter \\(postbox ps shows them all\\)$`, 'm'),
    );
  });

  test('a screen with room for all has every row, as a pipe gets it', async () => {
    const snap = await snapshot();
    const all = frame(snap);
    assert.equal(frame(snap, { rows: 200, columns: 400 }), all);
    for (let i = 1; i <= MAILBOXES; i++)
      assert.match(all, new RegExp(`^w-${String(i).padStart(2, '0')} `, 'm'));
    assert.doesNotMatch(all, /more mailboxes/);
  });

  test('lines are cut to the width, and a screen too small for tables gets its first lines', async () => {
    const snap = await snapshot();
    const narrow = frame(snap, { rows: 14, columns: 40 });
    for (const line of narrow.trimEnd().split('\n')) assert.ok(displayWidth(line) <= 40, line);
    assert.equal(frame(snap, { rows: 2, columns: 200 }).trimEnd().split('\n').length, 2);
  });

  test('on a terminal (a pty of 20 rows and 60 columns), the frame drawn fits it', async (t) => {
    // `script` (util-linux's bsdutils, essential in Debian) gives watch a terminal of its own.
    if (!existsSync('/usr/bin/script')) assert.fail('this test needs /usr/bin/script (Debian bsdutils)');
    const child = spawn(
      '/usr/bin/script',
      [
        '-qfec',
        `stty rows 20 cols 60; exec "${process.execPath}" "${CLI}" watch --interval 60000`,
        '/dev/null',
      ],
      { env: { ...kernel.env, TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'], detached: true },
    );
    t.after(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    });
    let out = '';
    const drawn = new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        // The frame ends with the line counting the processes left out (one write, maybe two reads).
        if (/ps shows them all\)\r?\n/.test(out)) resolve(out);
      });
      child.once('close', (code) => reject(new Error(`watch ended (${code}) before a frame: ${out}`)));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const text = await drawn;
    clearTimeout(timer);
    const screen = text.slice(text.lastIndexOf('\x1b[2J') + 4).replace(/\r/g, '');
    const lines = screen.trimEnd().split('\n');
    // The heading, a blank line, and the frame: under the 20 rows, with the cursor's line left.
    assert.ok(lines.length <= 19, screen);
    assert.match(lines[0]!, /^postbox watch .* 30 mailboxes, 13 processes/);
    // The heading too: cut, not wrapped onto a second row.
    for (const line of lines) assert.ok(displayWidth(line) <= 60, line);
    assert.match(screen, /^… \d+ more mailboxes/m);
    assert.match(screen, /^w-07 /m);
  });
});

test('watch asks every --interval, or four times as long as asking took when that is longer', () => {
  assert.equal(pace(250, 10), 250);
  assert.equal(pace(250, 62.5), 250);
  assert.equal(pace(250, 100), 400);
  assert.equal(pace(250, 2000.2), 8001);
  assert.equal(pace(60_000, 2000), 60_000);
});

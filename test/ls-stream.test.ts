/**
 * `postbox ls` of more mailboxes than it holds to align: past the first rows it writes each page
 * as it comes (a million mailboxes' rows of text took 925 MB held), so a later name wider than
 * the column shifts the rows from it on, and a reader that stops (`| head`) stops the listing.
 * Through a real kernel and the real command; test/table.test.ts checks the table's rule itself.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { ROWS_ALIGNED } from '../src/cli/table.js';
import { LIST_PAGE } from '../src/client/process.js';
import { childResult } from './helpers/child-output.js';
import { CLI, kernelForTests } from './helpers/kernel.js';

const k = kernelForTests();

/** Runs a shell line with $NODE and $CLI set, to its end (killed past 60 s). */
function sh(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('bash', ['-c', script], {
    env: { ...k.env(), NODE: process.execPath, CLI },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return childResult(child, 60_000, script);
}

const SHORT = ROWS_ALIGNED + 2 * LIST_PAGE;
const LONG = 300;

test('ls of more mailboxes than it aligns at once lists every one, and a wider name widens the column from its row on', async () => {
  const me = await k.join({ name: 'lister' });
  const names: string[] = [];
  for (let i = 0; i < SHORT + LONG; i++)
    names.push(i < SHORT ? `s-${i}` : `a-name-longer-than-the-rest-${i}`);
  for (let i = 0; i < names.length; i += 500)
    await Promise.all(names.slice(i, i + 500).map((n) => me.createMailbox(n).then((m) => m.close())));

  const r = await sh('"$NODE" "$CLI" ls');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [header, ...rows] = r.stdout.trimEnd().split('\n');
  assert.deepEqual(
    rows.map((row) => row.split(/ +/)[2]),
    names,
    'every mailbox once, in id order',
  );
  const owner = header!.indexOf('OWNER');
  const at = rows.map((row) => row.indexOf('lister('));
  // The long names come after the rows held to align, so the table has been written as it came
  // by the time they arrive: their column starts further right, the same for each of them.
  assert.ok(
    at.slice(0, SHORT).every((i) => i === owner),
    'OWNER under its header in every row before the first long name',
  );
  const shifted = at[SHORT]!;
  assert.ok(shifted > owner, 'the first long name pushes its row right');
  assert.ok(
    at.slice(SHORT).every((i) => i === shifted),
    'and the rows after it keep the wider column',
  );
});

test('ls stops, and exits 0, when its reader stops reading', async () => {
  const r = await sh('set -o pipefail; "$NODE" "$CLI" ls | head -n 2');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.split('\n').length, 3, 'the header and one row');
});

/**
 * The command line's tables at the sizes the kernel allows (1,000,000 mailboxes, 100,000
 * processes), and the fast way of measuring plain names agreeing with the grapheme by grapheme
 * one. test/cli.test.ts checks the tables through a real kernel with CJK, emoji and combining
 * marks; here the functions are called directly, since 150,000 mailboxes through a kernel would
 * take minutes on this machine.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lsTable } from '../src/cli/commands/ls.js';
import { frame, jsonPieces, type Snapshot } from '../src/cli/commands/watch.js';
import { jsonArrayText } from '../src/cli/common.js';
import { cutToWidth, displayWidth } from '../src/cli/display-width.js';
import { bar, formatFields, formatTable, NAMES_SHOWN, namesCell, TableStream } from '../src/cli/table.js';
import type { MailboxStat } from '../src/client/mod.js';

/** A stat of an idle, unbounded mailbox, as the kernel lists one. */
const idleStat = (id: number): MailboxStat =>
  ({
    id,
    key: 0,
    name: `box-${id}`,
    owner: 7,
    mode: 0o662,
    bytes: 0,
    maxBytes: 0,
    count: id % 3,
    capacity: null,
    waitingSenders: [],
    waitingReceipts: [],
    waitingReceivers: [],
    waitingSendersCount: 0,
    waitingReceiptsCount: 0,
    waitingReceiversCount: 0,
  }) as unknown as MailboxStat;

test('a table of 150,000 rows is formatted (it overflowed the stack spreading a column into Math.max)', () => {
  const rows: string[][] = [];
  for (let i = 0; i < 150_000; i++) rows.push([`m${i}`, String(i)]);
  const out = formatTable([{ header: 'NAME' }, { header: 'N', align: 'right' }], rows);
  const lines = out.split('\n');
  assert.equal(lines.length, 150_002, 'a header, the rows, and the final newline');
  assert.equal(lines[0], `NAME${' '.repeat(10)}N`);
  assert.equal(lines[1], `m0${' '.repeat(12)}0`);
  assert.equal(lines[150_000], 'm149999  149999');
});

test('ls lists 150,000 mailboxes, one line each, aligned', () => {
  const list: MailboxStat[] = [];
  for (let id = 1; id <= 150_000; id++) list.push(idleStat(id));
  const lines = lsTable(list, new Map([[7, 'owner']]))
    .trimEnd()
    .split('\n');
  assert.equal(lines.length, 150_001);
  const at = lines[0]!.indexOf('OWNER');
  assert.ok(
    lines.every((l, i) => i === 0 || l.slice(at).startsWith('owner(7)')),
    'OWNER in one column',
  );
});

test('a JSON array written a page at a time is the one JSON.stringify writes of them all', async () => {
  async function* paged<T>(pages: T[][]): AsyncGenerator<T[]> {
    for (const page of pages) yield page;
  }
  const text = async (pages: unknown[][]): Promise<string> => {
    let out = '';
    for await (const chunk of jsonArrayText(paged(pages))) out += chunk;
    return out;
  };
  const item = (id: number) => ({
    id,
    name: `box-${id}`,
    waiting: [id, id + 1],
    owner: null,
    nested: { a: [] },
  });
  for (const pages of [[], [[]], [[item(1)]], [[item(1), item(2)], [], [item(3)], [item(4), item(5)]]]) {
    const all = pages.flat();
    assert.equal(
      await text(pages),
      `${JSON.stringify(all, null, 2)}\n`,
      `${pages.length} pages, ${all.length} items`,
    );
  }
});

test('namesCell lists up to three names whole and counts only those past them', () => {
  assert.equal(NAMES_SHOWN, 3);
  assert.equal(namesCell([]), '-');
  assert.equal(namesCell(['a', 'b', 'c']), 'a,b,c');
  assert.equal(namesCell(['a', 'b', 'c', 'd']), 'a,b,c +1 more');
  // The kernel lists the first 100 and counts them all.
  assert.equal(namesCell(['a', 'b', 'c', 'd'], 500), 'a,b,c +497 more');
  assert.equal(namesCell(['a', 'b', 'c'], 3), 'a,b,c');
  assert.equal(namesCell(['a', 'b'], 5), 'a,b +3 more');
  // An older kernel's count is absent, or a count lower than the list is not believed.
  assert.equal(namesCell(['a', 'b', 'c', 'd'], undefined), 'a,b,c +1 more');
  assert.equal(namesCell(['a', 'b', 'c', 'd'], 1), 'a,b,c +1 more');
});

test('a depth bar shows any message at all: one cell for a mailbox a little full, none for an empty one', () => {
  assert.equal(bar(0, 20), `[${'.'.repeat(20)}]`);
  assert.equal(bar(1 / 1000, 20), `[#${'.'.repeat(19)}]`);
  assert.equal(bar(0.5, 20), `[${'#'.repeat(10)}${'.'.repeat(10)}]`);
  assert.equal(bar(2, 20), `[${'#'.repeat(20)}]`);
});

test('formatFields aligns its keys', () => {
  assert.equal(
    formatFields([
      ['a', '1'],
      ['bbb', '2'],
    ]),
    '  a    1\n  bbb  2\n',
  );
});

test('plain names are measured and cut as the grapheme by grapheme rule would', () => {
  // Each of these is its own grapheme one column wide, so width is length and a cut keeps
  // max - 1 characters and "…".
  for (const text of ['jobs', 'Ünïcødé-ßŧřæm', 'ʃɪp ˈkæp', 'a…b', 'x'.repeat(200)]) {
    assert.equal(displayWidth(text), [...text].length, text);
    assert.equal(cutToWidth(text, 5), text.length <= 5 ? text : `${text.slice(0, 4)}…`, text);
  }
  assert.equal(cutToWidth('abcdef', 0), '…', 'nothing fits: the ellipsis alone');
  assert.equal(cutToWidth('', 0), '');
  // Not plain: a soft hyphen draws nothing, a combining accent joins the letter before it, a CJK
  // character takes two columns.
  assert.equal(displayWidth('co\u00adop'), 4);
  assert.equal(displayWidth('e\u0301te\u0301'), 3);
  assert.equal(cutToWidth('e\u0301te\u0301s', 3), 'e\u0301t…');
  assert.equal(cutToWidth('名前名前', 5), '名前…');
  assert.equal(cutToWidth('名前名前', 8), '名前名前');
  assert.equal(cutToWidth('名前名前x', 8), '名前名…');
});

/** A TableStream's output, with what each write carried and where the rows were when it came. */
function streamed(hold: number): {
  table: TableStream;
  writes: string[];
  out: () => string;
  open: { value: boolean };
} {
  const writes: string[] = [];
  const open = { value: true };
  const table = new TableStream(
    [{ header: 'NAME' }, { header: 'N', align: 'right' }, { header: 'NOTE' }],
    async (text) => {
      writes.push(text);
      return open.value;
    },
    hold,
  );
  return { table, writes, out: () => writes.join(''), open };
}

test('a streamed table that fits what it holds is the table formatTable writes, written once at its end', async () => {
  const columns = [{ header: 'NAME' }, { header: 'N', align: 'right' as const }, { header: 'NOTE' }];
  for (const pages of [
    [],
    [[]],
    [[['a', '1', 'x']]],
    [
      [
        ['a', '1', 'x'],
        ['bbbbbb', '22', ''],
      ],
      [],
      [['c', '333', 'yy']],
    ],
  ]) {
    const s = streamed(3);
    for (const page of pages) assert.equal(await s.table.add(page), true);
    assert.deepEqual(s.writes, [], 'nothing written before the end');
    assert.equal(await s.table.end(), true);
    assert.equal(s.out(), formatTable(columns, pages.flat()), `${pages.flat().length} rows`);
    assert.equal(s.writes.length, 1);
  }
});

test('past what it holds, a streamed table writes each page as it comes, and a wider cell widens its column from there', async () => {
  const s = streamed(3);
  assert.equal(
    await s.table.add([
      ['a', '1', 'x'],
      ['bb', '2', 'y'],
    ]),
    true,
  );
  assert.deepEqual(s.writes, [], 'two rows held');
  // The fourth row passes the hold: the four are written, aligned together.
  assert.equal(
    await s.table.add([
      ['ccc', '3', 'z'],
      ['d', '44', 'w'],
    ]),
    true,
  );
  assert.deepEqual(s.writes, ['NAME   N  NOTE\na      1  x\nbb     2  y\nccc    3  z\nd     44  w\n']);
  // Then each page at once with the widths so far; a name wider than the column pushes its line
  // right, and the rows after it keep the new width.
  assert.equal(await s.table.add([['e', '5', 'v']]), true);
  assert.equal(s.writes[1], 'e      5  v\n');
  assert.equal(
    await s.table.add([
      ['ffffffff', '666', 'u'],
      ['g', '7', 't'],
    ]),
    true,
  );
  assert.equal(s.writes[2], 'ffffffff  666  u\ng           7  t\n');
  assert.equal(await s.table.add([]), true);
  assert.equal(s.writes.length, 3, 'an empty page writes nothing');
  assert.equal(await s.table.end(), true);
  assert.equal(s.writes.length, 3, 'nothing held is left for the end');
});

test('a streamed table says when its output is gone, so the listing can stop', async () => {
  const s = streamed(1);
  s.open.value = false;
  assert.equal(await s.table.add([['a', '1', 'x']]), true, 'held, nothing written yet');
  assert.equal(await s.table.add([['b', '2', 'y']]), false, 'the held rows could not be written');
  const short = streamed(5);
  short.open.value = false;
  assert.equal(await short.table.add([['a', '1', 'x']]), true);
  assert.equal(await short.table.end(), false);
});

test('watch draws a frame of 150,000 unbounded mailboxes (the deepest was spread into Math.max, and the stack overflowed)', () => {
  const mailboxes: MailboxStat[] = [];
  for (let id = 1; id <= 150_000; id++) mailboxes.push(idleStat(id));
  const text = frame({ mailboxes, mailboxCount: mailboxes.length, processes: [] });
  const lines = text.split('\n');
  assert.match(lines[0]!, /^MAILBOX +ID +DEPTH/);
  assert.equal(lines.filter((l) => l.startsWith('box-')).length, 150_000);
  // Bars are scaled to the deepest, 2: a mailbox holding 2 has a full bar, 1 half of one.
  assert.match(lines[2]!, /^box-2 +2 +\[#{20}\] +2 /);
  assert.match(lines[1]!, /^box-1 +1 +\[#{10}\.{10}\] +1 /);
});

test('watch --json writes in pieces the line JSON.stringify writes whole', () => {
  for (const [m, p] of [
    [0, 0],
    [1, 0],
    [0, 2],
    [1000, 1],
    [2500, 1001],
  ] as const) {
    const mailboxes = Array.from({ length: m }, (_, i) => idleStat(i + 1));
    const processes = Array.from({ length: p }, (_, i) => ({ id: i + 1, name: `p${i}`, owns: [] }));
    const snap = { mailboxes, processes } as unknown as Pick<Snapshot, 'mailboxes' | 'processes'>;
    const pieces = jsonPieces(snap);
    assert.equal(
      `{"time":5,${pieces.join('')}`,
      `${JSON.stringify({ time: 5, mailboxes, processes })}\n`,
      `${m} mailboxes, ${p} processes`,
    );
    assert.ok(pieces.length >= 3 + Math.ceil(m / 1000) + Math.ceil(p / 1000), 'a piece per thousand');
  }
});

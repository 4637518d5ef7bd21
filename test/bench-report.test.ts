/**
 * The benchmark harness's judgment: the figures people read (medians, ratios, the tables), the
 * comparison with the baseline that calls a run a regression, the targets (met, missed,
 * not judged) and the command line that checks its arguments and sets the exit code of
 * --fail-on-regression. Nothing here measures: results are made by hand, or read from the
 * committed baseline, and `node dist/bench/run.js --from` prints saved results as it does.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type Change,
  type Column,
  compare,
  comparisonTable,
  formatValue,
  type Results,
  type RowResult,
  ratio,
  type SectionResult,
  sectionTable,
  stats,
  type Target,
  targetsTable,
  workloadDiffers,
} from '../bench/report.js';
import { MIN_JUDGED, targets } from '../bench/targets.js';

// ---------------------------------------------------------------- hand-made results

const perSec: Column = { key: 'value', label: 'msg/s', unit: 'msg/s' };
const micros: Column = { key: 'value', label: 'p50', unit: 'µs' };
const bytes: Column = { key: 'value', label: 'kernel RSS', unit: 'bytes' };

/** A row measured once per value (its samples), its stats made as the harness makes them. */
function row(
  id: string,
  system: string,
  values: number[],
  more: { vsCeiling?: number; status?: RowResult['status']; note?: string } = {},
): RowResult {
  return {
    id,
    system,
    status: more.status ?? (values.length === 0 ? 'failed' : 'ok'),
    ...(more.note !== undefined ? { note: more.note } : {}),
    samples: values.map((value) => ({ value })),
    stats: { value: stats(values) },
    ...(more.vsCeiling !== undefined ? { vsCeiling: more.vsCeiling } : {}),
  };
}

function section(
  id: string,
  rows: RowResult[],
  more: { better?: 'higher' | 'lower'; ceiling?: string | null; columns?: Column[]; runs?: number } = {},
): SectionResult {
  const ceiling = more.ceiling === undefined ? 'raw' : more.ceiling;
  return {
    id,
    title: `the ${id} section`,
    better: more.better ?? 'higher',
    columns: more.columns ?? [perSec],
    ...(ceiling !== null ? { ceiling } : {}),
    runs: more.runs ?? 3,
    detail: 'made by hand',
    rows,
  };
}

function results(sections: SectionResult[], quick = false): Results {
  return {
    date: '2026-01-01T00:00:00.000Z',
    quick,
    durationMs: 1,
    env: {},
    peers: {},
    sections,
    targets: [],
  };
}

const three = (v: number): number[] => [v, v, v];

// ---------------------------------------------------------------- numbers

test('stats: the median of an odd count is the middle value, of an even count the mean of the two middle ones, in numeric order', () => {
  assert.deepEqual(stats([3, 1, 2]), { median: 2, min: 1, max: 3 });
  assert.deepEqual(stats([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4 });
  // Sorted as numbers, not as text (where 100 comes before 9).
  assert.deepEqual(stats([10, 9, 100]), { median: 10, min: 9, max: 100 });
  assert.deepEqual(stats([7]), { median: 7, min: 7, max: 7 });
});

test('stats: a sample that is not a finite number (a run without that column) is left out, and none left gives NaN', () => {
  assert.deepEqual(stats([Number.NaN, 5, Number.POSITIVE_INFINITY, 1]), { median: 3, min: 1, max: 5 });
  for (const none of [[], [Number.NaN, Number.NaN]]) {
    const s = stats(none);
    assert.ok(Number.isNaN(s.median) && Number.isNaN(s.min) && Number.isNaN(s.max), JSON.stringify(s));
  }
});

test('formatValue and ratio: the figures as the tables show them', () => {
  assert.equal(formatValue(1_234_567.6, 'msg/s'), '1,234,568');
  assert.equal(formatValue(65_000.4, 'calls/s'), '65,000');
  assert.equal(formatValue(99.94, 'µs'), '99.9');
  assert.equal(formatValue(100, 'µs'), '100');
  assert.equal(formatValue(123.6, 'µs'), '124');
  assert.equal(formatValue(262.5 * 2 ** 20, 'bytes'), '262.5 MiB');
  assert.equal(formatValue(1.234, '%'), '1.23');
  assert.equal(formatValue(Number.NaN, 'msg/s'), '—');
  assert.equal(ratio(0.3367), '0.34×');
  assert.equal(ratio(2.5), '2.50×');
  for (const none of [undefined, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(ratio(none), '—');
});

test('sectionTable: the ceiling in bold, median and min – max, the ratio to raw, a failed row as dashes and its note in one cell', () => {
  const s = section('oneway-100', [
    row('raw', 'raw Unix socket (ceiling)', [1000, 900, 1100], { vsCeiling: 1 }),
    row('postbox-unix', 'Postbox (kernel, unix)', [400, 500, 450], { vsCeiling: 0.45 }),
    row('nats', 'NATS pub/sub', [], { note: '3 of 3 runs failed: timeout\nafter | 150 s' }),
  ]);
  const lines = sectionTable(s).split('\n');
  assert.equal(lines[0], '| system | msg/s, median | min – max | vs raw | notes |');
  assert.equal(lines[2], '| **raw Unix socket (ceiling)** | 1,000 | 900 – 1,100 | 1.00× |  |');
  assert.equal(lines[3], '| Postbox (kernel, unix) | 450 | 400 – 500 | 0.45× |  |');
  assert.equal(lines[4], '| NATS pub/sub | — | — | — | 3 of 3 runs failed: timeout after / 150 s |');
});

test('targetsTable: yes, **no**, why a target is not judged, not measured, and bytes in MB and MiB', () => {
  const t = (measured: number | null, met: boolean | null, more: Partial<Target> = {}): Target => ({
    id: 'x',
    text: 'a target',
    measured,
    goal: 0.4,
    op: '>=',
    unit: 'ratio',
    from: 'by hand',
    met,
    ...more,
  });
  const lines = targetsTable([
    t(0.5, true),
    t(0.3, false),
    t(0.5, null, { note: 'not judged: 2 of 3 runs succeeded' }),
    t(null, null),
    t(262_275_072, true, { unit: 'bytes' }),
  ]).split('\n');
  assert.deepEqual(lines.slice(2), [
    '| a target | 0.50× | yes | by hand |',
    '| a target | 0.30× | **no** | by hand |',
    '| a target | 0.50× | not judged: 2 of 3 runs succeeded | by hand |',
    '| a target | not measured | — | by hand |',
    '| a target | 262.3 MB (250.1 MiB) | yes | by hand |',
  ]);
});

// ---------------------------------------------------------------- baseline comparison

/** One-way (higher is better) with a ceiling, a Postbox row and a peer, at the given ratios. */
function oneWay(postbox: number | null, nats: number, more: { ceilingFailed?: boolean } = {}): SectionResult {
  return section('oneway-100', [
    more.ceilingFailed
      ? row('raw', 'raw Unix socket (ceiling)', [])
      : row('raw', 'raw', three(1000), { vsCeiling: 1 }),
    postbox === null
      ? row('postbox-unix', 'Postbox (kernel, unix)', [])
      : row('postbox-unix', 'Postbox (kernel, unix)', three(1000 * postbox), {
          ...(more.ceilingFailed ? {} : { vsCeiling: postbox }),
        }),
    row('nats', 'NATS pub/sub', three(1000 * nats), more.ceilingFailed ? {} : { vsCeiling: nats }),
  ]);
}

const byRow = (changes: Change[], id: string): Change => {
  const c = changes.find((x) => x.row === id);
  assert.ok(c !== undefined, `no change for ${id} in ${JSON.stringify(changes)}`);
  return c;
};

test('compare: a Postbox ratio that fell by more than 20% is a regression, by exactly 20% or less is not, and a peer that fell by half is only shown', () => {
  const base = results([oneWay(0.5, 0.2)]);
  for (const [now, regression] of [
    [0.375, true], // -25%
    [0.4, false], // -20%: not "more than"
    [0.4375, false], // -12.5%
    [0.75, false], // +50%
  ] as const) {
    const changes = compare(base, results([oneWay(now, 0.1)]));
    // The ceiling is what the others are measured against, not a row to compare.
    assert.deepEqual(
      changes.map((c) => c.row),
      ['postbox-unix', 'nats'],
    );
    const pb = byRow(changes, 'postbox-unix');
    assert.equal(pb.metric, 'vs raw');
    assert.equal(pb.before, 0.5);
    assert.equal(pb.after, now);
    assert.equal(pb.change, now / 0.5);
    assert.equal(pb.regression, regression, `Postbox at ${now} against 0.5`);
    const peer = byRow(changes, 'nats');
    assert.equal(peer.change, 0.5);
    assert.equal(peer.regression, false, 'a peer is the yardstick, never the regression');
  }
  // The tolerance is the caller's.
  assert.equal(byRow(compare(base, results([oneWay(0.375, 0.2)]), 0.3), 'postbox-unix').regression, false);
});

test('compare: where lower is better (round trip in µs), a ratio that grew is the fall, and one that shrank is a gain', () => {
  const rtt = (pb: number): SectionResult =>
    section(
      'rtt',
      [
        row('raw', 'raw', three(20), { vsCeiling: 1 }),
        row('postbox-unix', 'Postbox (kernel, unix)', three(20 * pb), { vsCeiling: pb }),
      ],
      { better: 'lower', columns: [micros] },
    );
  const base = results([rtt(2)]);
  const slower = byRow(compare(base, results([rtt(3)])), 'postbox-unix');
  assert.equal(slower.change, 2 / 3);
  assert.equal(slower.regression, true);
  const faster = byRow(compare(base, results([rtt(1.5)])), 'postbox-unix');
  assert.equal(faster.change, 2 / 1.5);
  assert.equal(faster.regression, false);
});

test('compare: a section without a ceiling (memory, lower is better) is compared by its value', () => {
  const memory = (rss: number): SectionResult =>
    section('memory', [row('postbox', 'Postbox kernel', three(rss))], {
      better: 'lower',
      ceiling: null,
      columns: [bytes],
    });
  const base = results([memory(250e6)]);
  const grew = byRow(compare(base, results([memory(400e6)])), 'postbox');
  assert.equal(grew.metric, 'value');
  assert.equal(grew.before, 250e6);
  assert.equal(grew.change, 250 / 400);
  assert.equal(grew.regression, true);
  assert.equal(byRow(compare(base, results([memory(260e6)])), 'postbox').regression, false);
});

test('compare: a Postbox row the baseline measured and this run did not is a regression (failed); a peer that could not run is not', () => {
  const base = results([oneWay(0.5, 0.2)]);
  const now = oneWay(null, 0.2);
  now.rows[2] = row('nats', 'NATS pub/sub', [], { status: 'unavailable', note: 'not run: no nats-server' });
  const changes = compare(base, results([now]));
  const pb = byRow(changes, 'postbox-unix');
  assert.deepEqual(
    { failed: pb.failed, regression: pb.regression, status: pb.status, before: pb.before },
    { failed: true, regression: true, status: 'failed', before: 0.5 },
  );
  assert.ok(Number.isNaN(pb.after));
  const peer = byRow(changes, 'nats');
  assert.deepEqual(
    { failed: peer.failed, regression: peer.regression, status: peer.status },
    { failed: true, regression: false, status: 'unavailable' },
  );
});

test('compare: rows the baseline did not measure (failed there, or absent) and sections it lacks are left out', () => {
  const base = results([oneWay(null, 0.2)]);
  base.sections[0]!.rows = base.sections[0]!.rows.filter((r) => r.id !== 'nats');
  const now = results([
    oneWay(0.1, 0.2),
    section('oneway-1k', [row('postbox-unix', 'Postbox (kernel, unix)', three(1))]),
  ]);
  assert.deepEqual(compare(base, now), []);
});

test('compare: a row without a figure on one side (its ceiling failed, or it is not a number) is "not compared", said for the side that lacks it, and never a regression', () => {
  const thisRun = byRow(
    compare(results([oneWay(0.5, 0.2)]), results([oneWay(0.1, 0.2, { ceilingFailed: true })])),
    'postbox-unix',
  );
  assert.equal(thisRun.notCompared, 'no ceiling in this run (its row failed)');
  assert.deepEqual(
    { regression: thisRun.regression, failed: thisRun.failed },
    { regression: false, failed: false },
  );
  const baseline = byRow(
    compare(results([oneWay(0.5, 0.2, { ceilingFailed: true })]), results([oneWay(0.1, 0.2)])),
    'postbox-unix',
  );
  assert.equal(baseline.notCompared, 'no ceiling in the baseline (its row failed)');
  assert.equal(baseline.regression, false);
  // Without a ceiling, a row that ran and has no finite figure (a sample that was not a number;
  // null in a saved file) is said too, not shown as a change of NaN%.
  const memory = (values: number[]): SectionResult =>
    section('memory', [row('postbox', 'Postbox kernel', values)], {
      better: 'lower',
      ceiling: null,
      columns: [bytes],
    });
  const noFigure = byRow(
    compare(results([memory(three(250e6))]), results([memory([Number.NaN])])),
    'postbox',
  );
  assert.deepEqual(
    { notCompared: noFigure.notCompared, regression: noFigure.regression, failed: noFigure.failed },
    { notCompared: 'no figure in this run', regression: false, failed: false },
  );
  const saved = results([memory(three(250e6))]);
  (saved.sections[0]!.rows[0]!.stats.value as { median: number | null }).median = null;
  assert.equal(
    byRow(compare(saved, results([memory(three(250e6))])), 'postbox').notCompared,
    'no figure in the baseline',
  );
});

test('compare: a quick run against a full baseline (or the other way round) judges nothing, and workloadDiffers says why', () => {
  const full = results([oneWay(0.5, 0.2)]);
  const quick = results([oneWay(0.1, 0.2)], true);
  const quickFailed = results([oneWay(null, 0.2)], true);
  for (const [base, now] of [
    [full, quick],
    [quick, full],
    [full, quickFailed],
  ] as const) {
    const changes = compare(base, now);
    assert.ok(changes.length > 0);
    assert.deepEqual(
      changes.filter((c) => c.regression),
      [],
    );
  }
  assert.match(
    workloadDiffers(full, quick) ?? '',
    /^this is a quick run and the baseline a full one: .*no change is called a regression/,
  );
  assert.match(workloadDiffers(quick, full) ?? '', /^this is a full run and the baseline a quick one/);
  assert.equal(workloadDiffers(full, results([])), null);
  assert.equal(workloadDiffers(quick, quickFailed), null);
  // The same drop between two quick runs is judged.
  assert.equal(byRow(compare(results([oneWay(0.5, 0.2)], true), quick), 'postbox-unix').regression, true);
});

test('compare: a --fresh-kernel run against a baseline on the shared kernel (or the other way round) judges nothing; results that do not say how the kernel ran are judged', () => {
  const on = (kernel: string | undefined, pb: number | null): Results => {
    const r = results([oneWay(pb, 0.2)]);
    if (kernel !== undefined) r.env.kernel = kernel;
    return r;
  };
  const shared = 'shared, warmed up';
  const fresh = 'fresh per run';
  for (const [base, now] of [
    [on(shared, 0.34), on(fresh, 0.26)],
    [on(fresh, 0.5), on(shared, 0.1)],
    [on(shared, 0.5), on(fresh, null)],
  ] as const) {
    assert.match(
      workloadDiffers(base, now) ?? '',
      /^this run's Postbox kernel was .* and the baseline's .*: .*no change is called a regression$/,
    );
    const changes = compare(base, now);
    assert.ok(changes.length > 0);
    assert.deepEqual(
      changes.filter((c) => c.regression),
      [],
    );
  }
  assert.equal(
    workloadDiffers(on(shared, 0.34), on(fresh, 0.26)),
    "this run's Postbox kernel was fresh per run and the baseline's shared, warmed up: the Postbox rows measured another setup, so no change is called a regression",
  );
  // The same setup on both sides, or one side that does not say: judged.
  for (const [base, now] of [
    [on(fresh, 0.34), on(fresh, 0.26)],
    [on(undefined, 0.34), on(fresh, 0.26)],
    [on(shared, 0.34), on(undefined, 0.26)],
  ] as const) {
    assert.equal(workloadDiffers(base, now), null);
    assert.equal(byRow(compare(base, now), 'postbox-unix').regression, true);
  }
});

test('comparisonTable: each change as the reader sees it, a regression in bold', () => {
  const base = results([
    oneWay(0.5, 0.2),
    section('memory', [row('postbox', 'Postbox kernel', three(250 * 2 ** 20))], {
      better: 'lower',
      ceiling: null,
      columns: [bytes],
    }),
  ]);
  const now = results([
    oneWay(0.25, 0.3),
    section('memory', [row('postbox', 'Postbox kernel', [])], {
      better: 'lower',
      ceiling: null,
      columns: [bytes],
    }),
  ]);
  const lines = comparisonTable(compare(base, now), now.sections).split('\n');
  assert.deepEqual(lines.slice(2), [
    '| the oneway-100 section | Postbox (kernel, unix) | vs raw | 0.50× | 0.25× | **-50% regression** |',
    '| the oneway-100 section | NATS pub/sub | vs raw | 0.20× | 0.30× | +50% |',
    '| the memory section | Postbox kernel | value | 250.0 MiB | failed | **failed: regression** |',
  ]);
  const unjudged = results([oneWay(0.1, 0.2, { ceilingFailed: true })]);
  assert.equal(
    comparisonTable(compare(base, unjudged), unjudged.sections).split('\n')[2],
    '| the oneway-100 section | Postbox (kernel, unix) | vs raw | 0.50× | — | not compared: no ceiling in this run (its row failed) |',
  );
});

// ---------------------------------------------------------------- targets

/** Every section the targets are made of, each Postbox figure at the given ratio to its goal's yardstick. */
function targetSections(f: {
  oneWay?: number;
  rtt?: number;
  rttNats?: number;
  fanout?: number;
  rpc?: number;
  rss?: number;
}): SectionResult[] {
  const vs = (id: string, system: string, ratioToRaw: number, base = 1000): RowResult =>
    row(id, system, three(base * ratioToRaw), { vsCeiling: ratioToRaw });
  const ow = f.oneWay ?? 0.5;
  const rtt = f.rtt ?? 2;
  return [
    ...['oneway-100', 'oneway-1k', 'oneway-64k'].map((id) =>
      section(id, [
        vs('raw', 'raw', 1),
        vs('postbox-unix', 'Postbox (kernel, unix)', ow),
        vs('postbox-batch', 'Postbox (unix), sendMany + batches()', ow),
        vs('postbox-consume', 'Postbox (unix), send() + consume()', ow),
      ]),
    ),
    section(
      'rtt',
      [
        vs('raw', 'raw', 1, 20),
        // Its p50 over NATS's is rttNats; its ratio to raw (vsCeiling) is rtt.
        row('postbox-unix', 'Postbox (kernel, unix)', three(100 * (f.rttNats ?? 0.25)), { vsCeiling: rtt }),
        vs('postbox-consume', 'Postbox (unix), consume() at both ends', rtt, 20),
        row('nats', 'NATS request/reply', three(100)),
      ],
      { better: 'lower', columns: [micros] },
    ),
    section('fanout', [
      vs('raw', 'raw', 1),
      row('postbox', 'Postbox, one shared mailbox', three(100 * (f.fanout ?? 4)), { vsCeiling: 0.5 }),
      row('postbox-batch', 'Postbox, sendMany', three(100 * (f.fanout ?? 4)), { vsCeiling: 0.5 }),
      row('nats', 'NATS queue group', three(100)),
    ]),
    section('rpc', [
      vs('raw', 'raw', 1),
      row('postbox-rpc', 'Postbox RPC', three(100 * (f.rpc ?? 4)), { vsCeiling: 0.4 }),
      row('nats', 'NATS request/reply', three(100)),
    ]),
    section('memory', [row('postbox', 'Postbox kernel', three(f.rss ?? 250e6))], {
      better: 'lower',
      ceiling: null,
      columns: [bytes],
    }),
  ];
}

const target = (ts: Target[], id: string): Target => {
  const t = ts.find((x) => x.id === id);
  assert.ok(t !== undefined, `no target ${id}`);
  return t;
};

test('targets: every target of the issue, met when its figure is at or beyond its goal, missed just short of it', () => {
  const ids = [
    'oneway-100',
    'oneway-1k',
    'oneway-64k',
    'oneway-100-batch',
    'oneway-100-consume',
    'rtt-raw',
    'rtt-raw-consume',
    'rtt-nats',
    'fanout-nats',
    'fanout-nats-batch',
    'rpc-nats',
    'memory',
  ];
  const at = targets(
    targetSections({ oneWay: 0.4, rtt: 2.5, rttNats: 0.5, fanout: 3, rpc: 3, rss: 300e6 }),
    3,
  );
  assert.deepEqual(
    at.map((t) => t.id),
    ids,
  );
  for (const t of at) {
    assert.equal(t.met, true, `${t.id} exactly at its goal: ${JSON.stringify(t)}`);
    assert.equal(t.measured, t.goal, t.id);
  }
  const goals = Object.fromEntries(at.map((t) => [t.id, `${t.op} ${t.goal}`]));
  assert.deepEqual(goals, {
    'oneway-100': '>= 0.4',
    'oneway-1k': '>= 0.4',
    'oneway-64k': '>= 0.4',
    'oneway-100-batch': '>= 0.4',
    'oneway-100-consume': '>= 0.4',
    'rtt-raw': '<= 2.5',
    'rtt-raw-consume': '<= 2.5',
    'rtt-nats': '<= 0.5',
    'fanout-nats': '>= 3',
    'fanout-nats-batch': '>= 3',
    'rpc-nats': '>= 3',
    memory: '<= 300000000',
  });
  const short = targets(
    targetSections({ oneWay: 0.39, rtt: 2.51, rttNats: 0.51, fanout: 2.99, rpc: 2.99, rss: 300e6 + 1 }),
    3,
  );
  for (const t of short) assert.equal(t.met, false, `${t.id} just short of its goal: ${JSON.stringify(t)}`);
  const beyond = targets(
    targetSections({ oneWay: 0.41, rtt: 2.49, rttNats: 0.49, fanout: 3.01, rpc: 3.01, rss: 299e6 }),
    3,
  );
  for (const t of beyond) assert.equal(t.met, true, `${t.id} beyond its goal: ${JSON.stringify(t)}`);
});

test('targets: a figure made of a row with fewer than 3 successful runs is shown and not judged, naming the row when the figure has two', () => {
  assert.equal(MIN_JUDGED, 3);
  const ss = targetSections({ oneWay: 0.1, rss: 500e6 });
  // Postbox one-way 100 B: 2 of 3 runs; the 1 KiB section's ceiling: 2 of 3; memory: 1 of 3.
  ss[0]!.rows[1] = row('postbox-unix', 'Postbox (kernel, unix)', [100, 100], { vsCeiling: 0.1 });
  ss[1]!.rows[0] = row('raw', 'raw Unix socket (ceiling)', [1000, 1000], { vsCeiling: 1 });
  ss[6]!.rows[0] = row('postbox', 'Postbox kernel', [500e6]);
  const ts = targets(ss, 3);
  const oneWay100 = target(ts, 'oneway-100');
  assert.deepEqual(
    { measured: oneWay100.measured, met: oneWay100.met, note: oneWay100.note },
    { measured: 0.1, met: null, note: 'not judged: 2 of 3 runs succeeded (Postbox (kernel, unix))' },
  );
  assert.equal(target(ts, 'oneway-1k').note, 'not judged: 2 of 3 runs succeeded (raw Unix socket (ceiling))');
  assert.equal(target(ts, 'oneway-1k').met, null);
  const memory = target(ts, 'memory');
  assert.deepEqual(
    { measured: memory.measured, met: memory.met, note: memory.note },
    { measured: 500e6, met: null, note: 'not judged: 1 of 3 runs succeeded' },
  );
  // The others, made of rows with 3 runs each, are judged as before.
  assert.equal(target(ts, 'oneway-100-batch').met, false);
  assert.equal(target(ts, 'oneway-100-batch').note, undefined);
  // Counted from the samples, not from the runs asked for: 3 of 5 is judged, 2 of 2 is not.
  const five = targetSections({});
  for (const s of five) s.runs = 5;
  assert.ok(targets(five, 5).every((t) => t.met === true && t.note === undefined));
  // "of N" is the runs of the row's own section, not the run's default.
  five[6]!.rows[0] = row('postbox', 'Postbox kernel', [250e6, 250e6]);
  assert.equal(target(targets(five, 3), 'memory').note, 'not judged: 2 of 5 runs succeeded');
  const two = targetSections({}).map((s) => ({
    ...s,
    runs: 2,
    rows: s.rows.map((r) => ({ ...r, samples: r.samples.slice(0, 2) })),
  }));
  assert.ok(
    targets(two, 2).every(
      (t) => t.met === null && t.note?.startsWith('not judged: 2 of 2 runs succeeded') === true,
    ),
  );
});

test('targets: each target is made of its own rows (the batch and consume() targets of theirs, not of the plain row)', () => {
  const ss = targetSections({});
  const set = (section: number, id: string, values: number[], vsCeiling?: number): void => {
    const s = ss[section]!;
    const i = s.rows.findIndex((r) => r.id === id);
    assert.ok(i >= 0, id);
    s.rows[i] = row(id, s.rows[i]!.system, values, vsCeiling === undefined ? {} : { vsCeiling });
  };
  set(0, 'postbox-unix', three(510), 0.51);
  set(0, 'postbox-batch', three(520), 0.52);
  set(0, 'postbox-consume', three(530), 0.53);
  set(1, 'postbox-unix', three(610), 0.61);
  set(2, 'postbox-unix', three(710), 0.71);
  set(3, 'postbox-unix', three(30), 2.1); // over NATS's 100: 0.3
  set(3, 'postbox-consume', three(99), 2.2);
  set(4, 'postbox', three(400)); // over NATS's 100: 4
  set(4, 'postbox-batch', three(500));
  set(5, 'postbox-rpc', three(600));
  set(6, 'postbox', three(123e6));
  assert.deepEqual(Object.fromEntries(targets(ss, 3).map((t) => [t.id, t.measured])), {
    'oneway-100': 0.51,
    'oneway-1k': 0.61,
    'oneway-64k': 0.71,
    'oneway-100-batch': 0.52,
    'oneway-100-consume': 0.53,
    'rtt-raw': 2.1,
    'rtt-raw-consume': 2.2,
    'rtt-nats': 0.3,
    'fanout-nats': 4,
    'fanout-nats-batch': 5,
    'rpc-nats': 6,
    memory: 123e6,
  });
});

test('targets: with a row missing, failed, or a yardstick of zero there is no figure: not measured, not judged, and no note', () => {
  const ss = targetSections({});
  ss[0]!.rows = ss[0]!.rows.filter((r) => r.id !== 'postbox-unix'); // oneway-100: missing
  ss[1]!.rows[1] = row('postbox-unix', 'Postbox (kernel, unix)', []); // oneway-1k: failed
  ss[4]!.rows[3] = row('nats', 'NATS queue group', three(0)); // fanout: NATS at 0 msg/s
  const withoutRpc = ss.filter((s) => s.id !== 'rpc');
  const ts = targets(withoutRpc, 3);
  for (const id of ['oneway-100', 'oneway-1k', 'fanout-nats', 'fanout-nats-batch', 'rpc-nats']) {
    const t = target(ts, id);
    assert.deepEqual(
      { measured: t.measured, met: t.met, note: t.note },
      { measured: null, met: null, note: undefined },
      id,
    );
  }
  assert.equal(target(ts, 'oneway-64k').met, true);
  assert.equal(targets([], 3).length, 12);
});

// ---------------------------------------------------------------- the command line

const root = fileURLToPath(new URL('../../', import.meta.url));
const BASELINE = join(root, 'bench/results/baseline.json');
/** What a run writes in the repository: --from with --no-docs, and every usage error, write none of it. */
const WRITTEN = [
  'bench/results/latest.json',
  'bench/results/baseline.json',
  'docs/benchmarks.md',
  'docs/bench-throughput.svg',
];
const snapshot = (): (string | null)[] =>
  WRITTEN.map((f) => (existsSync(join(root, f)) ? readFileSync(join(root, f), 'utf8') : null));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `node dist/bench/run.js ARGS` (of `tree`) to its end (killed after 60 s, a bound: it measures nothing). */
async function bench(args: string[], tree = root): Promise<Run> {
  const child = spawn(process.execPath, [join(tree, 'dist/bench/run.js'), ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

describe('the bench command line', () => {
  let dir: string;
  let before0: (string | null)[];
  const base = JSON.parse(readFileSync(BASELINE, 'utf8')) as Results;
  /** A copy of the baseline changed by `edit`, written to the temp dir. */
  const variant = (name: string, edit: (r: Results) => void): string => {
    const r = structuredClone(base);
    edit(r);
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify(r));
    return file;
  };
  const pbOneWay = (r: Results): RowResult =>
    r.sections.find((s) => s.id === 'oneway-100')!.rows.find((x) => x.id === 'postbox-unix')!;
  /**
   * Where a mistake on the command line were not caught, the run would go on to measure: each of
   * those commands names a baseline that does not exist too, so that it stops at once all the same,
   * with another message than the one the test expects.
   */
  let stopAnyway: string[];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'postbox-bench-report-'));
    before0 = snapshot();
    stopAnyway = ['--baseline', join(dir, 'no-baseline.json')];
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(snapshot(), before0, 'the bench command line wrote into the repository');
  });

  test('--from the baseline against a copy of itself: no regression, exit 0 with --fail-on-regression', async () => {
    const copy = variant('same.json', () => {});
    const r = await bench(['--from', BASELINE, '--baseline', copy, '--fail-on-regression', '--no-docs']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /### Targets/);
    assert.match(r.stdout, /### Compared with the baseline \(\d{4}-\d\d-\d\d\)/);
    assert.match(r.stdout, /\nNo regression: no Postbox ratio fell by more than 20%/);
  });

  test('--from and --baseline the same file: nothing to compare, exit 0 with --fail-on-regression', async () => {
    const r = await bench(['--from', BASELINE, '--baseline', BASELINE, '--fail-on-regression', '--no-docs']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /### Targets/);
    assert.doesNotMatch(r.stdout, /Compared with the baseline|regression/);
  });

  test('a baseline where Postbox one-way 100 B had twice the ratio: exit 1 with --fail-on-regression naming it, exit 0 without', async () => {
    const doubled = variant('doubled.json', (r) => {
      const pb = pbOneWay(r);
      pb.vsCeiling = pb.vsCeiling! * 2;
    });
    const failing = await bench([
      '--from',
      BASELINE,
      '--baseline',
      doubled,
      '--fail-on-regression',
      '--no-docs',
    ]);
    assert.equal(failing.code, 1, failing.stderr);
    assert.match(failing.stdout, /\n1 regression\(s\): oneway-100\/postbox-unix\n/);
    assert.match(
      failing.stdout,
      /\| Postbox \(kernel, unix\) \| vs raw \| 0\.67× \| 0\.34× \| \*\*-50% regression\*\* \|/,
    );
    const shown = await bench(['--from', BASELINE, '--baseline', doubled, '--no-docs']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /\n1 regression\(s\): oneway-100\/postbox-unix\n/);
  });

  test('a Postbox row that failed where the baseline has a figure: exit 1 with --fail-on-regression', async () => {
    const failed = variant('failed.json', (r) => {
      const pb = pbOneWay(r);
      pb.status = 'failed';
      pb.samples = [];
      delete pb.vsCeiling;
    });
    const r = await bench(['--from', failed, '--baseline', BASELINE, '--fail-on-regression', '--no-docs']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /\n1 regression\(s\): oneway-100\/postbox-unix \(failed\)\n/);
  });

  test('a quick baseline against a full run is not judged: exit 0 with --fail-on-regression even where a ratio halved', async () => {
    const quick = variant('quick-doubled.json', (r) => {
      r.quick = true;
      const pb = pbOneWay(r);
      pb.vsCeiling = pb.vsCeiling! * 2;
    });
    const r = await bench(['--from', BASELINE, '--baseline', quick, '--fail-on-regression', '--no-docs']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\nNot judged: this is a full run and the baseline a quick one/);
    assert.match(r.stdout, /\| 0\.67× \| 0\.34× \| -50% \|/);
  });

  test('a baseline measured with a fresh kernel per run is not judged against a run on the shared kernel: exit 0 with --fail-on-regression', async () => {
    const fresh = variant('fresh-doubled.json', (r) => {
      r.env.kernel = 'fresh per run';
      const pb = pbOneWay(r);
      pb.vsCeiling = pb.vsCeiling! * 2;
    });
    const r = await bench(['--from', BASELINE, '--baseline', fresh, '--fail-on-regression', '--no-docs']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /\nNot judged: this run's Postbox kernel was shared, warmed up and the baseline's fresh per run: /,
    );
  });

  /** A usage error: exit 2, one line that says it (and where help is), nothing printed on stdout. */
  async function refused(args: string[], message: RegExp): Promise<void> {
    const r = await bench(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    const lines = r.stderr.split('\n');
    assert.equal(lines.length, 3, r.stderr);
    assert.match(lines[0]!, /^npm run bench: /);
    assert.match(lines[0]!, message);
    assert.equal(lines[1], "Run 'npm run bench -- --help' for usage.");
  }

  test('usage errors exit 2 with one line, before anything is measured', async () => {
    await refused(['--runs', '0', ...stopAnyway], /--runs must be a whole number of at least 1, not '0'/);
    await refused(
      ['--runs', '2.5', ...stopAnyway],
      /--runs must be a whole number of at least 1, not '2\.5'/,
    );
    await refused(
      ['--only', 'rtt,nosuch', ...stopAnyway],
      /unknown section 'nosuch' in --only; the sections are oneway-100, /,
    );
    await refused(['--only', ' , ', ...stopAnyway], /--only names no section; the sections are oneway-100, /);
    await refused(['--docs', '--no-docs', ...stopAnyway], /--docs and --no-docs contradict each other/);
    await refused(
      ['--docs', '--quick', ...stopAnyway],
      /--docs writes the docs of a full run; drop --quick \/ --only/,
    );
    await refused(
      ['--from', 'x', '--quick', ...stopAnyway],
      /--from measures nothing, so --quick would do nothing: drop it$/,
    );
    await refused(
      ['--from', 'x', '--only', 'rtt', '--runs', '5', ...stopAnyway],
      /--from measures nothing, so --only, --runs would do nothing: drop them$/,
    );
    // With --from: were the baseline not read, the run would print the saved results, not measure.
    await refused(
      ['--from', BASELINE, '--no-docs', '--baseline', '/nonexistent/baseline.json'],
      /there is no baseline at \/nonexistent\/baseline\.json$/,
    );
    await refused(['--nosuch', ...stopAnyway], /Unknown option '--nosuch'/);
  });

  test("a --from or --baseline file that is not a results file exits 2 naming it, and --docs refuses a quick run's", async () => {
    const notJson = join(dir, 'not.json');
    writeFileSync(notJson, 'not json');
    const noSections = join(dir, 'no-sections.json');
    writeFileSync(noSections, JSON.stringify({ ...base, sections: undefined }));
    const badSection = join(dir, 'bad-section.json');
    writeFileSync(badSection, JSON.stringify({ ...base, sections: [{ id: 'rtt', rows: [] }] }));
    await refused(
      ['--from', notJson, '--no-docs', ...stopAnyway],
      /the --from file .*not\.json is not a results file: Unexpected token/,
    );
    await refused(
      ['--from', noSections, '--no-docs', ...stopAnyway],
      /the --from file .*no-sections\.json is not a results file: it lacks/,
    );
    await refused(
      ['--from', badSection, '--no-docs', ...stopAnyway],
      /the --from file .*bad-section\.json is not a results file: it lacks/,
    );
    await refused(
      ['--from', BASELINE, '--no-docs', '--baseline', noSections],
      /the baseline .*no-sections\.json is not a results file/,
    );
    await refused(
      ['--from', join(dir, 'none.json'), '--no-docs'],
      /there is no --from file at .*none\.json$/,
    );
    const quick = variant('quick.json', (r) => {
      r.quick = true;
    });
    await refused(
      ['--from', quick, '--docs', ...stopAnyway],
      /--docs writes the docs of a full run, and .*quick\.json holds a quick run/,
    );
    const partial = variant('partial.json', (r) => {
      r.env.only = ['rtt'];
    });
    await refused(
      ['--from', partial, '--docs', ...stopAnyway],
      /--docs writes the docs of a full run, and .*partial\.json holds a partial \(--only\) run/,
    );
  });

  test('--fail-on-regression with no baseline (none given, none saved) exits 2, and without it the run says there is none', async () => {
    // The harness as built, in a tree of its own whose bench/results/ holds no baseline.
    const tree = join(dir, 'tree');
    cpSync(join(root, 'dist/bench'), join(tree, 'dist/bench'), { recursive: true });
    writeFileSync(join(tree, 'package.json'), JSON.stringify({ type: 'module' }));
    const missing = join(tree, 'bench/results/baseline.json');
    // With --from: were the check missing, the run would print the saved results, not measure.
    const refusedRun = await bench(['--from', BASELINE, '--fail-on-regression', '--no-docs'], tree);
    assert.equal(refusedRun.code, 2, refusedRun.stderr);
    assert.equal(
      refusedRun.stderr.split('\n')[0],
      `npm run bench: --fail-on-regression needs a baseline, and there is none at ${missing}`,
    );
    const plain = await bench(['--from', BASELINE, '--no-docs'], tree);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(
      plain.stdout,
      /\n\(no baseline at .*bench\/results\/baseline\.json: run with --save-baseline to make one\)/,
    );
  });
});

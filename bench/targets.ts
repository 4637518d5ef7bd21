// The issue's targets (one-way, round trip, fan-out, RPC, memory) judged from a run's sections:
// met, missed, or not judged when a row they are made of has too few successful runs. Its own
// module so that the judging can be tested without running a benchmark (run.ts measures on import).

import type { RowResult, SectionResult, Target } from './report.js';

/**
 * The fewest successful runs a target is judged from: a median of fewer says too little to call
 * it met or missed. Counted per row the figure is made of (a ratio's two rows), not from --runs:
 * a row where 2 of 3 runs failed has a "median" of one sample.
 */
export const MIN_JUDGED = 3;

/**
 * The issue's targets, judged from measured sections. `defaultRuns` is the runs a row was asked
 * for when its section does not say (the `of N runs` of a "not judged" note).
 */
export function targets(sections: SectionResult[], defaultRuns: number): Target[] {
  /** A figure and every row it is made of, whatever their status (their samples are counted). */
  interface Figure {
    value: number | undefined;
    rows: RowResult[];
    runs: number;
  }
  const section = (s: string) => sections.find((y) => y.id === s);
  const find = (s: string, r: string | undefined): RowResult | undefined =>
    section(s)?.rows.find((y) => y.id === r);
  const ok = (x: RowResult | undefined): RowResult | undefined => (x?.status === 'ok' ? x : undefined);
  const figure = (s: string, rows: (RowResult | undefined)[], value: number | undefined): Figure => ({
    value,
    rows: rows.filter((x): x is RowResult => x !== undefined),
    runs: section(s)?.runs ?? defaultRuns,
  });
  /** A row's median over its own section's ceiling's (vsCeiling). */
  const vsRaw = (s: string, r: string): Figure =>
    figure(s, [find(s, r), find(s, section(s)?.ceiling)], ok(find(s, r))?.vsCeiling);
  /** One row's median over another's, in one section. */
  const over = (s: string, a: string, b: string): Figure => {
    const x = ok(find(s, a))?.stats.value?.median;
    const y = ok(find(s, b))?.stats.value?.median;
    return figure(
      s,
      [find(s, a), find(s, b)],
      x !== undefined && y !== undefined && y > 0 ? x / y : undefined,
    );
  };
  const median = (s: string, r: string): Figure =>
    figure(s, [find(s, r)], ok(find(s, r))?.stats.value?.median);
  const make = (
    id: string,
    text: string,
    f: Figure,
    op: '>=' | '<=',
    goal: number,
    from: string,
    unit: Target['unit'] = 'ratio',
  ): Target => {
    const measured = f.value === undefined || !Number.isFinite(f.value) ? null : f.value;
    const short = f.rows.find((x) => x.samples.length < MIN_JUDGED);
    const note =
      measured === null || short === undefined
        ? undefined
        : `not judged: ${short.samples.length} of ${f.runs} runs succeeded${f.rows.length > 1 ? ` (${short.system})` : ''}`;
    return {
      id,
      text,
      measured,
      goal,
      op,
      unit,
      from,
      met: measured === null || note !== undefined ? null : op === '>=' ? measured >= goal : measured <= goal,
      ...(note !== undefined ? { note } : {}),
    };
  };
  return [
    ...(
      [
        ['oneway-100', '100 B'],
        ['oneway-1k', '1 KiB'],
        ['oneway-64k', '64 KiB'],
      ] as const
    ).map(([s, label]) =>
      make(
        `${s}`,
        `one-way ${label} ≥ 0.4× raw`,
        vsRaw(s, 'postbox-unix'),
        '>=',
        0.4,
        'Postbox (unix) / raw Unix socket, medians',
      ),
    ),
    make(
      'oneway-100-batch',
      'one-way 100 B ≥ 0.4× raw, with sendMany + batches()',
      vsRaw('oneway-100', 'postbox-batch'),
      '>=',
      0.4,
      'Postbox (unix, batch API) / raw Unix socket, medians',
    ),
    make(
      'oneway-100-consume',
      'one-way 100 B ≥ 0.4× raw, with send() + consume()',
      vsRaw('oneway-100', 'postbox-consume'),
      '>=',
      0.4,
      'Postbox (unix, consume()) / raw Unix socket, medians',
    ),
    make(
      'rtt-raw',
      'round trip p50 ≤ 2.5× raw',
      vsRaw('rtt', 'postbox-unix'),
      '<=',
      2.5,
      'Postbox (unix) p50 / raw p50',
    ),
    make(
      'rtt-raw-consume',
      'round trip p50 ≤ 2.5× raw, with consume()',
      vsRaw('rtt', 'postbox-consume'),
      '<=',
      2.5,
      'Postbox (unix, consume()) p50 / raw p50',
    ),
    make(
      'rtt-nats',
      'round trip p50 ≤ 0.5× NATS request/reply',
      over('rtt', 'postbox-unix', 'nats'),
      '<=',
      0.5,
      'Postbox (unix) p50 / NATS p50',
    ),
    make(
      'fanout-nats',
      '1 → 4 consumers ≥ 3× NATS queue group',
      over('fanout', 'postbox', 'nats'),
      '>=',
      3,
      'Postbox shared mailbox / NATS queue group, msg/s',
    ),
    make(
      'fanout-nats-batch',
      '1 → 4 consumers ≥ 3× NATS queue group, with sendMany + batches()',
      over('fanout', 'postbox-batch', 'nats'),
      '>=',
      3,
      'Postbox shared mailbox, batch API / NATS queue group, msg/s',
    ),
    make(
      'rpc-nats',
      'RPC 64 in flight ≥ 3× NATS request/reply',
      over('rpc', 'postbox-rpc', 'nats'),
      '>=',
      3,
      'Postbox RPC / NATS request/reply, 64 in flight, calls/s',
    ),
    make(
      'memory',
      '1M queued 100 B messages ≤ 300 MB kernel RSS',
      median('memory', 'postbox'),
      '<=',
      300e6,
      'kernel VmRSS',
      'bytes',
    ),
  ];
}

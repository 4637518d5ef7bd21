// Turns measured sections into what people read: Markdown tables, the targets, a comparison with
// the committed baseline (by ratios, not absolute times), an SVG bar chart and docs/benchmarks.md.

import type { Sample } from './workloads.js';

export type Better = 'higher' | 'lower';

export interface Column {
  key: string;
  label: string;
  unit: Unit;
}

export type Unit = 'msg/s' | 'calls/s' | 'µs' | 'bytes' | '%' | 'count';

export interface Stats {
  median: number;
  min: number;
  max: number;
}

export interface RowResult {
  id: string;
  system: string;
  status: 'ok' | 'unavailable' | 'failed';
  /** Why it did not run, or how runs failed. */
  note?: string;
  samples: Sample[];
  /** Per column key. */
  stats: Record<string, Stats>;
  /** Median value over the ceiling row's median value (same section, same run). */
  vsCeiling?: number;
}

export interface SectionResult {
  id: string;
  title: string;
  better: Better;
  /** First column is `value`, the headline figure. */
  columns: Column[];
  ceiling?: string;
  runs: number;
  /** What was moved, for the reader: counts and sizes. */
  detail: string;
  rows: RowResult[];
}

export interface Target {
  id: string;
  text: string;
  /** The measured figure the goal is about (a ratio, or bytes). */
  measured: number | null;
  goal: number;
  op: '>=' | '<=';
  unit: 'ratio' | 'bytes';
  /** How the figure was made. */
  from: string;
  met: boolean | null;
  /** Why `met` is null although there is a figure: "not judged: 1 of 3 runs succeeded". */
  note?: string;
}

export interface Results {
  date: string;
  quick: boolean;
  durationMs: number;
  env: Record<string, unknown>;
  peers: Record<string, { ok: boolean; detail: string }>;
  sections: SectionResult[];
  targets: Target[];
}

// ---------------------------------------------------------------- numbers

export function stats(values: number[]): Stats {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]! };
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

export function formatValue(n: number, unit: Unit): string {
  if (!Number.isFinite(n)) return '—';
  switch (unit) {
    case 'msg/s':
    case 'calls/s':
    case 'count':
      return int(n);
    case 'µs':
      return n < 100 ? n.toFixed(1) : int(n);
    case 'bytes':
      return `${(n / 2 ** 20).toFixed(1)} MiB`;
    case '%':
      return n.toFixed(2);
  }
}

const unitLabel = (c: Column): string =>
  c.unit === 'bytes' || c.unit === 'count' || c.label.endsWith('/s') ? c.label : `${c.label} (${c.unit})`;

/**
 * Free text (a failure reason, a peer's detail) made fit for one Markdown table cell: a newline
 * (a nats-server start log, say) would end the row mid-cell, and a `|` would start a new cell.
 */
export const cellText = (s: string): string => s.replace(/\s+/g, ' ').trim().replaceAll('|', '/');

export const ratio = (r: number | undefined): string =>
  r === undefined || !Number.isFinite(r) ? '—' : `${r.toFixed(2)}×`;

// ---------------------------------------------------------------- tables

export function sectionTable(s: SectionResult): string {
  const [head, ...extra] = s.columns;
  const hasCeiling = s.ceiling !== undefined;
  const hasNotes = s.rows.some((r) => r.note !== undefined);
  const header = [
    'system',
    `${unitLabel(head!)}, median`,
    'min – max',
    ...extra.map((c) => `${unitLabel(c)}, median`),
    ...(hasCeiling ? ['vs raw'] : []),
    ...(hasNotes ? ['notes'] : []),
  ];
  const align = [
    '---',
    '--:',
    '--:',
    ...extra.map(() => '--:'),
    ...(hasCeiling ? ['--:'] : []),
    ...(hasNotes ? ['---'] : []),
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${align.join('|')}|`];
  for (const r of s.rows) {
    const st = r.stats.value;
    const ok = r.status === 'ok' && st !== undefined && Number.isFinite(st.median);
    const cells = [
      r.id === s.ceiling ? `**${r.system}**` : r.system,
      ok ? formatValue(st.median, head!.unit) : '—',
      ok ? `${formatValue(st.min, head!.unit)} – ${formatValue(st.max, head!.unit)}` : '—',
      ...extra.map((c) => (ok ? formatValue(r.stats[c.key]?.median ?? Number.NaN, c.unit) : '—')),
      ...(hasCeiling ? [ok ? ratio(r.vsCeiling) : '—'] : []),
      ...(hasNotes ? [cellText(r.note ?? '')] : []),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function targetsTable(targets: Target[]): string {
  const lines = ['| target | measured | met | from |', '|---|--:|:-:|---|'];
  for (const t of targets) {
    const m =
      t.measured === null
        ? 'not measured'
        : t.unit === 'ratio'
          ? ratio(t.measured)
          : `${(t.measured / 1e6).toFixed(1)} MB (${(t.measured / 2 ** 20).toFixed(1)} MiB)`;
    const met = t.met === null ? (t.note ?? '—') : t.met ? 'yes' : '**no**';
    lines.push(`| ${t.text} | ${m} | ${met} | ${t.from} |`);
  }
  return lines.join('\n');
}

export function peersTable(peers: Results['peers']): string {
  const lines = ['| peer | status |', '|---|---|'];
  for (const [name, p] of Object.entries(peers))
    lines.push(
      `| ${cellText(name)} | ${p.ok ? cellText(p.detail) : `**not available**: ${cellText(p.detail)}`} |`,
    );
  return lines.join('\n');
}

export function fullReport(r: Results): string {
  const parts: string[] = [];
  for (const s of r.sections) parts.push(`### ${s.title}\n\n${s.detail}\n\n${sectionTable(s)}`);
  parts.push(`### Targets\n\n${targetsTable(r.targets)}`);
  parts.push(`### Peers\n\n${peersTable(r.peers)}`);
  return parts.join('\n\n');
}

// ---------------------------------------------------------------- baseline comparison

export interface Change {
  section: string;
  row: string;
  system: string;
  /** What is compared: the ratio to the raw ceiling, or the value itself where there is none. */
  metric: 'vs raw' | 'value';
  before: number;
  after: number;
  /** after / before, oriented so that < 1 is worse. */
  change: number;
  /** A Postbox row that fell by more than the tolerance, or failed where the baseline did not. */
  regression: boolean;
  /** This run has no figure for the row: all its runs failed, or it could not run. */
  failed: boolean;
  /** The row's status in this run, which says which of the two (a peer not installed is not a failure). */
  status: RowResult['status'];
  /**
   * Why the row has a figure on both sides and still is not compared (its section's ceiling
   * failed, so there is no ratio): shown in the table, never a regression.
   */
  notCompared?: string;
}

/**
 * Why `now` cannot be judged against `base`, or null when it can. A quick run moves far fewer
 * messages than a full one (150,000 against 1,000,000 one-way), so its ratios sit elsewhere
 * (less time to warm up, more of it spent starting processes): a quick run against a full
 * baseline showed "regressions" that were only that. A kernel started for every run
 * (`--fresh-kernel`) is a cold one: in one run, one-way 100 B was 0.26× raw on it against 0.34×
 * on the shared, warmed-up kernel, more than the tolerance apart. Results that do not say how
 * the kernel ran (older ones) are judged as before.
 */
export function workloadDiffers(base: Results, now: Results): string | null {
  if (base.quick !== now.quick) {
    const kind = (r: Results): string => (r.quick ? 'quick' : 'full');
    return `this is a ${kind(now)} run and the baseline a ${kind(base)} one: message counts differ, so no change is called a regression`;
  }
  const kernel = (r: Results): unknown => r.env.kernel;
  if (kernel(base) !== undefined && kernel(now) !== undefined && kernel(base) !== kernel(now))
    return `this run's Postbox kernel was ${String(kernel(now))} and the baseline's ${String(kernel(base))}: the Postbox rows measured another setup, so no change is called a regression`;
  return null;
}

/**
 * Compares with a baseline by ratios to the raw ceiling measured in the same run, so a slower or
 * busier machine does not read as a regression; rows without a ceiling (memory) by value.
 * A regression is a figure that got worse by more than `tolerance` (0.2: a ratio fell by 20%),
 * in runs of the same workload (workloadDiffers).
 */
export function compare(base: Results, now: Results, tolerance = 0.2): Change[] {
  const out: Change[] = [];
  // Different workloads: the changes are shown, but none is called a regression.
  const judged = workloadDiffers(base, now) === null;
  for (const s of now.sections) {
    const b = base.sections.find((x) => x.id === s.id);
    if (b === undefined) continue;
    for (const row of s.rows) {
      const old = b.rows.find((x) => x.id === row.id);
      if (old === undefined || old.status !== 'ok') continue;
      const metric = s.ceiling !== undefined && row.id !== s.ceiling ? 'vs raw' : 'value';
      if (s.ceiling !== undefined && row.id === s.ceiling) continue;
      // Only Postbox's own rows are judged: the other systems are the yardstick, not the subject.
      const ours = row.system.startsWith('Postbox');
      if (row.status !== 'ok') {
        // A row the baseline measured and this run could not (it crashed, or ran out of time)
        // is the worst regression, not one to skip.
        out.push({
          section: s.id,
          row: row.id,
          system: row.system,
          metric,
          before:
            metric === 'vs raw' ? (old.vsCeiling ?? Number.NaN) : (old.stats.value?.median ?? Number.NaN),
          after: Number.NaN,
          change: 0,
          regression: judged && ours,
          failed: true,
          status: row.status,
        });
        continue;
      }
      const before = metric === 'vs raw' ? old.vsCeiling : old.stats.value?.median;
      const after = metric === 'vs raw' ? row.vsCeiling : row.stats.value?.median;
      if (before === undefined || after === undefined || !(before > 0) || !(after > 0)) {
        // Said, not skipped: a Postbox row left out of the table would read as compared and fine.
        const side = after === undefined || !(after > 0) ? 'this run' : 'the baseline';
        out.push({
          section: s.id,
          row: row.id,
          system: row.system,
          metric,
          before: before ?? Number.NaN,
          after: after ?? Number.NaN,
          change: Number.NaN,
          regression: false,
          failed: false,
          status: row.status,
          notCompared:
            metric === 'vs raw' ? `no ceiling in ${side} (its row failed)` : `no figure in ${side}`,
        });
        continue;
      }
      const change = s.better === 'higher' ? after / before : before / after;
      out.push({
        section: s.id,
        row: row.id,
        system: row.system,
        metric,
        before,
        after,
        change,
        regression: judged && ours && change < 1 - tolerance,
        failed: false,
        status: row.status,
      });
    }
  }
  return out;
}

export function comparisonTable(changes: Change[], sections: SectionResult[]): string {
  const lines = ['| workload | system | compared | baseline | now | change |', '|---|---|---|--:|--:|--:|'];
  for (const c of changes) {
    const s = sections.find((x) => x.id === c.section)!;
    const show = (n: number) => (c.metric === 'vs raw' ? ratio(n) : formatValue(n, s.columns[0]!.unit));
    if (c.failed) {
      lines.push(
        `| ${s.title} | ${c.system} | ${c.metric} | ${show(c.before)} | ${c.status} | ${c.regression ? `**${c.status}: regression**` : c.status} |`,
      );
      continue;
    }
    if (c.notCompared !== undefined) {
      lines.push(
        `| ${s.title} | ${c.system} | ${c.metric} | ${show(c.before)} | ${show(c.after)} | not compared: ${c.notCompared} |`,
      );
      continue;
    }
    const pct = `${c.change >= 1 ? '+' : ''}${((c.change - 1) * 100).toFixed(0)}%`;
    lines.push(
      `| ${s.title} | ${c.system} | ${c.metric} | ${show(c.before)} | ${show(c.after)} | ${c.regression ? `**${pct} regression**` : pct} |`,
    );
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- chart

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** Horizontal bars of median msg/s (whiskers min–max) for one section, written by hand. */
export function barChart(s: SectionResult, subtitle: string[]): string {
  const rows = s.rows
    .filter((r) => r.status === 'ok' && Number.isFinite(r.stats.value?.median ?? Number.NaN))
    .sort((a, b) => b.stats.value!.median - a.stats.value!.median);
  const missing = s.rows.filter((r) => !rows.includes(r));
  const labelW = 290;
  const chartW = 470;
  const barH = 22;
  const gap = 8;
  const top = 50 + subtitle.length * 18;
  const width = labelW + chartW + 110;
  const height = top + rows.length * (barH + gap) + 62 + missing.length * 16;
  const max = Math.max(...rows.map((r) => r.stats.value!.max), 1);
  // A round scale: 1, 2 or 5 times a power of ten per grid step.
  const rawStep = max / 5;
  const pow = 10 ** Math.floor(Math.log10(rawStep));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((x) => x >= rawStep)!;
  const scaleMax = Math.ceil(max / step) * step;
  const x = (v: number): number => labelW + (v / scaleMax) * chartW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="16" font-weight="600" fill="#111">${esc(s.title)}: messages per second (median; whiskers min–max)</text>`,
    ...subtitle.map((line, i) => `<text x="16" y="${46 + i * 18}" fill="#555">${esc(line)}</text>`),
  );
  for (let v = 0; v <= scaleMax + 1e-9; v += step) {
    const gx = x(v);
    out.push(
      `<line x1="${gx.toFixed(1)}" y1="${top - 6}" x2="${gx.toFixed(1)}" y2="${top + rows.length * (barH + gap)}" stroke="#e5e5e5"/>`,
      `<text x="${gx.toFixed(1)}" y="${top + rows.length * (barH + gap) + 16}" text-anchor="middle" fill="#666" font-size="11">${esc(shortNumber(v))}</text>`,
    );
  }
  rows.forEach((r, i) => {
    const y = top + i * (barH + gap);
    const st = r.stats.value!;
    const isCeiling = r.id === s.ceiling;
    const isPostbox = r.system.startsWith('Postbox');
    const fill = isCeiling ? '#9e9e9e' : isPostbox ? '#1f6feb' : '#f0883e';
    out.push(
      `<text x="${labelW - 10}" y="${y + barH / 2 + 4}" text-anchor="end" fill="#222"${isPostbox ? ' font-weight="600"' : ''}>${esc(r.system)}</text>`,
      `<rect x="${labelW}" y="${y}" width="${Math.max(1, x(st.median) - labelW).toFixed(1)}" height="${barH}" fill="${fill}" rx="2"/>`,
      `<line x1="${x(st.min).toFixed(1)}" y1="${y + barH / 2}" x2="${x(st.max).toFixed(1)}" y2="${y + barH / 2}" stroke="#333" stroke-width="1.2"/>`,
      `<line x1="${x(st.min).toFixed(1)}" y1="${y + 6}" x2="${x(st.min).toFixed(1)}" y2="${y + barH - 6}" stroke="#333"/>`,
      `<line x1="${x(st.max).toFixed(1)}" y1="${y + 6}" x2="${x(st.max).toFixed(1)}" y2="${y + barH - 6}" stroke="#333"/>`,
      `<text x="${(Math.max(x(st.median), x(st.max)) + 8).toFixed(1)}" y="${y + barH / 2 + 4}" fill="#222">${esc(int(st.median))}${isCeiling ? '' : ` (${ratio(r.vsCeiling)})`}</text>`,
    );
  });
  let y = top + rows.length * (barH + gap) + 40;
  const legend: [string, string][] = [
    ['#9e9e9e', 'raw Unix socket between two Node processes (the ceiling ratios refer to)'],
    ['#1f6feb', 'Postbox'],
    ['#f0883e', 'peers'],
  ];
  let lx = 16;
  for (const [color, text] of legend) {
    out.push(
      `<rect x="${lx}" y="${y - 10}" width="12" height="12" fill="${color}" rx="2"/>`,
      `<text x="${lx + 18}" y="${y}" fill="#444" font-size="12">${esc(text)}</text>`,
    );
    lx += 18 + text.length * 6.4 + 18;
  }
  y += 22;
  for (const r of missing) {
    out.push(
      `<text x="16" y="${y}" fill="#a00" font-size="12">${esc(`${r.system}: ${r.note ?? r.status}`.slice(0, 140))}</text>`,
    );
    y += 16;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function shortNumber(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return String(v);
}

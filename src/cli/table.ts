/** Aligned columns for people; scripts use --json. */

import { cutToWidth, displayWidth } from './display-width.js';

export interface Column {
  header: string;
  /** Numbers read best right-aligned. */
  align?: 'left' | 'right';
}

/** Formats rows under headers, columns separated by two spaces; the last column is not padded. */
export function formatTable(columns: Column[], rows: string[][]): string {
  // Each cell measured once, and no spread of a column into Math.max: `ls` of 150,000 mailboxes
  // overflowed the stack with one argument per row.
  const header = columns.map((c) => c.header);
  const cellWidths = rows.map((r) => r.map(width));
  const widths = header.map(width);
  for (const ws of cellWidths) widen(widths, ws);
  const lines = [tableLine(columns, widths, header, header.map(width))];
  for (let r = 0; r < rows.length; r++) lines.push(tableLine(columns, widths, rows[r]!, cellWidths[r]!));
  return `${lines.join('\n')}\n`;
}

/** How many rows a {@link TableStream} holds to align them all; past it, it writes as rows come. */
export const ROWS_ALIGNED = 10_000;

/**
 * A table written as its rows come, for listings too long to hold: `ls` of a million mailboxes
 * held 925 MB of cells to align them, and printed nothing until it had them all. The first
 * {@link ROWS_ALIGNED} rows are held and aligned as {@link formatTable} aligns them; past them,
 * each page is written at once with the widths so far, and a cell wider than its column widens
 * it from that row on (ids grow a digit at 100,000 and 1,000,000: two steps in a million rows).
 *
 * @example
 * ```ts
 * const table = new TableStream([{ header: 'NAME' }, { header: 'N', align: 'right' }], writeOut);
 * for await (const page of pages) if (!(await table.add(page.map((m) => [m.name, String(m.n)])))) break;
 * await table.end();
 * ```
 */
export class TableStream {
  readonly #columns: readonly Column[];
  readonly #write: (text: string) => Promise<boolean>;
  readonly #hold: number;
  readonly #widths: number[];
  #held: { cells: string[]; widths: number[] }[] | null = [];

  /**
   * @param write - writes text out; false once nobody reads it (the table stops there).
   * @param hold - rows held to align them all before the first is written.
   */
  constructor(columns: readonly Column[], write: (text: string) => Promise<boolean>, hold = ROWS_ALIGNED) {
    this.#columns = columns;
    this.#write = write;
    this.#hold = hold;
    this.#widths = columns.map((c) => width(c.header));
  }

  /** Adds rows of cells, one per column. Resolves false once the output is gone: stop fetching. */
  add(rows: readonly string[][]): Promise<boolean> {
    const held = this.#held;
    if (held !== null) {
      for (const cells of rows) {
        const ws = cells.map(width);
        widen(this.#widths, ws);
        held.push({ cells, widths: ws });
      }
      return held.length <= this.#hold ? Promise.resolve(true) : this.#writeHeld();
    }
    let text = '';
    for (const cells of rows) {
      const ws = cells.map(width);
      widen(this.#widths, ws);
      text += `${tableLine(this.#columns, this.#widths, cells, ws)}\n`;
    }
    return text === '' ? Promise.resolve(true) : this.#write(text);
  }

  /** Writes what is held (the whole table, if it was short). Resolves false if the output is gone. */
  end(): Promise<boolean> {
    return this.#held === null ? Promise.resolve(true) : this.#writeHeld();
  }

  #writeHeld(): Promise<boolean> {
    const held = this.#held ?? [];
    this.#held = null;
    const header = this.#columns.map((c) => c.header);
    const lines = [tableLine(this.#columns, this.#widths, header, header.map(width))];
    for (const row of held) lines.push(tableLine(this.#columns, this.#widths, row.cells, row.widths));
    return this.#write(`${lines.join('\n')}\n`);
  }
}

/** Raises each of `widths` to the cell's width beside it. */
function widen(widths: number[], cellWidths: readonly number[]): void {
  for (let i = 0; i < widths.length; i++) if ((cellWidths[i] ?? 0) > widths[i]!) widths[i] = cellWidths[i]!;
}

/** One line of a table: cells padded to the column widths, two spaces apart, no trailing blanks. */
function tableLine(
  columns: readonly Column[],
  widths: readonly number[],
  cells: readonly string[],
  cellWidths: readonly number[],
): string {
  return cells
    .map((cell, i) => {
      const last = i === cells.length - 1;
      const pad = ' '.repeat(widths[i]! - cellWidths[i]!);
      if (columns[i]?.align === 'right') return pad + cell;
      return last ? cell : cell + pad;
    })
    .join('  ')
    .trimEnd();
}

/** The widest a name is shown in a table (`ls`, `watch`): one long name must not widen every row. */
export const NAME_WIDTH = 40;

/** `text` in at most `max` terminal columns: a longer one is cut and ends with "…". */
export function cut(text: string, max: number): string {
  return cutToWidth(text, max);
}

/** How many names a cell lists (`ps`'s and `watch`'s OWNS) before it counts the rest. */
export const NAMES_SHOWN = 3;

/**
 * A cell of names, each cut to {@link NAME_WIDTH}: the first {@link NAMES_SHOWN}, then how many
 * more. A process owning 60,000 mailboxes made one `ps` line of every name, over 400 KB.
 *
 * @example
 * ```ts
 * namesCell(['a', 'b', 'c', 'd', 'e']); // 'a,b,c +2 more'
 * namesCell(['a', 'b', 'c', 'd'], 500); // 'a,b,c +497 more'
 * ```
 */
export function namesCell(names: readonly string[], total = names.length): string {
  if (names.length === 0) return '-';
  const shown = names
    .slice(0, NAMES_SHOWN)
    .map((n) => cut(n, NAME_WIDTH))
    .join(',');
  const all = Math.max(total, names.length);
  return all <= NAMES_SHOWN ? shown : `${shown} +${all - Math.min(NAMES_SHOWN, names.length)} more`;
}

/** Columns on a terminal: names may hold CJK, emoji and combining marks. */
const width = displayWidth;

/** `key  value` lines with the keys aligned, for stat-like output. */
export function formatFields(fields: [string, string][], indent = '  '): string {
  const w = fields.reduce((most, [k]) => Math.max(most, width(k)), 0);
  return fields.map(([k, v]) => `${indent}${k}${' '.repeat(w - width(k))}  ${v}\n`).join('');
}

/** A depth bar like `[#####.....]` of `size` cells for fraction in [0, 1]. */
export function bar(fraction: number, size: number): string {
  const f = Number.isFinite(fraction) ? Math.min(Math.max(fraction, 0), 1) : 0;
  const full = f > 0 ? Math.max(1, Math.round(f * size)) : 0;
  return `[${'#'.repeat(full)}${'.'.repeat(size - full)}]`;
}

/** A kernel time (ms since the epoch) as local `YYYY-MM-DD HH:MM:SS`, with how long ago; 0 is never. */
export function formatTime(ms: number, now = Date.now()): string {
  if (ms === 0) return 'never';
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  const when = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return `${when} (${ago(now - ms)})`;
}

function ago(ms: number): string {
  if (ms < 1000) return 'just now';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A mode as four octal digits, like ipcs: `0662`. */
export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}

/** A System V key as ipcs prints it: `0x0000abcd`. */
export function formatKey(key: number): string {
  return `0x${(key >>> 0).toString(16).padStart(8, '0')}`;
}

/** A whole number with thousands separators: 1,048,576. */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * How many terminal columns text takes, so that tables of names line up: a CJK character or an
 * emoji takes two, a combining accent none, and what a terminal draws as one character (a
 * grapheme: `é` written as e and U+0301, a family emoji joined by ZWJs, a flag) is measured and
 * cut as one. Counting code points put every name with such characters out of line.
 */

const graphemes = new Intl.Segmenter('en', { granularity: 'grapheme' });

// East Asian Wide and Fullwidth (Unicode's EastAsianWidth.txt) that are not emoji: Hangul Jamo,
// CJK radicals to Yi, Hangul syllables, compatibility ideographs, vertical and fullwidth forms,
// Kana supplements, and the ideographic planes.
const WIDE =
  /[\u{1100}-\u{115F}\u{2E80}-\u{303E}\u{3041}-\u{33FF}\u{3400}-\u{4DBF}\u{4E00}-\u{9FFF}\u{A000}-\u{A4CF}\u{A960}-\u{A97F}\u{AC00}-\u{D7A3}\u{F900}-\u{FAFF}\u{FE10}-\u{FE19}\u{FE30}-\u{FE6F}\u{FF00}-\u{FF60}\u{FFE0}-\u{FFE6}\u{16FE0}-\u{16FE4}\u{17000}-\u{18AFF}\u{1B000}-\u{1B2FF}\u{20000}-\u{2FFFD}\u{30000}-\u{3FFFD}]|\p{Emoji_Presentation}|\p{Extended_Pictographic}\u{FE0F}/u;
// Marks that draw on the character before them, and format characters that draw nothing.
const ZERO = /^[\p{Mn}\p{Me}\p{Cf}\u{1160}-\u{11FF}]+$/u;
// Text whose every character is its own grapheme one column wide (printable ASCII, Latin-1 but
// the soft hyphen, Latin Extended, IPA, modifier letters, and the "…" tables cut with): measured
// by its length. Segmenting graphemes costs microseconds a name, and `ls` of 30,000 long names
// spent 11 of its 13 s there.
const NARROW = /^[\x20-\x7e\u00a0-\u00ac\u00ae-\u02ff\u2026]*$/;

/** Columns one grapheme takes: 2 if wide, 0 if it draws nothing of its own, else 1. */
function graphemeWidth(g: string): number {
  if (WIDE.test(g)) return 2;
  return ZERO.test(g) ? 0 : 1;
}

/**
 * Columns `text` takes on a terminal.
 *
 * @example
 * ```ts
 * displayWidth('jobs'); // 4
 * displayWidth('名前'); // 4
 * ```
 */
export function displayWidth(text: string): number {
  if (NARROW.test(text)) return text.length;
  let n = 0;
  for (const { segment } of graphemes.segment(text)) n += graphemeWidth(segment);
  return n;
}

/**
 * `text` in at most `max` columns: a longer one is cut between graphemes and ends with "…".
 *
 * @example
 * ```ts
 * cutToWidth('名前名前', 5); // '名前…'
 * ```
 */
export function cutToWidth(text: string, max: number): string {
  if (NARROW.test(text)) return text.length <= max ? text : `${text.slice(0, Math.max(max - 1, 0))}…`;
  // One pass that stops past max: a long name is not segmented to its end, nor twice.
  let used = 0;
  let fits = 0; // where the graphemes that fit in max - 1 columns end
  for (const { segment, index } of graphemes.segment(text)) {
    used += graphemeWidth(segment);
    if (used > max) return `${text.slice(0, fits)}…`;
    if (used <= max - 1) fits = index + segment.length;
  }
  return text;
}

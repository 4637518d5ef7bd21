import { StringDecoder } from 'node:string_decoder';

/**
 * A line of input, or a piece of one: `end` is false for a piece cut from a line longer than
 * the reader's bound (more of the same line follows).
 */
export interface LinePiece {
  text: string;
  end: boolean;
}

/**
 * Standard input as lines, for `send` and `fifo write`: decoded as UTF-8 (bytes that are not
 * UTF-8 become U+FFFD), split at `\n`, a `\r` before it dropped, a last line without a newline
 * given too. It holds at most `max` characters of a line: a longer one comes in pieces of `max`
 * with `end` false. node:readline held a line until its newline, however long: input without
 * one (`head -c 1G /dev/zero | postbox send q`) grew the command to gigabytes, then crashed it
 * with a stack trace (V8's string limit), where a line over the message size limit can be
 * refused as soon as that much has been read.
 *
 * The lines come in batches, those of each chunk of input together: one at a time cost an
 * await per line, half again readline's time for many short lines.
 *
 * A lone `\r` is part of its line, as for any Unix tool (readline took it for a line end). The
 * iteration stops quietly when `stopped()` is true after `input` failed: the command destroyed
 * its input because it was interrupted.
 */
export async function* inputLines(
  input: AsyncIterable<Buffer | string>,
  max: number,
  stopped: () => boolean,
): AsyncGenerator<LinePiece[]> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  try {
    for await (const chunk of input) {
      pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      const batch: LinePiece[] = [];
      let start = 0;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n', start)) {
        const end = nl > start && pending.charCodeAt(nl - 1) === 0x0d ? nl - 1 : nl;
        batch.push({ text: pending.slice(start, end), end: true });
        start = nl + 1;
      }
      pending = pending.slice(start);
      while (pending.length > max) {
        const cut = pieceEnd(pending, max);
        batch.push({ text: pending.slice(0, cut), end: false });
        pending = pending.slice(cut);
      }
      if (batch.length > 0) yield batch;
    }
  } catch (err) {
    if (stopped()) return;
    throw err;
  }
  pending += decoder.end();
  if (pending !== '') yield [{ text: pending, end: true }];
}

/**
 * Where to cut a piece of at most `max` characters: not inside a surrogate pair, and not between
 * a `\r` and the `\n` that may follow it (the pair is one line end).
 */
function pieceEnd(s: string, max: number): number {
  let cut = max;
  const last = s.charCodeAt(cut - 1);
  if (cut > 1 && (last === 0x0d || (last >= 0xd800 && last <= 0xdbff))) cut--;
  return cut;
}

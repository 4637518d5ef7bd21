import { MAX_PRIORITY } from './limits.js';

/** 32-bit words of the bit map: one bit per priority 0..MAX_PRIORITY. */
const WORDS = (MAX_PRIORITY + 1) / 32;

/**
 * The priorities a priority mailbox has messages of, as a bit map with a summary (a bit per word
 * of the map), so that the highest, and the next below one, are found in at most 33 looks
 * whatever the number of priorities queued: a sorted array of them cost a send of a new
 * priority, and a receive of the last message of one, a move of every priority below it (with
 * 32,000 of them, 250 KB moved each time).
 *
 * @example
 * ```ts
 * const set = new PrioritySet();
 * set.add(3);
 * set.add(31000);
 * set.highest(); // 31000
 * set.below(31000); // 3
 * set.below(3); // -1
 * ```
 */
export class PrioritySet {
  private readonly words = new Uint32Array(WORDS);
  /** Bit w of summary word s: words[s × 32 + w] is not 0. */
  private readonly summary = new Uint32Array(WORDS / 32);

  add(priority: number): void {
    const w = priority >>> 5;
    this.words[w]! |= 1 << (priority & 31);
    this.summary[w >>> 5]! |= 1 << (w & 31);
  }

  delete(priority: number): void {
    const w = priority >>> 5;
    this.words[w]! &= ~(1 << (priority & 31));
    if (this.words[w] === 0) this.summary[w >>> 5]! &= ~(1 << (w & 31));
  }

  /** The highest priority in the set, or -1. */
  highest(): number {
    return this.atMost(MAX_PRIORITY);
  }

  /** The highest priority in the set below `priority`, or -1. */
  below(priority: number): number {
    return priority <= 0 ? -1 : this.atMost(priority - 1);
  }

  private atMost(priority: number): number {
    let w = priority >>> 5;
    const inWord = this.words[w]! & upTo(priority & 31);
    if (inWord !== 0) return (w << 5) + top(inWord);
    if (w === 0) return -1;
    // The highest word below w that is not 0, by the summary.
    w--;
    let s = w >>> 5;
    let bits = this.summary[s]! & upTo(w & 31);
    while (bits === 0) {
      if (s === 0) return -1;
      bits = this.summary[--s]!;
    }
    w = (s << 5) + top(bits);
    return (w << 5) + top(this.words[w]!);
  }
}

/** Bits 0..bit set. */
function upTo(bit: number): number {
  return bit === 31 ? 0xffffffff : (1 << (bit + 1)) - 1;
}

/** The highest bit set of a word that is not 0. */
function top(bits: number): number {
  return 31 - Math.clz32(bits);
}

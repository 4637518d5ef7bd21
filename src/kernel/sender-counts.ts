/**
 * How many of each sender's messages a mailbox has in receivers' hands, delivered (pushed ahead,
 * or answering a receive) and not yet taken, that would go back to its queue if given back: those
 * without a receipt (a receipt's message from a sender that has gone is dropped when it comes
 * back). A receive naming a sender that has terminated waits while any is left, since one given
 * back may still be its; without them, nothing of that sender's can come, and it fails (ESRCH).
 *
 * @example
 * ```ts
 * const counts = new SenderCounts();
 * counts.add(7, 3); // three of process 7's messages pushed to an iterator
 * counts.remove(7, 3); // taken (or given back to the queue)
 * counts.of(7); // 0
 * ```
 */
export class SenderCounts {
  // Only senders with messages out: an entry goes at zero, so ids that come and go (process ids
  // are never reused) leave nothing behind. Made with the first message out: every mailbox has
  // one of these, and an empty map costs about 180 bytes.
  private counts: Map<number, number> | null = null;

  /** n more of `sender`'s messages are in a receiver's hands. */
  add(sender: number, n: number): void {
    this.counts ??= new Map();
    const counts = this.counts;
    counts.set(sender, (counts.get(sender) ?? 0) + n);
  }

  /** n of `sender`'s messages left a receiver's hands (taken, or given back). */
  remove(sender: number, n: number): void {
    const counts = this.counts;
    if (counts === null) return;
    const left = (counts.get(sender) ?? 0) - n;
    if (left > 0) counts.set(sender, left);
    else counts.delete(sender);
  }

  /** How many of `sender`'s messages are in receivers' hands. */
  of(sender: number): number {
    return this.counts?.get(sender) ?? 0;
  }
}

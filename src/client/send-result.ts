/**
 * How a send ended. With `outcome: 'received'` the result names the process that took the
 * message; the other outcomes say it is in the mailbox or was dropped.
 *
 * @example
 * ```ts
 * const r = await box.send('job', { receipt: true });
 * if (r.outcome === 'received') console.log('taken by process', r.receiver); // a number
 * ```
 */
export type SendResult =
  | {
      /** A receiver took it (with `receipt`, or at capacity 0). */
      outcome: 'received';
      /** The process that took it. */
      receiver: number;
      /** Its sequence number in the mailbox, when known. */
      seq?: number;
    }
  | {
      /**
       * `queued`: the message is in the mailbox. `replaced`: it is queued and the oldest queued
       * message was dropped to make room. `dropped`: the mailbox was full and this message was
       * dropped (onFull 'drop').
       */
      outcome: 'queued' | 'replaced' | 'dropped';
      /** Only a `received` message has a receiver. */
      receiver?: undefined;
      /** Its sequence number in the mailbox, when known. */
      seq?: number;
    };

/** What `sendMany` resolves with: no message failed. */
export interface SendManyResult {
  /** Messages now in the mailbox: all of them, less those `dropped`. */
  sent: number;
  /** Messages dropped because the mailbox was full (onFull 'drop'), when any were. */
  dropped?: number;
  /** Messages that went in by pushing the oldest out (onFull 'replace-oldest'), when any did. */
  replaced?: number;
}

/** The kernel's WELCOME. */
export interface Welcome {
  process: { id: number; name: string | null };
  inbox: number;
  /** `time`: the kernel's clock when it answered (ms since the epoch); absent from older kernels. */
  /** `instance`: this run of the kernel (an older kernel sends none). */
  kernel: { pid: number; instance?: string; version: string; time?: number };
  limits: AnnouncedLimits;
}

/**
 * The kernel's limits as it announced them to this process: every `postbox kernel` limit by its
 * name (docs/api.md, "Kernel limits"); a client relies only on the three named here, since a kernel
 * of another version may announce others.
 *
 * @example
 * ```ts
 * import { type AnnouncedLimits, connect } from 'postbox';
 * const me = await connect();
 * const limits: AnnouncedLimits = me.limits;
 * console.log(`messages up to ${limits.maxMessageSize} bytes; total ${limits.maxTotalBytes ?? '?'}`);
 * ```
 */
export interface AnnouncedLimits {
  /** Largest message body plus user headers, bytes (`--max-message-size`). */
  maxMessageSize: number;
  /** Largest credit a prefetching receiver may hold: the most pushed ahead to one iterator. */
  maxCredit: number;
  /** Heartbeat interval over TCP, ms (`--heartbeat-ms`). */
  heartbeatMs: number;
  [limit: string]: number;
}

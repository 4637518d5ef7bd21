import { MAX_HEARTBEAT_MS, MAX_MESSAGE_SIZE_LIMIT } from '../protocol/frame.js';

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

/**
 * The limits a client sizes itself by (frames, prefetching, heartbeats), each with the most any
 * kernel can be started with (kernelLimits and `postbox kernel` refuse more). The frames it reads
 * are sized by the kernel's message size, so a WELCOME past it would have this end take frames of
 * any size the length field can say; a heartbeat past Node's longest timer would beat every
 * millisecond.
 */
const USED_LIMITS = [
  ['maxMessageSize', MAX_MESSAGE_SIZE_LIMIT],
  ['maxCredit', Number.MAX_SAFE_INTEGER],
  ['heartbeatMs', MAX_HEARTBEAT_MS],
] as const;

/**
 * Why a WELCOME cannot be a Postbox kernel's, or null if it can be. The client reads these
 * members as numbers: taken on trust, one of another type failed later, far from here, as a
 * TypeError of the application's call (`connect()` itself, or a mailbox opened later), and a
 * `heartbeatMs` that is no number set a heartbeat every millisecond.
 */
export function badWelcome(w: unknown): string | null {
  if (typeof w !== 'object' || w === null || Array.isArray(w)) return 'its WELCOME is not a JSON object';
  const { process, inbox, kernel, limits } = w as Record<string, unknown>;
  const id = (process as { id?: unknown } | null)?.id;
  if (!isWholeNumber(id)) return `its WELCOME's process.id is ${JSON.stringify(id) ?? 'absent'}, not an id`;
  const name = (process as { name?: unknown }).name;
  if (name !== null && typeof name !== 'string')
    return `its WELCOME's process.name is ${JSON.stringify(name) ?? 'absent'}, not a name or null`;
  if (!isWholeNumber(inbox)) return `its WELCOME's inbox is ${JSON.stringify(inbox) ?? 'absent'}, not an id`;
  if (typeof kernel !== 'object' || kernel === null) return "its WELCOME's kernel is not an object";
  // A pipe handed to a child names its kernel by these (spawn, pipeFromEnv).
  const { pid, instance } = kernel as { pid?: unknown; instance?: unknown };
  if (!isWholeNumber(pid)) return `its WELCOME's kernel.pid is ${JSON.stringify(pid) ?? 'absent'}, not a pid`;
  if (instance !== undefined && typeof instance !== 'string')
    return `its WELCOME's kernel.instance is ${JSON.stringify(instance)}, not a string`;
  if (typeof limits !== 'object' || limits === null) return "its WELCOME's limits are not an object";
  for (const [limit, most] of USED_LIMITS) {
    const v = (limits as Record<string, unknown>)[limit];
    if (!isWholeNumber(v))
      return `its WELCOME's limits.${limit} is ${JSON.stringify(v) ?? 'absent'}, not a positive whole number`;
    if (v > most)
      return `its WELCOME's limits.${limit} is ${v}, more than any kernel can be started with (at most ${most})`;
  }
  return null;
}

function isWholeNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

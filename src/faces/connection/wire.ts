/**
 * What a connection puts in its mailboxes besides the application's data: message types at the
 * top of the type range, reserved for the handshake and the end of a connection, and the shape
 * of their bodies. docs/connections.md describes the exchange.
 */
import type { DownEvent } from '../../client/process.js';

/** Version of the handshake; a SYN or SYNACK of another version is refused. */
export const VERSION = 1;

/** Message types from here up belong to connections; applications use 1 … RESERVED_TYPE − 1. */
export const RESERVED_TYPE = 0x7fff_ff00;
/** Dialer → port: "connect me"; body {@link Syn}. */
export const T_SYN = RESERVED_TYPE + 1;
/** Acceptor → dialer's mailbox: "accepted"; body {@link SynAck}. */
export const T_SYNACK = RESERVED_TYPE + 2;
/** Acceptor → dialer's mailbox: "refused"; body {@link Refuse}. */
export const T_REFUSE = RESERVED_TYPE + 3;
/** End of data in this direction (the sender ended or closed); empty body. */
export const T_FIN = RESERVED_TYPE + 4;
/**
 * The connection is broken. From the peer: it destroyed its side with an error (body
 * {@link Reset}). From this process to itself: the peer terminated (body {@link Reset} with
 * `down`), queued behind everything the peer managed to send.
 */
export const T_RST = RESERVED_TYPE + 5;

/** How a connection carries data. */
export type ConnectionStyle = 'stream' | 'datagram';

export interface Syn {
  v: number;
  /** The dialer's inbound mailbox. */
  mailbox: number;
  style: ConnectionStyle;
}

export interface SynAck {
  v: number;
  /** The acceptor's inbound mailbox. */
  mailbox: number;
}

export interface Refuse {
  reason: string;
}

export interface Reset {
  reason?: string;
  down?: DownEvent;
}

/** The prefix of a port's mailbox name: `listen(proc, 'echo')` creates mailbox `port:echo`. */
export const PORT_PREFIX = 'port:';

/** Longest port name: mailbox names are at most 255 bytes. */
export const MAX_PORT_NAME = 255 - PORT_PREFIX.length;

export function isSyn(v: unknown): v is Syn {
  const o = v as Syn;
  return (
    typeof o === 'object' &&
    o !== null &&
    Number.isSafeInteger(o.mailbox) &&
    o.mailbox > 0 &&
    (o.style === 'stream' || o.style === 'datagram') &&
    typeof o.v === 'number'
  );
}

export function isSynAck(v: unknown): v is SynAck {
  const o = v as SynAck;
  return (
    typeof o === 'object' && o !== null && Number.isSafeInteger(o.mailbox) && o.mailbox > 0 && o.v === VERSION
  );
}

/** "process 7 ('echo')" or "process 7". */
export function processLabel(id: number, name: string | null): string {
  return name === null ? `process ${id}` : `process ${id} ('${name}')`;
}

/** What a termination reason means, for an error message. */
export function downText({ reason, kernelFault }: Pick<DownEvent, 'reason' | 'kernelFault'>): string {
  if (kernelFault === true) return "was ended by a fault in the kernel (the kernel's bug, not its own)";
  switch (reason) {
    case 'exit':
      return 'exited without closing the connection';
    case 'crash':
      return 'terminated abnormally (crashed, was killed, or lost its link to the kernel)';
    case 'timeout':
      return 'went silent and was dropped by the kernel (heartbeat timeout)';
    case 'shutdown':
      return 'was ended by the kernel shutting down';
    case 'protocol':
      return 'was disconnected for breaking the protocol';
    default:
      return 'is gone';
  }
}

/** A promise and its settlers (Promise.withResolvers is newer than Node 20). */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Aborts when any of the signals does (AbortSignal.any is newer than some Node 20s). */
export function anySignal(signals: (AbortSignal | undefined)[]): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const cleanups: (() => void)[] = [];
  for (const s of signals) {
    if (s === undefined) continue;
    if (s.aborted) {
      ac.abort(s.reason);
      break;
    }
    const onAbort = (): void => ac.abort(s.reason);
    s.addEventListener('abort', onAbort, { once: true });
    cleanups.push(() => s.removeEventListener('abort', onAbort));
  }
  return {
    signal: ac.signal,
    dispose() {
      for (const c of cleanups) c();
    },
  };
}

import { readdirSync, readFileSync } from 'node:fs';
import type { Transport } from './process.js';

/**
 * Descriptors kept back from connections: for the socket of a connection refused (it is accepted
 * to be told why), for what libuv keeps in reserve to shed connections when none are left, and
 * for what Node opens later (a listener, a DNS lookup, a worker's pipes).
 */
const DESCRIPTOR_SPARE = 16;

/**
 * TCP connections that have not said HELLO, at most, however many descriptors there are: each is
 * a stranger holding a socket and about 12 KiB of the kernel's memory for up to its HELLO
 * deadline, and together they may use at most half of the connections the descriptors allow, so
 * that strangers cannot take the room of processes that hold the token or connect over the Unix
 * socket.
 */
export const MAX_TCP_UNJOINED = 1024;

/**
 * Whether a new connection, or a HELLO, may come in, given the file descriptors the kernel may
 * open (`ulimit -n`): past them libuv accepts and closes each new connection without a word, so
 * the peer saw only that its connection was lost, the kernel's log said nothing, and `postbox ps`
 * could not connect to see why. Here the kernel stops short of that and says so: a connection
 * past the room is accepted on a spare descriptor and told (ENOMEM), and processes stop a few
 * short of the room, kept for operators (`postbox ps`, `ls`, …) as the process limit keeps them.
 */
export class ConnectionGate {
  /** The soft limit of open files, or null where it cannot be read (not Linux). */
  readonly openFiles: number | null;
  /** Connections the descriptors allow at once (open when the kernel started, spare, kept back). */
  readonly room: number;
  /** TCP connections before HELLO allowed at once. */
  readonly tcpUnjoinedRoom: number;
  private refusing = false;

  /**
   * @param log where the kernel says it accepts connections again after refusing them
   * @param operatorReserve processes kept for operators within the room
   *
   * @example
   * ```ts
   * const gate = new ConnectionGate(console.error, 4);
   * gate.refuseConnection(open, tcpUnjoined, 'tcp'); // null, or why not
   * ```
   */
  constructor(
    private readonly log: (line: string) => void,
    private readonly operatorReserve: number,
  ) {
    this.openFiles = openFilesLimit();
    const open = openDescriptors();
    this.room =
      this.openFiles === null || open === null
        ? Number.POSITIVE_INFINITY
        : Math.max(1, this.openFiles - open - DESCRIPTOR_SPARE);
    this.tcpUnjoinedRoom = Math.max(1, Math.min(MAX_TCP_UNJOINED, Math.floor(this.room / 2)));
  }

  /**
   * Why a connection just accepted must be refused, or null: `open` connections (sockets the
   * kernel holds, those it is closing included) besides it, `tcpUnjoined` TCP ones before HELLO.
   */
  refuseConnection(open: number, tcpUnjoined: number, transport: Transport): string | null {
    if (open >= this.room) {
      this.refusing = true;
      return `the kernel is out of file descriptors: ${open} connections use what its limit of ${this.openFiles} open files leaves (ulimit -n); raise the limit (ulimit -n, or LimitNOFILE= under systemd) or end some processes`;
    }
    if (transport === 'tcp' && tcpUnjoined >= this.tcpUnjoinedRoom)
      return `${tcpUnjoined} TCP connections have not said HELLO yet, the kernel's bound; try again in a moment`;
    return null;
  }

  /** Why a HELLO must be refused for want of descriptors, or null: `processes` joined already. */
  refuseProcess(processes: number, operator: boolean): string | null {
    if (processes < this.room - this.operatorReserve + (operator ? this.operatorReserve : 0)) return null;
    this.refusing = true;
    return `the kernel is out of file descriptors for more processes: its limit of ${this.openFiles} open files (ulimit -n) leaves room for ${this.room} connections, and ${processes} processes hold them; raise the limit (ulimit -n, or LimitNOFILE= under systemd) or end some processes`;
  }

  /** A connection closed: once there is room again after refusals, the log says so, once. */
  closed(open: number, processes: number): void {
    if (!this.refusing || open >= this.room || processes >= this.room - this.operatorReserve) return;
    this.refusing = false;
    this.log(`file descriptors are free again (${open} connections open): accepting new ones`);
  }
}

/** The soft RLIMIT_NOFILE, from /proc (Node has no getrlimit); null where there is none to read. */
function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

function openDescriptors(): number | null {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

import type { Socket } from 'node:net';
import { FrameDecoder } from '../protocol/decoder.js';
import { FrameWriter } from '../transport/frame-writer.js';
import type { RoomHolder } from './frame-room.js';
import type { Mailbox, Peer } from './mailbox.js';
import type { Selection } from './message-store.js';
import type { ReceiveWaiter } from './receive-waiter.js';
import type { SendWaiter } from './send-waiter.js';

/** How a process reached the kernel. */
export type Transport = 'unix' | 'tcp';

/**
 * Why a process terminated, as monitors are told. 'fault' (the kernel ended it for a bug of its
 * own) is told as 'crash' with `kernelFault: true`, which clients that predate it let through.
 */
export type TerminationReason = 'exit' | 'crash' | 'timeout' | 'shutdown' | 'protocol' | 'fault';

/**
 * A connected process as the kernel sees it: its socket, its pending operations, what it owns.
 * Created on connect; it becomes a process (gets an id) when its HELLO is accepted.
 */
export class KernelProcess implements Peer, RoomHolder {
  id = 0;
  name: string | null = null;
  osPid = 0;
  host = '';
  readonly transport: Transport;
  readonly socket: Socket;
  readonly decoder: FrameDecoder;
  readonly writer: FrameWriter;
  inbox: Mailbox | null = null;
  readonly receives = new Map<number, ReceiveWaiter>();
  readonly sends = new Map<number, SendWaiter>();
  waitingBytes = 0;
  // The collections below are made when first needed, and dropped at the end: most processes
  // never hold, notify, wait for a reader, set a monitor or get a grant, and an empty Map or Set
  // costs about 180 bytes; eight of them were a quarter of an idle process's heap.
  /** Mailboxes it owns. */
  owned: Set<Mailbox> | null = null;
  /** Its open handles: handle id → mailbox and role. */
  readonly handles = new Map<number, { mailbox: Mailbox; read: boolean; write: boolean }>();
  /**
   * Its handles on each mailbox: their ids, and how many read and write (rights held by handle).
   * A mailbox's removal drops them (Mailbox.openers leads there), so a handle never keeps a
   * removed mailbox, its messages or its dead owner alive.
   */
  roles: Map<Mailbox, { read: number; write: number; ids: Set<number> }> | null = null;
  /** Mailboxes where it registered for mq_notify. */
  notifying: Set<Mailbox> | null = null;
  /** Mailboxes where it waits for a reader to open (awaitReader), with its waits' ids. */
  awaitingReader: Map<Mailbox, Set<number>> | null = null;
  /** How many waits `awaitingReader` holds in all: bounded by `maxPerProcess`, as monitors are. */
  readerWaitCount = 0;
  /** Mailboxes where it holds an exclusive or pair right. */
  holding: Set<Mailbox> | null = null;
  /** Mailboxes whose owner granted it rights (it is in their group): it leaves them at its end. */
  grantedOn: Set<Mailbox> | null = null;
  /** Who watches this process: monitor id → watcher. */
  watchers: Map<number, KernelProcess> | null = null;
  /** Monitors this process set on others: monitor id → watched. */
  watching: Map<number, KernelProcess> | null = null;
  /** The mailbox of its last SEND (consecutive sends usually share one). */
  lastMailbox: Mailbox | null = null;
  /** The mailbox this process last passed the send check on, and its rights' version then. */
  sendRight: Mailbox | null = null;
  /** Set by a plain send that completed at once: the mailbox a run of sends after it may go to. */
  runMailbox: Mailbox | null = null;
  sendRightAt = 0;
  congested = false;
  /** Ending: its held frames are being handled, and deliveries to it no longer hold them up. */
  ending = false;
  /** Room granted to its large frame in progress (FrameRoom), bytes. */
  room = 0;
  /** Room its large frame waits for, bytes: until granted, the kernel does not read it. */
  roomWanted = 0;
  roomSince = 0;
  /** Bytes of an incomplete frame it holds before its HELLO (counted kernel-wide). */
  helloBytes = 0;
  /** While congested: its socket's backlog at the last heartbeat check (progress is life). */
  backlogSeen = Number.POSITIVE_INFINITY;
  /** Said in its HELLO that it answers RECALL. */
  recalls = false;
  terminated = false;
  /** It said goodbye before closing: a clean exit. */
  saidBye = false;
  /** Highest request id of a send answered by the cumulative ACK, not yet acknowledged. */
  ackThrough = 0;
  ackPending = false;
  dirtyQueued = false;
  lastHeard = Date.now();
  helloTimer: NodeJS.Timeout | null = null;
  readonly connectedAt = Date.now();

  constructor(
    socket: Socket,
    transport: Transport,
    maxFrameBytes: number,
    onFrame: (p: KernelProcess, buf: Buffer, start: number, end: number, limit: number) => void,
    onDirty: (p: KernelProcess) => void,
  ) {
    this.socket = socket;
    this.transport = transport;
    this.decoder = new FrameDecoder(maxFrameBytes, (buf, start, end, limit) =>
      onFrame(this, buf, start, end, limit),
    );
    this.writer = new FrameWriter(socket, () => onDirty(this));
  }

  /** How error messages name it. */
  get label(): string {
    return this.name === null ? `process ${this.id}` : `process ${this.id} ('${this.name}')`;
  }

  /** Bytes the kernel has for it that it has not read: gathered, and in the socket's buffer. */
  get unread(): number {
    return this.writer.size + this.socket.writableLength;
  }

  /** What it is blocked on, for `postbox ps` and stat. */
  blockedOn(): string[] {
    // Each kind of wait once, with how many if more than one: a process pipelining thousands
    // of sends into a full mailbox is blocked on one thing, not thousands.
    const counts = new Map<string, number>();
    const add = (what: string): void => {
      counts.set(what, (counts.get(what) ?? 0) + 1);
    };
    // A stream waits only while it has credit and nothing pushed to it untaken: one with
    // messages in hand, or whose credit is held by its jobs in progress, is working, and
    // showing it as waiting would make a stuck worker look like an idle one.
    for (const w of this.receives.values())
      if (w.waiting && (!w.stream || (w.credit > 0 && w.inflight === 0)))
        add(`receive ${w.mailbox.label}${selectionWords(w.sel)}`);
    for (const sw of this.sends.values())
      add(`${sw.state === 'blocked' ? 'send' : 'receipt'} ${sw.mailbox.label}`);
    if (this.awaitingReader !== null) for (const mb of this.awaitingReader.keys()) add(`reader ${mb.label}`);
    // The kernel waits for it: it stopped reading this process until it reads its output.
    if (this.congested) add(`its reading (${this.unread} bytes sent, unread)`);
    // Not read until then: its frame's first bytes are in, the rest waits in its socket.
    if (this.roomWanted > 0) add(`room for a frame of ${this.roomWanted} bytes (--max-partial-bytes)`);
    return [...counts].map(([what, n]) => (n === 1 ? what : `${what} ×${n}`));
  }

  /**
   * What it holds of each mailbox, for `postbox ps`: messages pushed to its streams and not yet
   * taken, and those taken whose credit it has not given back (a `holdCredit` worker's jobs in
   * progress). A worker that stays stuck on a job shows here while it holds it.
   */
  holds(): string[] {
    const counts = new Map<Mailbox, { pushed: number; held: number }>();
    for (const w of this.receives.values()) {
      if (w.inflight === 0 && w.held === 0) continue;
      const c = counts.get(w.mailbox) ?? { pushed: 0, held: 0 };
      c.pushed += w.inflight;
      c.held += w.held;
      counts.set(w.mailbox, c);
    }
    return [...counts].map(([mb, c]) => {
      const parts: string[] = [];
      if (c.held > 0) parts.push(`${c.held} in hand`);
      if (c.pushed > 0) parts.push(`${c.pushed} pushed ahead`);
      return `${mb.label}: ${parts.join(', ')}`;
    });
  }
}

/**
 * What a waiting receive selects, as `postbox recv` says it: a process waiting for a message of
 * type 2 (msgrcv) or from one process (symmetric naming) is blocked on that, not on any message,
 * and one waiting beside a queue of other messages would look stuck without it.
 */
function selectionWords(sel: Selection): string {
  let words = '';
  if (sel.type !== 0)
    words += sel.except
      ? ` not of type ${sel.type}`
      : sel.type > 0
        ? ` of type ${sel.type}`
        : ` of type <= ${-sel.type}`;
  if (sel.from !== 0) words += ` from process ${sel.from}`;
  return words;
}

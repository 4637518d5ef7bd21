import {
  AbortedError,
  InvalidArgumentError,
  NoProcessError,
  type PostboxError,
  SendManyError,
} from '../protocol/errors.js';
import { AnnouncedEvent } from './call-events.js';
import { CONNECT_OPTIONS, type ConnectOptions } from './connect-options.js';
import { Connection } from './connection.js';
import { type ConsumeOptions, Consumer, type MessageHandler } from './consumer.js';
import {
  BATCH_OPTIONS,
  type BatchIterator,
  type BatchOptions,
  badIterateOptions,
  batchMax,
  busiestFirst,
  handlersInProgress,
  ITERATE_OPTIONS,
  type IterateOptions,
  Mailbox,
  type MailboxInfo,
  type MailboxStat,
  MessageBatches,
  type MessageIterator,
  MessageStream,
  mailboxBusyness,
  noMessages,
  readOneAtATime,
  receiveEach,
} from './mailbox.js';
import type { Message } from './message.js';
import { checkOptions, describeValue, type OptionNames } from './option-names.js';
import { badMailboxId, badProcessRef, badSignal } from './option-values.js';
import type { ReceiveOptions } from './receive-options.js';
import type { SendOptions } from './send-options.js';
import type { SendManyResult, SendResult } from './send-result.js';
import type { AnnouncedLimits } from './welcome.js';

/** A process: a name or an id. */
export type ProcessRef = string | number;

/** Attributes of a new mailbox. Unset ones take the kernel's defaults (docs/api.md). */
export interface MailboxOptions {
  /** Messages it holds: 0 (rendezvous), n, or 'unbounded' (default). */
  capacity?: number | 'unbounded' | undefined;
  /** Largest message body plus user headers, bytes. */
  maxMessageSize?: number | undefined;
  /**
   * Bytes it holds at most (System V msg_qbytes); past it, senders wait as for a full capacity.
   * Default: the kernel's `--max-mailbox-bytes` for a bounded mailbox; none of its own
   * (`'unbounded'`: only the kernel's total, ENOMEM) for an unbounded one, which never waits.
   */
  maxBytes?: number | 'unbounded' | undefined;
  /** Delivery order: 'fifo' (default) or 'priority' (highest first, fifo within). */
  order?: 'fifo' | 'priority' | undefined;
  /** How receivers share it: 'first' (default), 'round-robin', 'exclusive' or 'pair'. */
  policy?: 'first' | 'round-robin' | 'exclusive' | 'pair' | undefined;
  /** Three octal digits owner/group/others (4 receive, 2 send); default 0o662 (0o666 if system). */
  mode?: number | undefined;
  /** Lives until deleted instead of with this process. */
  system?: boolean | undefined;
  /**
   * Fixed message size in bytes (body plus headers): every message must be exactly this size,
   * and the kernel preallocates capacity × size for them (needs a bounded capacity).
   */
  messageSize?: number | undefined;
  /** End of stream when the last writer closes, EPIPE when the last reader has (pipes, FIFOs). */
  endOnLastWriter?: boolean | undefined;
  /** Removed when its last handle closes (anonymous pipes). */
  transient?: boolean | undefined;
  /** Sends fail with EPIPE while no handle has it open for reading (a service with no server). */
  requireReader?: boolean | undefined;
  /**
   * How blocked senders enter when room appears: 'in-order' (default; a newcomer waits behind
   * them; capacity 0 is a rendezvous) or 'fits' (System V: any whose message fits; capacity 0
   * holds nothing).
   */
  admission?: 'in-order' | 'fits' | undefined;
  /** Rights checked once when a handle opens, then held by the handle (POSIX queues). */
  rightsAtOpen?: boolean | undefined;
  /** System V key: the mailbox can be opened by it. */
  key?: number | undefined;
  /**
   * Have the kernel make a passkey for it (`mailbox.info.passkey`, told only to this process):
   * a process that opens it with `{ passkey }` joins its group, as if granted, without its
   * creator knowing that process's id first. It is how a pipe's end is handed to a child.
   */
  passkey?: boolean | undefined;
  /** How this handle uses it; counts for pipes and FIFOs. Default 'both'. */
  role?: 'read' | 'write' | 'both' | 'none' | undefined;
}

/** The names {@link MailboxOptions} has. */
export const MAILBOX_OPTIONS: OptionNames<MailboxOptions> = {
  capacity: true,
  maxMessageSize: true,
  maxBytes: true,
  order: true,
  policy: true,
  mode: true,
  system: true,
  messageSize: true,
  endOnLastWriter: true,
  transient: true,
  requireReader: true,
  admission: true,
  rightsAtOpen: true,
  key: true,
  passkey: true,
  role: true,
};

/**
 * Options of {@link PostboxProcess.openMailbox}.
 *
 * @example
 * ```ts
 * import { connect, type Mailbox, type OpenMailboxOptions } from 'postbox';
 * const me = await connect();
 * const open = (name: string, options: OpenMailboxOptions): Promise<Mailbox> => me.openMailbox(name, options);
 * const jobs = await open('jobs', { create: { capacity: 10 }, role: 'read' });
 * ```
 */
export interface OpenMailboxOptions {
  /** Create it if there is none: `true` with the kernel's defaults, or the new mailbox's attributes. */
  create?: MailboxOptions | boolean | undefined;
  /** How this handle uses it; counts for pipes and FIFOs. Default 'both'. */
  role?: 'read' | 'write' | 'both' | 'none' | undefined;
  /**
   * The mailbox's passkey, handed over by its creator: this process joins its group (EACCES if
   * it does not match). Not with `create`.
   */
  passkey?: string | undefined;
}

const OPEN_OPTIONS: OptionNames<OpenMailboxOptions> = { create: true, role: true, passkey: true };
const MONITOR_OPTIONS: OptionNames<{ signal?: AbortSignal }> = { signal: true };

/** Process names a process remembers the ids of, the oldest looked up dropped first. */
const MAX_KNOWN_NAMES = 4096;
/** A connected process as `postbox ps` shows it: {@link PostboxProcess.processes}. */
export interface ProcessStat extends ProcessInfo {
  transport: string;
  /** Messages queued in its inbox, not yet received. */
  inboxMessages: number;
  /** The mailboxes it owns (names, or `#id`): the first 100; `ownsCount` counts them all. */
  owns: string[];
  /** How many mailboxes it owns. Absent from older kernels, whose `owns` lists them all. */
  ownsCount?: number;
  blockedOn: string[];
  /**
   * What it holds of each mailbox: jobs in hand (taken by a `holdCredit` iterator or
   * consumer, credit not yet given back) and messages pushed ahead to it, not yet taken.
   */
  holds: string[];
  /** Monitors it holds (see {@link PostboxProcess.monitor}): processes it is told about when they end. */
  watching: number;
  /** Handles it has open (a removed mailbox's are dropped with it). */
  handles: number;
  /** Bytes the kernel has sent it that it has not read yet (past a limit, the kernel waits). */
  unread: number;
  connectedAt: number;
}

/**
 * Mailboxes (or processes) {@link PostboxProcess.mailboxes} (or {@link PostboxProcess.processes})
 * asks for at a time: about 700 KB of stats, a few milliseconds of the kernel's time, between
 * which it serves everyone else.
 */
export const LIST_PAGE = 1000;

/** Another process as the kernel knows it. */
export interface ProcessInfo {
  id: number;
  name: string | null;
  pid: number;
  host: string;
  inbox: number;
}

/** Why a watched process ended. */
export interface DownEvent {
  process: number;
  name: string | null;
  reason: 'exit' | 'crash' | 'timeout' | 'shutdown' | 'protocol' | 'noproc';
  /**
   * True when the kernel ended it for a bug of the kernel's own (its reason is then 'crash', and
   * the process was told EIO): the kernel's log has it. Absent otherwise.
   */
  kernelFault?: true;
}

/**
 * This program's process in Postbox: its identity, its inbox for direct messages, and the door
 * to mailboxes. Get one with {@link connect}.
 *
 * @example
 * ```ts
 * const alice = await connect({ name: 'alice' });
 * await alice.send('bob', 'hello');                 // direct: to bob's inbox
 * const reply = await alice.receive({ from: 'bob' }); // symmetric: only from bob
 * await alice.close();
 * ```
 */
export class PostboxProcess {
  /** Unique id the kernel gave this process (never reused while the kernel runs). */
  readonly id: number;
  readonly name: string | null;
  /** Mailbox id of this process's inbox. */
  readonly inbox: number;
  /**
   * Resolves when this process's connection to the kernel ends: with null after {@link close},
   * or with the error that ended it (`ESHUTDOWN` when the kernel shut down, `ECONNRESET` when
   * the connection was lost, `ETIMEDOUT` when a TCP kernel stopped answering). A process that
   * is only waiting learns it here; any operation it starts from then on fails with that error.
   *
   * @example
   * ```ts
   * me.closed.then((err) => {
   *   if (err !== null) console.error('lost the kernel:', err.code);
   * });
   * ```
   */
  readonly closed: Promise<PostboxError | null>;
  /**
   * What to add to this process's `Date.now()` for the kernel's clock (ms), measured when it
   * connected and, over TCP, again at each heartbeat, to within half that round trip. Message times are the kernel's, and
   * so are RPC deadlines on the wire: with this, a process on a machine whose clock differs from
   * the kernel's still reads them right. About 0 on the kernel's own machine.
   *
   * @example
   * ```ts
   * const m = await me.receive();
   * const age = Date.now() + me.kernelClockOffset - m!.time; // ms it waited since it was sent
   * ```
   */
  get kernelClockOffset(): number {
    return this.conn.clockOffset;
  }
  /** @internal */
  readonly conn: Connection;
  /** Process names sent to, with the id each had when looked up; the oldest first. */
  private readonly ids = new Map<string, number>();
  /**
   * Sends to a name not yet known, each settling once its lookup is done and the send written
   * (or the lookup failed): close() waits for them, so they reach the kernel ahead of its BYE.
   */
  private readonly lookups = new Set<Promise<unknown>>();

  /** @internal */
  constructor(conn: Connection) {
    this.conn = conn;
    this.id = conn.info.process.id;
    this.name = conn.info.process.name;
    this.inbox = conn.info.inbox;
    this.closed = new Promise((resolve) => {
      conn.onClose.add((err) => resolve(conn.closedByUs ? null : err));
    });
  }

  /** The kernel's limits, as it announced them. */
  get limits(): AnnouncedLimits {
    return this.conn.info.limits;
  }

  /** Sends a message to a process's inbox (direct naming). */
  async send(to: ProcessRef, body: unknown, options?: SendOptions): Promise<SendResult> {
    return this.toProcess(to, (id) => this.conn.send(id, true, body, options));
  }

  /**
   * Sends many messages to a process's inbox, in order, with one promise for all of them (see
   * {@link Mailbox.sendMany}).
   */
  async sendMany(to: ProcessRef, bodies: Iterable<unknown>, options?: SendOptions): Promise<SendManyResult> {
    // Read once: a batch sent to a process that has gone is sent again to the name's new one.
    const list =
      Array.isArray(bodies) ||
      typeof (bodies as { [Symbol.iterator]?: unknown } | null)?.[Symbol.iterator] !== 'function'
        ? bodies
        : Array.from(bodies);
    return this.toProcess(to, (id) => this.conn.sendMany(id, true, list, options, `process ${String(to)}`));
  }

  /**
   * Sends to a mailbox by id without opening a handle on it (the mode still decides whether
   * this process may send): for answering to a mailbox named in a message.
   */
  sendTo(mailbox: number, body: unknown, options?: SendOptions): Promise<SendResult> {
    const bad = badMailboxId(mailbox);
    if (bad !== null) return Promise.reject(bad);
    return this.conn.send(mailbox, false, body, options);
  }

  /**
   * Receives from this process's inbox: the first message from anyone (asymmetric; the message
   * says who sent it), or with `from` the first from that process (symmetric). `T` is what the
   * caller expects the bodies to be, as for {@link openMailbox}: nothing checks it.
   *
   * @example
   * ```ts
   * const m = await me.receive<{ done: number }>({ from: 'worker' });
   * if (m !== null) console.log(m.body.done);
   * ```
   */
  async receive<T = unknown>(
    options: ReceiveOptions & { from?: ProcessRef | undefined } = {},
  ): Promise<Message<T> | null> {
    if (options.from === undefined)
      return this.conn.receive(0, true, 0, options) as Promise<Message<T> | null>;
    // An id goes out at once, in the order of the calls around it. A name selects whoever has
    // it now: looked up afresh, as a remembered id would still select what a process of that
    // name, since gone, left behind, so such a receive reaches the kernel a round trip later.
    const from = this.knownId(options.from, true);
    const got =
      from !== undefined
        ? this.conn.receive(0, true, from, options)
        : this.resolve(options.from, true).then((id) => this.conn.receive(0, true, id, options));
    return got as Promise<Message<T> | null>;
  }

  /** Iterates the inbox, with the kernel pushing ahead (see {@link Mailbox.messages}). */
  messages<T = unknown>(
    options: Omit<IterateOptions, 'from'> & { from?: number | undefined } = {},
  ): MessageIterator<T> {
    checkOptions(options, ITERATE_OPTIONS, 'messages()');
    if (options.signal?.aborted === true) return noMessages<Message<T>>();
    return this.inboxIterator<T>(options, 'messages()');
  }

  /** A stream of the inbox, or, where pushing ahead could change the order, a receive per step. */
  private inboxIterator<T>(
    options: IterateOptions,
    call: string,
    hold = false,
  ): MessageStream<T> | MessageIterator<T> {
    // Checked here, not at the first step's receive: a loop read one message at a time would
    // otherwise fail at its first step, which in a consumer nobody can catch; and a loop's
    // sender is an id (a name is looked up by receive() alone).
    const bad = badIterateOptions(options, call, this.conn.info.limits.maxCredit);
    if (bad !== null) throw bad;
    const oneByOne = readOneAtATime('fifo', options);
    if (oneByOne === null) return new MessageStream<T>(this.conn, 0, true, options, call, () => {});
    if (options.holdCredit === true)
      throw new InvalidArgumentError(
        `${call}: holdCredit needs an iterator that is pushed ahead; ${oneByOne} is read one message at a time`,
      );
    return receiveEach<T>(
      (o) => this.conn.receive(0, true, o.from ?? 0, o, undefined, hold) as Promise<Message<T> | null>,
      options,
      () => this.conn.closedByUs,
    );
  }

  /**
   * Calls `handler` for each message sent to this process, as the kernel pushes it (see
   * {@link Mailbox.consume}).
   *
   * @example
   * ```ts
   * const c = proc.consume((m) => console.log(`from ${m.sender}: ${m.text()}`));
   * ```
   */
  consume<T = unknown>(
    handler: MessageHandler<T>,
    options: Omit<ConsumeOptions, 'from'> & { from?: number | undefined } = {},
  ): Consumer<T> {
    checkOptions(options, ITERATE_OPTIONS, 'consume()');
    const badSig = badSignal(options.signal, 'consume()');
    if (badSig !== null) throw badSig;
    const most = handlersInProgress(readOneAtATime('fifo', options), options);
    const source = most === undefined ? options : { ...options, holdCredit: undefined };
    // As Mailbox.consume: read one at a time with holdCredit, each job is held until it settles.
    const held = most !== undefined;
    return new Consumer<T>(
      handler,
      options.holdCredit === true,
      options.signal,
      (signal) =>
        signal.aborted
          ? noMessages<Message<T>>()
          : this.inboxIterator<T>({ ...source, signal }, 'consume()', held),
      most,
      held ? (m) => this.conn.release(m) : undefined,
    );
  }

  /** Iterates the inbox a batch at a time (see {@link Mailbox.batches}). */
  batches<T = unknown>(
    options: Omit<BatchOptions, 'from'> & { from?: number | undefined } = {},
  ): BatchIterator<T> {
    checkOptions(options, BATCH_OPTIONS, 'batches()');
    if (options.signal?.aborted === true) return noMessages<Message<T>[]>();
    const { max, ...iterate } = options;
    const most = batchMax(max);
    if (readOneAtATime('fifo', iterate) !== null) {
      const one = this.inboxIterator<T>(iterate, 'batches()');
      return (async function* singles(): AsyncGenerator<Message<T>[], undefined, undefined> {
        for await (const m of one) yield [m];
        return undefined;
      })();
    }
    return new MessageBatches(new MessageStream<T>(this.conn, 0, true, iterate, 'batches()', () => {}), most);
  }

  /**
   * Creates a mailbox owned by this process (removed when it terminates, unless `system`).
   * EEXIST if the name is taken.
   */
  async createMailbox<T = unknown>(
    name: string | null = null,
    options: MailboxOptions = {},
  ): Promise<Mailbox<T>> {
    if (name !== null && name !== undefined && typeof name !== 'string')
      throw new InvalidArgumentError(
        `createMailbox() takes a mailbox name (a string) or null, not ${describeValue(name)}`,
      );
    checkOptions(options, MAILBOX_OPTIONS, 'createMailbox()');
    const info = await this.conn.call<MailboxInfo>('create', { name, ...options });
    return new Mailbox<T>(this.conn, info);
  }

  /** Opens an existing mailbox by name or id (ENOENT if none), or creates it with `create`. */
  async openMailbox<T = unknown>(
    ref: string | number | { key: number },
    options: OpenMailboxOptions = {},
  ): Promise<Mailbox<T>> {
    if (typeof ref === 'number') {
      const bad = badMailboxId(ref);
      if (bad !== null) throw bad;
    } else if (typeof ref !== 'string' && (typeof ref !== 'object' || ref === null || !('key' in ref)))
      throw new InvalidArgumentError(
        `openMailbox() takes a mailbox name, an id or { key }, not ${describeValue(ref)}`,
      );
    checkOptions(options, OPEN_OPTIONS, 'openMailbox()');
    const create = options.create;
    if (
      create !== undefined &&
      typeof create !== 'boolean' &&
      (typeof create !== 'object' || create === null)
    )
      throw new InvalidArgumentError(
        `openMailbox(): create must be true, false or the new mailbox's options, not ${describeValue(create)}`,
      );
    if (typeof create === 'object') checkOptions(create, MAILBOX_OPTIONS, 'openMailbox() create');
    let info: MailboxInfo;
    const where =
      typeof ref === 'number' ? { id: ref } : typeof ref === 'string' ? { name: ref } : { key: ref.key };
    const role = options.role === undefined ? {} : { role: options.role };
    const passkey = options.passkey;
    if (passkey !== undefined && typeof passkey !== 'string')
      throw new InvalidArgumentError(
        `openMailbox(): passkey must be a string, not ${describeValue(passkey)}`,
      );
    if (options.create !== undefined && options.create !== false) {
      if (typeof ref === 'number') throw new InvalidArgumentError('create needs a mailbox name or key');
      if (passkey !== undefined)
        throw new InvalidArgumentError(
          "openMailbox(): a passkey opens a mailbox that exists; it cannot be given with 'create'",
        );
      const attrs = options.create === true ? {} : options.create;
      info = await this.conn.call<MailboxInfo>('create', { ...where, ifExists: 'open', ...attrs, ...role });
    } else {
      info = await this.conn.call<MailboxInfo>(
        'open',
        passkey === undefined ? { ...where, ...role } : { ...where, ...role, passkey },
      );
    }
    return new Mailbox<T>(this.conn, info);
  }

  /** One mailbox's state by name or id, without opening a handle on it. */
  stat(ref: string | number): Promise<MailboxStat> {
    const bad =
      typeof ref === 'string'
        ? null
        : typeof ref === 'number'
          ? badMailboxId(ref)
          : new InvalidArgumentError(`stat() takes a mailbox name or id, not ${describeValue(ref)}`);
    if (bad !== null) return Promise.reject(bad);
    return this.conn.call<MailboxStat>('stat', typeof ref === 'number' ? { id: ref } : { name: ref });
  }

  /**
   * Every mailbox's state (inboxes aside), in id order, as `postbox ls` shows. Asked for
   * {@link LIST_PAGE} at a time, so the kernel serves other processes between pages: the list is
   * not one instant's, and a mailbox created or removed meanwhile may be in it or not.
   *
   * @example
   * ```ts
   * const full = (await me.mailboxes()).filter((s) => s.capacity !== null && s.count >= s.capacity);
   * ```
   */
  async mailboxes(): Promise<MailboxStat[]> {
    const all: MailboxStat[] = [];
    for await (const page of this.mailboxPages()) for (const stat of page) all.push(stat);
    return all;
  }

  /**
   * What {@link mailboxes} gathers, a page of {@link LIST_PAGE} at a time, in id order: for a
   * listing too large to hold at once. A kernel may hold a million mailboxes, and their stats are
   * about a gigabyte as JSON, more than one string can hold (`postbox ls --json` writes them a
   * page at a time).
   *
   * @example
   * ```ts
   * for await (const page of me.mailboxPages())
   *   for (const s of page) if (s.count > 0) console.log(s.name ?? s.id, s.count);
   * ```
   */
  async *mailboxPages(): AsyncGenerator<MailboxStat[], void, undefined> {
    let after = 0;
    for (;;) {
      const page = await this.conn.call<MailboxStat[]>('list', { after, limit: LIST_PAGE });
      // In order already from a kernel that pages; one that does not answers all at once.
      page.sort((a, b) => a.id - b.id);
      if (page.length > 0) {
        after = page[page.length - 1]!.id;
        yield page;
      }
      // Not a whole page: the last.
      if (page.length !== LIST_PAGE) return;
    }
  }

  /**
   * The `count` busiest mailboxes (inboxes aside): those holding the most messages and with the
   * most processes waiting on them (to send, for a receipt, to receive), busiest first (among
   * equals, the lowest id first), and how many mailboxes there are. The kernel chooses them, a
   * slice of its table at a time, so a view of a screenful need not list every mailbox (`postbox
   * watch` does this on a terminal) and other processes are served between slices: as with
   * {@link mailboxes}, the answer is not one instant's. At most 1,000.
   *
   * @example
   * ```ts
   * const { total, mailboxes } = await me.busiestMailboxes(10);
   * for (const s of mailboxes) console.log(s.name ?? `#${s.id}`, s.count, s.waitingReceiversCount);
   * console.log(`… of ${total}`);
   * ```
   */
  async busiestMailboxes(count: number): Promise<{ total: number; mailboxes: MailboxStat[] }> {
    if (!Number.isSafeInteger(count) || count < 1 || count > 1000)
      throw new InvalidArgumentError(
        `busiestMailboxes() takes a count from 1 to 1,000, not ${describeValue(count)}`,
      );
    let best: MailboxStat[] = [];
    let total = 0;
    let after = 0;
    for (;;) {
      // Once `count` are in hand, a later slice's mailbox (a higher id) must be busier to count.
      const above = best.length === count ? mailboxBusyness(best[count - 1]!) : undefined;
      const slice = await this.conn.call<{ scanned: number; next: number | null; mailboxes: MailboxStat[] }>(
        'busiest',
        above === undefined ? { limit: count, after } : { limit: count, after, above },
      );
      total += slice.scanned;
      // The busiest of all are among the busiest of each slice.
      best = best.concat(slice.mailboxes).sort(busiestFirst).slice(0, count);
      if (slice.next === null) return { total, mailboxes: best };
      after = slice.next;
    }
  }

  /**
   * What the kernel holds now, to set against {@link limits}: mailboxes (inboxes included),
   * processes, the bytes queued in all mailboxes together (`maxTotalBytes`), and the room given
   * to large frames still arriving (`maxPartialBytes`), and the most that one process's waiting
   * sends hold (`maxWaitingBytes`; absent from older kernels), and the connections it holds
   * against the room its file descriptors allow (`ulimit -n`; absent from older kernels).
   *
   * @example
   * ```ts
   * const { totalBytes } = await proc.usage();
   * console.log(`${totalBytes} of ${proc.limits.maxTotalBytes} bytes queued`);
   * ```
   */
  usage(): Promise<{
    mailboxes: number;
    processes: number;
    totalBytes: number;
    partialBytes: number;
    mostWaitingBytes?: number;
    /** Connections the kernel holds (older kernels do not say). */
    connections?: number;
    /** Connections its file descriptors allow (`ulimit -n` at start), or null where unknown. */
    connectionRoom?: number | null;
    /** Its limit of open files (`ulimit -n`), or null where unknown. */
    openFiles?: number | null;
  }> {
    return this.conn.call('usage');
  }

  /**
   * Every connected process, as `postbox ps` shows, in id order. Asked for {@link LIST_PAGE} at a
   * time, as {@link mailboxes} is: the list is not one instant's.
   *
   * @example
   * ```ts
   * const stuck = (await me.processes()).filter((p) => p.blockedOn.length > 0);
   * ```
   */
  async processes(): Promise<ProcessStat[]> {
    const all: ProcessStat[] = [];
    for await (const page of this.processPages()) for (const stat of page) all.push(stat);
    return all;
  }

  /**
   * What {@link processes} gathers, a page of {@link LIST_PAGE} at a time, in id order, as
   * {@link mailboxPages} gives the mailboxes: for a listing that need not be held whole
   * (`postbox ps` writes each page as it comes).
   *
   * @example
   * ```ts
   * for await (const page of me.processPages())
   *   for (const p of page) if (p.inboxMessages > 0) console.log(p.name ?? p.id, p.inboxMessages);
   * ```
   */
  async *processPages(): AsyncGenerator<ProcessStat[], void, undefined> {
    let after = 0;
    for (;;) {
      const page = await this.conn.call<ProcessStat[]>('processes', { after, limit: LIST_PAGE });
      // In order already from a kernel that pages; one that does not answers all at once.
      page.sort((a, b) => a.id - b.id);
      if (page.length > 0) {
        after = page[page.length - 1]!.id;
        yield page;
      }
      // Not a whole page: the last.
      if (page.length !== LIST_PAGE) return;
    }
  }

  /** Looks a process up by name or id (ESRCH if none). */
  lookup(process: ProcessRef): Promise<ProcessInfo> {
    const bad = badProcessRef(process);
    if (bad !== null) return Promise.reject(bad);
    return this.conn.call<ProcessInfo>('lookup', { process });
  }

  /**
   * Watches a process: resolves when it terminates, with the reason. If it is already gone the
   * reason is 'noproc'.
   */
  async monitor(process: ProcessRef, options: { signal?: AbortSignal | undefined } = {}): Promise<DownEvent> {
    checkOptions(options, MONITOR_OPTIONS, 'monitor()');
    const signal = options.signal;
    const bad = badProcessRef(process) ?? badSignal(signal, 'monitor()');
    if (bad !== null) throw bad;
    if (signal?.aborted)
      throw new AbortedError('monitor aborted before it started', {}, { cause: signal.reason });
    // The 'down' event can come in the same read as the answer (the process ended in the same
    // kernel turn): the connection registers its handler as the answer is read.
    const down = new AnnouncedEvent();
    const r = await this.conn.call<{
      monitor: number;
      down?: boolean;
      reason?: DownEvent['reason'];
      process?: number;
    }>(
      'monitor',
      { process },
      { idOf: (result) => (result.down === true ? undefined : result.monitor), handler: down.handler },
    );
    const downEvent = (event: Record<string, unknown>): DownEvent => {
      const down: DownEvent = {
        process: event.process as number,
        name: (event.name as string | null) ?? null,
        reason: event.reason as DownEvent['reason'],
      };
      if (event.kernelFault === true) down.kernelFault = true;
      return down;
    };
    if (down.arrived !== null) return downEvent(down.arrived);
    if (signal?.aborted && r.down !== true) {
      // Aborted while the kernel was setting the monitor up: its 'abort' has been and gone.
      this.conn.offEvent(r.monitor);
      this.conn.call('demonitor', { monitor: r.monitor }).catch(() => {});
      throw new AbortedError(`stopped watching process ${String(process)}`, {}, { cause: signal.reason });
    }
    if (r.down === true)
      return {
        process: typeof process === 'number' ? process : 0,
        name: typeof process === 'string' ? process : null,
        reason: 'noproc',
      };
    return new Promise<DownEvent>((resolve, reject) => {
      const onClose = (err: Error): void => {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        // Stop watching: the kernel forgets the monitor, and so do we.
        this.conn.onClose.delete(onClose);
        this.conn.offEvent(r.monitor);
        this.conn.call('demonitor', { monitor: r.monitor }).catch(() => {});
        reject(
          new AbortedError(`stopped watching process ${String(process)}`, {}, { cause: signal?.reason }),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.conn.whenEnded(onClose);
      down.onArrival((event) => {
        this.conn.onClose.delete(onClose);
        signal?.removeEventListener('abort', onAbort);
        resolve(downEvent(event));
      });
    });
  }

  /** Terminates this process cleanly: pending operations fail with ENOTCONN, owned mailboxes go. */
  close(): Promise<void> {
    // Every send made before close() reaches the kernel ahead of it, awaited or not; one to a
    // name not yet known is written only when its lookup answers, which would be after the BYE
    // (it then failed with ENOTCONN: `send('logger', line); await close()` lost the line).
    // Those made after it fail at once, even while it waits for a lookup.
    this.conn.beginClose();
    if (this.lookups.size === 0) return this.conn.close();
    return Promise.allSettled([...this.lookups]).then(() => this.conn.close());
  }

  /**
   * Closes this process when an `await using` block ends, as {@link close} does.
   *
   * @example
   * ```ts
   * await using me = await connect({ name: 'job' });
   * await me.send('logger', 'started'); // closed on leaving the block, even on a throw
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /**
   * Lets Node exit while this process's link to the kernel is its only work left, as
   * `net.Socket.unref()` does: a program that waits for messages only while it has other things
   * to do. Node exiting ends the link, and the kernel terminates the process as it would one
   * that exited without `close()`. The program's own timers still keep Node running; a call's
   * `timeout` does not (the kernel keeps it), and `close()` holds Node until it is done. Returns
   * this process.
   *
   * @example
   * ```ts
   * const me = (await connect({ name: 'helper' })).unref();
   * me.consume((m) => console.log(m.text())); // handled while the program runs; no close() needed
   * ```
   */
  unref(): this {
    this.conn.socket.unref();
    return this;
  }

  /** Undoes {@link unref}: the link to the kernel keeps Node running again (the default). */
  ref(): this {
    this.conn.socket.ref();
    return this;
  }

  /**
   * Runs op on the process `to` names. A name is remembered with the id it had when first looked
   * up; if that process has gone (ESRCH), the name may be another process's now, so it is looked
   * up once more and op tried again (a send that failed with ESRCH was not delivered, nor was a
   * batch all of whose messages did).
   */
  private async toProcess<R>(to: ProcessRef, op: (id: number) => Promise<R>): Promise<R> {
    const remembered = typeof to === 'string' && this.ids.has(to);
    // Known at once (an id, a name remembered): sent now, so calls made one after another reach
    // the kernel in that order. Only a name not yet known waits for its lookup.
    const id = this.knownId(to);
    try {
      return await (id !== undefined ? op(id) : this.afterLookup(to, op));
    } catch (err) {
      if (!remembered || !noneSentForNoProcess(err)) throw err;
      this.ids.delete(to as string);
      return this.afterLookup(to, op);
    }
  }

  /** Runs op on the id `to` is looked up to be; close() waits until op has been called. */
  private afterLookup<R>(to: ProcessRef, op: (id: number) => Promise<R>): Promise<R> {
    // Wrapped, so that `issued` settles when op is called, not when its send completes (a send
    // that waits for room must not hold close() up).
    const beforeClose = !this.conn.closedByUs;
    const issued = this.resolve(to).then((id) => ({
      result: beforeClose ? this.conn.admit(() => op(id)) : op(id),
    }));
    this.lookups.add(issued);
    const done = (): void => {
      this.lookups.delete(issued);
    };
    issued.then(done, done);
    return issued.then((o) => o.result);
  }

  /**
   * The id `ref` stands for without asking the kernel (an id, or a name remembered unless
   * `afresh`), or undefined if it must be looked up. Throws InvalidArgumentError for a bad ref.
   */
  private knownId(ref: ProcessRef, afresh = false): number | undefined {
    const bad = badProcessRef(ref);
    if (bad !== null) throw bad;
    if (typeof ref === 'number') return ref;
    return afresh ? undefined : this.ids.get(ref);
  }

  private async resolve(ref: ProcessRef, afresh = false): Promise<number> {
    const known = this.knownId(ref, afresh);
    if (known !== undefined) return known;
    const name = ref as string; // an id is always known
    const info = await this.lookup(name);
    // Bounded: a process that sends to a new name per job (workers that come and go) would
    // otherwise keep every name for as long as it lives. A name dropped is looked up again.
    this.ids.delete(name);
    this.ids.set(name, info.id);
    if (this.ids.size > MAX_KNOWN_NAMES) this.ids.delete(this.ids.keys().next().value as string);
    return info.id;
  }
}

/**
 * Joins the kernel as a new process.
 *
 * @example
 * ```ts
 * import { connect } from 'postbox';
 * const me = await connect({ name: 'worker-1' });
 * ```
 */
export async function connect(options: ConnectOptions = {}): Promise<PostboxProcess> {
  checkOptions(options, CONNECT_OPTIONS, 'connect()');
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name.length === 0)) {
    throw new InvalidArgumentError('options.name must be a non-empty string');
  }
  const conn = await Connection.open(options);
  return new PostboxProcess(conn);
}

/**
 * Whether `err` says nothing was sent because the process was gone: a send's ESRCH, or a batch
 * whose every message had it (one whose process ended part way through stays failed, the
 * messages before sent to it).
 */
function noneSentForNoProcess(err: unknown): boolean {
  if (err instanceof NoProcessError) return true;
  return (
    err instanceof SendManyError &&
    err.failures.length === err.total &&
    err.failures.every((f) => f.error instanceof NoProcessError)
  );
}

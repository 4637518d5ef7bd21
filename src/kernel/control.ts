import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ErrorCode } from '../protocol/errors.js';
import { badMailboxName, MAX_MAILBOX_NAME } from '../protocol/names.js';
import type { Kernel } from './kernel.js';
import { type MailboxAttributes, PROCESS_OWNED_MODE, STAT_IDS, SYSTEM_OWNED_MODE } from './limits.js';
import { type ErrorDetail, Mailbox } from './mailbox.js';
import type { KernelProcess } from './process.js';

/**
 * The control plane: CALL frames carry a JSON object `{ op, ... }` and get a RESULT or an ERROR.
 * None of this is on the message path, so it favours clear validation over speed.
 */

class CallError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The mailbox it is about: itself, or its name where there is none (not found, not made). */
    readonly mailbox?: Mailbox | string,
    /** What else it says: the process it is about (name, else id), an EBUSY's holders. */
    readonly detail?: ErrorDetail,
  ) {
    super(message);
  }
}

/**
 * Runs `check`, part of a call about `mb`: a refusal it throws that names no mailbox (the argument
 * checks are shared with calls about none) names mb, as every error of a call on a mailbox does.
 */
function onMailbox<T>(mb: Mailbox | string | null, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof CallError && err.mailbox === undefined && mb !== null)
      throw new CallError(err.code, err.message, mb, err.detail);
    throw err;
  }
}

type Args = Record<string, unknown>;
/** A CALL's work: its result, or a thrown {@link CallError} saying why it is refused. */
export type Handler = (k: Kernel, p: KernelProcess, a: Args) => unknown;

/**
 * What a create takes. A name it does not know is refused rather than ignored: a client that
 * misspells `capacity` would otherwise get an unbounded mailbox without a word.
 */
const CREATE_ARGS: readonly string[] = [
  'op',
  'name',
  'key',
  'ifExists',
  'system',
  'role',
  'capacity',
  'maxMessageSize',
  'maxBytes',
  'order',
  'policy',
  'mode',
  'messageSize',
  'endOnLastWriter',
  'transient',
  'requireReader',
  'admission',
  'rightsAtOpen',
  'passkey',
];

const handlers: Record<string, Handler> = {
  create: (k, p, a) => {
    for (const arg of Object.keys(a))
      if (!CREATE_ARGS.includes(arg))
        throw new CallError(
          'EINVAL',
          `create has no argument '${arg}'; it takes ${CREATE_ARGS.slice(1).join(', ')}`,
        );
    roomForHandle(k, p);
    const name = optName(a.name);
    // A refusal of its arguments names the mailbox it would have made, by its name.
    return onMailbox(name, () => create(k, p, a, name));
  },
  open: (k, p, a) => {
    if (a.passkey !== undefined && typeof a.passkey !== 'string')
      throw new CallError('EINVAL', `passkey must be a string, not ${shown(a.passkey)}`);
    roomForHandle(k, p);
    return openHandle(k, p, find(k, a), a);
  },
  close: (k, p, a) => {
    const id = idArg(a.handle, 'handle', 'a handle');
    const h = p.handles.get(id);
    if (h === undefined) return {};
    p.handles.delete(id);
    const mb = h.mailbox;
    const roles = p.roles?.get(mb);
    if (roles !== undefined) {
      if (h.read) roles.read--;
      if (h.write) roles.write--;
      roles.ids.delete(id);
      if (roles.ids.size === 0) {
        p.roles?.delete(mb);
        mb.openers.delete(p);
      }
    }
    // A receive right (exclusive, or a place in a pair) goes with the process's last handle on
    // the mailbox, as a lock goes with the last descriptor of a file: with no handle it could
    // never receive again, and would hold everyone else off until it exited.
    if (mb.holders.includes(p.id) && !hasHandleOn(p, mb)) releaseHold(p, mb);
    if (!mb.removed && mb.closeHandle(h.read, h.write)) k.removeMailbox(mb, 'its last handle closed');
    return {};
  },
  unlink: (k, p, a) => {
    // POSIX mq_unlink / unlinking a FIFO: the name goes now, the mailbox at its last close.
    const mb = find(k, a);
    notAnInbox(mb, 'unlinked');
    ownerOnly(k, p, mb, 'unlink');
    if (mb.name !== null && k.mailboxByName.get(mb.name) === mb) k.mailboxByName.delete(mb.name);
    mb.unlinked = true;
    if (mb.opens === 0) k.removeMailbox(mb, `unlinked by ${p.label}`);
    return {};
  },
  notify: (k, p, a) => {
    const mb = find(k, a);
    if (a.on === false) {
      if (mb.notify?.peer === p) {
        mb.notify = null;
        p.notifying?.delete(mb);
      }
      return {};
    }
    if (mb.notify !== null && mb.notify.peer !== p) {
      throw new CallError(
        'EBUSY',
        `${mb.notify.peer.label} is already registered for notification on ${mb.label}`,
        mb,
        { process: k.processSubject(mb.notify.peer.id), holders: [k.processSubject(mb.notify.peer.id)] },
      );
    }
    const id = k.nextMonitorId++;
    mb.notify = { peer: p, id };
    p.notifying ??= new Set();
    p.notifying.add(mb);
    return { event: id };
  },
  awaitReader: (k, p, a) => {
    // A FIFO's writer waits, as open(2) for writing does, until a reader has it open: told by
    // one EVENT when a reader opens (or the mailbox goes), instead of asking over and over.
    const mb = find(k, a);
    if (a.on === false) {
      const id = onMailbox(mb, () => idArg(a.event, 'event', 'the awaitReader'));
      if (mb.readerWaits?.get(id) === p) {
        mb.readerWaits.delete(id);
        // By its own ids: looking through every wait on the mailbox made a crowd of writers
        // that gave up quadratic (48,000 of them: 8.2 s of the kernel's time).
        const ids = p.awaitingReader?.get(mb);
        ids?.delete(id);
        if (ids?.size === 0) p.awaitingReader?.delete(mb);
        p.readerWaitCount--;
      }
      return {};
    }
    // `beyond`: readers the caller already counts (a popen parent's own, held until its child
    // opens the read end it was handed); the event still comes at the next reader's open.
    const beyond = a.beyond === undefined ? 0 : onMailbox(mb, () => positiveInt(a.beyond, 'beyond', true));
    if (mb.readers > beyond) return { readers: mb.readers };
    // Bounded as monitors are: unbounded, one process's CALLs in a loop grew the kernel's maps
    // without end (each wait lasts until a reader comes, which may be never).
    if (p.readerWaitCount >= k.limits.maxPerProcess)
      throw new CallError('ENOMEM', overLimit(p, p.readerWaitCount, 'waits for a reader set'), mb);
    const id = k.nextMonitorId++;
    mb.readerWaits ??= new Map();
    mb.readerWaits.set(id, p);
    p.awaitingReader ??= new Map();
    const ids = p.awaitingReader.get(mb);
    if (ids === undefined) p.awaitingReader.set(mb, new Set([id]));
    else ids.add(id);
    p.readerWaitCount++;
    return { event: id };
  },
  delete: (k, p, a) => {
    const mb = find(k, a);
    notAnInbox(mb, 'deleted');
    ownerOnly(k, p, mb, 'delete');
    k.removeMailbox(mb, `deleted by ${p.label}`);
    return {};
  },
  stat: (k, _p, a) => stat(k, find(k, a)),
  list: (k, _p, a) => {
    // A page at a time, by id, when asked: the whole of 50,000 mailboxes was one answer of 35 MB
    // that held the kernel for 1.9 s, every other process waiting; between pages they are served.
    const after = a.after === undefined ? 0 : positiveInt(a.after, 'after', true);
    const limit = a.limit === undefined ? Number.POSITIVE_INFINITY : positiveInt(a.limit, 'limit');
    const page: Args[] = [];
    for (const id of k.listed.after(after)) {
      if (page.length >= limit) break;
      page.push(stat(k, k.mailboxes.get(id)!));
    }
    return page;
  },
  busiest: (k, _p, a) => {
    // For a view that shows a screenful (`postbox watch` on a terminal): the few mailboxes worth
    // showing, chosen here, where listing all of 100,000 for it took 2 s of the kernel each time.
    // A slice of the table at a time, as `list` pages: one pass over a million took 100 ms, and
    // every other process would have waited that long each time a watch asked.
    const limit = positiveInt(a.limit, 'limit');
    if (limit > BUSIEST_LIMIT)
      throw new CallError(
        'EINVAL',
        `limit must be at most ${BUSIEST_LIMIT}, not ${limit} (list pages through all)`,
      );
    const after = a.after === undefined ? 0 : positiveInt(a.after, 'after', true);
    // What the asker already holds enough of: only busier ones are worth a stat.
    const above = a.above === undefined ? -1 : positiveInt(a.above, 'above', true);
    const { scanned, next, top } = busiestMailboxes(k, limit, after, above);
    return { scanned, next, mailboxes: top.map((mb) => stat(k, mb)) };
  },
  usage: (k) => ({
    mailboxes: k.mailboxes.size,
    processes: k.processes.size,
    totalBytes: k.totalBytes,
    partialBytes: k.room.granted,
    mostWaitingBytes: mostWaitingBytes(k),
    // Sockets held, those being closed included, against the room `ulimit -n` left at start
    // (null where it cannot be read): past it connections are refused ENOMEM.
    connections: k.openConnections,
    connectionRoom: Number.isFinite(k.gate.room) ? k.gate.room : null,
    openFiles: k.gate.openFiles,
  }),
  processes: (k, _p, a) => {
    // A page at a time, by id, as `list`: 10,000 processes were one answer of 2.1 MB, built in one
    // turn of about 100 ms while every other process waited.
    const after = a.after === undefined ? 0 : positiveInt(a.after, 'after', true);
    const limit = a.limit === undefined ? Number.POSITIVE_INFINITY : positiveInt(a.limit, 'limit');
    const page: Args[] = [];
    for (const id of k.processOrder.after(after)) {
      if (page.length >= limit) break;
      page.push(processRow(k.processes.get(id)!));
    }
    return page;
  },
  lookup: (k, _p, a) => {
    const q = findProcess(k, a.process);
    return { id: q.id, name: q.name, pid: q.osPid, host: q.host, inbox: q.inbox?.id ?? 0 };
  },
  monitor: (k, p, a) => {
    const id = k.nextMonitorId++;
    const target = processRef(a.process);
    const q = typeof target === 'number' ? k.processes.get(target) : k.processByName.get(target);
    if (q === undefined) return { monitor: id, down: true, reason: 'noproc' };
    p.watching ??= new Map();
    if (p.watching.size >= k.limits.maxPerProcess)
      throw new CallError('ENOMEM', overLimit(p, p.watching.size, 'monitors set'));
    q.watchers ??= new Map();
    q.watchers.set(id, p);
    p.watching.set(id, q);
    return { monitor: id, process: q.id };
  },
  demonitor: (_k, p, a) => {
    const id = idArg(a.monitor, 'monitor', 'a monitor');
    const q = p.watching?.get(id);
    if (q !== undefined) {
      q.watchers?.delete(id);
      p.watching?.delete(id);
    }
    return {};
  },
  bye: (k, p) => {
    k.goodbye(p);
    return {};
  },
  chmod: (k, p, a) => {
    const mb = find(k, a);
    notAnInbox(mb, 'given another mode');
    ownerOnly(k, p, mb, 'change the mode of');
    mb.mode = onMailbox(mb, () => parseMode(a.mode));
    return rightsChanged(k, mb);
  },
  grant: (k, p, a) => {
    const mb = find(k, a);
    notAnInbox(mb, 'shared');
    ownerOnly(k, p, mb, 'grant rights on');
    const q = onMailbox(mb, () => findProcess(k, a.process));
    mb.group ??= new Set();
    mb.group.add(q.id);
    q.grantedOn ??= new Set();
    q.grantedOn.add(mb);
    return rightsChanged(k, mb);
  },
  revoke: (k, p, a) => {
    const mb = find(k, a);
    notAnInbox(mb, 'shared or unshared');
    ownerOnly(k, p, mb, 'revoke rights on');
    const q = onMailbox(mb, () => findProcess(k, a.process));
    mb.group?.delete(q.id);
    q.grantedOn?.delete(mb);
    return rightsChanged(k, mb);
  },
  transfer: (k, p, a) => {
    const mb = find(k, a);
    notAnInbox(mb, 'transferred');
    ownerOnly(k, p, mb, 'transfer');
    const q = onMailbox(mb, () => findProcess(k, a.process));
    mb.owner?.owned?.delete(mb);
    mb.owner = q;
    q.owned ??= new Set();
    q.owned.add(mb);
    return rightsChanged(k, mb);
  },
  release: (k, p, a) => {
    releaseHold(p, find(k, a));
    return {};
  },
  passkey: (k, p, a) => {
    const mb = find(k, a);
    const renew = optBool(a.renew, 'renew');
    // Whoever may act as its owner: one that lost the passkey its create was told asks again,
    // one that handed it too far replaces it. Not a member of an owned mailbox's group: a
    // passkey lets in whoever holds it, and letting others in is the owner's (grant).
    ownerOnly(k, p, mb, renew ? 'renew the passkey of' : 'be told the passkey of');
    if (renew) {
      notAnInbox(mb, 'given a passkey');
      // The old passkey opens nothing from now on; those it let in stay in the group, as those
      // inside stay when a lock is changed (revoke is how one is put out).
      mb.passkey = randomBytes(PASSKEY_BYTES).toString('hex');
      mb.times.changeTime = k.now;
    }
    return { passkey: mb.passkey };
  },
  set: (k, p, a) => {
    const mb = find(k, a);
    ownerOnly(k, p, mb, 'change the limits of');
    // Everything is checked before anything changes: a refused call leaves the limits as they were.
    const given = a.maxBytes === undefined ? null : onMailbox(mb, () => parseMaxBytes(k, a.maxBytes, 0));
    if (a.capacity !== undefined && mb.messageSize !== 0)
      throw new CallError(
        'EINVAL',
        `${mb.label} has fixed-size messages in a preallocated ring; its capacity cannot change`,
        mb,
      );
    const capacity = a.capacity === undefined ? mb.capacity : onMailbox(mb, () => parseCapacity(a.capacity));
    // A byte limit left at its capacity's default follows a new capacity, as if created with it:
    // kept, a mailbox made unbounded still held senders off at a bounded one's 64 MiB.
    const maxBytes =
      given ??
      (mb.maxBytes === parseMaxBytes(k, undefined, mb.capacity)
        ? parseMaxBytes(k, undefined, capacity)
        : mb.maxBytes);
    mb.maxBytes = maxBytes;
    mb.capacity = capacity;
    mb.times.changeTime = k.now;
    mb.refuseBlockedOverLimit();
    mb.admitBlocked();
    return describe(k, mb);
  },
};

/** Makes the mailbox a `create` asks for, or opens the one it finds (`ifExists: 'open'`). */
function create(k: Kernel, p: KernelProcess, a: Args, name: string | null): Args {
  const key = a.key === undefined || a.key === null || a.key === 0 ? 0 : safeInt(a.key, 'key');
  const withPasskey = optBool(a.passkey, 'passkey');
  const ifExists = a.ifExists ?? 'fail';
  if (ifExists !== 'fail' && ifExists !== 'open')
    throw new CallError('EINVAL', "ifExists must be 'fail' or 'open'");
  const existing =
    name !== null ? k.mailboxByName.get(name) : key !== 0 ? k.mailboxByKey.get(key) : undefined;
  if (existing !== undefined) {
    const what = name !== null ? `mailbox '${name}'` : `the mailbox with key ${key}`;
    if (ifExists === 'fail') throw new CallError('EEXIST', `${what} exists (#${existing.id})`, existing);
    return openHandle(k, p, existing, a);
  }
  // A key names one mailbox, as a System V key names one queue: a second, under another name,
  // would hide the first from msgget for good.
  const keyed = key !== 0 ? k.mailboxByKey.get(key) : undefined;
  if (keyed !== undefined)
    throw new CallError(
      'EEXIST',
      `key 0x${(key >>> 0).toString(16).padStart(8, '0')} is taken by ${keyed.label} (#${keyed.id})`,
      keyed,
    );
  if (k.mailboxes.size >= k.limits.maxMailboxes) {
    throw new CallError(
      'ENOMEM',
      `the kernel's limit of ${k.limits.maxMailboxes} mailboxes is reached (postbox kernel --max-mailboxes)`,
    );
  }
  const system = optBool(a.system, 'system');
  const attrs = parseAttributes(k, a, system);
  const mb = new Mailbox(k, k.nextMailboxId++, name, attrs, p, system);
  k.mailboxes.set(mb.id, mb);
  k.listed.add(mb.id);
  if (name !== null) k.mailboxByName.set(name, mb);
  if (key !== 0) {
    mb.key = key;
    k.mailboxByKey.set(key, mb);
  }
  p.owned ??= new Set();
  p.owned.add(mb);
  // Before the handle, whose description says the mailbox has one.
  if (withPasskey) mb.passkey = randomBytes(PASSKEY_BYTES).toString('hex');
  const opened = openHandle(k, p, mb, a, true);
  // Only its creator learns it: an open, or a create that finds the mailbox there, does not.
  if (withPasskey) opened.passkey = mb.passkey;
  return opened;
}

/** Runs one CALL and answers it. */
export function handleCall(k: Kernel, p: KernelProcess, request: number, payload: unknown): void {
  if (typeof payload !== 'object' || payload === null || typeof (payload as Args).op !== 'string') {
    k.replyError(p, request, 'EINVAL', "CALL payload must be a JSON object with a string 'op'");
    return;
  }
  const args = payload as Args;
  const handler = Object.hasOwn(handlers, args.op as string) ? handlers[args.op as string] : undefined;
  if (handler === undefined) {
    k.replyError(
      p,
      request,
      'EINVAL',
      `unknown operation '${String(args.op)}'; known: ${Object.keys(handlers).join(', ')}`,
    );
    return;
  }
  answerCall(k, p, request, args, handler);
}

/**
 * Runs a CALL's handler and answers it: its RESULT, or the ERROR of the refusal it threw. Anything
 * else it throws is a bug in the kernel, not a fault of the request: said so (EIO, and the log),
 * never as an EINVAL that would send the caller looking for what it did wrong.
 */
export function answerCall(k: Kernel, p: KernelProcess, request: number, args: Args, handler: Handler): void {
  try {
    k.reply(p, request, handler(k, p, args));
  } catch (err) {
    if (err instanceof CallError) k.replyError(p, request, err.code, err.message, err.mailbox, err.detail);
    else k.callFault(p, request, String(args.op), err);
  }
}

function describe(k: Kernel, mb: Mailbox): Args {
  return {
    id: mb.id,
    name: mb.name,
    capacity: Number.isFinite(mb.capacity) ? mb.capacity : null,
    maxMessageSize: mb.maxMessageSize,
    maxBytes: mb.maxBytes,
    order: mb.order,
    policy: mb.policy,
    messageSize: mb.messageSize,
    key: mb.key,
    endOnLastWriter: mb.endOnLastWriter,
    requireReader: mb.requireReader,
    admission: mb.admission,
    rightsAtOpen: mb.rightsAtOpen,
    unlinked: mb.unlinked,
    // Whether it has one, not what it is: what a process holding a passkey for some other
    // mailbox (the command line's $POSTBOX_PASSKEY) needs, to present it only where it opens.
    hasPasskey: mb.passkey !== null,
    mode: mb.mode,
    owner: mb.owner?.id ?? null,
    system: mb.systemOwned,
    group: mb.group === null ? [] : [...mb.group],
    kernelMaxCredit: k.limits.maxCredit,
  };
}

/**
 * The process ids of the first {@link STAT_IDS} operations of a line, its length counted apart:
 * one process with 20,000 receives waiting made a stat of 20,000 ids, and an `ls` page of such
 * mailboxes an answer of megabytes.
 */
function firstIds(line: Iterable<{ readonly peer: { readonly id: number } }>): number[] {
  const ids: number[] = [];
  for (const item of line) {
    if (ids.length === STAT_IDS) break;
    ids.push(item.peer.id);
  }
  return ids;
}

/** A process as `ps` shows it. */
function processRow(q: KernelProcess): Args {
  return {
    id: q.id,
    name: q.name,
    pid: q.osPid,
    host: q.host,
    transport: q.transport,
    inbox: q.inbox?.id ?? 0,
    inboxMessages: q.inbox?.count ?? 0,
    // The first names and a count, as a stat's lists: a process owning 300,000 mailboxes made
    // every `ps`, `ls` and `stat` an answer of 3.8 MB that held the kernel 150 ms.
    owns: q.owned === null ? [] : firstNames(q.owned),
    ownsCount: q.owned?.size ?? 0,
    blockedOn: q.blockedOn(),
    holds: q.holds(),
    watching: q.watching?.size ?? 0,
    handles: q.handles.size,
    unread: q.unread,
    connectedAt: q.connectedAt,
  };
}

/** The most mailboxes `busiest` answers with: a screen's worth, many times over. */
const BUSIEST_LIMIT = 1000;
/** The mailboxes one `busiest` looks at: about 2 ms of the kernel's turn. */
const BUSIEST_SLICE = 10_000;

/**
 * How busy a mailbox looks to someone watching: its messages and everyone waiting on it (to
 * send, for a receipt, to receive). `postbox watch` ranks what it shows by the same sum.
 */
function busyness(mb: Mailbox): number {
  let receiving = 0;
  if (mb.receivers.length > 0) for (const w of mb.receivers) if (!w.stream || w.credit > 0) receiving++;
  return mb.count + mb.blocked.length + (mb.receiptWaits?.size ?? 0) + receiving;
}

/**
 * The `limit` busiest of the next {@link BUSIEST_SLICE} mailboxes after id `after` (inboxes
 * aside) that are busier than `above`, busiest first and, among equals, lowest id first; how
 * many it looked at, and the id to go on after (null: it reached the last). One pass, keeping
 * the best so far in order: most mailboxes are quiet, and a quiet one after the list is full is
 * passed over with one compare.
 */
function busiestMailboxes(
  k: Kernel,
  limit: number,
  after: number,
  above: number,
): { scanned: number; next: number | null; top: Mailbox[] } {
  const top: Mailbox[] = [];
  const scores: number[] = [];
  let scanned = 0;
  let last = after;
  // Indexed, not through `after()`'s generator, which also asks the table twice for each id.
  const ids = k.listed.all;
  for (let at = k.listed.indexAfter(after); at < ids.length; at++) {
    const mb = k.mailboxes.get(ids[at]!);
    if (mb === undefined) continue;
    if (scanned === BUSIEST_SLICE) return { scanned, next: last, top };
    scanned++;
    last = mb.id;
    const score = busyness(mb);
    if (score <= above) continue;
    // Ids come in ascending order, so an equal score after a full list loses to those in it.
    if (top.length === limit && score <= scores[limit - 1]!) continue;
    let i = top.length === limit ? limit - 1 : top.length;
    while (i > 0 && (scores[i - 1]! < score || (scores[i - 1] === score && top[i - 1]!.id > mb.id))) {
      if (i < limit) {
        top[i] = top[i - 1]!;
        scores[i] = scores[i - 1]!;
      }
      i--;
    }
    top[i] = mb;
    scores[i] = score;
  }
  return { scanned, next: null, top };
}

/** How the first {@link STAT_IDS} of a process's mailboxes are named in `processes`. */
function firstNames(owned: Iterable<Mailbox>): string[] {
  const names: string[] = [];
  for (const mb of owned) {
    if (names.length === STAT_IDS) break;
    names.push(mb.name ?? `#${mb.id}`);
  }
  return names;
}

function stat(k: Kernel, mb: Mailbox): Args {
  // A stream with no credit left (all of it pushed to the stream or held by its jobs in
  // progress) is in the line but waits for nothing: no message would go to it now.
  const receivers: number[] = [];
  let receiving = 0;
  // Iterators only where there is a line: an `ls` page is mostly mailboxes nobody waits on.
  if (mb.receivers.length > 0)
    for (const w of mb.receivers) {
      if (w.stream && w.credit === 0) continue;
      if (receiving++ < STAT_IDS) receivers.push(w.peer.id);
    }
  // Added to describe()'s object, not spread with it into a literal: an object built by spreads
  // went to V8's slow dictionary mode, and stat cost 87 µs a mailbox (`ls` of 20,000: 1.7 s).
  return Object.assign(describe(k, mb), {
    // The command line finds one mailbox by stat, not by listing them all, and must not take a
    // process's inbox for a mailbox (an inbox is reached through its process).
    inboxOf: mb.inboxOf === 0 ? null : mb.inboxOf,
    count: mb.count,
    bytes: mb.bytes,
    queued: mb.store.count,
    inflight: mb.inflight,
    waitingSenders: mb.blocked.length === 0 ? [] : firstIds(mb.blocked),
    waitingSendersCount: mb.blocked.length,
    waitingReceipts: mb.receiptWaits === null || mb.receiptWaits.size === 0 ? [] : firstIds(mb.receiptWaits),
    waitingReceiptsCount: mb.receiptWaits?.size ?? 0,
    waitingReceivers: receivers,
    waitingReceiversCount: receiving,
    holders: [...mb.holders],
    opens: mb.opens,
    readers: mb.readers,
    writers: mb.writers,
    sent: mb.sent,
    received: mb.received,
    replaced: mb.replaced,
    dropped: mb.dropped,
    lastSendTime: mb.times.lastSendTime,
    lastSendProcess: mb.times.lastSendProcess,
    lastSendPid: mb.times.lastSendPid,
    lastReceiveTime: mb.times.lastReceiveTime,
    lastReceiveProcess: mb.times.lastReceiveProcess,
    lastReceivePid: mb.times.lastReceivePid,
    changeTime: mb.times.changeTime,
    createTime: mb.times.createTime,
  });
}

/** Refuses a handle past the per-process limit, before anything is created or opened. */
function roomForHandle(k: Kernel, p: KernelProcess): void {
  if (p.handles.size >= k.limits.maxPerProcess)
    throw new CallError('ENOMEM', overLimit(p, p.handles.size, 'handles open'));
}

/** The refusal of one more of something a process holds too many of. */
export function overLimit(p: KernelProcess, count: number, what: string): string {
  return `${p.label} has ${count} ${what}, the kernel's limit per process (postbox kernel --max-per-process)`;
}

/** Registers a handle for p on mb (its role counts for pipes and FIFOs) and describes mb. */
function openHandle(k: Kernel, p: KernelProcess, mb: Mailbox, a: Args, created = false): Args {
  const role = a.role ?? 'both';
  if (role !== 'read' && role !== 'write' && role !== 'both' && role !== 'none') {
    throw new CallError('EINVAL', "role must be 'read', 'write', 'both' or 'none'", mb);
  }
  // 'none': a handle that only manages the mailbox (mkfifo's): it counts as neither end.
  const read = role === 'read' || role === 'both';
  const write = role === 'write' || role === 'both';
  if (typeof a.passkey === 'string' && !created) presentPasskey(k, p, mb, a.passkey);
  if ((mb.rightsAtOpen || mb.endOnLastWriter) && !created) {
    // Rights are checked here, once, as mq_open does; the creator needs none (its mode may
    // even deny it). A FIFO's too, as open(2) checks them: a writer it would refuse waited for
    // a reader first, and that reader then met end of file. (Its sends are checked as well.)
    const bits = k.modeBits(p, mb);
    if ((read && (bits & 4) === 0) || (write && (bits & 2) === 0)) {
      throw new CallError(
        'EACCES',
        `${p.label} may not open ${mb.label} (mode 0${mb.mode.toString(8).padStart(3, '0')}) for ${read && write ? 'reading and writing' : read ? 'reading' : 'writing'}${mb.passkey === null ? '' : ': it opens to those it was handed to, with its passkey'}`,
        mb,
      );
    }
  }
  const handle = k.nextHandleId++;
  p.handles.set(handle, { mailbox: mb, read, write });
  p.roles ??= new Map();
  let roles = p.roles.get(mb);
  if (roles === undefined) {
    roles = { read: 0, write: 0, ids: new Set() };
    p.roles.set(mb, roles);
    mb.openers.add(p);
  }
  roles.ids.add(handle);
  if (read) roles.read++;
  if (write) roles.write++;
  mb.openHandle(read, write);
  const described = describe(k, mb);
  described.handle = handle;
  return described;
}

/** 128 bits: guessing one is out of reach, and a pipe's env line stays short. */
const PASSKEY_BYTES = 16;

/**
 * An opener that presents the mailbox's passkey joins its group, as a grant from the owner
 * would make it: the rights are then the mode's, checked as any other process's.
 */
function presentPasskey(k: Kernel, p: KernelProcess, mb: Mailbox, passkey: string): void {
  const given = Buffer.from(passkey);
  const ours = mb.passkey === null ? null : Buffer.from(mb.passkey);
  // Compared in constant time: a comparison that stops at the first wrong byte tells, by its
  // time, how much of a guess was right.
  if (ours === null || given.length !== ours.length || !timingSafeEqual(given, ours))
    throw new CallError('EACCES', `${p.label} may not open ${mb.label}: the passkey does not open it`, mb);
  if (mb.owner === p || mb.group?.has(p.id)) return;
  mb.group ??= new Set();
  mb.group.add(p.id);
  p.grantedOn ??= new Set();
  p.grantedOn.add(mb);
  rightsChanged(k, mb);
}

/** The most of an argument an error shows: the message is for people, not an echo of the CALL. */
const SHOWN_CHARS = 80;

/**
 * An argument as an error names it: as JSON, cut to {@link SHOWN_CHARS}. A CALL may carry a
 * string of a megabyte, or arrays nested 20,000 deep, which JSON.stringify cannot write (it
 * overflows the stack): the error then said only "Maximum call stack size exceeded".
 */
function shown(v: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch {
    return `${Array.isArray(v) ? 'an array' : 'an object'} nested too deep to show`;
  }
  if (text === undefined) return String(v);
  return text.length <= SHOWN_CHARS ? text : `${text.slice(0, SHOWN_CHARS)}… (${text.length} characters)`;
}

function safeInt(v: unknown, name: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw new CallError('EINVAL', `${name} must be an integer, not ${shown(v)}`);
}

/** Mailbox and process ids are 32 bits on the wire (SEND's target, RECEIVE's from, …). */
const MAX_WIRE_ID = 0xffffffff;

/**
 * An argument that names something by its id: what can name nothing (0, 1.5, -1, past the ids
 * there can be, a string) is EINVAL naming the argument. Answered as an unknown id (ENOENT,
 * ESRCH) or ignored, a third-party client's mistake would read as a mailbox removed, a process
 * that has ended, or a close that closed something.
 */
function idArg(v: unknown, arg: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= max) return v;
  throw new CallError(
    'EINVAL',
    `${arg} must be ${what} id (a whole number from 1 to ${max}), not ${shown(v)}`,
  );
}

/** A mailbox by `key`, else `id`, else `name`; null or absent (and key 0) name nothing. */
function find(k: Kernel, a: Args): Mailbox {
  if (a.key !== undefined && a.key !== null && a.key !== 0) {
    const key = safeInt(a.key, 'key');
    const mb = k.mailboxByKey.get(key);
    if (mb === undefined) throw new CallError('ENOENT', `no mailbox with key ${key}`);
    return mb;
  }
  if (a.id !== undefined && a.id !== null) {
    const id = idArg(a.id, 'id', 'a mailbox', MAX_WIRE_ID);
    const mb = k.mailboxes.get(id);
    // Named as a SEND to it is: by its old name, if it had one.
    if (mb === undefined) throw new CallError('ENOENT', k.goneMessage(id), k.goneSubject(id));
    return mb;
  }
  if (a.name !== undefined && a.name !== null) {
    if (typeof a.name !== 'string')
      throw new CallError('EINVAL', `name must be a mailbox name (a string), not ${shown(a.name)}`);
    const mb = k.mailboxByName.get(a.name);
    if (mb === undefined) throw new CallError('ENOENT', `no mailbox '${a.name}'`, a.name);
    return mb;
  }
  throw new CallError('EINVAL', 'name a mailbox by key (number), id (number) or name (string)');
}

/**
 * `target` as a process id or name. What can name no process is EINVAL: answered ESRCH, or a
 * monitor's noproc, a typo (0, 1.5, '') would read as a process that has ended.
 */
function processRef(target: unknown): number | string {
  if (typeof target === 'string') {
    if (target.length === 0) throw new CallError('EINVAL', 'process must be a process id or name, not ""');
    return target;
  }
  if (typeof target === 'number') return idArg(target, 'process', 'a process', MAX_WIRE_ID);
  throw new CallError(
    'EINVAL',
    `process must be a process id (a number) or name (a string), not ${target === undefined ? 'absent' : shown(target)}`,
  );
}

function findProcess(k: Kernel, ref: unknown): KernelProcess {
  const target = processRef(ref);
  if (typeof target === 'number') {
    const q = k.processes.get(target);
    if (q === undefined)
      throw new CallError(
        'ESRCH',
        target < k.nextProcessId ? `process ${target} has terminated` : `no process ${target}`,
        undefined,
        { process: String(target) },
      );
    return q;
  }
  const q = k.processByName.get(target);
  if (q === undefined)
    throw new CallError('ESRCH', `no process named '${target}'`, undefined, { process: target });
  return q;
}

/**
 * An inbox is its process's: only it receives, and it goes when its process ends. Changing its
 * rights or owner, or removing it while its process lives, would leave direct sends going to a
 * mailbox nobody may read.
 */
function notAnInbox(mb: Mailbox, what: string): void {
  if (mb.inboxOf === 0) return;
  throw new CallError(
    'EPERM',
    `${mb.label} cannot be ${what}: an inbox belongs to its process, and goes when it ends`,
    mb,
  );
}

/**
 * Who may do what on `mb` changed (mode, group, owner): receives and sends waiting there that
 * have lost their right end with EACCES now, not when they would next be served.
 */
function rightsChanged(k: Kernel, mb: Mailbox): Args {
  mb.rightsChanged++;
  k.recheckWaiters(mb);
  mb.times.changeTime = k.now;
  return describe(k, mb);
}

/**
 * Refuses `what` to anyone but mb's owner: EACCES naming the owner (err.process) as the one who
 * may, or none once it has gone.
 */
function ownerOnly(k: Kernel, p: KernelProcess, mb: Mailbox, what: string): void {
  if (mb.owner === p) return;
  // An unowned (system) mailbox has no one else to ask: anyone may act as its owner. One with a
  // passkey was handed to its group: an anonymous pipe whose creator has gone is its holders',
  // not any process's that guessed its id (and could then grant itself the pipe).
  if (mb.owner === null && (mb.passkey === null || mb.group?.has(p.id) === true)) return;
  throw new CallError(
    'EACCES',
    mb.owner === null
      ? `${p.label} may not ${what} ${mb.label}: its owner has gone, and only the processes it was handed to (by its passkey) may`
      : `${p.label} may not ${what} ${mb.label}: only its owner, ${mb.owner.label}, may`,
    mb,
    mb.owner === null ? undefined : { process: k.processSubject(mb.owner.id) },
  );
}

function optName(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length === 0)
    throw new CallError('EINVAL', `name must be a string of 1 to ${MAX_MAILBOX_NAME} characters`);
  if (v.length > MAX_MAILBOX_NAME)
    throw new CallError(
      'ENAMETOOLONG',
      `a mailbox name is at most ${MAX_MAILBOX_NAME} characters, not ${v.length}`,
    );
  const bad = badMailboxName(v);
  if (bad !== null) throw new CallError('EINVAL', bad);
  return v;
}

/** A yes-or-no attribute: `system: 1` or `'yes'` is refused, not read as no. */
function optBool(v: unknown, name: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === 'boolean') return v;
  throw new CallError('EINVAL', `${name} must be true or false, not ${shown(v)}`);
}

function parseCapacity(v: unknown): number {
  if (v === null || v === 'unbounded' || v === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new CallError(
    'EINVAL',
    `capacity must be 0, a positive whole number or 'unbounded', not ${shown(v)}`,
  );
}

function positiveInt(v: unknown, name: string, allowZero = false): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && (v > 0 || (allowZero && v === 0))) return v;
  throw new CallError('EINVAL', `${name} must be a positive whole number, not ${shown(v)}`);
}

/**
 * A mailbox's byte limit. An unbounded mailbox never makes a sender wait (the contract), so
 * unless it asks for one it has no byte limit of its own: only the kernel's total holds it
 * (ENOMEM). `null` or 'unbounded' (JSON's Infinity) ask for that on any mailbox.
 */
function parseMaxBytes(k: Kernel, v: unknown, capacity: number): number {
  if (v === null || v === 'unbounded') return k.limits.maxTotalBytes;
  if (v === undefined) return Number.isFinite(capacity) ? k.limits.maxMailboxBytes : k.limits.maxTotalBytes;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new CallError('EINVAL', `maxBytes must be a whole number of bytes or 'unbounded', not ${shown(v)}`);
}

function parseAdmission(v: unknown): 'in-order' | 'fits' {
  if (v === undefined || v === 'in-order') return 'in-order';
  if (v === 'fits') return 'fits';
  throw new CallError('EINVAL', `admission must be 'in-order' or 'fits', not ${shown(v)}`);
}

function parseMode(v: unknown): number {
  const n = typeof v === 'string' && /^0?[0-7]{3}$/.test(v) ? Number.parseInt(v, 8) : v;
  if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0o777) return n;
  throw new CallError('EINVAL', `mode must be three octal digits such as '0662', not ${shown(v)}`);
}

function parseAttributes(k: Kernel, a: Args, system: boolean): MailboxAttributes {
  const order = a.order ?? 'fifo';
  if (order !== 'fifo' && order !== 'priority')
    throw new CallError('EINVAL', "order must be 'fifo' or 'priority'");
  const policy = a.policy ?? 'first';
  if (policy !== 'first' && policy !== 'round-robin' && policy !== 'exclusive' && policy !== 'pair') {
    throw new CallError('EINVAL', "policy must be 'first', 'round-robin', 'exclusive' or 'pair'");
  }
  const maxMessageSize =
    a.maxMessageSize === undefined
      ? k.limits.maxMessageSize
      : positiveInt(a.maxMessageSize, 'maxMessageSize');
  if (maxMessageSize > k.limits.maxMessageSize) {
    throw new CallError(
      'EINVAL',
      `maxMessageSize ${maxMessageSize} is over the kernel's limit of ${k.limits.maxMessageSize}`,
    );
  }
  const capacity = a.capacity === undefined ? Number.POSITIVE_INFINITY : parseCapacity(a.capacity);
  let messageSize = 0;
  if (a.messageSize !== undefined && a.messageSize !== 0) {
    messageSize = positiveInt(a.messageSize, 'messageSize');
    if (messageSize > maxMessageSize)
      throw new CallError('EINVAL', `messageSize ${messageSize} is over maxMessageSize ${maxMessageSize}`);
    if (!Number.isFinite(capacity) || capacity < 1) {
      throw new CallError(
        'EINVAL',
        'a fixed messageSize needs a bounded capacity of at least 1 (the ring is preallocated)',
      );
    }
    if (capacity * (messageSize + 56) > Math.min(k.limits.maxTotalBytes, 2 ** 31 - 1)) {
      throw new CallError(
        'ENOMEM',
        `a ring of ${capacity} × ${messageSize}-byte messages is over the kernel's memory limit`,
      );
    }
  }
  return {
    capacity,
    messageSize,
    endOnLastWriter: optBool(a.endOnLastWriter, 'endOnLastWriter'),
    transient: optBool(a.transient, 'transient'),
    requireReader: optBool(a.requireReader, 'requireReader'),
    admission: parseAdmission(a.admission),
    rightsAtOpen: optBool(a.rightsAtOpen, 'rightsAtOpen'),
    maxMessageSize,
    maxBytes: parseMaxBytes(k, a.maxBytes, capacity),
    order,
    policy,
    mode: a.mode === undefined ? (system ? SYSTEM_OWNED_MODE : PROCESS_OWNED_MODE) : parseMode(a.mode),
  };
}

/**
 * Gives up p's receive right on mb (exclusive) or its place in the pair, if it has one. Its
 * receives waiting there end (and a pair's sends), their pushed messages going back: left
 * waiting, they went on taking what the right's next holder was waiting for.
 */
function releaseHold(p: KernelProcess, mb: Mailbox): void {
  const i = mb.holders.indexOf(p.id);
  if (i < 0) return;
  mb.holders.splice(i, 1);
  p.holding?.delete(mb);
  const why = `${p.label} gave up its ${mb.policy === 'pair' ? 'place in' : 'receive right on'} ${mb.label}`;
  for (const w of [...mb.receivers]) if (w.peer === p) mb.endReceive(w, 'ECANCELED', why);
  if (mb.policy === 'pair')
    for (const sw of mb.blocked.toArray()) if (sw.peer === p) mb.withdrawSend(sw, 'ECANCELED', why);
  mb.pump();
}

/** Whether p still has a handle open on mb. */
function hasHandleOn(p: KernelProcess, mb: Mailbox): boolean {
  for (const h of p.handles.values()) if (h.mailbox === mb) return true;
  return false;
}

/** The most that one process's unfinished sends hold (for `postbox limits`). */
function mostWaitingBytes(k: Kernel): number {
  let most = 0;
  for (const q of k.processes.values()) if (q.waitingBytes > most) most = q.waitingBytes;
  return most;
}

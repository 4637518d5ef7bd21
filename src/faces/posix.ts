/**
 * POSIX message queues (`mq_overview(7)`) over Postbox mailboxes: the same names, flags and
 * errors as Linux. A queue is a system-owned mailbox ordered by priority, named like `/mq`;
 * a descriptor is a handle on it with an access mode and O_NONBLOCK.
 *
 * @example
 * ```ts
 * import { mq_open, mq_send, mq_receive, O_CREAT, O_RDWR } from 'postbox/posix';
 * const mqd = await mq_open('/mq', O_CREAT | O_RDWR, 0o644, { mq_maxmsg: 10, mq_msgsize: 64 });
 * await mq_send(mqd, 'Hello!', 1);
 * const { data, priority } = await mq_receive(mqd, 64);
 * ```
 */
import type { Mailbox, MailboxInfo } from '../client/mailbox.js';
import type { Message } from '../client/message.js';
import { describeValue, type OptionNames, unknownOption } from '../client/option-names.js';
import { badProcess } from '../client/option-values.js';
import { connect, type PostboxProcess } from '../client/process.js';
import {
  BadDescriptorError,
  BusyError,
  ExistsError,
  InvalidArgumentError,
  MessageSizeError,
  NameTooLongError,
  NotFoundError,
  PermissionError,
  PostboxError,
  TimeoutError,
  WouldBlockError,
} from '../protocol/errors.js';
import { MAX_TIMEOUT_MS } from '../protocol/frame.js';

/** `mq_open` access mode: receive only. */
export const O_RDONLY = 0;
/** `mq_open` access mode: send only. */
export const O_WRONLY = 1;
/** `mq_open` access mode: send and receive. */
export const O_RDWR = 2;
/** `mq_open` flag: create the queue if it does not exist (with `mode` and `attr`). */
export const O_CREAT = 0o100;
/** `mq_open` flag, with {@link O_CREAT}: EEXIST if the queue exists. */
export const O_EXCL = 0o200;
/** `mq_open` / `mq_setattr` flag: a full send or an empty receive fails with EAGAIN instead of waiting. */
export const O_NONBLOCK = 0o4000;
/** Priorities are 0 … MQ_PRIO_MAX − 1. */
export const MQ_PRIO_MAX = 32768;
/** Linux's default `mq_maxmsg` (/proc/sys/fs/mqueue/msg_default). */
export const MQ_DEFAULT_MAXMSG = 10;
/** Linux's default `mq_msgsize` (/proc/sys/fs/mqueue/msgsize_default). */
export const MQ_DEFAULT_MSGSIZE = 8192;
/** The largest `mq_maxmsg` (Linux's unprivileged `msg_max`). */
export const MQ_MAXMSG_MAX = 10;
/** The largest `mq_msgsize` (Linux's `msgsize_max`), or the kernel's `--max-message-size` if smaller. */
export const MQ_MSGSIZE_MAX = 8192;
const NAME_MAX = 255;

/** `struct mq_attr`. */
export interface MqAttr {
  mq_flags: number;
  mq_maxmsg: number;
  mq_msgsize: number;
  mq_curmsgs: number;
}

/** An absolute time: a Date, ms since the epoch, or a `struct timespec`. */
export type AbsTime = Date | number | { tv_sec: number; tv_nsec: number };

interface Descriptor {
  mailbox: Mailbox;
  access: number;
  nonblock: boolean;
  msgsize: number;
}

/**
 * The queue behind a descriptor, as an error names it: a program with several open tells which
 * was full, empty or too small from the message, as the contract asks of every error.
 */
function queue(d: Descriptor): string {
  return d.mailbox.name === null ? `queue #${d.mailbox.id}` : `queue '${d.mailbox.name}'`;
}

/** The error's subject: the queue's name, as `err.mailbox`. */
function about(d: Descriptor): { mailbox: string } {
  return { mailbox: d.mailbox.name ?? `#${d.mailbox.id}` };
}

/**
 * The POSIX queue functions bound to one process (a process's descriptor table).
 *
 * @example
 * ```ts
 * const mq = posix(await connect());
 * const d = await mq.mq_open('/jobs', O_CREAT | O_WRONLY);
 * ```
 */
export class PosixQueues {
  readonly process: PostboxProcess;
  readonly #fds = new Map<number, Descriptor>();
  /** This process's mq_notify registrations, by mailbox id: Linux's are per queue, not per descriptor. */
  readonly #notifying = new Map<number, () => Promise<void>>();
  #nextFd = 3;

  constructor(process: PostboxProcess) {
    this.process = process;
    // Bound, as the module's own functions are: `const { mq_send } = posix(proc)` must work.
    this.mq_open = this.mq_open.bind(this);
    this.mq_send = this.mq_send.bind(this);
    this.mq_timedsend = this.mq_timedsend.bind(this);
    this.mq_receive = this.mq_receive.bind(this);
    this.mq_timedreceive = this.mq_timedreceive.bind(this);
    this.mq_getattr = this.mq_getattr.bind(this);
    this.mq_setattr = this.mq_setattr.bind(this);
    this.mq_close = this.mq_close.bind(this);
    this.mq_unlink = this.mq_unlink.bind(this);
    this.mq_notify = this.mq_notify.bind(this);
    this.closeAll = this.closeAll.bind(this);
  }

  /** Opens (or with O_CREAT creates) a queue; returns a descriptor. */
  async mq_open(name: string, oflag: number, mode = 0o666, attr?: Partial<MqAttr> | null): Promise<number> {
    checkName(name);
    if (!Number.isInteger(oflag) || oflag < 0)
      throw new InvalidArgumentError(
        `mq_open: oflag must be a number made of O_ flags, not ${describeValue(oflag)}`,
      );
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
      throw new InvalidArgumentError(`mq_open: mode must be a number like 0o644, not ${describeValue(mode)}`);
    if (attr !== undefined && attr !== null && typeof attr !== 'object')
      throw new InvalidArgumentError(
        `mq_open: attr must be an mq_attr object or null, not ${describeValue(attr)}`,
      );
    // A misspelt field (mq_maxmsgs) would make a queue of the default size without a word.
    const misspelt = attr == null ? null : unknownOption(attr, MQ_ATTR_FIELDS, 'mq_open: attr');
    if (misspelt !== null) throw misspelt;
    const access = oflag & 3;
    const role: 'read' | 'write' | 'both' | 'none' =
      access === O_RDONLY ? 'read' : access === O_WRONLY ? 'write' : access === O_RDWR ? 'both' : 'none';
    let mailbox: Mailbox | undefined;
    let created = false;
    if ((oflag & O_CREAT) !== 0) {
      const maxmsg = attr?.mq_maxmsg ?? MQ_DEFAULT_MAXMSG;
      // Linux's default size, unless the kernel takes less (as msgsize_default is capped by
      // msgsize_max); a size asked for is checked against the kernel as given.
      const msgsize = attr?.mq_msgsize ?? Math.min(MQ_DEFAULT_MSGSIZE, this.process.limits.maxMessageSize);
      // As Linux, the attributes matter (and are checked) only when the queue is created.
      let bad: string | null = null;
      if (attr != null) {
        if (!Number.isInteger(maxmsg) || maxmsg <= 0 || maxmsg > MQ_MAXMSG_MAX)
          bad = `mq_open: mq_maxmsg must be an integer within 1…${MQ_MAXMSG_MAX}, not ${describeValue(maxmsg)}`;
        else if (!Number.isInteger(msgsize) || msgsize <= 0 || msgsize > MQ_MSGSIZE_MAX)
          bad = `mq_open: mq_msgsize must be an integer within 1…${MQ_MSGSIZE_MAX}, not ${describeValue(msgsize)}`;
        else if (msgsize > this.process.limits.maxMessageSize)
          // As Linux's msgsize_max: the kernel's own limit bounds what a queue may take.
          bad = `mq_open: mq_msgsize ${msgsize} is over the kernel's message size limit of ${this.process.limits.maxMessageSize} (postbox kernel --max-message-size)`;
      }
      const create = {
        capacity: maxmsg,
        maxMessageSize: msgsize,
        maxBytes: maxmsg * msgsize,
        order: 'priority' as const,
        mode: mode & 0o777,
        system: true,
        // As mq_open: the mode is checked when a descriptor opens, and the creator needs none.
        rightsAtOpen: true,
        role,
      };
      // Linux's order: an existing queue with O_EXCL is EEXIST, before attributes (which only
      // matter when creating) and before permissions (checked by the kernel when it opens).
      for (let attempt = 0; mailbox === undefined && attempt < 3; attempt++) {
        if (bad === null) {
          try {
            mailbox = await this.process.createMailbox(name, create);
            created = true;
            break;
          } catch (err) {
            if (!(err instanceof PostboxError && err.code === 'EEXIST')) throw err;
          }
        } else {
          // The attributes are invalid: an error only if the queue must be created.
          try {
            (await this.process.openMailbox(name, { role: 'none' })).close();
          } catch (err) {
            if (err instanceof PostboxError && err.code === 'ENOENT') throw new InvalidArgumentError(bad);
            throw err;
          }
        }
        if ((oflag & O_EXCL) !== 0)
          throw new ExistsError(`mq_open: queue '${name}' exists`, { mailbox: name });
        try {
          mailbox = await this.process.openMailbox(name, { role });
        } catch (err) {
          // Unlinked in between: try creating it again.
          if (!(err instanceof PostboxError && err.code === 'ENOENT')) throw err;
        }
      }
      if (mailbox === undefined)
        throw new NotFoundError(`mq_open: queue '${name}' keeps vanishing`, { mailbox: name });
    } else {
      try {
        mailbox = await this.process.openMailbox(name, { role });
      } catch (err) {
        if (err instanceof PostboxError && err.code === 'ENOENT')
          throw new NotFoundError(`mq_open: no queue '${name}'`, { mailbox: name });
        throw err;
      }
    }
    const info = mailbox.info;
    if (info.order !== 'priority' || info.capacity === null) {
      mailbox.close();
      throw new InvalidArgumentError(`mq_open: '${name}' is a mailbox but not a POSIX queue`);
    }
    // Linux checks the access mode and the permissions of a queue that existed, not of one it
    // has just created (which gives a descriptor even for O_WRONLY|O_RDWR: it can neither send
    // nor receive).
    if (!created) {
      if (access === 3) {
        mailbox.close();
        throw new InvalidArgumentError(`mq_open: bad access mode in oflag 0${oflag.toString(8)}`);
      }
      const rights = rightsOf(info, this.process.id);
      const needs = (access === O_WRONLY ? 2 : access === O_RDONLY ? 4 : 6) & ~rights;
      if (needs !== 0) {
        mailbox.close();
        throw new PermissionError(
          `mq_open: '${name}' (mode 0${info.mode.toString(8).padStart(3, '0')}) may not be opened for ${access === O_RDONLY ? 'reading' : access === O_WRONLY ? 'writing' : 'reading and writing'}`,
          {
            mailbox: name,
          },
        );
      }
    }
    const fd = this.#nextFd++;
    this.#fds.set(fd, {
      mailbox,
      access,
      nonblock: (oflag & O_NONBLOCK) !== 0,
      msgsize: info.maxMessageSize,
    });
    return fd;
  }

  /** Sends with a priority; waits while full unless O_NONBLOCK (EAGAIN). */
  mq_send(mqd: number, msg: Uint8Array | string, prio: number): Promise<void> {
    return this.#send(mqd, msg, prio, null);
  }

  /** As mq_send, giving up at an absolute time (ETIMEDOUT). */
  mq_timedsend(
    mqd: number,
    msg: Uint8Array | string,
    prio: number,
    absTimeout: AbsTime | null,
  ): Promise<void> {
    return this.#send(mqd, msg, prio, absTimeout);
  }

  /** Takes the oldest message of the highest priority; `msgLen` must be at least mq_msgsize. */
  mq_receive(mqd: number, msgLen: number): Promise<{ data: Buffer; priority: number }> {
    return this.#receive(mqd, msgLen, null);
  }

  /** As mq_receive, giving up at an absolute time (ETIMEDOUT). */
  mq_timedreceive(
    mqd: number,
    msgLen: number,
    absTimeout: AbsTime | null,
  ): Promise<{ data: Buffer; priority: number }> {
    return this.#receive(mqd, msgLen, absTimeout);
  }

  /** The queue's attributes and this descriptor's flags. */
  async mq_getattr(mqd: number): Promise<MqAttr> {
    const d = this.#fd(mqd, 'mq_getattr');
    const stat = await d.mailbox.stat();
    return {
      mq_flags: d.nonblock ? O_NONBLOCK : 0,
      // The queue's capacity now, not when this descriptor opened: another face may change it
      // (msgctl IPC_SET, mailbox.setLimits), and every descriptor must say what the queue holds.
      mq_maxmsg: stat.capacity ?? Number.POSITIVE_INFINITY,
      mq_msgsize: d.msgsize,
      mq_curmsgs: stat.count,
    };
  }

  /** Changes O_NONBLOCK (the only flag that can change); returns the old attributes. */
  async mq_setattr(mqd: number, attr: Pick<MqAttr, 'mq_flags'>): Promise<MqAttr> {
    if (typeof attr !== 'object' || attr === null || !Number.isInteger(attr.mq_flags))
      throw new InvalidArgumentError(
        `mq_setattr: attr must be an object with an integer mq_flags, not ${describeValue(attr)}`,
      );
    if ((attr.mq_flags & ~O_NONBLOCK) !== 0)
      throw new InvalidArgumentError('mq_setattr: only O_NONBLOCK may be set in mq_flags');
    const misspelt = unknownOption(attr, MQ_ATTR_FIELDS, 'mq_setattr: attr');
    if (misspelt !== null) throw misspelt;
    const d = this.#fd(mqd, 'mq_setattr');
    const old = await this.mq_getattr(mqd);
    d.nonblock = (attr.mq_flags & O_NONBLOCK) !== 0;
    return old;
  }

  /** Closes a descriptor. An unlinked queue goes when its last descriptor closes. */
  async mq_close(mqd: number): Promise<void> {
    const d = this.#fd(mqd, 'mq_close');
    this.#fds.delete(mqd);
    // Linux drops the caller's registration when it closes any descriptor of the queue.
    const off = this.#notifying.get(d.mailbox.id);
    this.#notifying.delete(d.mailbox.id);
    await off?.().catch(() => {});
    // Resolves once the kernel has closed it: an unlinked queue is gone by then, as on Linux.
    await d.mailbox.close();
  }

  /** Removes the name now; the queue lives until its last descriptor closes. */
  async mq_unlink(name: string): Promise<void> {
    checkName(name);
    let mailbox: Mailbox;
    try {
      // A handle that neither reads nor writes: unlinking needs no rights on the queue itself.
      mailbox = await this.process.openMailbox(name, { role: 'none' });
    } catch (err) {
      if (err instanceof PostboxError && err.code === 'ENOENT')
        throw new NotFoundError(`mq_unlink: no queue '${name}'`, { mailbox: name });
      throw err;
    }
    try {
      // Queues and other mailboxes share names in Postbox, not on Linux: a mailbox that mq_open
      // would refuse is no queue to unlink either.
      if (mailbox.info.order !== 'priority' || mailbox.info.capacity === null)
        throw new NotFoundError(`mq_unlink: '${name}' is a mailbox but not a POSIX queue`, { mailbox: name });
      await mailbox.unlink();
    } finally {
      mailbox.close();
    }
  }

  /**
   * Registers (or with null, unregisters) this process to be told, once, when a message arrives
   * in the empty queue while nobody is blocked receiving. EBUSY while any process, this one
   * included, is registered.
   */
  async mq_notify(mqd: number, notification: (() => void) | null): Promise<void> {
    if (notification !== null && typeof notification !== 'function')
      throw new InvalidArgumentError(
        `mq_notify: the notification must be a function, or null to unregister; not ${describeValue(notification)}`,
      );
    const d = this.#fd(mqd, 'mq_notify');
    const id = d.mailbox.id;
    if (notification === null) {
      const off = this.#notifying.get(id);
      this.#notifying.delete(id);
      await off?.();
      return;
    }
    // Linux: EBUSY while anyone, the caller included, is registered.
    if (this.#notifying.has(id))
      throw new BusyError(`mq_notify: this process is already registered on descriptor ${mqd}'s queue`);
    // The notice can come before the registration's answer is awaited (a message sent in the
    // same breath): then the one-shot registration is already spent and is not recorded.
    let fired = false;
    let off: (() => Promise<void>) | null = null;
    off = await d.mailbox.notify(() => {
      fired = true;
      if (off !== null && this.#notifying.get(id) === off) this.#notifying.delete(id);
      notification();
    });
    if (!fired) this.#notifying.set(id, off);
  }

  /** Closes every descriptor. */
  async closeAll(): Promise<void> {
    for (const fd of [...this.#fds.keys()]) await this.mq_close(fd);
  }

  #fd(mqd: number, fn: string): Descriptor {
    const d = this.#fds.get(mqd);
    if (d === undefined)
      throw new BadDescriptorError(`${fn}: ${mqd} is not an open message queue descriptor`);
    return d;
  }

  async #send(
    mqd: number,
    msg: Uint8Array | string,
    prio: number,
    absTimeout: AbsTime | null,
  ): Promise<void> {
    // Linux's order: the priority, the deadline, the descriptor, its direction, the size.
    if (!Number.isInteger(prio) || prio < 0 || prio >= MQ_PRIO_MAX)
      throw new InvalidArgumentError(
        `mq_send: priority must be an integer within 0…${MQ_PRIO_MAX - 1}, not ${describeValue(prio)}`,
      );
    if (typeof msg !== 'string' && !(msg instanceof Uint8Array))
      throw new InvalidArgumentError(
        `mq_send: the message must be a string or bytes, not ${describeValue(msg)}`,
      );
    // As C's NULL abs_timeout: no deadline.
    const deadline = absTimeout === null || absTimeout === undefined ? null : toDeadline(absTimeout);
    const d = this.#fd(mqd, 'mq_send');
    if (d.access !== O_WRONLY && d.access !== O_RDWR)
      throw new BadDescriptorError(
        `mq_send: descriptor ${mqd} (${queue(d)}) is not open for writing`,
        about(d),
      );
    // Text goes as text (its UTF-8 bytes, with the string codec), as msgsnd and `postbox send`
    // send it: a library receiver of the same queue gets a string whichever face sent it.
    const size = typeof msg === 'string' ? Buffer.byteLength(msg) : msg.length;
    if (size > d.msgsize)
      throw new MessageSizeError(
        `mq_send: a ${size}-byte message is over the mq_msgsize of ${queue(d)}, ${d.msgsize}`,
        about(d),
      );
    for (;;) {
      const wait = waitFor(d.nonblock, deadline);
      try {
        await d.mailbox.send(msg, { priority: prio, ...wait.options });
        return;
      } catch (err) {
        if (!(err instanceof PostboxError)) throw err;
        // A past deadline was run as a non-blocking attempt: its EAGAIN is Linux's ETIMEDOUT.
        if (wait.pastDeadline && err.code === 'EAGAIN')
          throw new TimeoutError(`mq_timedsend: the time passed with ${queue(d)} full`, about(d));
        // A deadline further than one timeout can reach: a send that timed out was not
        // delivered (the kernel's answer settles it), so waiting again is safe.
        if (wait.partial && err.code === 'ETIMEDOUT') continue;
        // Said as mq_receive says its EAGAIN: the call, and why it did not wait.
        if (err.code === 'EAGAIN' && d.nonblock)
          throw new WouldBlockError(
            `mq_send: ${queue(d)} is full and descriptor ${mqd} is O_NONBLOCK`,
            about(d),
          );
        throw this.#closedWhileWaiting(err, mqd, d, 'mq_send');
      }
    }
  }

  /** A descriptor closed while a call on it waited: EBADF, not the handle's ENOTCONN. */
  #closedWhileWaiting(err: PostboxError, mqd: number, d: Descriptor, fn: string): PostboxError {
    if (err.code === 'ENOTCONN' && this.#fds.get(mqd) !== d)
      return new BadDescriptorError(
        `${fn}: descriptor ${mqd} (${queue(d)}) was closed while the call waited`,
        about(d),
      );
    return err;
  }

  async #receive(
    mqd: number,
    msgLen: number,
    absTimeout: AbsTime | null,
  ): Promise<{ data: Buffer; priority: number }> {
    if (!Number.isSafeInteger(msgLen) || msgLen < 0)
      throw new InvalidArgumentError(
        `mq_receive: msgLen must be a number of bytes, not ${describeValue(msgLen)}`,
      );
    // Linux's order: the deadline, the descriptor, its direction, the buffer's size.
    const deadline = absTimeout === null || absTimeout === undefined ? null : toDeadline(absTimeout);
    const d = this.#fd(mqd, 'mq_receive');
    if (d.access !== O_RDONLY && d.access !== O_RDWR)
      throw new BadDescriptorError(
        `mq_receive: descriptor ${mqd} (${queue(d)}) is not open for reading`,
        about(d),
      );
    if (msgLen < d.msgsize)
      throw new MessageSizeError(
        `mq_receive: a ${msgLen}-byte buffer is smaller than the mq_msgsize of ${queue(d)}, ${d.msgsize}`,
        about(d),
      );
    for (;;) {
      const wait = waitFor(d.nonblock, deadline);
      let m: Message | null;
      try {
        m = await d.mailbox.receive(wait.options);
      } catch (err) {
        if (!(err instanceof PostboxError)) throw err;
        // As in #send: nothing was taken by a receive that timed out.
        if (wait.partial && err.code === 'ETIMEDOUT') continue;
        throw this.#closedWhileWaiting(err, mqd, d, 'mq_receive');
      }
      if (m === null) {
        if (wait.pastDeadline)
          throw new TimeoutError(`mq_timedreceive: the time passed with ${queue(d)} empty`, about(d));
        throw new WouldBlockError(
          `mq_receive: ${queue(d)} is empty and descriptor ${mqd} is O_NONBLOCK`,
          about(d),
        );
      }
      return { data: Buffer.from(m.data), priority: m.priority };
    }
  }
}

/**
 * The POSIX queue functions bound to a process: its own descriptor table, its rights.
 *
 * @example
 * ```ts
 * import { connect } from 'postbox';
 * import { posix, O_CREAT, O_RDWR } from 'postbox/posix';
 * const { mq_open, mq_send, mq_receive } = posix(await connect());
 * const mqd = await mq_open('/mq', O_CREAT | O_RDWR, 0o600);
 * await mq_send(mqd, 'hello', 1);
 * console.log((await mq_receive(mqd, 8192)).data.toString()); // hello
 * ```
 */
export function posix(process: PostboxProcess): PosixQueues {
  const badProc = badProcess(process, 'posix()');
  if (badProc !== null) throw badProc;
  return new PosixQueues(process);
}

function checkName(name: string): void {
  // Linux (glibc passes the name after its '/'): an empty name is one no queue has.
  if (name === '/') throw new NotFoundError("mq: no queue '/'", { mailbox: name });
  if (typeof name !== 'string' || !name.startsWith('/') || name.length < 2) {
    throw new InvalidArgumentError(
      `'${String(name)}' is not a queue name: it must be '/' then a name, like '/mq'`,
    );
  }
  // NAME_MAX counts bytes, as Linux does: 'é' is two.
  if (Buffer.byteLength(name) - 1 > NAME_MAX)
    throw new NameTooLongError(`queue name is over ${NAME_MAX} bytes`);
  if (name.indexOf('/', 1) !== -1)
    throw new PermissionError(`'${name}': a queue name has no '/' after the first`);
}

function rightsOf(info: MailboxInfo, self: number): number {
  if (info.owner === self) return (info.mode >> 6) & 7;
  if (info.group.includes(self)) return (info.mode >> 3) & 7;
  return info.mode & 7;
}

/** Ms since the epoch; EINVAL, as Linux, for a time before it or a timespec out of range. */
function toDeadline(t: AbsTime): number {
  if (t instanceof Date) {
    const ms = t.getTime();
    if (!(ms >= 0)) throw new InvalidArgumentError(`invalid deadline ${String(t)}`);
    return ms;
  }
  if (typeof t === 'number') {
    if (!(t >= 0 && t <= Number.MAX_SAFE_INTEGER))
      throw new InvalidArgumentError(`invalid deadline ${t}: ms since the epoch, not negative`);
    return t;
  }
  if (typeof t !== 'object' || t === null)
    throw new InvalidArgumentError(
      `a deadline is a Date, ms since the epoch or { tv_sec, tv_nsec }, not ${describeValue(t)}`,
    );
  if (
    !Number.isSafeInteger(t.tv_sec) ||
    t.tv_sec < 0 ||
    !Number.isInteger(t.tv_nsec) ||
    t.tv_nsec < 0 ||
    t.tv_nsec >= 1e9
  ) {
    throw new InvalidArgumentError(`invalid timespec { tv_sec: ${t.tv_sec}, tv_nsec: ${t.tv_nsec} }`);
  }
  return t.tv_sec * 1000 + t.tv_nsec / 1e6;
}

/**
 * How a call waits. `partial`: the deadline is further away than one kernel timeout reaches
 * (49.7 days), so this wait is the first part of it.
 */
function waitFor(
  nonblock: boolean,
  deadline: number | null,
): { options: { nowait?: boolean; timeout?: number }; pastDeadline: boolean; partial: boolean } {
  if (nonblock) return { options: { nowait: true }, pastDeadline: false, partial: false };
  if (deadline === null) return { options: {}, pastDeadline: false, partial: false };
  const left = Math.ceil(deadline - Date.now());
  // A deadline already past: it may still succeed at once, but must not wait.
  if (left <= 0) return { options: { nowait: true }, pastDeadline: true, partial: false };
  if (left > MAX_TIMEOUT_MS)
    return { options: { timeout: MAX_TIMEOUT_MS }, pastDeadline: false, partial: true };
  return { options: { timeout: left }, pastDeadline: false, partial: false };
}

let defaultQueues: Promise<PosixQueues> | null = null;
/** The module's process once a call has found it connected: see {@link withQueues}. */
let connectedQueues: PosixQueues | null = null;

function queues(): Promise<PosixQueues> {
  if (defaultQueues === null) {
    const connecting = connect().then(
      (p) => new PosixQueues(p),
      (err: unknown) => {
        // A failed connect is not kept: the next call tries again (the kernel may be up by then).
        if (defaultQueues === connecting) defaultQueues = null;
        throw err;
      },
    );
    defaultQueues = connecting;
  }
  return defaultQueues;
}

/**
 * Makes a call on the module's process: at once once it is connected, not a turn later behind
 * an await, so an `mq_send` not awaited before `process.exit()` reaches the kernel
 * (src/client/exit-flush.ts), as one made through `posix(proc)` does. It is known connected only
 * in a call that waited for it, so no call overtakes one made before it that still waits.
 */
function withQueues<R>(op: (q: PosixQueues) => Promise<R>): Promise<R> {
  if (connectedQueues !== null) return op(connectedQueues);
  const pending = queues();
  return pending.then((q) => {
    if (defaultQueues === pending) connectedQueues = q;
    return op(q);
  });
}

/**
 * Opens (with {@link O_CREAT}, creates) the queue `name` (`/` then 1–255 bytes, no other `/`)
 * and resolves with a descriptor. `oflag` is {@link O_RDONLY}, {@link O_WRONLY} or
 * {@link O_RDWR}, with {@link O_CREAT}, {@link O_EXCL}, {@link O_NONBLOCK}; `mode` and `attr`
 * (`mq_maxmsg`, `mq_msgsize`) matter only when it creates. ENOENT without O_CREAT if there is
 * none, EEXIST with O_EXCL if there is, EACCES without the right asked for, EINVAL for a bad
 * name or attribute.
 *
 * The module-level functions share one process, connected on first use; {@link close} ends it
 * (`posix(proc)` binds them to a process of your own).
 *
 * @example
 * ```ts
 * const mqd = await mq_open('/mq', O_CREAT | O_RDWR, 0o644, { mq_maxmsg: 10, mq_msgsize: 64 });
 * ```
 */
export async function mq_open(
  name: string,
  oflag: number,
  mode?: number,
  attr?: Partial<MqAttr> | null,
): Promise<number> {
  return withQueues((q) => q.mq_open(name, oflag, mode, attr));
}
/**
 * Sends `msg` (a string or bytes, at most `mq_msgsize`: else EMSGSIZE) with priority `prio`
 * (0–32767). Waits while the queue is full, unless the descriptor is {@link O_NONBLOCK}: then
 * EAGAIN. EBADF if `mqd` is not open for writing.
 *
 * @example
 * ```ts
 * await mq_send(mqd, 'Hello!', 1);
 * ```
 */
export async function mq_send(mqd: number, msg: Uint8Array | string, prio: number): Promise<void> {
  return withQueues((q) => q.mq_send(mqd, msg, prio));
}
/**
 * {@link mq_send}, giving up with ETIMEDOUT at the absolute `absTimeout` (a `Date`, ms since the
 * epoch or `{ tv_sec, tv_nsec }`; `null` waits for ever). A deadline already past still sends
 * if there is room.
 *
 * @example
 * ```ts
 * await mq_timedsend(mqd, 'ping', 0, Date.now() + 500);
 * ```
 */
export async function mq_timedsend(
  mqd: number,
  msg: Uint8Array | string,
  prio: number,
  absTimeout: AbsTime | null,
): Promise<void> {
  return withQueues((q) => q.mq_timedsend(mqd, msg, prio, absTimeout));
}
/**
 * Takes the oldest message of the highest priority: `{ data, priority }`. `msgLen` must be at
 * least the queue's `mq_msgsize` (else EMSGSIZE). Waits while the queue is empty, unless the
 * descriptor is {@link O_NONBLOCK}: then EAGAIN. EBADF if `mqd` is not open for reading.
 *
 * @example
 * ```ts
 * const { data, priority } = await mq_receive(mqd, 64); // <Buffer 48 65 6c 6c 6f 21>, 1
 * ```
 */
export async function mq_receive(mqd: number, msgLen: number): Promise<{ data: Buffer; priority: number }> {
  return withQueues((q) => q.mq_receive(mqd, msgLen));
}
/**
 * {@link mq_receive}, giving up with ETIMEDOUT at the absolute `absTimeout` (a `Date`, ms since
 * the epoch or `{ tv_sec, tv_nsec }`; `null` waits for ever).
 *
 * @example
 * ```ts
 * const m = await mq_timedreceive(mqd, 64, { tv_sec: Math.floor(Date.now() / 1000) + 1, tv_nsec: 0 });
 * ```
 */
export async function mq_timedreceive(
  mqd: number,
  msgLen: number,
  absTimeout: AbsTime | null,
): Promise<{ data: Buffer; priority: number }> {
  return withQueues((q) => q.mq_timedreceive(mqd, msgLen, absTimeout));
}
/**
 * The queue's attributes: `{ mq_flags, mq_maxmsg, mq_msgsize, mq_curmsgs }` (`mq_flags` is
 * this descriptor's {@link O_NONBLOCK} or 0).
 *
 * @example
 * ```ts
 * const { mq_curmsgs } = await mq_getattr(mqd);
 * ```
 */
export async function mq_getattr(mqd: number): Promise<MqAttr> {
  return withQueues((q) => q.mq_getattr(mqd));
}
/**
 * Sets this descriptor's `mq_flags` (only {@link O_NONBLOCK} can be set) and resolves with the
 * attributes as they were before.
 *
 * @example
 * ```ts
 * await mq_setattr(mqd, { mq_flags: O_NONBLOCK });
 * ```
 */
export async function mq_setattr(mqd: number, attr: Pick<MqAttr, 'mq_flags'>): Promise<MqAttr> {
  return withQueues((q) => q.mq_setattr(mqd, attr));
}
/**
 * Closes the descriptor (and drops this process's notification); a call still waiting on it
 * fails with EBADF.
 *
 * @example
 * ```ts
 * await mq_close(mqd);
 * ```
 */
export async function mq_close(mqd: number): Promise<void> {
  return withQueues((q) => q.mq_close(mqd));
}
/**
 * Removes the name at once; the queue goes when its last descriptor closes. ENOENT if there is
 * no such queue; EACCES for a process that neither created it nor was granted it, while its
 * creator runs.
 *
 * @example
 * ```ts
 * await mq_unlink('/mq');
 * ```
 */
export async function mq_unlink(name: string): Promise<void> {
  return withQueues((q) => q.mq_unlink(name));
}
/**
 * Registers `notification`, called once when a message arrives in the empty queue while nobody
 * waits to receive; `null` unregisters. EBUSY while any process, this one included, is
 * registered.
 *
 * @example
 * ```ts
 * await mq_notify(mqd, () => console.log('a message arrived'));
 * ```
 */
export async function mq_notify(mqd: number, notification: (() => void) | null): Promise<void> {
  return withQueues((q) => q.mq_notify(mqd, notification));
}

/** Closes the module-level process (its descriptors close with it). */
export async function close(): Promise<void> {
  const pending = defaultQueues;
  if (pending === null) return;
  defaultQueues = null;
  connectedQueues = null;
  let q: PosixQueues;
  try {
    q = await pending;
  } catch {
    return; // it never connected: there is nothing to close
  }
  await q.process.close();
}

/** An mq_attr's fields: any of them may be passed (an mq_getattr result, say), nothing else. */
const MQ_ATTR_FIELDS: OptionNames<MqAttr> = {
  mq_flags: true,
  mq_maxmsg: true,
  mq_msgsize: true,
  mq_curmsgs: true,
};

/**
 * The System V message-queue face: `ftok`, `msgget`, `msgsnd`, `msgrcv` and `msgctl` with
 * Linux's names, constants, results and errno codes, as a thin layer over mailboxes.
 *
 * A System V queue is a system-owned mailbox with a key: fifo order, at most `msg_qbytes`
 * bytes and `msg_qbytes` messages (Linux's `msg_fits_inqueue` checks both), messages of at
 * most {@link MSGMAX} bytes, `msg_qbytes` {@link MSGMNB} by default. A msqid is the mailbox's
 * id, so any process can use a msqid another process got, and any mailbox can be reached
 * through this face. Selection by type, MSG_EXCEPT, MSG_NOERROR, E2BIG, blocking and EIDRM are
 * the kernel's: this module only translates arguments and error codes.
 *
 * @example
 * ```ts
 * import { ftok, msgget, msgsnd, msgrcv, msgctl, close, IPC_CREAT, IPC_NOWAIT, IPC_RMID } from 'postbox/sysv';
 * const id = await msgget(await ftok('/tmp/myshm', 0x27), 0o666 | IPC_CREAT);
 * await msgsnd(id, 2, 'Spock', 0);
 * const { mtype, mtext } = await msgrcv(id, 512, 2, IPC_NOWAIT); // 2, <Buffer 53 70 6f 63 6b>
 * await msgctl(id, IPC_RMID);
 * await close();
 * ```
 */
import { stat as fsStat } from 'node:fs/promises';
import type { Mailbox, MailboxInfo, MailboxStat } from '../client/mailbox.js';
import { describeValue, type OptionNames, unknownOption } from '../client/option-names.js';
import { badProcess, badSignal } from '../client/option-values.js';
import { connect, type MailboxOptions, type PostboxProcess } from '../client/process.js';
import { PostboxError } from '../protocol/errors.js';

// ── constants (Linux's values) ─────────────────────────────────────────────────────────────────

/** msgget key: always a new queue, reachable only by its msqid. */
export const IPC_PRIVATE = 0;
/** msgget flag: create the queue if the key has none. */
export const IPC_CREAT = 0o1000;
/** msgget flag, with IPC_CREAT: fail with EEXIST if the key has a queue. */
export const IPC_EXCL = 0o2000;
/** msgsnd/msgrcv flag: fail at once (EAGAIN / ENOMSG) instead of waiting. */
export const IPC_NOWAIT = 0o4000;
/** msgrcv flag: cut a longer message to `maxsize` and take it, instead of E2BIG. */
export const MSG_NOERROR = 0o10000;
/** msgrcv flag, with a positive msgtyp: the first message not of that type. */
export const MSG_EXCEPT = 0o20000;
/** msgrcv flag (Linux's checkpoint/restore copy): not supported, ENOSYS. */
export const MSG_COPY = 0o40000;
/** msgctl command: remove the queue; blocked senders and receivers fail with EIDRM. */
export const IPC_RMID = 0;
/** msgctl command: set `msg_qbytes` and `msg_perm.mode`. */
export const IPC_SET = 1;
/** msgctl command: the queue's {@link MsqidDs}. */
export const IPC_STAT = 2;
/** Largest message, bytes (Linux's default `kernel.msgmax`). */
export const MSGMAX = 8192;
/** Default and unprivileged maximum of `msg_qbytes` (Linux's default `kernel.msgmnb`). */
export const MSGMNB = 16384;

/** Linux's errno numbers for the codes this face reports. */
export const errno = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  E2BIG: 7,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  ENOMSG: 42,
  EIDRM: 43,
  // Not System V's own: a FIFO, pipe or service seen through this face can fail as write(2)
  // and open(2) would, and its caller still catches a SysvError.
  EBUSY: 16,
  EPIPE: 32,
} as const);

/** The errno names this face reports itself. */
export type SysvErrorCode = keyof typeof errno;

/**
 * An error of a System V call: `code` is Linux's errno name, `errno` its number, `syscall` the
 * call. The Postbox error behind it, if any, is the `cause`. Errors that are not the queue's
 * (a lost connection, say) are passed through as the client raised them.
 *
 * @example
 * ```ts
 * try { await msgrcv(id, 512, 2, IPC_NOWAIT); }
 * catch (err) { if ((err as SysvError).code === 'ENOMSG') console.log('none of type 2'); }
 * ```
 */
export class SysvError extends Error {
  readonly code: SysvErrorCode;
  readonly errno: number;
  readonly syscall: string;

  constructor(code: SysvErrorCode, syscall: string, message: string, options?: { cause?: unknown }) {
    super(`${syscall}: ${message}`, options);
    this.code = code;
    this.errno = errno[code];
    this.syscall = syscall;
  }

  override get name(): string {
    return 'SysvError';
  }
}

// ── types ──────────────────────────────────────────────────────────────────────────────────────

/**
 * Ownership and mode of a queue, as Linux's `struct ipc_perm`. Postbox's identities are
 * processes, not users: `uid` is the owner's process id (0 once the owner of a system-owned
 * queue has terminated and the queue belongs to the system). Postbox keeps no creator apart
 * from the owner and no single group id, so `cuid`, `gid` and `cgid` are the same as `uid`.
 */
export interface IpcPerm {
  /** The key (a signed 32-bit `key_t`); 0 for IPC_PRIVATE. */
  __key: number;
  uid: number;
  gid: number;
  cuid: number;
  cgid: number;
  /** Nine permission bits owner/group/others; 4 receive (read), 2 send (write). */
  mode: number;
}

/** A queue's state, as Linux's `struct msqid_ds` from IPC_STAT. Times in seconds since the epoch. */
export interface MsqidDs {
  msg_perm: IpcPerm;
  /** Time of the last msgsnd (0: never). */
  msg_stime: number;
  /** Time of the last msgrcv (0: never). */
  msg_rtime: number;
  /** Time of creation or the last IPC_SET. */
  msg_ctime: number;
  /** Bytes in the queue. */
  msg_cbytes: number;
  /** Messages in the queue. */
  msg_qnum: number;
  /** Most bytes (and messages) the queue holds. */
  msg_qbytes: number;
  /** OS pid of the last msgsnd (0: never). */
  msg_lspid: number;
  /** OS pid of the last msgrcv (0: never). */
  msg_lrpid: number;
}

/** What IPC_SET changes; fields left out stay as they are. */
export interface MsqidDsSet {
  msg_qbytes?: number;
  msg_perm?: { mode?: number };
}

/** A received message: its type and its bytes (at most `maxsize` of them). */
export interface SysvMessage {
  mtype: number;
  mtext: Buffer;
}

/** A message body: bytes, or a string sent as UTF-8. */
export type SysvBody = Uint8Array | string;

/** Beyond Linux's arguments: an AbortSignal that interrupts a waiting call (EINTR). */
export interface SysvCallOptions {
  signal?: AbortSignal | undefined;
}

/** The face's calls, bound to one process; see {@link sysv}. */
export interface Sysv {
  /** The process the calls are made as. */
  readonly process: PostboxProcess;
  ftok(path: string, id: number): Promise<number>;
  msgget(key: number, flags?: number): Promise<number>;
  msgsnd(msqid: number, type: number, body: SysvBody, flags?: number, options?: SysvCallOptions): Promise<0>;
  msgrcv(
    msqid: number,
    maxsize: number,
    msgtyp?: number,
    flags?: number,
    options?: SysvCallOptions,
  ): Promise<SysvMessage>;
  msgctl(msqid: number, cmd: typeof IPC_STAT): Promise<MsqidDs>;
  msgctl(msqid: number, cmd: typeof IPC_SET, buf: MsqidDsSet): Promise<0>;
  msgctl(msqid: number, cmd: typeof IPC_RMID): Promise<0>;
  msgctl(msqid: number, cmd: number, buf?: MsqidDsSet): Promise<MsqidDs | 0>;
}

// ── ftok ───────────────────────────────────────────────────────────────────────────────────────

/**
 * glibc's `ftok`: a key from a file's inode and device and a project id,
 * `(st_ino & 0xffff) | (st_dev & 0xff) << 16 | (id & 0xff) << 24`, as a signed 32-bit `key_t`.
 * Fails with the file's stat error (ENOENT, EACCES, ...).
 *
 * @example
 * ```ts
 * const key = await ftok('/tmp/myshm', 0x27);
 * console.log(`IPC key = 0x${(key >>> 0).toString(16)}`); // IPC key = 0x27011c6c
 * ```
 */
export async function ftok(path: string, id: number): Promise<number> {
  if (typeof path !== 'string' || path.length === 0)
    throw new SysvError('ENOENT', 'ftok', 'path must be a non-empty string');
  if (!Number.isInteger(id)) throw new SysvError('EINVAL', 'ftok', `id must be an integer, not ${id}`);
  let st: { ino: bigint; dev: bigint };
  try {
    st = await fsStat(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && code in errno)
      throw new SysvError(code as SysvErrorCode, 'ftok', `cannot stat '${path}': ${code}`, { cause: err });
    throw err;
  }
  return Number(st.ino & 0xffffn) | (Number(st.dev & 0xffn) << 16) | ((id & 0xff) << 24);
}

// ── the face of one process ────────────────────────────────────────────────────────────────────

const QUEUE_ATTRIBUTES: MailboxOptions = Object.freeze({
  system: true,
  order: 'fifo',
  // Linux's rule: any blocked sender whose message fits goes in, and msg_qbytes 0 holds nothing.
  admission: 'fits',
  capacity: MSGMNB,
  maxBytes: MSGMNB,
  maxMessageSize: MSGMAX,
});

/** Postbox codes and the errno each call reports for them; unlisted codes pass through. */
const GET_CODES: Partial<Record<string, SysvErrorCode>> = {
  ENOENT: 'ENOENT',
  EEXIST: 'EEXIST',
  EACCES: 'EACCES',
  EINVAL: 'EINVAL',
  ENOMEM: 'ENOSPC',
};
const SEND_CODES: Partial<Record<string, SysvErrorCode>> = {
  ENOENT: 'EINVAL',
  EMSGSIZE: 'EINVAL',
  EINVAL: 'EINVAL',
  EACCES: 'EACCES',
  EAGAIN: 'EAGAIN',
  EIDRM: 'EIDRM',
  ENOMEM: 'ENOMEM',
  ECANCELED: 'EINTR',
  EPIPE: 'EPIPE',
  EBUSY: 'EBUSY',
};
const RECEIVE_CODES: Partial<Record<string, SysvErrorCode>> = {
  ENOENT: 'EINVAL',
  EINVAL: 'EINVAL',
  EACCES: 'EACCES',
  E2BIG: 'E2BIG',
  EIDRM: 'EIDRM',
  ENOMSG: 'ENOMSG',
  ECANCELED: 'EINTR',
  EBUSY: 'EBUSY',
};
/** msgctl: owner-only refusals are EPERM on Linux. */
const CTL_CODES: Partial<Record<string, SysvErrorCode>> = {
  ENOENT: 'EINVAL',
  EINVAL: 'EINVAL',
  EACCES: 'EPERM',
};

/** Largest maxsize the wire carries; anything at or above it means "no limit". */
const NO_MAX_SIZE = 0xffffffff;

/**
 * Handles on queues a face keeps open at most. A queue's rights are checked at each call, not
 * when its handle opens (rightsAtOpen is false for these mailboxes), so a handle closed to make
 * room is opened again, unseen, on the queue's next call. Without a bound a process that sends
 * to many queues that others create and remove would hold a handle on each for ever.
 */
const MAX_QUEUE_HANDLES = 1024;

/** A face's handle on one queue. */
interface QueueHandle {
  readonly mailbox: Promise<Mailbox>;
  /**
   * The mailbox once open. A call on it is written in the caller's turn, not a turn later behind
   * an await of `mailbox`: a `msgsnd` not awaited before `process.exit()` then reaches the kernel
   * (src/client/exit-flush.ts).
   */
  ready: Mailbox | null;
  /** Calls using it now: it is not closed to make room under them (a msgrcv may be waiting). */
  calls: number;
}

class Face {
  /** One handle per msqid this process has used, the least recently used first. */
  private readonly handles = new Map<number, QueueHandle>();

  constructor(readonly proc: PostboxProcess) {}

  async msgget(key: number, flags = 0): Promise<number> {
    if (!Number.isInteger(key) || key < -(2 ** 31) || key >= 2 ** 32)
      throw new SysvError('EINVAL', 'msgget', `key must be a 32-bit integer, not ${describeValue(key)}`);
    if (!Number.isInteger(flags))
      throw new SysvError('EINVAL', 'msgget', `flags must be an integer, not ${describeValue(flags)}`);
    const k = key | 0; // key_t is a signed int: 0xdeadbeef and -559038737 are one key
    const mode = flags & 0o777;
    try {
      if (k === IPC_PRIVATE)
        return this.adopt(await this.proc.createMailbox(null, { ...this.queueAttributes(), mode }));
      if ((flags & IPC_CREAT) !== 0) {
        // Linux checks the caller's rights only on a queue that exists: try to create first.
        for (;;) {
          try {
            return this.adopt(
              await this.proc.createMailbox(null, { ...this.queueAttributes(), mode, key: k }),
            );
          } catch (err) {
            if (!(err instanceof PostboxError) || err.code !== 'EEXIST' || (flags & IPC_EXCL) !== 0)
              throw err;
          }
          try {
            return await this.openKey(k, flags);
          } catch (err) {
            // Removed between the two calls: create it after all.
            if (!(err instanceof PostboxError) || err.code !== 'ENOENT') throw err;
          }
        }
      }
      return await this.openKey(k, flags);
    } catch (err) {
      throw translate(err, 'msgget', GET_CODES, `key 0x${(k >>> 0).toString(16)}`);
    }
  }

  /**
   * A new queue's attributes. MSGMAX is 8192 as on Linux, unless the kernel takes less: then its
   * limit, as Linux's msgmax is whatever the administrator set.
   */
  private queueAttributes(): MailboxOptions {
    const most = this.proc.limits.maxMessageSize;
    return most >= MSGMAX ? QUEUE_ATTRIBUTES : { ...QUEUE_ATTRIBUTES, maxMessageSize: most };
  }

  async msgsnd(
    msqid: number,
    type: number,
    body: SysvBody,
    flags = 0,
    options?: SysvCallOptions,
  ): Promise<0> {
    checkCallOptions(options, 'msgsnd');
    const size = bodySize(body);
    if (size === null)
      throw new SysvError('EINVAL', 'msgsnd', 'the body must be a Uint8Array, a Buffer or a string');
    if (size > MSGMAX)
      throw new SysvError('EINVAL', 'msgsnd', `a ${size}-byte message is over MSGMAX (${MSGMAX} bytes)`);
    checkMsqid(msqid, 'msgsnd');
    if (!Number.isSafeInteger(type) || type < 1)
      throw new SysvError('EINVAL', 'msgsnd', `mtype must be a positive integer, not ${type}`);
    if (!Number.isInteger(flags))
      throw new SysvError('EINVAL', 'msgsnd', `flags must be an integer, not ${flags}`);
    const handle = this.acquire(msqid);
    try {
      const mb = handle.ready ?? (await handle.mailbox);
      const sendOptions: { type: number; nowait: boolean; signal?: AbortSignal } = {
        type,
        nowait: (flags & IPC_NOWAIT) !== 0,
      };
      if (options?.signal !== undefined) sendOptions.signal = options.signal;
      await mb.send(body, sendOptions);
      return 0;
    } catch (err) {
      throw this.failed(err, 'msgsnd', SEND_CODES, msqid);
    } finally {
      this.release(handle);
    }
  }

  async msgrcv(
    msqid: number,
    maxsize: number,
    msgtyp = 0,
    flags = 0,
    options?: SysvCallOptions,
  ): Promise<SysvMessage> {
    checkCallOptions(options, 'msgrcv');
    checkMsqid(msqid, 'msgrcv');
    if (!Number.isInteger(maxsize) || maxsize < 0)
      throw new SysvError('EINVAL', 'msgrcv', `maxsize must be a whole number of bytes, not ${maxsize}`);
    if (!Number.isSafeInteger(msgtyp))
      throw new SysvError('EINVAL', 'msgrcv', `msgtyp must be an integer, not ${msgtyp}`);
    if (!Number.isInteger(flags))
      throw new SysvError('EINVAL', 'msgrcv', `flags must be an integer, not ${flags}`);
    if ((flags & MSG_COPY) !== 0) throw new SysvError('ENOSYS', 'msgrcv', 'MSG_COPY is not supported');
    const handle = this.acquire(msqid);
    try {
      const mb = handle.ready ?? (await handle.mailbox);
      const m = await mb.receive({
        type: msgtyp,
        // Linux ignores MSG_EXCEPT unless msgtyp > 0, and MSG_NOERROR without a size limit.
        except: (flags & MSG_EXCEPT) !== 0 && msgtyp > 0,
        nowait: (flags & IPC_NOWAIT) !== 0,
        ...(maxsize < NO_MAX_SIZE ? { maxSize: maxsize } : {}),
        truncate: (flags & MSG_NOERROR) !== 0 && maxsize < NO_MAX_SIZE,
        ...(options?.signal !== undefined ? { signal: options.signal } : {}),
      });
      if (m === null) {
        // A blocking receive ends empty only at a pipe's or FIFO's end of file: said so, not as
        // if IPC_NOWAIT had found nothing.
        throw new SysvError(
          'ENOMSG',
          'msgrcv',
          (flags & IPC_NOWAIT) !== 0
            ? `no message${wanted(msgtyp, (flags & MSG_EXCEPT) !== 0)} in queue ${msqid}`
            : `queue ${msqid} is a pipe or FIFO at end of file: its last writer closed and nothing is left`,
        );
      }
      return { mtype: m.type, mtext: Buffer.from(m.data) };
    } catch (err) {
      throw this.failed(err, 'msgrcv', RECEIVE_CODES, msqid);
    } finally {
      this.release(handle);
    }
  }

  async msgctl(msqid: number, cmd: number, buf?: MsqidDsSet): Promise<MsqidDs | 0> {
    checkMsqid(msqid, 'msgctl');
    if (cmd !== IPC_STAT && cmd !== IPC_SET && cmd !== IPC_RMID)
      throw new SysvError('EINVAL', 'msgctl', `unknown command ${cmd}; known: IPC_STAT, IPC_SET, IPC_RMID`);
    let qbytes: number | undefined;
    let mode: number | undefined;
    if (cmd === IPC_SET) {
      if (typeof buf !== 'object' || buf === null)
        throw new SysvError('EINVAL', 'msgctl', 'IPC_SET needs { msg_qbytes, msg_perm: { mode } }');
      // Any field of an IPC_STAT result may come back (C's idiom: stat, change, set); a name
      // that is none of them is a misspelling, and would leave the queue as it was.
      const bad =
        unknownOption(buf, MSQID_DS_FIELDS, 'msgctl(IPC_SET)') ??
        unknownOption(buf.msg_perm, IPC_PERM_FIELDS, 'msgctl(IPC_SET) msg_perm');
      if (bad !== null) throw new SysvError('EINVAL', 'msgctl', bad.message);
      qbytes = buf.msg_qbytes;
      mode = buf.msg_perm?.mode;
      if (qbytes !== undefined && (!Number.isSafeInteger(qbytes) || qbytes < 0))
        throw new SysvError('EINVAL', 'msgctl', `msg_qbytes must be a whole number, not ${qbytes}`);
      if (mode !== undefined && !Number.isInteger(mode))
        throw new SysvError('EINVAL', 'msgctl', `msg_perm.mode must be an integer, not ${mode}`);
    }
    const handle = this.acquire(msqid);
    try {
      const mb = handle.ready ?? (await handle.mailbox);
      if (cmd === IPC_RMID) {
        await mb.delete();
        this.forget(msqid);
        return 0;
      }
      const st = await mb.stat();
      if (cmd === IPC_STAT) {
        if ((granted(st, this.proc.id) & 4) === 0)
          throw new SysvError(
            'EACCES',
            'msgctl',
            `IPC_STAT of queue ${msqid} (mode 0${st.mode.toString(8).padStart(3, '0')}) needs the read right`,
          );
        return msqidDs(st);
      }
      // IPC_SET, in Linux's order: the owner's call (EPERM), then the unprivileged limit (EPERM).
      if (st.owner !== null && st.owner !== this.proc.id)
        throw new SysvError(
          'EPERM',
          'msgctl',
          `only the owner of queue ${msqid}, process ${st.owner}, may IPC_SET`,
        );
      if (qbytes !== undefined && qbytes > MSGMNB)
        throw new SysvError(
          'EPERM',
          'msgctl',
          `msg_qbytes ${qbytes} is over MSGMNB (${MSGMNB}); only a privileged process may raise it so far`,
        );
      // Capacity 0 is Linux's "holds nothing" only on a queue that admits as System V does; on
      // any other mailbox it is a rendezvous whose 0-byte limit would refuse every message.
      if (qbytes === 0 && st.admission !== 'fits')
        throw new SysvError(
          'EINVAL',
          'msgctl',
          `msg_qbytes 0 on queue ${msqid}, which is not a System V queue, would refuse every message; give it at least 1`,
        );
      if (qbytes !== undefined) await mb.setLimits({ capacity: qbytes, maxBytes: qbytes });
      if (mode !== undefined) await mb.chmod(mode & 0o777);
      return 0;
    } catch (err) {
      throw this.failed(err, 'msgctl', CTL_CODES, msqid);
    } finally {
      this.release(handle);
    }
  }

  /** Closes every handle this face opened. */
  closeHandles(): void {
    for (const [msqid, handle] of this.handles) {
      this.handles.delete(msqid);
      closeHandle(handle);
    }
  }

  private async openKey(key: number, flags: number): Promise<number> {
    const mb = await this.open({ key });
    if (!ipcperms(mb.info, this.proc.id, flags)) {
      mb.close();
      throw new SysvError(
        'EACCES',
        'msgget',
        `process ${this.proc.id} may not open queue ${mb.id} (mode 0${mb.info.mode.toString(8).padStart(3, '0')}) with mode 0${(flags & 0o777).toString(8).padStart(3, '0')}`,
      );
    }
    return this.adopt(mb);
  }

  /**
   * A handle on any mailbox, for this face's calls. It counts as neither end ('none'): a System
   * V queue has no ends, and a process that only looked at a FIFO, a pipe or an RPC service
   * through this face (IPC_STAT, say) must not keep it from ending (EOF, EPIPE, NoServerError)
   * for as long as the face keeps its handle. A POSIX queue's rights are its handles' (checked
   * as it opens, as mq_open does), so on one this face needs a handle open for both.
   */
  private async open(ref: number | { key: number }): Promise<Mailbox> {
    const mb = await this.proc.openMailbox(ref, { role: 'none' });
    if (!mb.info.rightsAtOpen) return mb;
    mb.close();
    return this.proc.openMailbox(mb.id, { role: 'both' });
  }

  /** Keeps the first handle on a queue; a second one (msgget again) is closed. */
  private adopt(mb: Mailbox): number {
    if (this.handles.has(mb.id)) {
      mb.close();
    } else {
      this.handles.set(mb.id, { mailbox: Promise.resolve(mb), ready: mb, calls: 0 });
      this.trim();
    }
    return mb.id;
  }

  /** The handle on msqid for one call, opened if need be; give it back with {@link release}. */
  private acquire(msqid: number): QueueHandle {
    let handle = this.handles.get(msqid);
    if (handle === undefined) {
      const opening = this.open(msqid);
      const opened: QueueHandle = { mailbox: opening, ready: null, calls: 0 };
      handle = opened;
      opening.then(
        (mb) => {
          opened.ready = mb;
        },
        () => {
          if (this.handles.get(msqid) === opened) this.handles.delete(msqid);
        },
      );
    } else {
      // Moved to the end: the Map's order is the order of last use.
      this.handles.delete(msqid);
    }
    this.handles.set(msqid, handle);
    handle.calls++;
    this.trim();
    return handle;
  }

  private release(handle: QueueHandle): void {
    handle.calls--;
    // Room may have been left to make while every handle had a call on it.
    this.trim();
  }

  /** Closes the least recently used handles with no call on them, down to the bound. */
  private trim(): void {
    if (this.handles.size <= MAX_QUEUE_HANDLES) return;
    for (const [msqid, handle] of this.handles) {
      if (handle.calls > 0) continue;
      this.handles.delete(msqid);
      closeHandle(handle);
      if (this.handles.size <= MAX_QUEUE_HANDLES) return;
    }
  }

  private forget(msqid: number): void {
    const handle = this.handles.get(msqid);
    if (handle === undefined) return;
    this.handles.delete(msqid);
    closeHandle(handle);
  }

  private failed(
    err: unknown,
    syscall: string,
    codes: Partial<Record<string, SysvErrorCode>>,
    msqid: number,
  ): unknown {
    // The queue is gone, found so now (ENOENT) or removed while this call waited on it (EIDRM):
    // its handle is of no more use (ids are never reused).
    if (err instanceof PostboxError && (err.code === 'ENOENT' || err.code === 'EIDRM')) this.forget(msqid);
    return translate(err, syscall, codes, `queue ${msqid}`);
  }
}

function closeHandle(handle: QueueHandle): void {
  handle.mailbox.then((mb) => mb.close()).catch(() => {});
}

/** Turns a Postbox error into the errno Linux gives for it in this call. */
function translate(
  err: unknown,
  syscall: string,
  codes: Partial<Record<string, SysvErrorCode>>,
  what: string,
): unknown {
  if (err instanceof SysvError || !(err instanceof PostboxError)) return err;
  const code = codes[err.code];
  if (code === undefined) return err;
  return new SysvError(code, syscall, `${what}: ${err.message}`, { cause: err });
}

/**
 * What msgrcv's msgtyp asked for, as its ENOMSG says it: 'no message of type 0' read as if type 0
 * were a type, where 0 takes any message and a negative one the lowest type up to its size.
 */
function wanted(msgtyp: number, except: boolean): string {
  if (msgtyp === 0) return '';
  if (msgtyp < 0) return ` of a type up to ${-msgtyp}`;
  return except ? ` of a type other than ${msgtyp}` : ` of type ${msgtyp}`;
}

function checkMsqid(msqid: number, syscall: string): void {
  if (!Number.isInteger(msqid) || msqid < 0)
    throw new SysvError('EINVAL', syscall, `msqid must be a non-negative integer, not ${msqid}`);
}

function bodySize(body: SysvBody): number | null {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.byteLength;
  return null;
}

/** The rights (4 read, 2 write) a process has on a mailbox: owner, group or others. */
function granted(info: Pick<MailboxInfo, 'mode' | 'owner' | 'group'>, proc: number): number {
  if (info.owner === proc) return (info.mode >> 6) & 7;
  if (info.group.includes(proc)) return (info.mode >> 3) & 7;
  return info.mode & 7;
}

/** Linux's ipcperms for msgget: every right asked for in any of the three classes is needed. */
function ipcperms(info: Pick<MailboxInfo, 'mode' | 'owner' | 'group'>, proc: number, flags: number): boolean {
  const f = flags & 0o777;
  const requested = ((f >> 6) | (f >> 3) | f) & 7;
  return (requested & ~granted(info, proc)) === 0;
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function msqidDs(st: MailboxStat): MsqidDs {
  const uid = st.owner ?? 0;
  return {
    msg_perm: { __key: st.key | 0, uid, gid: uid, cuid: uid, cgid: uid, mode: st.mode & 0o777 },
    msg_stime: seconds(st.lastSendTime),
    msg_rtime: seconds(st.lastReceiveTime),
    msg_ctime: seconds(st.changeTime),
    msg_cbytes: st.bytes,
    msg_qnum: st.count,
    msg_qbytes: st.maxBytes,
    msg_lspid: st.lastSendPid,
    msg_lrpid: st.lastReceivePid,
  };
}

const faces = new WeakMap<PostboxProcess, Face>();

function faceOf(proc: PostboxProcess): Face {
  let face = faces.get(proc);
  if (face === undefined) {
    face = new Face(proc);
    faces.set(proc, face);
  }
  return face;
}

/**
 * The System V calls bound to a process: every call is made as `proc` (its rights, its
 * ownership of the queues it creates). Queues it creates are system-owned: they outlive it.
 *
 * @example
 * ```ts
 * import { connect } from 'postbox';
 * import { sysv, IPC_CREAT, IPC_NOWAIT } from 'postbox/sysv';
 * const proc = await connect();
 * const { msgget, msgsnd, msgrcv } = sysv(proc);
 * const id = await msgget(0x1234, 0o600 | IPC_CREAT);
 * await msgsnd(id, 1, Buffer.from('hello'), IPC_NOWAIT);
 * console.log((await msgrcv(id, 100, 0, 0)).mtext.toString()); // hello
 * ```
 */
export function sysv(proc: PostboxProcess): Sysv {
  const badProc = badProcess(proc, 'sysv()');
  if (badProc !== null) throw badProc;
  const face = faceOf(proc);
  return {
    process: proc,
    ftok,
    msgget: (key, flags) => face.msgget(key, flags),
    msgsnd: (msqid, type, body, flags, options) => face.msgsnd(msqid, type, body, flags, options),
    msgrcv: (msqid, maxsize, msgtyp, flags, options) => face.msgrcv(msqid, maxsize, msgtyp, flags, options),
    msgctl: ((msqid: number, cmd: number, buf?: MsqidDsSet) =>
      face.msgctl(msqid, cmd, buf)) as Sysv['msgctl'],
  };
}

// ── module-level calls on a default process ────────────────────────────────────────────────────

let defaultFace: Promise<Face> | null = null;
/** The default process once a call has found it connected: see {@link withFace}. */
let connectedFace: Face | null = null;

function defaultProcess(): Promise<Face> {
  if (defaultFace === null) {
    const connecting = connect().then((proc) => faceOf(proc));
    defaultFace = connecting;
    connecting.catch(() => {
      if (defaultFace === connecting) defaultFace = null;
    });
  }
  return defaultFace;
}

/**
 * Makes a call on the default process: at once once it is connected, not a turn later behind an
 * await, so a `msgsnd` not awaited before `process.exit()` reaches the kernel
 * (src/client/exit-flush.ts), as one made through `sysv(proc)` does. It is known connected only
 * in a call that waited for it, so no call overtakes one made before it that still waits.
 */
function withFace<R>(op: (face: Face) => Promise<R>): Promise<R> {
  if (connectedFace !== null) return op(connectedFace);
  const pending = defaultProcess();
  return pending.then((face) => {
    if (defaultFace === pending) connectedFace = face;
    return op(face);
  });
}

/**
 * Gets the msqid of the queue with `key`: a new one for IPC_PRIVATE; with IPC_CREAT, a new one
 * (mode `flags & 0o777`) if the key has none; EEXIST with IPC_CREAT | IPC_EXCL if it has one;
 * ENOENT without IPC_CREAT if it has none; EACCES if `flags` asks for a right the caller lacks.
 * Uses the default process (connected on first use; see {@link close}).
 *
 * @example
 * ```ts
 * const id = await msgget(0x27011c6c, 0o666 | IPC_CREAT);
 * ```
 */
export async function msgget(key: number, flags = 0): Promise<number> {
  return withFace((face) => face.msgget(key, flags));
}

/**
 * Sends a message of type `type` (≥ 1; else EINVAL) and at most {@link MSGMAX} bytes (else
 * EINVAL). Waits while the queue is full (`msg_qbytes` bytes or messages), unless IPC_NOWAIT
 * (then EAGAIN). EIDRM if the queue is removed while it waits, EINVAL for an unknown msqid,
 * EACCES without the write right. Resolves with 0.
 *
 * @example
 * ```ts
 * await msgsnd(id, 1, 'Kirk', 0);
 * ```
 */
export async function msgsnd(
  msqid: number,
  type: number,
  body: SysvBody,
  flags = 0,
  options?: SysvCallOptions,
): Promise<0> {
  return withFace((face) => face.msgsnd(msqid, type, body, flags, options));
}

/**
 * Receives a message: `msgtyp` 0 the first one, > 0 the first of that type (with MSG_EXCEPT the
 * first of any other type), < 0 the first of the lowest type ≤ |msgtyp|. A longer message than
 * `maxsize` is E2BIG and stays queued, or with MSG_NOERROR is cut to `maxsize` and taken. Waits
 * for a message unless IPC_NOWAIT (then ENOMSG); EIDRM if the queue is removed while it waits.
 *
 * @example
 * ```ts
 * const { mtype, mtext } = await msgrcv(id, 512, -3, IPC_NOWAIT); // lowest type ≤ 3
 * ```
 */
export async function msgrcv(
  msqid: number,
  maxsize: number,
  msgtyp = 0,
  flags = 0,
  options?: SysvCallOptions,
): Promise<SysvMessage> {
  return withFace((face) => face.msgrcv(msqid, maxsize, msgtyp, flags, options));
}

/**
 * IPC_STAT: the queue's {@link MsqidDs} (needs the read right, else EACCES). IPC_SET:
 * changes `msg_qbytes` (above {@link MSGMNB}: EPERM) and `msg_perm.mode`, owner only (EPERM).
 * IPC_RMID: removes the queue, owner only (EPERM); waiting calls fail with EIDRM. An unknown
 * msqid is EINVAL. IPC_SET and IPC_RMID resolve with 0.
 *
 * @example
 * ```ts
 * const ds = await msgctl(id, IPC_STAT);
 * await msgctl(id, IPC_SET, { msg_qbytes: 1024, msg_perm: { mode: 0o600 } });
 * await msgctl(id, IPC_RMID);
 * ```
 */
export async function msgctl(msqid: number, cmd: typeof IPC_STAT): Promise<MsqidDs>;
export async function msgctl(msqid: number, cmd: typeof IPC_SET, buf: MsqidDsSet): Promise<0>;
export async function msgctl(msqid: number, cmd: typeof IPC_RMID): Promise<0>;
export async function msgctl(msqid: number, cmd: number, buf?: MsqidDsSet): Promise<MsqidDs | 0>;
export async function msgctl(msqid: number, cmd: number, buf?: MsqidDsSet): Promise<MsqidDs | 0> {
  return withFace((face) => face.msgctl(msqid, cmd, buf));
}

/**
 * Disconnects the default process of the module-level calls, if it connected; a later call
 * connects a new one. Queues stay (they are system-owned); calls still waiting fail.
 *
 * @example
 * ```ts
 * await msgsnd(id, 1, 'bye', 0);
 * await close(); // lets the program exit
 * ```
 */
export async function close(): Promise<void> {
  const pending = defaultFace;
  defaultFace = null;
  connectedFace = null;
  if (pending === null) return;
  let face: Face;
  try {
    face = await pending;
  } catch {
    return;
  }
  face.closeHandles();
  faces.delete(face.proc);
  await face.proc.close();
}

const CALL_OPTIONS: OptionNames<SysvCallOptions> = { signal: true };
const IPC_PERM_FIELDS: OptionNames<IpcPerm> = {
  __key: true,
  uid: true,
  gid: true,
  cuid: true,
  cgid: true,
  mode: true,
};
const MSQID_DS_FIELDS: OptionNames<MsqidDs> = {
  msg_perm: true,
  msg_stime: true,
  msg_rtime: true,
  msg_ctime: true,
  msg_cbytes: true,
  msg_qnum: true,
  msg_qbytes: true,
  msg_lspid: true,
  msg_lrpid: true,
};

/** The options beyond Linux's arguments: a misspelt `signal` would never interrupt the call. */
function checkCallOptions(options: SysvCallOptions | undefined, fn: string): void {
  const bad = unknownOption(options, CALL_OPTIONS, `${fn}()`) ?? badSignal(options?.signal, `${fn}()`);
  if (bad !== null) throw new SysvError('EINVAL', fn, bad.message);
}

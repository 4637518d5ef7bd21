/**
 * A server process's control mailbox, `rpc:ctl:<process id>`: callers send it CANCEL (abort a
 * call this process took) and START (where to send a stream's items). One per process, shared
 * by every service it serves, read by one prefetching iterator. Process-owned, mode 0622: any
 * process may send, only this one receives; it goes with the process (and is kept until then, so
 * a server closed and started again never races the removal of the old one).
 */
import type { Mailbox } from '../../client/mailbox.js';
import type { Message } from '../../client/message.js';
import type { DownEvent, PostboxProcess } from '../../client/process.js';
import { AbortedError, TimeoutError } from '../../protocol/errors.js';
import type { CallContext } from './types.js';
import { type ControlBody, ControlType, controlMailbox } from './wire.js';

/** A call a server is handling, as control messages find it. */
export interface Job {
  /** Set while a streaming handler waits for its caller's START. */
  onStart: ((to: number) => void) | null;
  /** Called on CANCEL: the handler's ctx.signal aborts. */
  cancel(): void;
}

const channels = new WeakMap<PostboxProcess, ControlChannel>();

/** The control channel of a process, shared by its servers. */
export class ControlChannel {
  /**
   * Messages taken that were no CANCEL or START (`postbox send rpc:ctl:7 hi`, another client's
   * mistake): nobody to answer, so dropped, and counted so that they are not lost without a
   * trace. A CANCEL or START for a call that is not running is not counted: a caller's cancel
   * crosses its answer as a matter of course.
   */
  dropped = 0;
  private readonly proc: PostboxProcess;
  private ready: Promise<void> | null = null;
  /** Calls being handled, by caller process, then call id: no key to build per call. */
  private readonly jobs = new Map<number, Map<number, Job>>();
  private readonly watching = new Map<number, Set<(down: DownEvent | null) => void>>();

  private constructor(proc: PostboxProcess) {
    this.proc = proc;
  }

  /** proc's channel, its mailbox opened on first use. */
  static async of(proc: PostboxProcess): Promise<ControlChannel> {
    let ch = channels.get(proc);
    if (ch === undefined) {
      ch = new ControlChannel(proc);
      channels.set(proc, ch);
    }
    ch.ready ??= ch.open();
    try {
      await ch.ready;
    } catch (err) {
      ch.ready = null; // let a later server try again
      throw err;
    }
    return ch;
  }

  private async open(): Promise<void> {
    const box = await this.proc.openMailbox(controlMailbox(this.proc.id), {
      create: { mode: 0o622 },
      role: 'read',
    });
    void this.loop(box);
  }

  private async loop(box: Mailbox): Promise<void> {
    try {
      for await (const m of box.messages({ prefetch: 64 })) {
        const body = controlBody(m);
        if (body === null) {
          this.dropped++;
          continue;
        }
        const job = this.jobs.get(m.sender)?.get(body.id);
        if (job === undefined) continue; // finished already: nothing to cancel
        if (m.type === ControlType.CANCEL) job.cancel();
        else if (body.to !== undefined) job.onStart?.(body.to);
      }
    } catch {
      // The process closed: nothing more to control.
    }
    if (channels.get(this.proc) === this) channels.delete(this.proc);
  }

  /** Makes a call findable by CANCEL and START from its caller. */
  add(caller: number, id: number, job: Job): void {
    let calls = this.jobs.get(caller);
    if (calls === undefined) {
      calls = new Map();
      this.jobs.set(caller, calls);
    }
    calls.set(id, job);
  }

  remove(caller: number, id: number): void {
    const calls = this.jobs.get(caller);
    if (calls === undefined) return;
    calls.delete(id);
    if (calls.size === 0) this.jobs.delete(caller);
  }

  /**
   * Calls onDown when a process terminates (with how it ended), or with null when this process
   * closes first; one monitor per process, however many wait on it. Returns a function that
   * stops waiting.
   */
  watch(process: number, onDown: (down: DownEvent | null) => void): () => void {
    let waiting = this.watching.get(process);
    if (waiting === undefined) {
      const set = new Set<(down: DownEvent | null) => void>();
      waiting = set;
      this.watching.set(process, set);
      const fire = (down: DownEvent | null): void => {
        this.watching.delete(process);
        for (const fn of set) fn(down);
      };
      this.proc.monitor(process).then(fire, () => fire(null));
    }
    waiting.add(onDown);
    const set = waiting;
    return () => set.delete(onDown);
  }
}

/** A control message's body, or null if it is none: CANCEL `{ id }`, START `{ id, to }`. */
function controlBody(m: Message): ControlBody | null {
  let body: unknown;
  try {
    body = m.body;
  } catch {
    return null; // not decodable
  }
  if (typeof body !== 'object' || body === null) return null;
  const b = body as Partial<Record<keyof ControlBody, unknown>>;
  if (typeof b.id !== 'number') return null;
  if (m.type === ControlType.CANCEL) return { id: b.id };
  if (m.type === ControlType.START && typeof b.to === 'number') return { id: b.id, to: b.to };
  return null;
}

/**
 * One call being handled: its {@link CallContext} (the handler's last argument) and its entry
 * for control messages. The AbortController is made only if someone looks at `signal`: most
 * handlers never do, and a call costs less without it. Looking at it also watches the caller
 * process (one monitor per caller, shared), so a handler that can stop early does when the
 * caller dies; one that never looks runs to the end and its answer is dropped.
 */
export class ServerCall implements CallContext, Job {
  readonly caller: number;
  readonly service: string;
  readonly method: string;
  readonly deadline: number | undefined;
  onStart: ((to: number) => void) | null = null;
  /** Called once when the caller gives up (set while a streaming handler waits for its START). */
  onGiveUp: (() => void) | null = null;
  /** The caller cancelled, died, or its deadline passed: it no longer waits, so no answer is sent. */
  gaveUp = false;
  private readonly control: ControlChannel;
  private controller: AbortController | null = null;
  private reason: unknown = undefined;
  private aborted = false;
  private timer: NodeJS.Timeout | null = null;
  private unwatch: (() => void) | null = null;

  constructor(
    control: ControlChannel,
    caller: number,
    service: string,
    method: string,
    deadline: number | undefined,
  ) {
    this.control = control;
    this.caller = caller;
    this.service = service;
    this.method = method;
    this.deadline = deadline;
    if (deadline !== undefined)
      this.timer = setTimeout(deadlinePassed, Math.max(0, deadline - Date.now()), this);
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
      else this.unwatch = this.control.watch(this.caller, (down) => this.callerDown(down));
    }
    return this.controller.signal;
  }

  /** Aborts ctx.signal (once). */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }

  cancel(): void {
    // The caller times out on its own clock; an answer racing that would only confuse it.
    this.giveUp(new AbortedError(`the caller cancelled ${this.service}.${this.method}`));
  }

  /** The caller no longer waits: no answer is sent, and ctx.signal aborts (if it has not yet). */
  giveUp(reason: unknown): void {
    if (this.gaveUp) return;
    this.gaveUp = true;
    this.abort(reason);
    this.onGiveUp?.();
  }

  done(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.unwatch?.();
    this.unwatch = null;
  }

  private callerDown(down: DownEvent | null): void {
    this.unwatch = null;
    // Null: this process is closing, and the server aborts its handlers itself if it must.
    if (down === null) return;
    this.giveUp(
      new AbortedError(
        `the caller of ${this.service}.${this.method}, process ${down.process}, ${down.reason === 'noproc' ? 'had already ended' : `terminated (${down.reason})`}`,
      ),
    );
  }
}

function deadlinePassed(call: ServerCall): void {
  call.giveUp(new TimeoutError(`${call.service}.${call.method} passed its deadline`));
}

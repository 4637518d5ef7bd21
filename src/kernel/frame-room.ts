/**
 * The kernel's memory for frames that have begun to arrive and not yet ended.
 *
 * A frame is handed on only once it is whole, so its first bytes wait in the kernel until the
 * rest comes. A process that sends most of a 1 MiB frame and then stops would hold that
 * megabyte for as long as it stays connected, and a few hundred such processes could hold
 * hundreds of megabytes that no other limit counts. So a large frame needs room before the
 * kernel reads more of it: the frame's whole size, granted from one kernel-wide budget
 * (`--max-partial-bytes`) in the order asked. A process without room is not read (its bytes stay
 * in its socket, the operating system's memory, and it waits as a writer on a full pipe would);
 * a frame with room always has the memory to finish, so waiting never deadlocks. While anyone
 * waits, a frame that has held its room for longer than the kernel allows is ended, so room held
 * by a process that stopped half-way comes back.
 *
 * Small frames are left out (up to {@link FREE_PARTIAL_BYTES}): almost every read of a busy
 * stream ends in one, and each holds at most that much per connection.
 */

/**
 * Frames up to this size need no room: at most this much per connection, about as much as one
 * read brings, and a stream of 64 KiB messages (frames a little over 64 KiB) passes without it.
 */
export const FREE_PARTIAL_BYTES = 128 * 1024;

/** What the room keeps on each process. */
export interface RoomHolder {
  /** Room granted to its frame in progress, bytes (0: none). */
  room: number;
  /** Room its frame waits for, bytes (0: not waiting). */
  roomWanted: number;
  /** When its room was granted, or when it began to wait (ms). */
  roomSince: number;
  readonly terminated: boolean;
}

/**
 * Grants room to large frames in progress from a budget, in order; tells the kernel when a
 * waiting process may be read again.
 *
 * @example
 * ```ts
 * const room = new FrameRoom(256 << 20, (p) => p.socket.resume());
 * if (!room.fit(p, decoder.pendingFrameBytes, Date.now())) p.socket.pause();
 * ```
 */
export class FrameRoom<P extends RoomHolder> {
  /** Bytes granted to frames in progress. */
  granted = 0;
  private readonly waiting: P[] = [];
  private readonly holders = new Set<P>();

  /**
   * @param budget bytes that frames in progress may hold together; one frame may always proceed
   *   alone, so a budget below the largest frame slows large frames but never stops them
   * @param onGranted called when a process that waited has its room: read it again
   */
  constructor(
    readonly budget: number,
    private readonly onGranted: (p: P) => void,
  ) {}

  /** Processes waiting for room. */
  get waiters(): number {
    return this.waiting.length;
  }

  /**
   * After a read: `size` is p's frame in progress (0 if none). Returns false if the frame must
   * wait for room, and p must not be read until {@link onGranted} says so.
   */
  fit(p: P, size: number, now: number): boolean {
    if (p.roomWanted > 0) return false;
    if (size === p.room) return true;
    if (p.room > 0) this.release(p);
    if (size <= FREE_PARTIAL_BYTES) return true;
    // First come, first served: a stream of frames that each fit must not starve a larger one.
    if (this.waiting.length === 0 && this.fits(size)) {
      this.grant(p, size, now);
      return true;
    }
    p.roomWanted = size;
    p.roomSince = now;
    this.waiting.push(p);
    return false;
  }

  /** p is gone: its room comes back, and it no longer waits. */
  leave(p: P): void {
    if (p.room > 0) this.release(p);
    if (p.roomWanted > 0) {
      p.roomWanted = 0;
      const i = this.waiting.indexOf(p);
      if (i >= 0) this.waiting.splice(i, 1);
      this.grantWaiting(Date.now());
    }
  }

  /**
   * Holders to end: while anyone waits for room, those whose frame has been in progress for
   * longer than `limitMs`. With nobody waiting, a slow frame costs nobody anything.
   */
  overdue(now: number, limitMs: number): P[] {
    if (this.waiting.length === 0) return [];
    const late: P[] = [];
    for (const p of this.holders) if (now - p.roomSince > limitMs) late.push(p);
    return late;
  }

  /** The kernel did not run for `ms`: that time does not count against frames in progress (see {@link overdue}). */
  excuse(ms: number, now: number): void {
    for (const p of this.holders) p.roomSince = Math.min(now, p.roomSince + ms);
  }

  private fits(size: number): boolean {
    return this.granted === 0 || this.granted + size <= this.budget;
  }

  private grant(p: P, size: number, now: number): void {
    p.room = size;
    p.roomSince = now;
    this.granted += size;
    this.holders.add(p);
  }

  private release(p: P): void {
    this.granted -= p.room;
    p.room = 0;
    this.holders.delete(p);
    if (this.waiting.length > 0) this.grantWaiting(Date.now());
  }

  private grantWaiting(now: number): void {
    while (this.waiting.length > 0) {
      const p = this.waiting[0]!;
      if (!this.fits(p.roomWanted)) return;
      this.waiting.shift();
      const size = p.roomWanted;
      p.roomWanted = 0;
      this.grant(p, size, now);
      this.onGranted(p);
    }
  }
}

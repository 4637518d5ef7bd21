/**
 * Where queued messages live: frames copied back to back into large buffers, so a queued message
 * costs its bytes plus a few slots in its store, and no Buffer object of its own.
 *
 * A slab is a bump allocator and is never written twice: a slab is freed by the garbage
 * collector once no store slot (and no delivery in flight) still points into it. A slab kept
 * alive by one old message wastes the rest of it; that bounds the waste to one slab per long-lived
 * message, which is acceptable for queues and cheap to reason about.
 *
 * Copies are deferred and merged: a run of frames that lie back to back in the input and are
 * queued one after another is copied with one call when the run ends, not one call per frame
 * (a call costs more than copying a small frame). {@link settle} makes the copies before anything
 * can read queued bytes: the kernel calls it after each input chunk, before every frame that is
 * not a SEND and when a process ends; a mailbox, before it delivers, replaces or drops queued
 * messages.
 */
/** Frames from this size up that are a whole buffer are adopted, not copied. */
const ADOPT_BYTES = 16 * 1024;

export class Slab {
  private current: Buffer;
  private used = 0;
  private readonly slabBytes: number;
  // The copy not yet made: src[pendingStart, pendingEnd) goes to current[pendingOff, …).
  private pendingSrc: Buffer | null = null;
  private pendingStart = 0;
  private pendingEnd = 0;
  private pendingOff = 0;

  constructor(slabBytes = 1024 * 1024) {
    this.slabBytes = slabBytes;
    this.current = Buffer.allocUnsafeSlow(slabBytes);
    this.lastBuffer = this.current;
  }

  /** The buffer the last {@link copy} placed its bytes in. */
  lastBuffer: Buffer;

  /**
   * Places src[start, end) in a slab; returns the offset in {@link lastBuffer} (no object per
   * call). The bytes are there once {@link settle} has run; until then src must not change. A
   * large frame that fills src is adopted instead: src itself becomes its home, so the caller
   * must hand over only buffers nobody writes again (the kernel's input never is, except by the
   * kernel relabelling a message it delivers).
   */
  copy(src: Buffer, start: number, end: number): number {
    const len = end - start;
    if (start === 0 && end === src.length && len >= ADOPT_BYTES) {
      // A large frame that is a whole buffer of its own (one the decoder joined from several
      // chunks): kept as it is. Copying it would cost as much as everything else it goes through.
      this.lastBuffer = src;
      return 0;
    }
    if (len > this.slabBytes / 4) {
      // Large messages get a buffer of their own rather than wasting a slab's tail.
      const own = Buffer.allocUnsafeSlow(len);
      src.copy(own, 0, start, end);
      this.lastBuffer = own;
      return 0;
    }
    if (this.used + len > this.slabBytes) {
      this.settle();
      this.current = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    const off = this.used;
    // Back to back, no padding: consecutive queued frames stay adjacent, so a run of them goes
    // out as one slice.
    this.used = off + len;
    this.lastBuffer = this.current;
    if (this.pendingSrc === src && this.pendingEnd === start) {
      this.pendingEnd = end;
      return off;
    }
    this.settle();
    this.pendingSrc = src;
    this.pendingStart = start;
    this.pendingEnd = end;
    this.pendingOff = off;
    return off;
  }

  /** Makes every deferred copy. */
  settle(): void {
    const src = this.pendingSrc;
    if (src === null) return;
    this.pendingSrc = null;
    src.copy(this.current, this.pendingOff, this.pendingStart, this.pendingEnd);
  }
}

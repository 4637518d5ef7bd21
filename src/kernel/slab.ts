/**
 * Where queued messages live: frames copied back to back into large buffers, so a queued message
 * costs its bytes plus a few slots in its store, and no Buffer object of its own.
 *
 * A slab is a bump allocator and is never written twice: a slab is freed by the garbage
 * collector once no store slot (and no delivery in flight) still points into it. A slab kept
 * alive by one old message wastes the rest of it; that bounds the waste to one slab per long-lived
 * message, which is acceptable for queues and cheap to reason about.
 */
export class Slab {
  private current: Buffer;
  private used = 0;
  private readonly slabBytes: number;

  constructor(slabBytes = 1024 * 1024) {
    this.slabBytes = slabBytes;
    this.current = Buffer.allocUnsafeSlow(slabBytes);
    this.lastBuffer = this.current;
  }

  /** The buffer the last {@link copy} wrote to. */
  lastBuffer: Buffer;

  /** Copies src[start, end) into a slab; returns the offset in {@link lastBuffer} (no object per call). */
  copy(src: Buffer, start: number, end: number): number {
    const len = end - start;
    if (len > this.slabBytes / 4) {
      // Large messages get a buffer of their own rather than wasting a slab's tail.
      const own = Buffer.allocUnsafeSlow(len);
      src.copy(own, 0, start, end);
      this.lastBuffer = own;
      return 0;
    }
    if (this.used + len > this.slabBytes) {
      this.current = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    const off = this.used;
    src.copy(this.current, off, start, end);
    // Back to back, no padding: consecutive queued frames stay adjacent, so a run of them goes
    // out as one slice.
    this.used = off + len;
    this.lastBuffer = this.current;
    return off;
  }
}

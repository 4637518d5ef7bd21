import { getU32, HEAD_BYTES, LENGTH_BYTES } from './frame.js';

/** A frame's start left at a chunk's end is kept in place from this size up, copied below it. */
const KEEP_TAIL_BYTES = 16 * 1024;

/**
 * Receives each whole frame as a range of a buffer, so no view is allocated per frame. `limit`
 * is where the bytes at hand end: a handler may look past its frame, and consume whole frames
 * after it (a run it handles together) by telling the decoder with {@link FrameDecoder.skipTo}.
 */
export type FrameHandler = (buf: Buffer, start: number, end: number, limit: number) => number | void;

/**
 * Splits a byte stream into frames. Pure: it never touches a socket, so the kernel and the client
 * share it. A frame lying inside one chunk is handed over in place (no copy); only a frame that
 * spans chunks is assembled into a buffer of its own.
 */
export class FrameDecoder {
  // A frame split across chunks is gathered here and joined once, when it is complete, so a
  // peer trickling bytes costs linear, not quadratic, work.
  private parts: Buffer[] = [];
  private partBytes = 0;
  /** Largest whole frame accepted; may be raised (the kernel does after HELLO). */
  maxFrameBytes: number;
  private readonly onFrame: FrameHandler;

  /**
   * @param maxFrameBytes largest whole frame accepted (length field included); a larger length
   *   is a protocol error, thrown from {@link push} before any of it is buffered.
   */
  constructor(maxFrameBytes: number, onFrame: FrameHandler) {
    this.maxFrameBytes = maxFrameBytes;
    this.onFrame = onFrame;
  }

  // Where the handler asked to go on from (-1: after its frame; 0 is a place it may wrongly ask for).
  private goOnAt = -1;

  /**
   * Called by a handler that has handled whole frames after its own: decoding goes on at `pos`,
   * a frame boundary within its `limit`. The handler must have checked those frames' lengths
   * against {@link maxFrameBytes}. A `pos` before the frame's end or past `limit` makes
   * {@link push} throw {@link FrameError}.
   *
   * @example
   * ```ts
   * const decoder: FrameDecoder = new FrameDecoder(1 << 20, (buf, start, end, limit) => {
   *   const next = end + (end < limit ? getU32(buf, end) + LENGTH_BYTES : 0);
   *   if (next > end && next <= limit) decoder.skipTo(next); // took the following frame too
   * });
   * ```
   */
  skipTo(pos: number): void {
    this.goOnAt = pos;
  }

  /** Bytes held waiting for the rest of a frame, or for {@link resume}. */
  get buffered(): number {
    return this.partBytes + (this.held === null ? 0 : this.held.length);
  }

  /**
   * Size of the frame begun and not yet whole (length field included), or the bytes of it held
   * while its length field is still incomplete; 0 between frames. Bytes held back by
   * {@link pause} are not a frame begun.
   */
  get pendingFrameBytes(): number {
    if (this.partBytes < LENGTH_BYTES) return this.partBytes;
    // The first part holds the whole length field once partBytes reaches it (completePart).
    return getU32(this.parts[0]!, 0) + LENGTH_BYTES;
  }

  // Set by pause(): push stops after the current frame and keeps the rest in `held`.
  private pausing = false;
  private held: Buffer | null = null;

  /**
   * Called by a handler: no frame after the current one is handed over until {@link resume}.
   * For an owner whose answers pile up faster than its peer reads them: bytes already read
   * stay bytes, not answers, until the peer has caught up.
   */
  pause(): void {
    this.pausing = true;
  }

  /** Whether {@link pause} holds frames back. */
  get paused(): boolean {
    return this.pausing;
  }

  /** Hands over the frames held since {@link pause} (it may pause again). Throws {@link FrameError}. */
  resume(): void {
    this.pausing = false;
    const held = this.held;
    this.held = null;
    if (held !== null) this.push(held);
  }

  /** Feeds a chunk; calls the handler for every complete frame. Throws {@link FrameError}. */
  push(chunk: Buffer): void {
    if (this.pausing) {
      this.hold(chunk, 0);
      return;
    }
    let pos = 0;
    if (this.partBytes > 0) {
      pos = this.completePart(chunk);
      if (pos < 0) return;
      if (this.pausing) {
        this.hold(chunk, pos);
        return;
      }
    }
    const total = chunk.length;
    while (total - pos >= LENGTH_BYTES) {
      const size = this.frameSize(chunk, pos);
      if (total - pos < size) break;
      this.onFrame(chunk, pos, pos + size, total);
      if (this.goOnAt >= 0) {
        const next = this.goOnAt;
        this.goOnAt = -1;
        // Past the bytes at hand, or back into ones already handled, the stream would lose its
        // framing without a word.
        if (next < pos + size || next > total)
          throw new FrameError(
            `skipTo(${next}) is outside ${pos + size}…${total}, the bytes after the frame`,
          );
        pos = next;
      } else pos += size;
      if (this.pausing) {
        this.hold(chunk, pos);
        return;
      }
    }
    if (pos < total) {
      // A small remainder is copied so it does not pin a large chunk; a large one (the start of
      // a large frame) is kept where it lies, since its copy would cost as much as the join.
      const rest = total - pos;
      const tail = rest < KEEP_TAIL_BYTES ? Buffer.from(chunk.subarray(pos)) : chunk.subarray(pos);
      this.parts.push(tail);
      this.partBytes = rest;
    }
  }

  /**
   * A frame began in earlier chunks: finish it from the head of this one. Returns where the
   * rest of the chunk begins, or -1 if the chunk did not finish it (it is kept). Only the frame
   * is copied, not the chunk it ends in: with frames straddling nearly every chunk boundary,
   * joining whole chunks would copy everything that arrives.
   */
  private completePart(chunk: Buffer): number {
    if (this.partBytes < LENGTH_BYTES) {
      if (this.partBytes + chunk.length < LENGTH_BYTES) {
        this.parts.push(chunk);
        this.partBytes += chunk.length;
        return -1;
      }
      // Gather the length field into the first part.
      const head = Buffer.concat([...this.parts, chunk.subarray(0, LENGTH_BYTES - this.partBytes)]);
      const used = LENGTH_BYTES - this.partBytes;
      this.parts = [head];
      this.partBytes = LENGTH_BYTES;
      const rest = this.completePart(chunk.subarray(used));
      return rest < 0 ? -1 : rest + used;
    }
    const need = this.frameSize(this.parts[0]!, 0);
    if (this.partBytes + chunk.length < need) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      return -1;
    }
    const used = need - this.partBytes;
    let frame: Buffer;
    const first = this.parts[0]!;
    if (
      this.parts.length === 1 &&
      first.buffer === chunk.buffer &&
      first.byteOffset + first.length === chunk.byteOffset
    ) {
      // The chunk was read right after the part, into the same memory (ReadArena): the frame
      // already lies whole, nothing to join.
      frame = Buffer.from(chunk.buffer, first.byteOffset, need);
    } else {
      frame = Buffer.allocUnsafe(need);
      let at = 0;
      for (const part of this.parts) {
        part.copy(frame, at);
        at += part.length;
      }
      chunk.copy(frame, at, 0, used);
    }
    this.parts = [];
    this.partBytes = 0;
    this.onFrame(frame, 0, need, need);
    // Its limit was its own end: there was nothing after it to skip to.
    this.goOnAt = -1;
    return used;
  }

  /** Keeps chunk[pos…] for {@link resume}, copied so that a small rest does not pin its chunk. */
  private hold(chunk: Buffer, pos: number): void {
    if (pos >= chunk.length) return;
    const rest = chunk.subarray(pos);
    this.held = this.held === null ? Buffer.from(rest) : Buffer.concat([this.held, rest]);
  }

  private frameSize(buf: Buffer, pos: number): number {
    const size = getU32(buf, pos) + LENGTH_BYTES;
    if (size < HEAD_BYTES)
      throw new FrameError(`frame length ${size - LENGTH_BYTES} is below the minimum of 8`);
    if (size > this.maxFrameBytes) {
      throw new FrameError(`frame of ${size} bytes is over the limit of ${this.maxFrameBytes}`);
    }
    return size;
  }
}

/** The byte stream cannot be framed; the connection must be closed. */
export class FrameError extends Error {
  readonly code = 'EPROTO';
}

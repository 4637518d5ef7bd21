import type { Socket } from 'node:net';

const MIN_BUFFER = 64 * 1024;
const SMALL_FLUSH = 4096;
/**
 * A new writer's first buffer: a page, not {@link MIN_BUFFER}. Most connections write a few small
 * frames (WELCOME, replies), which a small flush copies out, so the first buffer is kept for good;
 * at 64 KiB each it was 6.4 GB of external memory at 100,000 connections, and V8 ran a full
 * collection every few hundred connects to account for it. A writer that writes more moves to
 * {@link MIN_BUFFER} at its first reserve past the page.
 */
const FIRST_BUFFER = 4096;

/**
 * Gathers outgoing frames and writes them with one syscall when flushed: a burst of messages
 * costs one `write` (or one `writev`), not one per message.
 *
 * Frames are either written into the writer's own buffer (reserve, fill in place, commit) or,
 * for frames that already lie complete in another buffer (the kernel forwarding a message from
 * its input), queued by reference and never copied; adjacent references into the same buffer
 * merge, so a run of forwarded messages is one slice.
 *
 * ```
 *  parts: [ buf[0, sealed) ][ input[a, b) ][ … ]   then   buf[sealed, length)   written in order
 * ```
 *
 * The owner decides when to flush (the kernel once per turn for all its processes, the client
 * once per turn for itself); `onFirstWrite` tells it a flush is needed.
 */
export class FrameWriter {
  buf: Buffer;
  /**
   * {@link buf} as a DataView, for heads written a word at a time: a 56-byte head is 14 stores
   * instead of 56 byte stores (a third of the time in a send's hot path). Replaced with buf.
   */
  view: DataView;
  /** Bytes written into {@link buf} and not yet flushed. */
  length = 0;
  /** buf[0, sealed) is already queued in {@link parts}. */
  private sealed = 0;
  private parts: Buffer[] = [];
  private refSrc: Buffer | null = null;
  private refStart = 0;
  private refEnd = 0;
  private pending = false;
  private readonly socket: Socket;
  private readonly onFirstWrite: () => void;

  constructor(socket: Socket, onFirstWrite: () => void) {
    this.socket = socket;
    this.onFirstWrite = onFirstWrite;
    this.buf = Buffer.allocUnsafeSlow(FIRST_BUFFER);
    this.view = viewOf(this.buf);
  }

  /** Bytes gathered and not yet flushed. */
  get size(): number {
    let n = this.length - this.sealed + (this.refSrc === null ? 0 : this.refEnd - this.refStart);
    for (const p of this.parts) n += p.length;
    return n;
  }

  /** Makes room for n bytes; returns the offset in {@link buf} to write them at. */
  reserve(n: number): number {
    if (!this.pending) this.first();
    if (this.refSrc !== null) this.sealRef();
    if (this.length + n > this.buf.length) {
      // Full: what is written becomes a part of its own and a new buffer starts. Nothing is
      // copied; the parts go out together in one writev.
      if (this.length > this.sealed) this.parts.push(this.buf.subarray(this.sealed, this.length));
      this.setBuffer(Buffer.allocUnsafeSlow(Math.max(MIN_BUFFER, n)));
      this.length = this.sealed = 0;
    }
    return this.length;
  }

  /** Marks n reserved bytes as written. */
  commit(n: number): void {
    this.length += n;
  }

  /** Copies src[start, end) in as it is; returns where it landed, for fields to be rewritten. */
  copyIn(src: Buffer, start: number, end: number): number {
    const off = this.reserve(end - start);
    src.copy(this.buf, off, start, end);
    this.length += end - start;
    return off;
  }

  /** Appends a ready-made frame (copied). */
  append(frame: Buffer): void {
    this.copyIn(frame, 0, frame.length);
  }

  /**
   * Queues src[start, end) to be written as it is, after everything queued so far, without
   * copying. The caller guarantees those bytes do not change until they are written.
   */
  appendRef(src: Buffer, start: number, end: number): void {
    if (this.refSrc === src && this.refEnd === start) {
      this.refEnd = end;
      return;
    }
    if (!this.pending) this.first();
    if (this.refSrc !== null) this.sealRef();
    if (this.length > this.sealed) {
      this.parts.push(this.buf.subarray(this.sealed, this.length));
      this.sealed = this.length;
    }
    this.refSrc = src;
    this.refStart = start;
    this.refEnd = end;
  }

  /**
   * Writes what has gathered. Returns false when the socket's own buffer is over its high-water
   * mark: the owner should stop adding until 'drain'.
   */
  flush(): boolean {
    if (!this.pending) return true;
    this.pending = false;
    if (this.refSrc !== null) this.sealRef();
    if (this.socket.destroyed) {
      this.length = this.sealed = 0;
      this.parts = [];
      return true;
    }
    if (this.parts.length === 0) {
      let out: Buffer;
      if (this.length <= SMALL_FLUSH) {
        // A small flush (a reply, one message) is copied out so the big buffer is reused.
        out = Buffer.allocUnsafe(this.length);
        this.buf.copy(out, 0, 0, this.length);
      } else {
        // The socket keeps `out` until the bytes are sent, so the next frames need a fresh buffer.
        out = this.buf.subarray(0, this.length);
        this.setBuffer(Buffer.allocUnsafeSlow(MIN_BUFFER));
      }
      this.length = 0;
      return this.socket.write(out);
    }
    if (this.length > this.sealed) this.parts.push(this.buf.subarray(this.sealed, this.length));
    if (this.length > 0) this.setBuffer(Buffer.allocUnsafeSlow(MIN_BUFFER));
    const parts = this.parts;
    this.parts = [];
    this.length = this.sealed = 0;
    if (parts.length === 1) return this.socket.write(parts[0]!);
    this.socket.cork();
    for (const p of parts) this.socket.write(p);
    this.socket.uncork();
    return this.socket.writableLength < this.socket.writableHighWaterMark;
  }

  private setBuffer(buf: Buffer): void {
    this.buf = buf;
    this.view = viewOf(buf);
  }

  private first(): void {
    this.pending = true;
    this.onFirstWrite();
  }

  private sealRef(): void {
    this.parts.push(this.refSrc!.subarray(this.refStart, this.refEnd));
    this.refSrc = null;
  }
}

const viewOf = (buf: Buffer): DataView => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

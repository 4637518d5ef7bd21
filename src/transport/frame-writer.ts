import type { Socket } from 'node:net';

const MIN_BUFFER = 64 * 1024;
const SMALL_FLUSH = 4096;

/**
 * Gathers outgoing frames into one buffer and writes them with one syscall when flushed: a
 * burst of messages costs one `write`, not one per message.
 *
 * Callers reserve room, fill it in place, then commit; nothing is copied twice. The owner decides
 * when to flush (the kernel once per turn of the event loop for all its processes, the client
 * once per turn for itself); {@link onFirstWrite} tells it a flush is needed.
 */
export class FrameWriter {
  buf: Buffer;
  /** Bytes written into {@link buf} and not yet flushed. */
  length = 0;
  private readonly socket: Socket;
  private readonly onFirstWrite: () => void;

  constructor(socket: Socket, onFirstWrite: () => void) {
    this.socket = socket;
    this.onFirstWrite = onFirstWrite;
    this.buf = Buffer.allocUnsafeSlow(MIN_BUFFER);
  }

  /** Makes room for n bytes; returns the offset in {@link buf} to write them at. */
  reserve(n: number): number {
    if (this.length === 0) this.onFirstWrite();
    if (this.length + n > this.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
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

  /** Appends a ready-made frame. */
  append(frame: Buffer): void {
    this.copyIn(frame, 0, frame.length);
  }

  /**
   * Writes what has gathered. Returns false when the socket's own buffer is over its high-water
   * mark: the owner should stop adding until 'drain'.
   */
  flush(): boolean {
    if (this.length === 0) return true;
    if (this.socket.destroyed) {
      this.length = 0;
      return true;
    }
    let out: Buffer;
    if (this.length <= SMALL_FLUSH) {
      // A small flush (a reply, one message) is copied out so the big buffer is reused.
      out = Buffer.allocUnsafe(this.length);
      this.buf.copy(out, 0, 0, this.length);
    } else {
      // The socket keeps `out` until the bytes are sent, so the next frames need a fresh buffer.
      out = this.buf.subarray(0, this.length);
      this.buf = Buffer.allocUnsafeSlow(Math.max(MIN_BUFFER, this.buf.length));
    }
    this.length = 0;
    return this.socket.write(out);
  }
}

import type { OnReadOpts } from 'node:net';

/** Least room a read is offered (Node's own reads ask for 64 KiB). */
const MIN_READ = 64 * 1024;
/** Size of a slab reads are carved from. */
const SLAB_BYTES = 256 * 1024;

/**
 * Reads a socket into memory of its own: each read lands right after the last one in a large
 * slab (Node's `onread` option), instead of Node allocating a buffer for every read and pushing
 * it through a Readable stream. A receiver pumping two million 100-byte messages used ~300 ms
 * of CPU instead of ~420 (docs/performance.md, "The clients' share").
 *
 * Memory is never written twice: the chunk handed on is a view that stays valid for good, so
 * the decoder can hand out frames in place and a received message's body can be a view of it.
 * A slab is freed by the garbage collector once no view of it is left; a message kept for long
 * keeps its slab (at most 256 KiB), which is why `Message.data` says to copy bodies you keep.
 *
 * @example
 * ```ts
 * const arena = new ReadArena((chunk) => decoder.push(chunk));
 * const socket = net.connect({ path, onread: arena.onread });
 * ```
 */
export class ReadArena {
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private used = 0;
  /** Pass as the socket's `onread` option. */
  readonly onread: OnReadOpts;

  /** @param onChunk gets the bytes of every read, in order; it must not throw. */
  constructor(onChunk: (chunk: Buffer) => void) {
    this.onread = {
      // Node asks for the buffer of the next read after each callback.
      buffer: () => this.next(),
      callback: (nread: number, buf: Uint8Array): boolean => {
        this.used += nread;
        onChunk((buf as Buffer).subarray(0, nread));
        return true;
      },
    };
  }

  private next(): Buffer {
    if (this.slab.length - this.used < MIN_READ) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }
}

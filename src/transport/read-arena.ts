import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';

/** Least room a read is offered (Node's own reads ask for 64 KiB). */
const MIN_READ = 64 * 1024;
/** Size of a slab reads are carved from. */
const SLAB_BYTES = 256 * 1024;
const EMPTY = Buffer.alloc(0);

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
  // Taken at the first read: a kernel with a thousand idle connections holds no slab for them.
  private slab = EMPTY;
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

/**
 * Takes over a connection a server accepted (with `pauseOnConnect`, so nothing has been read)
 * as a socket that reads into a {@link ReadArena}. Node's servers give their sockets no `onread`
 * option, so the kernel's reads would otherwise each take a buffer of Node's and a pass through a
 * Readable stream; and, with reads in one slab, a large frame lying across two reads needs no
 * join (FrameDecoder). Should the socket's handle not be reachable (a Node that hides it), the
 * accepted socket is kept and read as a stream: the same bytes, only slower.
 *
 * @example
 * ```ts
 * const server = createServer({ pauseOnConnect: true }, (accepted) => {
 *   const socket = readIntoArena(accepted, (chunk) => decoder.push(chunk));
 * });
 * ```
 */
export function readIntoArena(accepted: Socket, onChunk: (chunk: Buffer) => void): Socket {
  const holder = accepted as unknown as { _handle?: object | null };
  const handle = holder._handle;
  if (handle === undefined || handle === null || accepted.destroyed) {
    accepted.on('data', onChunk);
    accepted.resume();
    return accepted;
  }
  // The accepted socket lets go of the handle, so destroying it closes nothing (and tells its
  // server the connection left it); the new one owns the handle from here on.
  holder._handle = null;
  accepted.destroy();
  const arena = new ReadArena(onChunk);
  const opts = { handle, onread: arena.onread, readable: true, writable: true };
  return new Socket(opts as SocketConstructorOpts);
}

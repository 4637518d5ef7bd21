import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';

/**
 * Slab sizes: a connection starts small and doubles while its reads are large, halving when they
 * stay small. 4 KiB at the least: a kernel whose 300 connections each sent 2,000 messages one at
 * a time held 78 MiB with it, as with Node's own reads (79 MiB), 103 MiB at 16 KiB and 118 MiB
 * with a fixed 256 KiB.
 */
const MIN_SLAB = 4 * 1024;
const MAX_SLAB = 256 * 1024;
/** The most one read takes. */
const LANDING_BYTES = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Where every socket of this process that reads through a ReadArena has its bytes read to,
 * copied out by the read's callback before it returns. One is enough: libuv reads a socket and
 * calls back before it reads the next.
 *
 * Not reading into the slab directly is deliberate. With a function for `onread.buffer`, Node
 * keeps the next buffer on the JavaScript side and hands it to its C++ side only if nothing
 * threw while the callback's turn ended; a callback queued by the application (an 'error'
 * emitted on a stream with no listener) that throws there, with an 'uncaughtException' handler
 * installed, leaves the C++ side reading into the previous buffer, the one already handed out:
 * the next read overwrote bytes of messages delivered before it, and the decoder read the
 * wrong memory as frames (Node 20; docs/architecture.md, step 6 of a message's path). A buffer that never
 * changes cannot disagree with itself.
 */
let landing: Buffer | null = null;

/**
 * Reads a socket into memory of its own: each read is copied right after the last one in a
 * slab (Node's `onread` option), instead of Node allocating a buffer for every read and pushing
 * it through a Readable stream. A receiver pumping two million 100-byte messages used ~300 ms of
 * CPU instead of ~420 (docs/performance.md, "The clients' share"); the kernel reads every
 * process this way too (readIntoArena).
 *
 * Memory is never written twice: the chunk handed on is a view that stays valid for good, so
 * the decoder can hand out frames in place and a received message's body can be a view of it.
 * A slab is freed by the garbage collector once no view of it is left; a message kept for long
 * keeps its slab (at most 256 KiB), which is why `Message.data` says to copy bodies you keep.
 *
 * Slabs follow the traffic: 4 KiB for a quiet connection, doubling up to 256 KiB while reads
 * are large (more was waiting), halving when they stay small. A kernel with a thousand
 * connections that each say little holds 4 KiB for each, not 256.
 *
 * @example
 * ```ts
 * const arena = new ReadArena((chunk) => decoder.push(chunk));
 * const socket = net.connect({ path, onread: arena.onread });
 * ```
 */
export class ReadArena {
  private slab = EMPTY;
  private used = 0;
  /** Largest read into this slab. */
  private largest = 0;
  /** Pass as the socket's `onread` option. */
  readonly onread: OnReadOpts;

  /** @param onChunk gets the bytes of every read, in order; it must not throw. */
  constructor(onChunk: (chunk: Buffer) => void) {
    landing ??= Buffer.allocUnsafeSlow(LANDING_BYTES);
    this.onread = {
      buffer: landing,
      callback: (nread: number, buf: Uint8Array): boolean => {
        onChunk(this.place(buf, nread));
        return true;
      },
    };
  }

  /** Size of the slab in use (0 before the first read). */
  get slabBytes(): number {
    return this.slab.length;
  }

  /** Copies a read out of the landing buffer, after the last one; returns where it now lies. */
  private place(src: Uint8Array, n: number): Buffer {
    if (this.slab.length - this.used < n) this.nextSlab(n);
    const at = this.used;
    this.slab.set(n === src.length ? src : src.subarray(0, n), at);
    this.used = at + n;
    if (n > this.largest) this.largest = n;
    return this.slab.subarray(at, at + n);
  }

  private nextSlab(n: number): void {
    const size = this.slab.length;
    let next = MIN_SLAB;
    // Reads of a quarter of the slab or more had more behind them; under an eighth, the traffic
    // is small.
    if (size > 0) {
      if (this.largest >= size >> 2) next = Math.min(MAX_SLAB, size * 2);
      else if (this.largest < size >> 3) next = Math.max(MIN_SLAB, size >> 1);
      else next = size;
    }
    this.slab = Buffer.allocUnsafeSlow(Math.max(next, n));
    this.used = 0;
    this.largest = 0;
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

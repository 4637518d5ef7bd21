// The transport layer on its own: a connection a server accepted, taken over to read into slabs
// (readIntoArena), over a real Unix socket.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FrameWriter } from '../src/transport/frame-writer.js';
import { ReadArena, readIntoArena } from '../src/transport/read-arena.js';

const WAIT_MS = 5000;

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('ReadArena', () => {
  /** Drives an arena as Node does: read up to n bytes into its buffer, call back. */
  function reader() {
    const chunks: Buffer[] = [];
    const arena = new ReadArena((chunk) => chunks.push(chunk));
    const { buffer, callback } = arena.onread as {
      buffer: Buffer;
      callback: (n: number, b: Uint8Array) => boolean;
    };
    let byte = 0;
    const read = (n: number): void => {
      const k = Math.min(n, buffer.length);
      for (let i = 0; i < k; i++) buffer[i] = byte++ & 0xff;
      callback(k, buffer);
    };
    return { arena, chunks, read, buffer };
  }

  test('a quiet connection keeps a small slab; large reads get 256 KiB; small ones again shrink it', () => {
    const { arena, chunks, read } = reader();
    assert.equal(arena.slabBytes, 0, 'no slab before the first read');
    for (let i = 0; i < 200; i++) read(150);
    assert.equal(arena.slabBytes, 4096, 'small reads keep it at 4 KiB');
    for (let i = 0; i < 10; i++) read(1 << 30); // more waiting than a read takes
    assert.equal(arena.slabBytes, 262144, 'a read of 256 KiB, the most one takes');
    // Back to small reads: it halves slab by slab, down to 4 KiB again.
    const sizes = new Set<number>();
    for (let i = 0; i < 20_000 && arena.slabBytes > 4096; i++) {
      read(100);
      sizes.add(arena.slabBytes);
    }
    assert.deepEqual(
      [...sizes].sort((a, b) => a - b),
      [4096, 8192, 16384, 32768, 65536, 131072, 262144],
    );
    // Every byte was handed on once, in order, and no chunk was written over afterwards.
    const all = Buffer.concat(chunks);
    for (let i = 0; i < all.length; i++) assert.equal(all[i], i & 0xff, `byte ${i}`);
  });

  test('each read lands whole and right after the one before (a frame across reads needs no join)', () => {
    const { chunks, read } = reader();
    for (const n of [100, 3000, 70_000, 200_000, 5, 262_144]) read(n);
    for (let i = 1; i < chunks.length; i++) {
      const [a, b] = [chunks[i - 1]!, chunks[i]!];
      if (a.buffer === b.buffer)
        assert.equal(a.byteOffset + a.length, b.byteOffset, `read ${i} follows read ${i - 1}`);
    }
    assert.deepEqual(
      chunks.map((c) => c.length),
      [100, 3000, 70_000, 200_000, 5, 262_144],
    );
  });

  test("a read that would pass the slab's end by one byte goes to a new slab; one that fills it does not", () => {
    const { arena, chunks, read } = reader();
    read(4000);
    read(95); // 4,095 of the 4,096: one byte left
    assert.equal(chunks[1]!.buffer, chunks[0]!.buffer, 'the same slab');
    read(2);
    assert.notEqual(chunks[2]!.buffer, chunks[0]!.buffer, 'two bytes do not fit in one');
    read(arena.slabBytes - 2); // exactly to the end
    assert.equal(chunks[3]!.buffer, chunks[2]!.buffer);
    const all = Buffer.concat(chunks);
    for (let i = 0; i < all.length; i++) assert.equal(all[i], i & 0xff, `byte ${i}`);
  });

  test('every arena reads into one buffer that never changes, copied out at each read', () => {
    const one = reader();
    const two = reader();
    assert.ok(Buffer.isBuffer(one.buffer), 'a buffer, not a function: Node cannot read into a stale one');
    assert.equal(one.buffer, two.buffer, 'one for the process');
    one.read(10);
    two.read(10); // overwrites the landing buffer, not what the first arena handed on
    assert.deepEqual([...one.chunks[0]!], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('readIntoArena', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pb-transport-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A server whose connections are taken over; resolves with the taken socket and its reads. */
  async function serve(path: string): Promise<{
    server: Server;
    taken: Promise<{ socket: Socket; chunks: Buffer[]; grew: EventTarget }>;
  }> {
    let resolve!: (v: { socket: Socket; chunks: Buffer[]; grew: EventTarget }) => void;
    const taken = new Promise<{ socket: Socket; chunks: Buffer[]; grew: EventTarget }>((r) => {
      resolve = r;
    });
    const server = createServer({ pauseOnConnect: true }, (accepted) => {
      const chunks: Buffer[] = [];
      const grew = new EventTarget();
      const socket = readIntoArena(accepted, (chunk) => {
        chunks.push(chunk);
        grew.dispatchEvent(new Event('chunk'));
      });
      resolve({ socket, chunks, grew });
    });
    server.listen(path);
    await once(server, 'listening');
    return { server, taken };
  }

  /** A server at dir/name, a client connected to it, and the server's taken-over end. */
  async function connected(name: string) {
    const path = join(dir, name);
    const { server, taken } = await serve(path);
    const client = connect(path);
    await within(once(client, 'connect'), 'connect');
    const t = await within(taken, 'accept');
    return { server, client, t };
  }

  const received = (chunks: Buffer[]): number => chunks.reduce((n, c) => n + c.length, 0);

  async function readBytes(t: { chunks: Buffer[]; grew: EventTarget }, n: number): Promise<Buffer> {
    while (received(t.chunks) < n) await within(once(t.grew, 'chunk'), `${n} bytes`);
    return Buffer.concat(t.chunks);
  }

  test('the taken-over socket reads every byte in order, writes back, and frees the server', async () => {
    const { server, client, t } = await connected('a.sock');
    assert.ok(t.socket instanceof Socket);

    // More than a slab (256 KiB) in one go, so reads cross from one slab to the next.
    const sent = Buffer.allocUnsafe(600 * 1024);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 31 + 1) & 0xff;
    client.write(sent);
    const got = await readBytes(t, sent.length);
    assert.ok(got.equals(sent), 'the same bytes, in order');

    // Chunks handed on stay as they were read (nothing is written twice): check the first again.
    assert.ok(t.chunks[0]!.equals(sent.subarray(0, t.chunks[0]!.length)));

    const echoed = once(client, 'data');
    t.socket.write('pong');
    const [answer] = (await within(echoed, 'answer')) as [Buffer];
    assert.equal(answer.toString(), 'pong');

    // The accepted socket let go of its connection: the server can close once the new one ends.
    const closed = once(t.socket, 'close');
    client.end();
    await within(closed, 'close of the taken socket');
    server.close();
    await within(once(server, 'close'), 'server close');
  });

  test('pause and resume stop and restart reads (the kernel pauses a process it cannot write to)', async () => {
    const { server, client, t } = await connected('b.sock');
    client.write('one');
    await readBytes(t, 3);
    t.socket.pause();
    client.write('two');
    // 'two' is in the server's socket before the round trip below ends (same process, written
    // first); a read that was not stopped would usually have handed it over by then.
    const ack = once(client, 'data');
    t.socket.write('x');
    await within(ack, 'round trip while paused');
    assert.equal(received(t.chunks), 3, 'no read while paused');
    t.socket.resume();
    const all = await readBytes(t, 6);
    assert.equal(all.toString(), 'onetwo');
    client.destroy();
    await within(once(t.socket, 'close'), 'close');
    server.close();
  });

  test('a socket whose handle cannot be reached is read as a stream instead', async () => {
    // A socket with no handle (as a Node that hid it would give): the fallback path.
    const bare = new Socket();
    const chunks: Buffer[] = [];
    const socket = readIntoArena(bare, (chunk) => chunks.push(chunk));
    assert.equal(socket, bare, 'the same socket is kept');
    const arrived = once(socket, 'data');
    socket.push(Buffer.from('abc'));
    await within(arrived, 'data');
    assert.equal(Buffer.concat(chunks).toString(), 'abc');
    socket.destroy();
  });
});

describe('FrameWriter', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pb-writer-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A writer on one end of a real Unix socket, and what the other end reads. */
  async function writerTo(name: string) {
    const path = join(dir, name);
    const chunks: Buffer[] = [];
    let peer: Socket | null = null;
    const server = createServer((s) => {
      peer = s;
      s.on('data', (d: Buffer) => chunks.push(d));
    });
    server.listen(path);
    await once(server, 'listening');
    const socket = connect(path);
    await within(once(socket, 'connect'), 'connect');
    let firstWrites = 0;
    const writer = new FrameWriter(socket, () => firstWrites++);
    const read = async (n: number): Promise<Buffer> => {
      while (chunks.reduce((k, c) => k + c.length, 0) < n) await within(once(peer!, 'data'), `${n} bytes`);
      return Buffer.concat(chunks);
    };
    const close = async (): Promise<void> => {
      socket.destroy();
      (peer as Socket | null)?.destroy();
      server.close();
      await once(server, 'close');
    };
    const pausePeer = (): void => {
      (peer as Socket | null)?.pause();
    };
    const resumePeer = (): void => {
      (peer as Socket | null)?.resume();
    };
    return { writer, read, close, firstWrites: () => firstWrites, pausePeer, resumePeer };
  }

  const bytes = (n: number, seed: number): Buffer =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff));

  test('frames written in place and frames queued by reference go out in the order they were added', async () => {
    // The kernel mixes both in one flush: a reply it writes, then messages it forwards as slices
    // of their input, then another reply. A reference queued ahead of bytes written before it
    // would reorder the stream.
    const w = await writerTo('order');
    try {
      const input = bytes(3000, 1);
      const a = bytes(100, 2);
      const c = bytes(50, 3);
      w.writer.append(a);
      w.writer.appendRef(input, 0, 1000);
      w.writer.appendRef(input, 1000, 2000); // follows on: one slice
      assert.equal(w.writer.size, 100 + 2000, 'a reference counts before it is sealed in');
      const at = w.writer.reserve(c.length);
      c.copy(w.writer.buf, at);
      w.writer.commit(c.length);
      w.writer.appendRef(input, 2500, 3000);
      w.writer.append(a);
      assert.equal(w.writer.size, 100 + 2000 + 50 + 500 + 100);
      assert.equal(w.firstWrites(), 1, 'the owner is told once that a flush is due');
      w.writer.flush();
      const expected = Buffer.concat([a, input.subarray(0, 2000), c, input.subarray(2500), a]);
      assert.ok((await w.read(expected.length)).equals(expected));
      assert.equal(w.writer.size, 0);
    } finally {
      await w.close();
    }
  });

  test('a frame that would pass the buffer by one byte starts a new buffer; one that ends at its last byte does not', async () => {
    const w = await writerTo('edge');
    try {
      const room = w.writer.buf.length;
      const first = bytes(room - 10, 4);
      w.writer.append(first);
      const full = w.writer.buf;
      const fits = bytes(10, 5);
      assert.equal(w.writer.reserve(10), room - 10, 'ten bytes fit at the end');
      w.writer.commit(0);
      w.writer.append(fits);
      assert.equal(w.writer.buf, full, 'no new buffer for a frame that ends at the last byte');
      const over = bytes(1, 6);
      assert.equal(w.writer.reserve(1), 0, 'one byte more starts a new buffer');
      w.writer.commit(0);
      w.writer.append(over);
      assert.notEqual(w.writer.buf, full);
      w.writer.flush();
      const expected = Buffer.concat([first, fits, over]);
      assert.ok((await w.read(expected.length)).equals(expected));
    } finally {
      await w.close();
    }
  });

  test('bytes handed to the socket are never written over while it still holds them, and a full socket says so', async () => {
    // A flush over 4 KiB hands the writer's own buffer to the socket; if the socket cannot send
    // it at once (the peer is not reading), the next frames must go to a fresh buffer. Each flush
    // here is different bytes, some with a reference queued in the middle (the other way out).
    const w = await writerTo('held');
    try {
      w.pausePeer();
      const sent: Buffer[] = [];
      let refusedPlain = false;
      let refusedParts = false;
      for (let i = 0; i < 400 && !(refusedPlain && refusedParts); i++) {
        const withRef = i % 2 === 1;
        const head = bytes(8000, i);
        w.writer.append(head);
        sent.push(head);
        if (withRef) {
          const ref = bytes(3000, i + 100);
          w.writer.appendRef(ref, 0, ref.length);
          const tail = bytes(2000, i + 200);
          w.writer.append(tail);
          sent.push(ref, tail);
        }
        const room = w.writer.flush();
        if (!room && withRef) refusedParts = true;
        if (!room && !withRef) refusedPlain = true;
      }
      assert.ok(refusedPlain, 'a flush of its own buffer said the socket is full');
      assert.ok(refusedParts, 'a flush of several parts said the socket is full');
      const expected = Buffer.concat(sent);
      w.resumePeer();
      const got = await w.read(expected.length);
      assert.equal(got.length, expected.length);
      assert.ok(got.equals(expected), 'every byte as it was when flushed');
    } finally {
      await w.close();
    }
  });
});

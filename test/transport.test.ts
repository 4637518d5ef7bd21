// The transport layer on its own: a connection a server accepted, taken over to read into slabs
// (readIntoArena), over a real Unix socket.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
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

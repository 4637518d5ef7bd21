// The "ceiling" benchmark: the fastest a plain Node Unix-socket stream can move length-prefixed
// frames from one process to another. Postbox adds a kernel hop and real encoding on top of this,
// so its numbers are reported as a fraction of what this pump achieves on the same machine.
//
// Usage (spawned by pump.ts, one process per role):
//   node raw-pump.js receiver <socketPath> <messages> <size>
//   node raw-pump.js sender   <socketPath> <messages> <size>

import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

const HEADER = 4;
// Large enough that syscall and event-loop costs are amortised over hundreds of small frames.
const BATCH_BYTES = 64 * 1024;

function receive(path: string, messages: number): void {
  const server = createServer((socket: Socket) => {
    // Only one peer is expected; stop accepting so a stray connection can't skew the count.
    server.close();
    let count = 0;
    let start = 0;
    // Streaming parser state. Payload bytes are skipped, never copied, so a frame split across
    // chunks costs nothing extra: we only carry the (at most 4-byte) header across boundaries.
    const header = Buffer.alloc(HEADER);
    let headerFill = 0;
    let payloadLeft = 0;

    socket.on('data', (chunk: Buffer) => {
      if (start === 0) start = performance.now();
      let off = 0;
      const len = chunk.length;
      while (off < len) {
        if (payloadLeft > 0) {
          const take = Math.min(payloadLeft, len - off);
          payloadLeft -= take;
          off += take;
          if (payloadLeft === 0) count++;
          continue;
        }
        if (headerFill === 0 && off + HEADER <= len) {
          const frameLen = chunk.readUInt32LE(off);
          off += HEADER;
          // Fast path, the common case for small frames: the whole frame is in this chunk.
          if (off + frameLen <= len) {
            off += frameLen;
            count++;
            continue;
          }
          payloadLeft = frameLen;
        } else {
          const take = Math.min(HEADER - headerFill, len - off);
          chunk.copy(header, headerFill, off, off + take);
          headerFill += take;
          off += take;
          if (headerFill < HEADER) break;
          headerFill = 0;
          payloadLeft = header.readUInt32LE(0);
        }
        if (payloadLeft === 0) count++; // zero-length frames are still messages
      }
      if (count >= messages) {
        const ms = performance.now() - start;
        socket.destroy();
        // Exit only once the result line is flushed: stdout to a pipe is async.
        process.stdout.write(`${JSON.stringify({ received: count, ms })}\n`, () => process.exit(0));
      }
    });
    socket.on('end', () => {
      if (count < messages) fail(new Error(`sender closed after ${count}/${messages} messages`));
    });
    socket.on('error', fail);
  });
  server.on('error', fail);
  // The parent waits for this line before spawning the sender, so the connect can't race listen.
  server.listen(path, () => process.stdout.write('listening\n'));
}

async function send(path: string, messages: number, size: number): Promise<void> {
  const socket = connect(path);
  socket.on('error', fail);
  await once(socket, 'connect');

  const frame = HEADER + size;
  const perBatch = Math.max(1, Math.floor(BATCH_BYTES / frame));
  const payload = Buffer.alloc(size, 0x61);

  for (let sent = 0; sent < messages; ) {
    const n = Math.min(perBatch, messages - sent);
    // A fresh buffer per write: the socket may still hold the previous one, and filling it
    // each time is the honest minimum an encoder would have to do.
    const batch = Buffer.allocUnsafe(n * frame);
    for (let i = 0, off = 0; i < n; i++, off += frame) {
      batch.writeUInt32LE(size, off);
      payload.copy(batch, off + HEADER);
    }
    sent += n;
    if (!socket.write(batch)) await once(socket, 'drain');
  }
  socket.end();
  await once(socket, 'close');
}

function fail(err: Error): never {
  process.stderr.write(`raw-pump: ${err.message}\n`);
  process.exit(1);
}

function intArg(value: string | undefined, name: string, min: number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) fail(new Error(`${name} must be an integer >= ${min}`));
  return n;
}

const [role, path, messagesArg, sizeArg] = process.argv.slice(2);
if (!path) fail(new Error('usage: raw-pump.js <receiver|sender> <socketPath> <messages> <size>'));
// At least one message: the receiver's clock starts on the first byte it sees.
const messages = intArg(messagesArg, 'messages', 1);
const size = intArg(sizeArg, 'size', 0);

if (role === 'receiver') receive(path, messages);
else if (role === 'sender') send(path, messages, size).catch(fail);
else fail(new Error(`unknown role ${role}`));

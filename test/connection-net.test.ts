/**
 * Node's own `net` is the reference for a connection used as a Duplex: each scenario is one
 * script, run on a real net.Server / net.Socket pair over a Unix socket in a temp folder and on
 * Postbox connections (a listening and a dialing PostboxProcess, over the Unix socket and over
 * TCP), and the outcomes must be the same, except where docs/connections.md says Postbox differs
 * on purpose: such a scenario names the difference and gives Postbox's outcome.
 *
 * Outcomes are what an application sees: the bytes read, each side's own events in order (the
 * order between the two sides is the transports'), error codes. Every wait is for an event,
 * bounded in time.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { type Connection, dial, listen, type Port } from '../src/faces/connection.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { within } from './helpers/raw-peer.js';

const BOUND_MS = 20_000;

type Conn = Socket | Connection;

/** What a scenario needs of either side: a listener with accept(), and dial(). */
interface Sockets {
  listen(name: string, options?: { allowHalfOpen?: boolean }): Promise<Listener>;
  dial(name: string, options?: { allowHalfOpen?: boolean }): Promise<Conn>;
}

interface Listener {
  accept(): Promise<Conn>;
  close(): Promise<void>;
}

/** net over a Unix socket; allowHalfOpen true by default, as a connection's is. */
function netSockets(dir: string): Sockets {
  return {
    async listen(name, options = {}) {
      const server: Server = createServer({ allowHalfOpen: options.allowHalfOpen ?? true });
      const queued: Socket[] = [];
      const waiting: ((s: Socket) => void)[] = [];
      server.on('connection', (s) => {
        const w = waiting.shift();
        if (w === undefined) queued.push(s);
        else w(s);
      });
      server.listen(join(dir, name));
      await once(server, 'listening');
      return {
        accept: () => {
          const s = queued.shift();
          return s === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(s);
        },
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
    },
    async dial(name, options = {}) {
      const s = createConnection({ path: join(dir, name), allowHalfOpen: options.allowHalfOpen ?? true });
      await once(s, 'connect');
      return s;
    },
  };
}

function postboxSockets(server: PostboxProcess, client: PostboxProcess): Sockets {
  return {
    async listen(name, options = {}) {
      const port: Port = await listen(server, name, options);
      return { accept: () => port.accept({ timeout: BOUND_MS }), close: () => port.close() };
    },
    dial: (name, options = {}) => dial(client, name, { ...options, timeout: BOUND_MS }),
  };
}

/** Each event of `s` in order, as 'end', 'finish', 'close', 'error:CODE'. */
function events(s: Conn): string[] {
  const seen: string[] = [];
  for (const e of ['end', 'finish', 'close'] as const) s.on(e, () => seen.push(e));
  s.on('error', (err: NodeJS.ErrnoException) => seen.push(`error:${err.code}`));
  return seen;
}

function closed(s: Conn): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((resolve) => s.once('close', () => resolve()));
}

async function readAll(s: Conn): Promise<string> {
  let text = '';
  for await (const chunk of s.iterator({ destroyOnReturn: false })) text += String(chunk);
  return text;
}

/** A listener, and one connection made through it: the dialling end `c`, the accepted end `s`. */
async function connected(
  sockets: Sockets,
  name: string,
  options?: { allowHalfOpen?: boolean },
): Promise<{ port: Listener; c: Conn; s: Conn }> {
  const port = await sockets.listen(name, options);
  const accepted = port.accept();
  const c = await sockets.dial(name);
  return { port, c, s: await accepted };
}

interface Scenario {
  name: string;
  run(sockets: Sockets, name: string): Promise<unknown>;
  /** Where Postbox differs from net on purpose: what the docs say, and Postbox's outcome. */
  differs?: { why: string; postbox: unknown };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'pipeline(conn, transform, conn) echoes, and ends the client after its data',
    async run(sockets, name) {
      const port = await sockets.listen(name);
      const served = port.accept().then((s) =>
        pipeline(
          s,
          new Transform({
            transform(chunk: Buffer, _enc, cb) {
              cb(null, chunk.toString().toUpperCase());
            },
          }),
          s,
        ),
      );
      const c = await sockets.dial(name);
      const seen = events(c);
      c.end('hello, world');
      const text = await readAll(c);
      await served;
      await closed(c);
      await port.close();
      return { text, client: seen };
    },
  },
  {
    name: 'half close: the client ends, then reads the answer the server wrote after seeing the end',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      const [client, server] = [events(c), events(s)];
      c.end('ping');
      const asked = await readAll(s);
      s.end(`pong to ${asked}`);
      const answer = await readAll(c);
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      return { answer, client, server };
    },
  },
  {
    name: 'allowHalfOpen false: the server ends its side when the client ends',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name, { allowHalfOpen: false });
      const [client, server] = [events(c), events(s)];
      s.resume();
      c.end('bye');
      const rest = await readAll(c);
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      return { rest, client, server };
    },
  },
  {
    name: 'destroy() without an error: the peer reads the data and the end; its next write fails EPIPE',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      const server = events(s);
      const got = new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(String(d))));
      const ended = new Promise((resolve) => s.once('end', resolve));
      c.write('last words');
      const text = await within(got, BOUND_MS, 'the data');
      c.destroy();
      // Once closed, its mailbox is gone (the end reaches the peer just before).
      await within(Promise.all([ended, closed(c)]), BOUND_MS, 'the end');
      // One write, and nothing more: the error must come by itself.
      s.write('anyone there?');
      await within(closed(s), BOUND_MS, 'the writer fails');
      await port.close();
      return { text, server };
    },
  },
  {
    name: 'destroy(err): the peer reads the data, then',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      const [client, server] = [events(c), events(s)];
      c.write('data');
      let text = '';
      s.on('data', (d: Buffer) => {
        text += String(d);
        if (text === 'data') c.destroy(Object.assign(new Error('gave up'), { code: 'EGAVEUP' }));
      });
      await within(
        new Promise((resolve) => {
          s.once('end', resolve);
          s.once('error', resolve);
        }),
        BOUND_MS,
        'the peer learns',
      );
      s.destroy();
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      return { text, client, server };
    },
    differs: {
      why: 'docs/connections.md, Coming from net: destroy(err) resets, and the peer reads ECONNRESET',
      postbox: {
        text: 'data',
        client: ['error:EGAVEUP', 'close'],
        server: ['error:ECONNRESET', 'close'],
      },
    },
  },
  {
    name: '10 MB in writes of up to 1 MiB arrive whole and in order, read with setEncoding',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      const data = randomBytes(10 * 1024 * 1024).toString('base64');
      // A side that never reads does not see the peer's end (docs/connections.md, Coming from net).
      c.resume();
      s.setEncoding('utf8');
      const read = readAll(s);
      const sizes = [100, 70_000, 1 << 20, 65_536, 65_537, 3];
      const pieces = function* (): Generator<string> {
        for (let at = 0, i = 0; at < data.length; i++) {
          const n = sizes[i % sizes.length]!;
          yield data.slice(at, at + n);
          at += n;
        }
      };
      await pipeline(Readable.from(pieces()), c);
      const text = await read;
      s.end();
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      const digest = (t: string): string => createHash('sha256').update(t).digest('hex');
      return { length: text.length === data.length, same: digest(text) === digest(data) };
    },
  },
  {
    name: 'a multi-byte character split across writes reads whole with setEncoding',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      // A side that never reads does not see the peer's end (docs/connections.md, Coming from net).
      c.resume();
      s.setEncoding('utf8');
      const bytes = Buffer.from('héllo €uro 😀');
      for (let i = 0; i < bytes.length; i += 3) c.write(bytes.subarray(i, i + 3));
      c.end();
      const text = await readAll(s);
      s.end();
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      return { text };
    },
  },
  {
    name: 'a writer whose peer does not read gets write() false, then drain once the peer reads',
    async run(sockets, name) {
      const { port, c, s } = await connected(sockets, name);
      // A side that never reads does not see the peer's end (docs/connections.md, Coming from net).
      c.resume();
      s.pause();
      const chunk = Buffer.alloc(16 * 1024, 7);
      let written = 0;
      let full = false;
      // Bounded: net's buffers and a connection's window hold a few MiB at most.
      while (!full && written < 4096) {
        full = !c.write(chunk);
        written++;
      }
      let read = 0;
      s.on('data', (d: Buffer) => {
        read += d.length;
      });
      const drained = once(c, 'drain');
      s.resume();
      await within(drained, BOUND_MS, 'drain');
      c.end();
      await within(once(s, 'end'), BOUND_MS, 'the reader reads to the end');
      s.end();
      await Promise.all([closed(c), closed(s)]);
      await port.close();
      return { full, all: read === written * chunk.length };
    },
  },
  {
    name: 'fifty clients at once, each echoed its own data',
    async run(sockets, name) {
      const port = await sockets.listen(name);
      const n = 50;
      const served = (async () => {
        const echoes: Promise<void>[] = [];
        for (let i = 0; i < n; i++) {
          const s = await port.accept();
          echoes.push(pipeline(s, s));
        }
        await Promise.all(echoes);
      })();
      const answers = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const c = await sockets.dial(name);
          c.end(`client ${i}`);
          const text = await readAll(c);
          await closed(c);
          return text === `client ${i}`;
        }),
      );
      await served;
      await port.close();
      return answers.filter(Boolean).length;
    },
  },
];

let kernel: TestKernel;
let dir: string;
const procs: PostboxProcess[] = [];

before(async () => {
  kernel = await startTestKernel({ tcp: true });
  dir = mkdtempSync(join(tmpdir(), 'pbt-net-'));
});

after(async () => {
  for (const p of procs) await p.close();
  await kernel?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('connections used as net sockets: the same scripts on net and on Postbox', () => {
  let seq = 0;
  for (const transport of ['unix', 'tcp'] as const) {
    for (const sc of SCENARIOS) {
      test(`${transport}: ${sc.name}`, async () => {
        const name = `n${++seq}`;
        const reference = await within(sc.run(netSockets(dir), name), BOUND_MS, `net: ${sc.name}`);
        const server = await connect({ socket: kernel.socket });
        const client = await connect(
          transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket: kernel.socket },
        );
        procs.push(server, client);
        const got = await within(
          sc.run(postboxSockets(server, client), name),
          BOUND_MS,
          `postbox: ${sc.name}`,
        );
        if (sc.differs === undefined) {
          assert.deepEqual(got, reference);
        } else {
          assert.notDeepEqual(reference, sc.differs.postbox, `net no longer differs: ${sc.differs.why}`);
          assert.deepEqual(got, sc.differs.postbox, sc.differs.why);
        }
        await client.close();
        await server.close();
      });
    }
  }
});

test('a datagram write over the size limit fails the connection at once (EMSGSIZE), not at the next write', async () => {
  const server = await connect({ socket: kernel.socket });
  const client = await connect({ socket: kernel.socket });
  procs.push(server, client);
  const port = await listen(server, 'big-datagram', { style: 'datagram' });
  const accepted = port.accept({ timeout: BOUND_MS });
  const c = await dial(client, 'big-datagram', { style: 'datagram', timeout: BOUND_MS });
  const s = await accepted;
  const failed = once(c, 'error');
  c.write(Buffer.alloc(2 * 1024 * 1024));
  const [err] = (await within(failed, BOUND_MS, 'the write fails')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'EMSGSIZE');
  await closed(c);
  await s.close();
  await port.close();
});

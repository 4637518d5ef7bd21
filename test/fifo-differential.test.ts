/**
 * Linux's own FIFOs are the reference for the FIFO face (BRIEF, Reference behaviour). Each
 * scenario is a script of opens, writes, reads, closes and an unlink on one FIFO; it runs on Linux
 * (test/fixtures/fifo-ops.c, compiled with gcc: a real mkfifo in a temp folder) and on the
 * Postbox face, one PostboxProcess per end as one Unix process per end, and every result line
 * must be the same, except where the docs say Postbox differs on purpose: such a scenario names
 * the difference and gives Postbox's lines.
 *
 * Nothing waits on either side. The C program makes every call with O_NONBLOCK and says "wait"
 * or "full" where a blocking call would wait (a write that would wait is tried again after each
 * later operation, as a writer blocked in another process would be). The face is stepped the
 * same way: after each operation, a call on the end's own connection, whose answer comes after
 * everything the kernel had for it, says whether its send waits for room or what a read end has
 * been given; an open for writing waits for a reader if the kernel shows it doing so.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type PostboxProcess } from '../src/client/mod.js';
import { mkfifo, openFifo, unlinkFifo } from '../src/faces/fifo.js';
import type { PipeReader, PipeWriter } from '../src/faces/pipe-end.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { compileFixture, run, summary } from './helpers/linux-reference.js';
import { within } from './helpers/raw-peer.js';

const BOUND_MS = 10_000;
/** Round trips a read end is given to take what is there (each a kernel answer, not a timer): a
 * message it takes may let a waiting send in, and the end of file comes after its takes. */
const SETTLE_ROUNDS = 4;

interface Scenario {
  name: string;
  ops: string[];
  /** Where Postbox differs from Linux on purpose: what the docs say, and Postbox's lines. */
  differs?: { why: string; postbox: Record<number, string> };
}

const fill = Array.from({ length: 16 }, () => 'write e1 #4096');

const SCENARIOS: Scenario[] = [
  {
    name: 'end of file once the last writer closes, after every byte',
    ops: ['openr e0', 'openw e1', 'write e1 hello', 'write e1 world', 'close e1', 'read e0', 'close e0'],
  },
  {
    name: 'two writers: end of file only when both have closed',
    ops: [
      'openr e0',
      'openw e1',
      'openw e2',
      'write e1 a',
      'close e1',
      'read e0',
      'write e2 b',
      'read e0',
      'close e2',
      'read e0',
      'close e0',
    ],
  },
  {
    name: 'open for writing waits for a reader',
    ops: ['openw e0', 'openr e1', 'openw e2', 'write e2 x', 'close e2', 'read e1', 'close e1'],
  },
  {
    name: 'a writer is told EPIPE once the last reader has gone',
    ops: ['openr e0', 'openw e1', 'write e1 x', 'close e0', 'write e1 y', 'close e1'],
  },
  {
    name: 'the writer closes without writing: end of file',
    ops: ['openr e0', 'openw e1', 'close e1', 'read e0', 'close e0'],
  },
  {
    name: 'bytes a closed reader left are read by the next while a writer has it open',
    ops: [
      'openr e0',
      'openw e1',
      'write e1 old',
      'close e0',
      'openr e2',
      'read e2',
      'write e1 new',
      'close e1',
      'read e2',
      'close e2',
    ],
  },
  {
    name: 'a full FIFO holds 64 KiB; what is read makes room',
    ops: [
      'openr e0',
      'openw e1',
      ...fill,
      'write e1 #4096',
      'read e0',
      'write e1 last',
      'close e1',
      'read e0',
    ],
  },
  {
    name: 'a writer waiting on a full FIFO gets EPIPE when the reader goes',
    ops: ['openr e0', 'openw e1', ...fill, 'write e1 #4096', 'close e0', 'write e1 y', 'close e1'],
  },
  {
    name: 'many readers: each byte goes to one, end of file to all',
    ops: [
      'openr e0',
      'openr e1',
      'openw e2',
      'write e2 a',
      'write e2 b',
      'read e0',
      'read e1',
      'close e2',
      'read e1',
      'read e0',
      'close e0',
      'close e1',
    ],
  },
  {
    name: 'a reader that opens after the last writer closed reads what is left, then end of file',
    ops: [
      'openr e0',
      'openw e1',
      'write e1 x',
      'close e1',
      'openr e2',
      'read e2',
      'read e0',
      'close e0',
      'close e2',
    ],
  },
  {
    name: 'reopened after every end closed with nothing left: it starts afresh',
    ops: [
      'openr e0',
      'openw e1',
      'write e1 a',
      'close e1',
      'read e0',
      'close e0',
      'openw e2',
      'openr e3',
      'openw e4',
      'write e4 b',
      'close e4',
      'read e3',
      'close e3',
    ],
  },
  {
    name: 'every end closed with bytes unread',
    ops: [
      'openr e0',
      'openw e1',
      'write e1 stale',
      'close e1',
      'close e0',
      'openr e2',
      'openw e3',
      'write e3 fresh',
      'close e3',
      'read e2',
      'close e2',
    ],
    differs: {
      why: 'docs/api.md: unlike Linux, which discards them, bytes left unread when every end has closed stay in the FIFO for the next reader',
      postbox: { 9: 'read e2 text=stalefresh eof' },
    },
  },
  {
    name: 'unlinking the name leaves open ends working; the name is gone for new opens',
    ops: ['openr e0', 'openw e1', 'unlink', 'openr e2', 'write e1 x', 'close e1', 'read e0', 'close e0'],
  },
  {
    name: 'a writer that waits for room and then closes: the reader gets every byte, then end of file',
    ops: ['openr e0', 'openw e1', ...fill, 'write e1 #4096', 'read e0', 'close e1', 'read e0', 'close e0'],
  },
  {
    name: 'a reader that has read all there was, then closes while more comes',
    ops: [
      'openr e0',
      'openr e1',
      'openw e2',
      'write e2 a',
      'read e0',
      'write e2 b',
      'write e2 c',
      'close e0',
      'read e1',
      'close e2',
      'read e1',
      'close e1',
    ],
    differs: {
      why: "docs/api.md: a read end takes a write as it is read, or as a read waiting for data gets it; a Node Readable that has read everything keeps such a read waiting, so e0's takes 'b', as a read(2) waiting would, where this C program's reads do not wait",
      postbox: { 8: 'read e1 text=c wait' },
    },
  },
  {
    name: 'a writer that met EPIPE, then a new reader',
    ops: [
      'openr e0',
      'openw e1',
      'close e0',
      'write e1 x',
      'openr e2',
      'write e1 y',
      'read e2',
      'close e1',
      'read e2',
      'close e2',
    ],
    differs: {
      why: "docs/api.md: EPIPE is the write end's 'error', and a Node stream that errs is destroyed, its end closed; a Unix writer keeps its end and may write again once a reader opens. With no writer left, the new reader waits for one, as open(2) would",
      postbox: { 5: 'write e1 EPIPE', 6: 'read e2 text= wait', 8: 'read e2 text= wait' },
    },
  },
];

/** Runs a script on Linux; the FIFO lives in a temp folder removed after. */
async function onLinux(binary: string, ops: string[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'pbfifo-'));
  try {
    const r = await run([binary, join(dir, 'fifo')], `${ops.join('\n')}\n`);
    assert.equal(r.code, 0, `fifo-ops failed: ${r.stderr}`);
    return r.stdout.trimEnd().split('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One end on the Postbox side, in a process of its own. */
interface End {
  proc: PostboxProcess;
  reader?: PipeReader;
  writer?: PipeWriter;
  got: Buffer[];
  eof: boolean;
  reading: boolean;
  error: (Error & { code?: string }) | null;
}

/** Filler as fifo-ops.c makes it. */
function text(spec: string): Buffer {
  if (!spec.startsWith('#')) return Buffer.from(spec, 'latin1');
  const n = Number(spec.slice(1));
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = 97 + ((31 * i + n) % 26);
  return b;
}

/** Lets the event loop run what has arrived (stream events come on later ticks). */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function onPostbox(socket: string, name: string, ops: string[]): Promise<string[]> {
  const observer = await connect({ socket });
  const ends = new Map<string, End>();
  const out: string[] = [];
  await mkfifo(observer, name, 0o666);
  // By id: the name may be unlinked.
  const id = (await observer.stat(name)).id;
  try {
    for (const line of ops) {
      const [op, slot, arg] = line.split(' ') as [string, string, string | undefined];
      if (op === 'unlink') {
        await unlinkFifo(observer, name);
        out.push('unlink ok');
      } else if (op === 'openr') {
        const proc = await connect({ socket });
        const end: End = { proc, got: [], eof: false, reading: false, error: null };
        try {
          end.reader = await openFifo(proc, name, 'r');
        } catch (err) {
          await proc.close();
          out.push(`openr ${slot} ${(err as Error & { code?: string }).code}`);
          continue;
        }
        end.reader.on('error', (e) => {
          end.error ??= e;
        });
        ends.set(slot, end);
        out.push(`openr ${slot} ok`);
      } else if (op === 'openw') {
        const proc = await connect({ socket });
        const ac = new AbortController();
        let opened: PipeWriter | null = null;
        const opening = openFifo(proc, name, 'w', { signal: ac.signal }).then((w) => {
          opened = w;
        });
        opening.catch(() => {});
        // Open, or waiting for a reader as the kernel shows it: whichever comes first.
        const deadline = Date.now() + BOUND_MS;
        let waits = false;
        while (opened === null && Date.now() < deadline) {
          const me = (await observer.processes()).find((q) => q.id === proc.id);
          if (me?.blockedOn.some((b) => b.startsWith('reader '))) {
            waits = true;
            break;
          }
          await turn();
        }
        if (waits) {
          ac.abort();
          await assert.rejects(opening, { code: 'ECANCELED' });
          await proc.close();
          out.push(`openw ${slot} wait`);
          continue;
        }
        assert.ok(opened !== null, `openw ${slot}: neither opened nor waiting`);
        const end: End = { proc, writer: opened, got: [], eof: false, reading: false, error: null };
        end.writer!.on('error', (e) => {
          end.error ??= e;
        });
        ends.set(slot, end);
        out.push(`openw ${slot} ok`);
      } else if (op === 'write') {
        const end = ends.get(slot)!;
        const w = end.writer!;
        if (end.error !== null || w.destroyed) {
          out.push(`write ${slot} ${end.error?.code ?? 'destroyed'}`);
          continue;
        }
        w.write(text(arg ?? ''));
        // A call on the writer's own connection is answered after its send: by then the send
        // was refused (EPIPE, the writer's 'error' a tick later), accepted, or waits for room.
        const s = await end.proc.stat(id);
        await turn();
        const failed = end.error as (Error & { code?: string }) | null;
        if (failed !== null) out.push(`write ${slot} ${failed.code}`);
        else out.push(`write ${slot} ${s.waitingSenders.includes(end.proc.id) ? 'full' : 'ok'}`);
      } else if (op === 'read') {
        const end = ends.get(slot)!;
        const r = end.reader!;
        if (!end.reading) {
          end.reading = true;
          r.on('data', (c: Buffer) => end.got.push(c));
          r.on('end', () => {
            end.eof = true;
          });
        }
        r.resume();
        for (let i = 0; i < SETTLE_ROUNDS; i++) {
          await r.mailbox.stat().catch(() => {});
          await turn();
          await turn();
        }
        const got = Buffer.concat(end.got);
        end.got = [];
        // Between reads the application reads nothing, as a process between read(2) calls.
        r.pause();
        out.push(`read ${slot} text=${summary(got)} ${end.eof ? 'eof' : 'wait'}`);
      } else if (op === 'close') {
        const end = ends.get(slot)!;
        if (end.writer !== undefined) {
          const w = end.writer;
          if (!w.destroyed) {
            await within(
              new Promise<void>((resolve) => {
                w.once('close', () => resolve());
                w.end();
              }),
              BOUND_MS,
              `close ${slot}`,
            );
          }
          await w.mailbox.close();
        } else {
          end.reader!.destroy();
          await end.reader!.mailbox.close();
        }
        await end.proc.close();
        ends.delete(slot);
        out.push(`close ${slot} ok`);
      } else throw new Error(`unknown op ${op}`);
    }
    return out;
  } finally {
    for (const end of ends.values()) await end.proc.close();
    await unlinkFifo(observer, name).catch(() => {});
    await observer.close();
  }
}

describe('FIFOs against Linux', () => {
  let kernel: TestKernel;
  let dir: string;
  let binary: string;
  before(async () => {
    kernel = await startTestKernel();
    dir = mkdtempSync(join(tmpdir(), 'pbfifo-bin-'));
    binary = compileFixture(dir, 'fifo-ops');
  });
  after(async () => {
    await kernel.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  SCENARIOS.forEach((s, i) => {
    test(s.name, async () => {
      const linux = await onLinux(binary, s.ops);
      const postbox = await within(onPostbox(kernel.socket, `fifo-diff-${i}`, s.ops), 60_000, s.name);
      const want = [...linux];
      for (const [at, line] of Object.entries(s.differs?.postbox ?? {})) want[Number(at)] = line;
      const table = s.ops
        .map((op, j) => `${op.padEnd(18)} linux: ${linux[j]}  postbox: ${postbox[j]}`)
        .join('\n');
      assert.deepEqual(postbox, want, `${s.differs?.why ?? 'should be as on Linux'}\n${table}`);
    });
  });
});

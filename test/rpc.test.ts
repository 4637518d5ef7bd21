/**
 * The RPC face across real processes: a kernel, server processes (test/fixtures/rpc-server.ts)
 * and callers. Every wait is bounded; every child is reaped.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AbortedError,
  ClosedError,
  connect,
  type Mailbox,
  type MailboxStat,
  MessageSizeError,
  PostboxError,
  type PostboxProcess,
  RemoteFailureError,
} from '../src/client/mod.js';
import {
  type CallContext,
  type CallOptions,
  call,
  isCallContext,
  NoServerError,
  RemoteError,
  SERVICE_ATTRIBUTES,
  ServerDownError,
  STREAM_CAPACITY,
  type Stub,
  serve,
  stub,
} from '../src/faces/rpc.js';
import type { Calc } from './fixtures/rpc-server.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';
import { until } from './helpers/wait.js';

const SERVER = fileURLToPath(new URL('./fixtures/rpc-server.js', import.meta.url));
const CALLER = fileURLToPath(new URL('./fixtures/rpc-caller.js', import.meta.url));
const DEADLINE_CALLER = fileURLToPath(new URL('./fixtures/rpc-deadline-caller.js', import.meta.url));
const CLOCK_SKEW = new URL('./fixtures/clock-skew.js', import.meta.url).href;
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

type Event = Record<string, unknown> & { event: string };

const code = (c: string) => (err: unknown) => err instanceof PostboxError && err.code === c;

/** Rejects if p does not settle within ms: no test waits forever. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle in ${ms} ms`)), ms);
    }),
  ]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The caller's reply mailbox: the unbounded one it owns besides its inbox (made at its first call). */
async function replyMailboxOf(caller: PostboxProcess): Promise<MailboxStat> {
  const reply = (await caller.mailboxes()).find(
    (m) => m.owner === caller.id && m.id !== caller.inbox && m.capacity === null,
  );
  assert.ok(reply !== undefined, `process ${caller.id} has a reply mailbox`);
  return reply;
}

/** Waits until `box` holds nothing, queued or in a receiver's hands: all sent there was read. */
function allRead(observer: PostboxProcess, box: string | number, what: string): Promise<MailboxStat> {
  return until(
    () => observer.stat(box),
    (st) => st.count === 0 && st.inflight === 0,
    10_000,
    what,
  );
}

describe('RPC', () => {
  let kernel: TestKernel;
  let proc: PostboxProcess;
  let calc: Stub<Calc>;
  let eventsBox: Mailbox;
  const seen: Event[] = [];
  const children = new Set<ChildProcess>();

  /**
   * Starts a server process for `service`; resolves with it and its Postbox process id. With
   * `clockSkew`, the server's wall clock is that many ms off the kernel's (another machine's).
   */
  async function startServer(
    service: string,
    concurrency = 64,
    clockSkew?: number,
  ): Promise<{ child: ChildProcess; id: number }> {
    const args = [SERVER, service, String(concurrency), 'rpc-events'];
    const env = { ...kernel.env };
    if (clockSkew !== undefined) {
      args.unshift('--import', CLOCK_SKEW);
      env.POSTBOX_TEST_CLOCK_SKEW_MS = String(clockSkew);
    }
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d;
    });
    const id = await within(
      new Promise<number>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on('line', (line) => {
          const m = /^ready (\d+)$/.exec(line);
          if (m !== null) resolve(Number(m[1]));
        });
        child.once('exit', (c) => reject(new Error(`server exited with ${c}: ${stderr}`)));
      }),
      10_000,
      `server for '${service}'`,
    );
    return { child, id };
  }

  async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }

  /** Waits for a side-channel event from a server's handler. */
  async function event(pred: (e: Event) => boolean, ms = 10_000, what = 'event'): Promise<Event> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = seen.findIndex(pred);
      if (i >= 0) return seen.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what} not seen in ${ms} ms; seen: ${JSON.stringify(seen)}`);
      try {
        const m = await eventsBox.receive({ timeout: Math.max(1, Math.min(left, 1000)) });
        if (m !== null) seen.push(m.body as Event);
      } catch (err) {
        if (!(err instanceof PostboxError && err.code === 'ETIMEDOUT')) throw err;
      }
    }
  }

  /** Everything the handlers reported so far. */
  async function drainEvents(): Promise<Event[]> {
    for (;;) {
      const m = await eventsBox.receive({ nowait: true });
      if (m === null) return seen;
      seen.push(m.body as Event);
    }
  }

  before(async () => {
    kernel = await startTestKernel();
    proc = await connect({ socket: kernel.socket });
    eventsBox = await proc.createMailbox('rpc-events', { system: true, mode: 0o666 });
    await startServer('calc');
    calc = stub<Calc>(proc, 'calc');
  });

  after(async () => {
    await Promise.all([...children].map((c) => stop(c, 'SIGKILL')));
    await proc.close();
    await kernel.stop();
  });

  test('typed round trips with every structured type, both ways', async () => {
    assert.equal(await calc.add(2, 3), 5);
    const value = {
      date: new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
      map: new Map<unknown, unknown>([
        ['k', { nested: [1, 'two'] }],
        [7, new Set(['a'])],
      ]),
      set: new Set([1, 'b', null]),
      u8: new Uint8Array([0, 255]),
      i32: new Int32Array([-5, 5]),
      f64: new Float64Array([Math.PI]),
      big64: new BigInt64Array([-(2n ** 63n)]),
      buf: Buffer.from('héllo'),
      big: 2n ** 100n,
      negBig: -42n,
      undef: undefined,
      nul: null,
      arr: [undefined, null, 0, '', false],
      text: 'ünïcode ✓',
      nan: Number.NaN,
      inf: Number.NEGATIVE_INFINITY,
      re: /a+b/gi,
    };
    const back = await calc.echo(value);
    assert.deepStrictEqual(back, value);
    const b = back as typeof value;
    assert.ok(b.buf instanceof Buffer && b.u8 instanceof Uint8Array && !(b.u8 instanceof Buffer));
    assert.ok('undef' in b && b.undef === undefined && b.nul === null, 'undefined and null stay apart');
    // An array or a Set answered is a value sent whole, not a stream (a generator is one).
    assert.deepStrictEqual(await calc.echo(new Set([1, 'b'])), new Set([1, 'b']));
    assert.deepStrictEqual(await calc.echo([1, 2]), [1, 2]);
    // A cycle crosses as a cycle.
    const cyc: { name: string; self?: unknown } = { name: 'loop' };
    cyc.self = cyc;
    const c2 = (await calc.echo(cyc)) as typeof cyc;
    assert.equal(c2.self, c2);
    // The answer's direction: built on the server.
    const s = await calc.sample();
    assert.ok(s.date instanceof Date && s.date.toISOString() === '2024-02-29T12:00:00.000Z');
    assert.deepStrictEqual(s.map, new Map([['primes', [2, 3, 5]]]));
    assert.deepStrictEqual(s.set, new Set([1n, 2n ** 64n]));
    assert.deepStrictEqual(s.bytes, new Uint8Array([1, 2, 3]));
    assert.ok(Buffer.isBuffer(s.buf) && s.buf.toString() === 'buffer');
    assert.deepStrictEqual(s.floats, new Float64Array([0.5, -1.25]));
    assert.equal(s.big, -(2n ** 80n));
    assert.ok('nothing' in s && s.nothing === undefined && s.empty === null);
  });

  test('unsupported arguments fail at the caller with EINVAL, naming where, before anything is sent', async () => {
    const service = await proc.openMailbox('rpc:calc');
    const sentBefore = (await service.stat()).sent;
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    const untyped = calc as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const cases: [unknown[], RegExp][] = [
      [[() => 1], /args\[0\] is a function/],
      [[1, Symbol('s')], /args\[1\] is a symbol/],
      [[{ at: new Point(1, 2) }], /args\[0\]\.at is an instance of Point/],
      [[new Map([['k', { f: () => {} }]])], /args\[0\]\.get\("k"\)\.f is a function/],
      [[[1, [2, Promise.resolve(3)]]], /args\[0\]\[1\]\[1\] is a Promise/],
      [[new WeakMap()], /args\[0\] is an instance of WeakMap/],
    ];
    for (const [args, message] of cases) {
      await assert.rejects(untyped.echo!(...args), (err: unknown) => {
        assert.ok(err instanceof PostboxError && err.code === 'EINVAL', String(err));
        assert.match(err.message, /^calc\.echo: /);
        assert.match(err.message, message);
        assert.match(err.stack!, /rpc\.test\.js/);
        return true;
      });
    }
    assert.equal((await service.stat()).sent, sentBefore, 'no request reached the service mailbox');
    await service.close();
    // A result the server cannot send is refused there, with the same clarity.
    await assert.rejects(calc.unsendable(), /calc\.unsendable: the result\.callback is a function/);
    // Over the kernel's message size, either way: EMSGSIZE.
    const limit = proc.limits.maxMessageSize;
    await assert.rejects(calc.echo(Buffer.alloc(limit + 1)), (e: unknown) => {
      assert.ok(e instanceof MessageSizeError && e.code === 'EMSGSIZE', String(e));
      assert.match(e.message, /^calc\.echo: /);
      assert.match(e.stack!, /rpc\.test\.js/);
      // Measured by the client before sending, as a send's is: the call kept the measure.
      assert.equal(e.limit, limit);
      assert.ok(e.size !== undefined && e.size > limit, `size ${e.size}`);
      assert.ok(e.cause instanceof MessageSizeError, 'the send error it was made from');
      return true;
    });
    // The answer's and the item's errors name the call, not the reply or stream mailbox (an id
    // the caller never sees: "a 1048585-byte message to mailbox #7 is over …").
    await assert.rejects(calc.big(limit + 1), (e: unknown) => {
      assert.ok(e instanceof MessageSizeError && e.code === 'EMSGSIZE', String(e));
      assert.match(
        e.message,
        /^calc\.big: the answer cannot be sent: a \d+-byte answer is over the kernel's \d+-byte limit \(postbox kernel --max-message-size\)$/,
      );
      // The server measured it; the caller's error says by how much, as a send's does.
      assert.equal(e.limit, limit);
      assert.ok(e.size !== undefined && e.size > limit + 1, `size ${e.size}`);
      assert.match(e.message, new RegExp(`a ${e.size}-byte answer`));
      return true;
    });
    // An item the server cannot send ends its stream with why, after the items before.
    const before: unknown[] = [];
    await assert.rejects(
      within(
        (async () => {
          for await (const i of calc.unsendableItem()) before.push(i);
        })(),
        10_000,
        'a stream with an unsendable item',
      ),
      (e: unknown) => {
        assert.ok(e instanceof PostboxError && e.code === 'EINVAL', String(e));
        assert.match(e.message, /calc\.unsendableItem: an item\.callback is a function/);
        return true;
      },
    );
    assert.deepEqual(before, [1]);
    const items: unknown[] = [];
    await assert.rejects(
      (async () => {
        for await (const i of calc.bigItem(limit + 1)) items.push(i);
      })(),
      (e: unknown) => {
        assert.ok(e instanceof MessageSizeError && e.code === 'EMSGSIZE', String(e));
        assert.match(
          e.message,
          /^calc\.bigItem: an item cannot be sent: a \d+-byte item is over the kernel's \d+-byte limit/,
        );
        assert.equal(e.limit, limit);
        assert.ok(e.size !== undefined && e.size > limit + 1, `size ${e.size}`);
        return true;
      },
    );
    assert.deepEqual(items, [1], 'the items before it arrived');
    assert.equal((await calc.big(1000)).length, 1000);
  });

  test('a remote error carries the remote name, message, code and stack, and the caller’s own stack', async () => {
    const err = await calc.fail('division by zero', 'E_DIV').then(
      () => assert.fail('should have thrown'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemoteError);
    assert.ok(err instanceof PostboxError);
    // The class of its code, as NoServerError is a NotFoundError: one class per code.
    assert.ok(err instanceof RemoteFailureError, 'EREMOTE is a RemoteFailureError');
    assert.equal(err.code, 'EREMOTE');
    assert.equal(err.remoteName, 'CalcError');
    assert.equal(err.remoteMessage, 'division by zero');
    assert.equal(err.remoteCode, 'E_DIV');
    assert.equal(err.service, 'calc');
    assert.equal(err.method, 'fail');
    assert.match(err.message, /calc\.fail failed in server process \d+: CalcError: division by zero/);
    assert.match(err.remoteStack!, /fixtures\/rpc-server\.js/, 'the remote stack is the server’s');
    assert.doesNotMatch(err.remoteStack!, /rpc\.test\.js/);
    assert.match(err.stack!, /^RemoteError: calc\.fail failed/);
    assert.match(err.stack!, /rpc\.test\.js/, 'the caller’s stack points at the call');
    assert.equal((err.cause as Error).stack, err.remoteStack);
    // An unknown method is the RPC layer's error, not a remote exception.
    const untyped = calc as unknown as Record<string, () => Promise<unknown>>;
    await assert.rejects(untyped.nope!(), (e: unknown) => {
      assert.ok(e instanceof PostboxError && !(e instanceof RemoteError));
      assert.equal(e.code, 'ENOENT');
      assert.match(e.message, /service 'calc' has no method 'nope'/);
      return true;
    });
  });

  test('whatever a handler throws, the caller is told, without a timeout: odd values, unreadable errors, huge ones', async () => {
    // Each call has no timeout: an error that could not be sent (or read) left it waiting for ever.
    const remote = async (p: Promise<unknown>, what: string): Promise<RemoteError> => {
      const e = await within(p, 10_000, what).then(
        () => assert.fail(`${what} should fail`),
        (err: unknown) => err,
      );
      assert.ok(e instanceof RemoteError, `${what}: ${String(e)}`);
      assert.equal(typeof e.remoteName, 'string');
      assert.equal(typeof e.remoteMessage, 'string');
      return e;
    };
    const odd = await remote(calc.raise('message-object'), 'an error whose message is an object');
    assert.equal(odd.remoteName, 'CalcError');
    assert.equal(odd.remoteMessage, "{ text: 'not a string' }");
    assert.equal(odd.remoteCode, 'E_MSG');
    const getter = await remote(calc.raise('getter'), 'an error whose code getter throws');
    assert.equal(getter.remoteMessage, 'a code that cannot be read');
    assert.equal(getter.remoteCode, undefined);
    // Over the kernel's message size: its name, code and the start of its message, no stack.
    const limit = proc.limits.maxMessageSize;
    const huge = await remote(calc.raise('huge', limit + 1), 'an error over the size limit');
    assert.equal(huge.remoteName, 'CalcError');
    assert.equal(huge.remoteCode, 'E_HUGE');
    assert.match(huge.remoteMessage, /^x{1000}… \(cut: the error was over the message size limit\)$/);
    assert.equal(huge.remoteStack, undefined);
    // A code that is a number crosses as its digits; a name over the size limit is cut too.
    assert.equal((await remote(calc.raise('numeric-code'), 'a numeric code')).remoteCode, '404');
    const named = await remote(
      calc.raise('huge-name', limit + 1),
      'an error whose name is over the size limit',
    );
    assert.equal(named.remoteName, 'N'.repeat(100));
    assert.equal(named.remoteCode, 'E_NAME');
    // Values that are not Errors: described, and an object's own code crosses.
    assert.match((await remote(calc.raise('string'), 'a string')).message, /non-Error value: plain text$/);
    assert.match((await remote(calc.raise('undefined'), 'undefined')).message, /non-Error value: undefined$/);
    const plain = await remote(calc.raise('object'), 'a plain object');
    assert.match(plain.message, /non-Error value: \{ code: 'E_PLAIN', reason: 'busy' \}$/);
    assert.equal(plain.remoteCode, 'E_PLAIN', "a thrown object's own code crosses");
    assert.match((await remote(calc.raise('circular'), 'a cycle')).message, /\[Circular \*1\]/);
    // An error's chain of causes crosses (it did not: the caller saw only the outer error), an
    // Error as an Error with its name, code and stack, anything else described; a cycle is cut.
    const caused = await remote(calc.raise('caused'), 'an error with causes');
    const outer = caused.cause as Error & { code?: string; cause?: unknown };
    assert.equal(outer.message, 'could not save');
    assert.equal(outer.code, 'E_SAVE');
    const inner = outer.cause as Error & { code?: string; cause?: unknown };
    assert.ok(inner instanceof Error, `the cause is an Error: ${String(inner)}`);
    assert.equal(inner.name, 'TypeError');
    assert.equal(inner.message, 'the disk said no');
    assert.match(inner.stack ?? '', /rpc-server\.js/, "the cause's own stack, the server's");
    const data = inner.cause as Error & { code?: string; cause?: unknown };
    assert.equal(data.message, "{ code: 'ENOSPC', free: 0 }");
    assert.equal(data.code, 'ENOSPC');
    assert.equal(data.cause, undefined);
    let depth = 0;
    for (
      let e: unknown = (await remote(calc.raise('cause-cycle'), 'a cycle of causes')).cause;
      e !== undefined;
      depth++
    )
      e = (e as { cause?: unknown }).cause;
    assert.equal(depth, 9, 'the error and 8 causes, then cut');
    // The same from a stream, after the items before.
    for (const kind of ['message-object', 'getter', 'huge']) {
      const got: unknown[] = [];
      const e = await remote(
        (async () => {
          for await (const i of calc.raiseInStream(kind, limit + 1)) got.push(i);
        })(),
        `a stream throwing ${kind}`,
      );
      assert.deepStrictEqual(got, [1], kind);
      assert.match(e.message, /calc\.raiseInStream failed/);
    }
    // An item whose getter throws when the server looks into it ends the stream with that error.
    const items: unknown[] = [];
    const unreadable = await remote(
      (async () => {
        for await (const i of calc.unreadableItem()) items.push(i);
      })(),
      'a stream with an unreadable item',
    );
    assert.deepStrictEqual(items, [1]);
    assert.equal(unreadable.remoteCode, 'E_ITEM');
    assert.equal(await calc.add(1, 2), 3, 'the server goes on');
  });

  test('an error answer another server sends malformed fails the call with what could be read; it does not hang', async () => {
    // A server by hand (another client, another language) that answers with errors of the wrong
    // shape: the caller dropped such an answer and waited for ever, or threw a TypeError.
    const serverProc = await connect({ socket: kernel.socket });
    try {
      const service = await serverProc.openMailbox('rpc:by-hand', {
        create: SERVICE_ATTRIBUTES,
        role: 'read',
      });
      const answer = async (error: unknown): Promise<void> => {
        const m = (await service.receive({ timeout: 10_000 }))!;
        const [id, , , reply] = m.body as [number, string, unknown[], number];
        const box = await serverProc.openMailbox(reply, { role: 'write' });
        await box.send([id, 1, error], { codec: 'msgpack' });
        box.close();
      };
      // A chain of 12 causes: the caller keeps 8 of them, as a server sends.
      let deep: { name: string; message: string; cause?: unknown } = { name: 'Error', message: 'cause 12' };
      for (let i = 11; i >= 0; i--) deep = { name: 'Error', message: `cause ${i}`, cause: deep };
      const cases: [unknown, (e: RemoteError) => void][] = [
        [42, (e) => assert.equal(e.remoteMessage, 'a malformed error: 42')],
        [
          deep,
          (e) => {
            let depth = 0;
            for (let c: unknown = e.cause; c !== undefined; depth++) c = (c as { cause?: unknown }).cause;
            assert.equal(depth, 9, 'the error and 8 causes, then cut');
          },
        ],
        [
          { name: 7, message: { text: 'x' }, code: 9 },
          (e) => {
            assert.equal(e.remoteName, '7');
            assert.equal(e.remoteMessage, "{ text: 'x' }");
            assert.equal(e.remoteCode, '9');
          },
        ],
      ];
      for (const [error, check] of cases) {
        const outcome = call(proc, 'by-hand', 'any').then(
          () => assert.fail('it should fail'),
          (err: unknown) => err,
        );
        await answer(error);
        const e = await within(outcome, 10_000, 'the call');
        assert.ok(e instanceof RemoteError, String(e));
        check(e);
      }
    } finally {
      await serverProc.close();
    }
  });

  test('an answer given at once, by a thenable, or by a thenable that fails', async () => {
    // The server answers a handler that returns at once inside the read that brought the request,
    // and awaits anything with a then(): each way, the right answer to the right call.
    const answers = await Promise.all([
      calc.add(20, 1),
      calc.later(21, false),
      calc.later(4, true).then(
        () => 'resolved',
        (e: unknown) =>
          e instanceof RemoteError && /CalcError: no 4$/.test(e.message) ? e.remoteCode : String(e),
      ),
      calc.fail('at once', 'E_NOW').then(
        () => 'resolved',
        (e: unknown) => (e instanceof RemoteError ? e.remoteCode : String(e)),
      ),
    ]);
    assert.deepStrictEqual(answers, [21, 42, 'E_LATER', 'E_NOW']);
  });

  test('many calls in flight over one connection, answers matched by id', async () => {
    const n = 500;
    const answers = await within(
      Promise.all(Array.from({ length: n }, (_, i) => calc.add(i, i * 1000))),
      20_000,
      'calls in flight',
    );
    assert.deepStrictEqual(
      answers,
      Array.from({ length: n }, (_, i) => i * 1001),
    );
    // The untyped form reaches the same service.
    assert.equal(await call(proc, 'calc', 'add', [40, 2]), 42);
  });

  /** What `deadline()` saw on the server: its deadline and its clock then, with the offsets. */
  type DeadlineSeen = { deadline: number | undefined; now: number; offset: number; callerOffset?: number };

  /** Checks that the handler had what is left of a 5 s timeout by its own clock (not 5 s ± 60 s). */
  function assertFiveSecondsLeft(seen: DeadlineSeen, what: string): void {
    assert.ok(seen.deadline !== undefined, `${what}: the handler has the deadline`);
    const left = seen.deadline - seen.now;
    assert.ok(left > 0 && left <= 5000 + 1000, `${what}: ${left} ms left by the server's clock`);
  }

  test('a deadline holds between machines whose clocks differ: servers 60 s ahead and behind', async () => {
    // Every process here shares the kernel's machine, so its offset to the kernel's clock is ~0.
    assert.ok(Math.abs(proc.kernelClockOffset) < 1000, `offset ${proc.kernelClockOffset} ms`);
    for (const skew of [60_000, -60_000]) {
      const service = skew > 0 ? 'clock-ahead' : 'clock-behind';
      const { child } = await startServer(service, 4, skew);
      try {
        // A server ahead would find a deadline by the caller's clock long past, and drop the call.
        const seen = await within(
          stub<Calc>(proc, service).$with({ timeout: 5000 }).deadline(),
          10_000,
          `${service}.deadline`,
        );
        assert.ok(Math.abs(seen.offset + skew) < 1000, `${service}: offset ${seen.offset} ms, skew ${skew}`);
        assertFiveSecondsLeft(seen, service);
      } finally {
        await stop(child);
      }
    }
  });

  test('a deadline holds between machines whose clocks differ: callers 60 s ahead and behind', async () => {
    for (const skew of [60_000, -60_000]) {
      const caller = spawn(process.execPath, ['--import', CLOCK_SKEW, DEADLINE_CALLER, 'calc', '5000'], {
        env: { ...kernel.env, POSTBOX_TEST_CLOCK_SKEW_MS: String(skew) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.add(caller);
      let out = '';
      caller.stdout!.on('data', (d: Buffer) => {
        out += d;
      });
      const code = await within(
        new Promise<number | null>((resolve) => caller.once('close', resolve)),
        15_000,
        `caller with a clock ${skew} ms off`,
      );
      children.delete(caller);
      assert.equal(code, 0);
      const seen = JSON.parse(out) as DeadlineSeen & { error?: string };
      // A caller behind would write a deadline the server finds past, and time out.
      assert.equal(seen.error, undefined, `caller ${skew} ms off: ${out}`);
      assert.ok(
        Math.abs(seen.callerOffset! + skew) < 1000,
        `caller offset ${seen.callerOffset} ms, skew ${skew}`,
      );
      assertFiveSecondsLeft(seen, `caller ${skew} ms off`);
    }
  });

  test('a timeout rejects with ETIMEDOUT from the call site, and the handler’s ctx.signal aborts', async () => {
    const t0 = Date.now();
    await assert.rejects(
      within(calc.$with({ timeout: 150 }).sleep(10_000, 'timeout'), 5000, 'timeout'),
      (e: unknown) => {
        assert.ok(e instanceof PostboxError && e.code === 'ETIMEDOUT', String(e));
        assert.match(e.message, /calc\.sleep timed out after 150 ms/);
        assert.match(e.stack!, /rpc\.test\.js/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 3000);
    const aborted = await event((e) => e.event === 'aborted' && e.tag === 'timeout', 10_000, 'handler abort');
    assert.equal(aborted.aborted, true);
  });

  test('the caller’s stack: the awaiting functions by default, the call line with captureStack', async () => {
    // By default the stack is V8's async stack trace at the failure: the functions awaiting the
    // call, by name, each at the line of its await.
    async function awaitingCaller(): Promise<unknown> {
      return await calc.$with({ timeout: 50 }).sleep(10_000, 'stack-await');
    }
    const awaited = await awaitingCaller().then(
      () => assert.fail('the call should time out'),
      (e: unknown) => e as Error,
    );
    assert.equal((awaited as PostboxError).code, 'ETIMEDOUT');
    assert.match(awaited.stack!, /^TimeoutError: calc\.sleep timed out after 50 ms\n/);
    assert.match(awaited.stack!, /at async awaitingCaller \(.*rpc\.test\.js:\d+:\d+\)/);
    // A call nobody awaits when it fails has no awaiting function to name …
    const late = calc.$with({ timeout: 50 }).sleep(10_000, 'stack-late');
    const lateErr = await new Promise<Error>((resolve) => late.catch(resolve));
    assert.equal((lateErr as PostboxError).code, 'ETIMEDOUT');
    assert.doesNotMatch(lateErr.stack!, /rpc\.test\.js/);
    // … and captureStack records the line of the call itself, whoever awaits.
    const captured = calc.$with({ timeout: 50, captureStack: true }).sleep(10_000, 'stack-captured');
    const capturedErr = await new Promise<Error>((resolve) => captured.catch(resolve));
    assert.equal((capturedErr as PostboxError).code, 'ETIMEDOUT');
    assert.match(
      capturedErr.stack!,
      /^TimeoutError: calc\.sleep timed out after 50 ms\n\s+at .*rpc\.test\.js/,
    );
    await assert.rejects(
      calc.$with({ captureStack: 1 as unknown as boolean }).add(1, 2),
      /calc\.add: captureStack must be true or false, not 1/,
    );
    // A call refused before it is sent names the call line in either mode.
    const refused = await (calc as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).echo!(
      () => 1,
    ).then(
      () => assert.fail('a function cannot be sent'),
      (e: unknown) => e as Error,
    );
    assert.match(
      refused.stack!,
      /^InvalidArgumentError: calc\.echo: args\[0\] is a function[^\n]*\n\s+at .*rpc\.test\.js/,
    );
  });

  test('a context sent by the caller is not the server’s: isCallContext tells them apart', async () => {
    assert.equal(await calc.guarded(), proc.id);
    // One argument more than the handler declares before ctx lands where ctx is expected.
    const forged = { caller: 1, service: 'calc', method: 'guarded', deadline: undefined, signal: {} };
    const err = await call(proc, 'calc', 'guarded', [forged]).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemoteError && err.remoteCode === 'E_FORGED', String(err));
    assert.equal(isCallContext(forged), false);
  });

  test('names and options are checked at their edges: EINVAL before anything is sent, the values just inside taken', async () => {
    // The service mailbox rpc:<service> is a name of at most 255 characters.
    const longest = 's'.repeat(251);
    assert.throws(() => stub(proc, ''), code('EINVAL'), 'an empty service name');
    assert.throws(() => stub(proc, `${longest}s`), code('EINVAL'), 'a service name of 252');
    await assert.rejects(call(proc, '', 'add', [1, 2]), code('EINVAL'));
    await assert.rejects(serve(proc, '', { add: (a: number, b: number) => a + b }), code('EINVAL'));
    const edge = await serve(proc, longest, { add: (a: number, b: number) => a + b });
    assert.equal(await call(proc, longest, 'add', [1, 2]), 3, 'a service name of 251');
    await edge.close();
    // serve(): a handler object, and a concurrency from 1 to 4096.
    for (const handlers of [null, 'add', 7])
      await assert.rejects(serve(proc, 'edges', handlers as never), code('EINVAL'), String(handlers));
    for (const concurrency of [0, 4097, 1.5])
      await assert.rejects(
        serve(proc, 'edges', { add: (a: number, b: number) => a + b }, { concurrency }),
        code('EINVAL'),
        `concurrency ${concurrency}`,
      );
    assert.ok(
      !(await proc.mailboxes()).some((m) => m.name === 'rpc:edges'),
      'no service mailbox was made by a refused serve()',
    );
    const widest = await serve(
      proc,
      'edges',
      { add: (a: number, b: number) => a + b },
      { concurrency: 4096 },
    );
    assert.equal(await call(proc, 'edges', 'add', [2, 2]), 4, 'concurrency 4096');
    await widest.close();
    // A service takes its requests in order: a priority mailbox of that name is not served.
    const prio = await proc.createMailbox('rpc:edges-prio', { order: 'priority' });
    await assert.rejects(serve(proc, 'edges-prio', { add: () => 0 }), code('EINVAL'));
    await prio.delete();
    // A call's options: each refused without a request reaching the service mailbox.
    const service = await proc.openMailbox('rpc:calc');
    const sentBefore = (await service.stat()).sent;
    const refused: [string, unknown[], CallOptions][] = [
      ['', [], {}],
      ['add', [1, 2], { timeout: -1 }],
      ['add', [1, 2], { timeout: 1.5 }],
      ['add', [1, 2], { timeout: 2 ** 31 }],
      ['add', [1, 2], { waitForServer: 'yes' as never }],
      ['ticks', [3], { streamCapacity: 0 }],
      ['ticks', [3], { streamCapacity: 1.5 }],
    ];
    for (const [method, args, options] of refused)
      await assert.rejects(
        call(proc, 'calc', method, args, options),
        code('EINVAL'),
        JSON.stringify([method, options]),
      );
    assert.equal((await service.stat()).sent, sentBefore, 'no request reached the service mailbox');
    service.close();
    assert.equal(await calc.$with({ timeout: 2 ** 31 - 1 }).add(1, 2), 3, 'timeout 2^31 - 1');
    const one: number[] = [];
    for await (const i of calc.$with({ streamCapacity: 1 }).ticks(3)) one.push(i);
    assert.deepEqual(one, [0, 1, 2], 'streamCapacity 1');
    // A stub is never a thenable: an async function may return one, and awaiting it gives it back.
    const made = await within(
      (async () => stub<Calc>(proc, 'calc'))(),
      10_000,
      'a stub returned by an async function',
    );
    assert.equal(await made.add(2, 2), 4);
    // Timeout 0, like none, is no limit: a call answered only once released is not timed out.
    const release = await proc.createMailbox('edges-release', { mode: 0o666 });
    const held = calc.$with({ timeout: 0 }).hold('edges-release', 'no-limit');
    await event((e) => e.event === 'started' && e.tag === 'no-limit', 10_000, 'the held handler');
    await release.send('go');
    assert.equal((await within(held, 10_000, 'the call with timeout 0')).tag, 'no-limit');
    await release.delete();
  });

  test('a server serves its handler object’s methods, own and inherited, not Object’s nor $-names; ctx is padded to its place', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    class Base {
      inherited(): string {
        return 'inherited';
      }
    }
    class Handlers extends Base {
      own(): string {
        return 'own';
      }
      $hidden(): string {
        return 'hidden';
      }
      /** Called with no arguments: its context is padded past `a`, not put in its place. */
      padded(a?: number, ctx?: CallContext): [number | undefined, boolean] {
        return [a, isCallContext(ctx)];
      }
    }
    const server = await serve(serverProc, 'methods', new Handlers());
    try {
      assert.equal(await call(proc, 'methods', 'own'), 'own');
      assert.equal(await call(proc, 'methods', 'inherited'), 'inherited');
      assert.deepEqual(await call(proc, 'methods', 'padded'), [undefined, true]);
      assert.deepEqual(await call(proc, 'methods', 'padded', [7]), [7, true]);
      assert.equal(server.handled, 4);
      for (const method of ['$hidden', 'toString', 'hasOwnProperty', 'constructor', 'valueOf']) {
        await assert.rejects(call(proc, 'methods', method), (e: unknown) => {
          assert.ok(e instanceof PostboxError && !(e instanceof RemoteError), `${method}: ${String(e)}`);
          assert.equal(e.code, 'ENOENT', method);
          assert.ok(e.message.includes(`has no method '${method}'`), e.message);
          return true;
        });
      }
    } finally {
      await server.close();
      await serverProc.close();
    }
  });

  test('requests off the wire: malformed is EINVAL, an unknown method ENOENT, a non-request ignored', async () => {
    // The documented wire form (docs/rpc.md), sent by hand: [id, method, args, reply].
    const service = await proc.openMailbox('rpc:calc');
    const replies = await proc.createMailbox(null, { mode: 0o622 });
    const raw = { codec: 'msgpack' } as const;
    await service.send({ not: 'a request' }, raw);
    await service.send([1, 42, [], replies.id], raw);
    await service.send([2, 'noSuchMethod', [], replies.id], raw);
    await service.send([3, 'add', [2, 3], replies.id], raw);
    // A deadline (by the kernel's clock) must be a finite number of ms.
    await service.send([4, 'add', [2, 3], replies.id, 'soon'], raw);
    await service.send([5, 'add', [2, 3], replies.id, Number.NaN], raw);
    // An error's chain of causes crosses the wire cut at 8 causes (here a cycle).
    await service.send([6, 'raise', ['cause-cycle'], replies.id], raw);
    const answers = new Map<number, unknown[]>();
    for (let i = 0; i < 6; i++) {
      const m = await replies.receive({ timeout: 10_000 });
      const body = m!.body as unknown[];
      answers.set(body[0] as number, body);
    }
    const err = (id: number) => answers.get(id)![2] as { code: string; message: string; rpc: boolean };
    assert.equal(answers.get(1)![1], 1, 'an error answer');
    assert.equal(err(1).code, 'EINVAL');
    assert.match(err(1).message, /a malformed request to 'calc'/);
    assert.equal(err(2).code, 'ENOENT');
    assert.match(err(2).message, /has no method 'noSuchMethod'/);
    assert.deepEqual(answers.get(3), [3, 0, 5], 'the server goes on: [id, 0, value]');
    for (const id of [4, 5]) {
      assert.equal(err(id).code, 'EINVAL', `request ${id}`);
      assert.match(err(id).message, /a malformed request to 'calc'/);
    }
    let causes = 0;
    for (let e = (answers.get(6)![2] as { cause?: unknown }).cause; e !== undefined; causes++)
      e = (e as { cause?: unknown }).cause;
    assert.equal(causes, 8, 'the error and 8 causes on the wire');
    assert.equal(await replies.receive({ nowait: true }), null, 'nothing answers a non-request');
    service.close();
    await replies.delete();
  });

  test('an abort reaches the running handler: its ctx.signal aborts', async () => {
    const ac = new AbortController();
    const p = calc.$with({ signal: ac.signal }).sleep(10_000, 'abort-me');
    await event((e) => e.event === 'started' && e.tag === 'abort-me', 10_000, 'handler start');
    ac.abort();
    await assert.rejects(within(p, 5000, 'aborted call'), code('ECANCELED'));
    const aborted = await event(
      (e) => e.event === 'aborted' && e.tag === 'abort-me',
      10_000,
      'handler abort',
    );
    assert.equal(aborted.aborted, true);
    assert.match(String(aborted.why), /cancelled calc\.sleep/);
  });

  test('an abort while the request is queued withdraws it: no server ever runs it', async () => {
    await startServer('solo', 1);
    const solo = stub<Calc>(proc, 'solo');
    // The busy handler runs until released: a handler that slept 400 ms could end (and the
    // server take the queued request) before a loaded machine came to the abort.
    const release = await proc.createMailbox('solo-release', { mode: 0o666 });
    const busy = solo.hold('solo-release', 'solo-busy');
    await event((e) => e.event === 'started' && e.tag === 'solo-busy', 10_000, 'busy handler');
    const ac = new AbortController();
    const queued = solo.$with({ signal: ac.signal }).sleep(1, 'solo-queued');
    // Aborted once it waits in the service mailbox (a 50 ms sleep guessed at it).
    await until(
      () => proc.stat('rpc:solo'),
      (s) => s.queued === 1,
      10_000,
      'the request queued behind the busy handler',
    );
    ac.abort();
    await assert.rejects(queued, code('ECANCELED'));
    await release.send('go');
    assert.equal((await within(busy, 10_000, 'busy call')).tag, 'solo-busy');
    await release.delete();
    assert.equal((await solo.sleep(1, 'solo-after')).tag, 'solo-after');
    const events = await drainEvents();
    assert.ok(!events.some((e) => e.tag === 'solo-queued'), 'the withdrawn request never ran');
  });

  test('a call or a stream still open when its own process closes fails with ENOTCONN, not as a protocol error', async () => {
    const caller = await connect({ socket: kernel.socket });
    const c = stub<Calc>(caller, 'calc');
    // Caught at once: it fails during the awaits below, before assert.rejects would catch it.
    const pending = c.sleep(60_000, 'closed-under').then(
      () => null,
      (e: unknown) => e,
    );
    await event((e) => e.event === 'started' && e.tag === 'closed-under');
    const stream = c.ticks(1_000_000_000, undefined, 'closed-stream')[Symbol.asyncIterator]();
    assert.equal((await stream.next()).value, 0);
    await caller.close();
    const closed = (e: unknown): boolean => {
      // The words a call made after the close gets, the class of its code: not EPROTO.
      assert.ok(e instanceof ClosedError && e.code === 'ENOTCONN', String(e));
      assert.match(e.message, /^calc\.(sleep|ticks|add): the process closed its connection to the kernel$/);
      return true;
    };
    assert.ok(closed(await within(pending, 10_000, 'the open call')));
    // What was pushed to the stream before the close may come first; then it fails.
    await assert.rejects(
      within(
        (async () => {
          for (let i = 0; i < STREAM_CAPACITY + 1; i++) await stream.next();
        })(),
        10_000,
        'the open stream',
      ),
      closed,
    );
    await assert.rejects(c.add(1, 2), closed);
  });

  test('no server: a clear ENOENT at once, whether the service never existed or its servers are gone', async () => {
    const t0 = Date.now();
    const nobody = stub<Calc>(proc, 'nobody');
    await assert.rejects(nobody.add(1, 2), (e: unknown) => {
      assert.ok(e instanceof NoServerError && e.code === 'ENOENT', String(e));
      assert.match(e.message, /no server for 'nobody'/);
      assert.match(e.stack!, /rpc\.test\.js/);
      return true;
    });
    // A service whose only server stopped: its mailbox stays, nobody reads it (EPIPE inside).
    const { child } = await startServer('brief');
    const brief = stub<Calc>(proc, 'brief');
    assert.equal(await brief.add(1, 1), 2);
    await stop(child);
    const t1 = Date.now();
    await assert.rejects(
      brief.add(1, 2),
      (e: unknown) => e instanceof NoServerError && /'brief'/.test(e.message),
    );
    assert.ok(Date.now() - t1 < 2000 && t1 - t0 < 10_000, 'failed at once');
  });

  test("a service whose mailbox was removed and made again is reached anew: no stale handle's ENOENT for ever", async () => {
    // A caller keeps the service mailbox it opened; once that mailbox is removed (postbox rm),
    // its ENOENT must drop the handle, or every later call fails though a new server serves.
    const serverProc = await connect({ socket: kernel.socket });
    try {
      const first = await serve(serverProc, 'reborn', { add: (a: number, b: number) => a + b });
      const reborn = stub<Calc>(proc, 'reborn');
      assert.equal(await reborn.add(1, 1), 2);
      await first.close();
      await (await serverProc.openMailbox('rpc:reborn')).delete();
      await assert.rejects(reborn.add(1, 2), (e: unknown) => e instanceof NoServerError);
      const second = await serve(serverProc, 'reborn', { add: (a: number, b: number) => a + b + 100 });
      assert.equal(await reborn.add(1, 3), 104);
      await second.close();
    } finally {
      await serverProc.close();
    }
  });

  test('a caller of more services than it keeps handles for closes the least recently used, and calls them again', async () => {
    // 1,024 handles at most (MAX_SERVICE_HANDLES): a caller of services named per job would
    // otherwise hold one on each for its life, until --max-per-process refused its calls.
    const n = 1100;
    const serverProc = await connect({ socket: kernel.socket });
    const caller = await connect({ socket: kernel.socket });
    try {
      const servers = [];
      for (let i = 0; i < n; i++) servers.push(await serve(serverProc, `many-${i}`, { id: () => i }));
      const writersOf = async (i: number): Promise<number> =>
        (await serverProc.stat(`rpc:many-${i}`)).writers;
      // All at once: handles opened in one burst are not closed before their calls are sent.
      const burst = await within(
        Promise.all(servers.map((_, i) => call(caller, `many-${i}`, 'id', []))),
        30_000,
        'a burst of calls to distinct services',
      );
      assert.deepStrictEqual(
        burst,
        servers.map((_, i) => i),
      );
      // One by one, in order: the first ones called are now the least recently used.
      for (let i = 0; i < n; i++) assert.equal(await call(caller, `many-${i}`, 'id', []), i);
      assert.equal(await writersOf(0), 0, 'the least recently used service handle was closed');
      assert.equal(await writersOf(n - 1), 1, 'the last service called keeps its handle');
      const open = (await Promise.all(servers.map((_, i) => writersOf(i)))).reduce((a, b) => a + b, 0);
      assert.equal(open, 1024, 'the caller keeps 1,024 service handles');
      // A closed one is opened again on its next call.
      assert.equal(await call(caller, 'many-0', 'id', []), 0);
      assert.equal(await writersOf(0), 1);
      for (const s of servers) await s.close();
    } finally {
      await caller.close();
      await serverProc.close();
    }
  });

  test('calls queued behind the only server when it dies fail at once (no server), not hang', async () => {
    // They stayed queued in the service mailbox for ever: nobody left to take them, and the
    // caller (which watches only servers that took its calls) was never told.
    const { child } = await startServer('lonely', 1);
    const lonely = stub<Calc>(proc, 'lonely');
    const outcomes: string[] = [];
    const calls = [0, 1, 2, 3, 4].map((i) =>
      lonely.sleep(60_000, `c${i}`).then(
        () => 'ok',
        (e: PostboxError) => e.code,
      ),
    );
    // The first call is taken and running (concurrency 1), the other four wait in the mailbox.
    await until(
      () => proc.stat('rpc:lonely'),
      (st) => st.count === 4 && st.inflight === 0,
      10_000,
      'one taken, four queued',
    );
    await stop(child, 'SIGKILL');
    outcomes.push(...(await within(Promise.all(calls), 10_000, 'every call to settle')));
    assert.equal(outcomes[0], 'ECONNRESET', 'the running one names the dead server');
    assert.deepEqual(outcomes.slice(1), ['ENOENT', 'ENOENT', 'ENOENT', 'ENOENT']);
    assert.equal((await proc.stat('rpc:lonely')).count, 0, 'and nothing is left queued');
  });

  test('waitForServer: calls queued behind the only server when it dies keep waiting, and the next server runs them', async () => {
    const { child } = await startServer('patient', 1);
    const patient = stub<Calc>(proc, 'patient', { waitForServer: true });
    const running = patient.sleep(60_000, 'busy').then(
      () => 'ok',
      (e: PostboxError) => e.code,
    );
    const queued = [1, 2, 3, 4].map((i) => patient.add(i, 1));
    await until(
      () => proc.stat('rpc:patient'),
      (st) => st.count === 4 && st.inflight === 0,
      10_000,
      'one taken, four queued',
    );
    await stop(child, 'SIGKILL');
    // The caller is told of the server's end as the kernel ends it: by then the kernel has
    // decided what happens to the calls queued behind it.
    assert.equal(await within(running, 10_000, 'the running call to fail'), 'ECONNRESET');
    // Asked to wait for a server, they stay (without waitForServer they fail ENOENT: above).
    assert.equal((await proc.stat('rpc:patient')).count, 4, 'the four still queued');
    await startServer('patient');
    assert.deepEqual(await within(Promise.all(queued), 10_000, 'the queued calls'), [2, 3, 4, 5]);
  });

  test('a server that dies inside a synchronous handler: the call ran once, and the caller is told the server died', async () => {
    // The request's take went out at the end of the read, after the handler had run: a server
    // ending inside it had the request given back, and the next server ran it again.
    const servers = await Promise.all([startServer('once'), startServer('once'), startServer('once')]);
    const ledger = join(mkdtempSync(join(tmpdir(), 'postbox-rpc-')), 'ledger');
    writeFileSync(ledger, '');
    const once = stub<Calc>(proc, 'once');
    await assert.rejects(within(once.exitNow(ledger), 10_000, 'the call to fail'), (e: unknown) => {
      assert.ok(e instanceof ServerDownError, String(e));
      assert.equal(e.code, 'ECONNRESET');
      return true;
    });
    const ran = readFileSync(ledger, 'utf8').trim().split('\n');
    assert.equal(ran.length, 1, `run by one server, not by ${ran.join(', ')}`);
    assert.equal(
      servers.filter((s) => s.child.exitCode === null).length >= 2,
      true,
      'the other servers live',
    );
    assert.equal(await once.add(2, 3), 5, 'and still serve');
    rmSync(dirname(ledger), { recursive: true, force: true });
    for (const s of servers) await stop(s.child);
  });

  test('waitForServer: the call waits, and completes once a server starts', async () => {
    const late = stub<Calc>(proc, 'late', { waitForServer: true });
    // A call without waitForServer made at the same moment fails at once, and this one still waits.
    const plain = stub<Calc>(proc, 'late').add(1, 1);
    const p = late.add(20, 22);
    await assert.rejects(plain, (e: unknown) => e instanceof NoServerError);
    let settled = false;
    p.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await sleep(200);
    assert.equal(settled, false, 'still waiting for a server');
    await startServer('late');
    assert.equal(await within(p, 10_000, 'waiting call'), 42);
  });

  test('three servers behind one service, one killed mid-load: every call completes or names the dead server', async () => {
    const servers = await Promise.all([
      startServer('shared', 4),
      startServer('shared', 4),
      startServer('shared', 4),
    ]);
    const victim = servers[1]!;
    const shared = stub<Calc>(proc, 'shared');
    const n = 60;
    let completed = 0;
    // Each handler runs until a message in 'shared-release' lets it end: handlers of 150 ms
    // could all have ended before a loaded machine came to the kill, leaving the victim nothing.
    const release = await proc.createMailbox('shared-release', { mode: 0o666 });
    const calls = Array.from({ length: n }, (_, i) =>
      shared.hold('shared-release', `load-${i}`).then((r) => {
        completed++;
        return r;
      }),
    );
    // 15 calls complete; then every server runs its 4 and the rest wait in the service mailbox.
    for (let i = 0; i < 15; i++) await release.send(i);
    await until(
      async () => completed,
      (c) => c === 15,
      10_000,
      '15 calls completed',
    );
    await until(
      () => proc.stat('rpc:shared'),
      (s) => s.queued === n - 15 - 12 && s.inflight === 0,
      10_000,
      'each server running 4 handlers, the rest queued',
    );
    // Killed while it runs handlers: calls it took, surely its own.
    const settled = Promise.allSettled(calls);
    victim.child.kill('SIGKILL');
    for (let i = 15; i < n + 4; i++) await release.send(i);
    const results = await within(settled, 20_000, 'the calls of the load');
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(ok.length + failed.length, n, 'every call settled: none lost, none hanging');
    for (const f of failed) {
      const e = f.reason as unknown;
      assert.ok(e instanceof ServerDownError, `a failure is a dead-server error: ${String(e)}`);
      assert.equal(e.code, 'ECONNRESET');
      assert.equal(e.server, victim.id);
      assert.equal(e.reason, 'crash');
      assert.match(e.message, new RegExp(`server process ${victim.id} terminated \\(crash\\)`));
      assert.match(e.message, /shared\.hold/);
    }
    assert.ok(failed.length >= 1, 'the killed server held calls when it died');
    assert.ok(failed.length <= 4, `it held at most its concurrency (${failed.length})`);
    const servedBy = new Set(ok.map((r) => r.value.server));
    for (const s of servers) if (s !== victim) assert.ok(servedBy.has(s.id), `survivor ${s.id} served calls`);
    const tags = new Set(ok.map((r) => r.value.tag));
    assert.equal(tags.size, ok.length, 'each completed call got its own answer');
    // The survivors go on serving.
    assert.equal((await shared.sleep(1, 'after-kill')).tag, 'after-kill');
    await release.delete();
  });

  /** A caller process (test/fixtures/rpc-caller.ts) calling `service`.sleep(ms, tag), to be killed. */
  function startCallerToKill(service: string, tag: string, ms = 60_000): { kill: () => Promise<void> } {
    const caller = spawn(process.execPath, [CALLER, service, String(ms), tag], {
      env: kernel.env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.add(caller);
    const gone = new Promise((resolve) => caller.once('exit', resolve));
    return {
      kill: async () => {
        caller.kill('SIGKILL');
        await within(gone, 5000, 'caller exit');
        children.delete(caller);
      },
    };
  }

  test('a dead caller’s handler is stopped and its answer dropped; the server survives and the next caller is unaffected', async () => {
    const { child: server, id: serverId } = await startServer('drop');
    // Its handler would run a minute: only the caller's death can end it in this test. (With
    // 600 ms, a loaded machine could come to the kill after the handler had finished.)
    const caller = startCallerToKill('drop', 'from-dead');
    await event((e) => e.event === 'started' && e.tag === 'from-dead', 10_000, 'the dead caller’s call');
    await caller.kill();
    // A fresh caller: its first call has id 1, as the dead caller's had.
    const next = await connect({ socket: kernel.socket });
    try {
      const drop = stub<Calc>(next, 'drop');
      const answer = await within(drop.sleep(900, 'from-next'), 10_000, 'the next caller’s call');
      assert.deepEqual(answer, { tag: 'from-next', server: serverId });
      // Its handler looks at ctx.signal, so the caller's death stopped it.
      const stopped = await event(
        (e) => e.event === 'aborted' && e.tag === 'from-dead',
        10_000,
        'the dead caller’s handler',
      );
      assert.match(
        String(stopped.why),
        /^AbortedError: the caller of drop\.sleep, process \d+, (terminated \(crash\)|had already ended)$/,
      );
      assert.equal(server.exitCode, null, 'the server is alive');
      assert.equal((await next.lookup(serverId)).id, serverId);
      assert.equal(await drop.add(1, 2), 3);
    } finally {
      await next.close();
    }
  });

  test('a caller that dies aborts ctx.signal of a handler running for it', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    let started = (_ctx: CallContext): void => {};
    const running = new Promise<CallContext>((resolve) => (started = resolve));
    let finished = (_reason: unknown): void => {};
    const stopped = new Promise<unknown>((resolve) => (finished = resolve));
    const server = await serve(serverProc, 'watchful', {
      async sleep(_ms: number, tag: string, ctx?: CallContext): Promise<{ tag: string }> {
        const signal = ctx!.signal;
        started(ctx!);
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        finished(signal.reason);
        return { tag };
      },
    });
    try {
      const caller = startCallerToKill('watchful', 'watched');
      const ctx = await within(running, 10_000, 'the handler');
      assert.equal(ctx.signal.aborted, false, 'not aborted while the caller lives');
      await caller.kill();
      const reason = await within(stopped, 5000, 'the handler’s signal');
      assert.ok(reason instanceof AbortedError, `an AbortedError: ${String(reason)}`);
      assert.equal(reason.code, 'ECANCELED');
      // "had already ended" when the kill beat the server's monitor request to the kernel.
      assert.match(
        reason.message,
        new RegExp(`watchful\\.sleep, process ${ctx.caller}, (terminated \\(crash\\)|had already ended)`),
      );
    } finally {
      await server.close({ abort: true });
      await serverProc.close();
    }
  });

  test('calls whose caller dies before a server takes them are withdrawn: no server runs them', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    const ran: string[] = [];
    let open = (): void => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let first = (): void => {};
    const busy = new Promise<void>((resolve) => (first = resolve));
    const server = await serve(
      serverProc,
      'orphans',
      {
        async sleep(_ms: number, tag: string): Promise<{ tag: string }> {
          ran.push(tag);
          first();
          await gate;
          return { tag };
        },
      },
      { concurrency: 1 },
    );
    const callers = [startCallerToKill('orphans', 'running', 1)];
    try {
      await within(busy, 10_000, 'the first call running');
      callers.push(startCallerToKill('orphans', 'orphan-1'), startCallerToKill('orphans', 'orphan-2'));
      const stat = (): Promise<MailboxStat> => serverProc.stat('rpc:orphans');
      await until(stat, (s) => s.count === 2, 10_000, 'two calls queued behind the running one');
      await Promise.all(callers.slice(1).map((c) => c.kill()));
      // Before, both stayed queued, and the server ran them for callers long gone.
      await until(
        stat,
        (s) => s.count === 0 && s.waitingReceipts.length === 0,
        10_000,
        'the orphans withdrawn',
      );
      open();
      const me = await connect({ socket: kernel.socket });
      try {
        const orphans = stub<{ sleep(ms: number, tag: string): Promise<{ tag: string }> }>(me, 'orphans');
        assert.deepEqual(await within(orphans.sleep(1, 'next'), 10_000, 'the next call'), { tag: 'next' });
      } finally {
        await me.close();
      }
      assert.deepEqual(ran, ['running', 'next']);
    } finally {
      open();
      await Promise.all(callers.map((c) => c.kill()));
      await server.close({ abort: true });
      await serverProc.close();
    }
  });

  test('a handler that looks at ctx.signal after its caller died finds it aborted', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = (): void => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    let seenReason = (_reason: unknown): void => {};
    const reasonSeen = new Promise<unknown>((resolve) => (seenReason = resolve));
    const server = await serve(serverProc, 'late-look', {
      async sleep(_ms: number, tag: string, ctx?: CallContext): Promise<{ tag: string }> {
        started();
        await gate;
        const signal = ctx!.signal;
        if (!signal.aborted)
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        seenReason(signal.reason);
        return { tag };
      },
    });
    try {
      const caller = startCallerToKill('late-look', 'late');
      await within(running, 10_000, 'the handler');
      await caller.kill();
      release();
      const reason = await within(reasonSeen, 5000, 'the handler’s signal');
      assert.ok(reason instanceof AbortedError, `an AbortedError: ${String(reason)}`);
      assert.match(reason.message, /late-look\.sleep, process \d+, (had already ended|terminated)/);
    } finally {
      await server.close();
      await serverProc.close();
    }
  });

  test('a caller that stops a stream early stops its handler: before the answer, after the offer, or once it began', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    /** Resolves once a signal aborts. */
    const abortOf = (signal: AbortSignal): Promise<void> =>
      new Promise((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    const entered = new Map<string, (ctx: CallContext) => void>();
    const contextOf = (tag: string): Promise<CallContext> =>
      new Promise((resolve) => entered.set(tag, resolve));
    const lateCtx = contextOf('late');
    const begunCtx = contextOf('begun');
    const server = await serve(
      serverProc,
      'stop-early',
      {
        /** Answers with its stream only once told to stop. */
        async late(tag: string, ctx?: CallContext): Promise<AsyncGenerator<number>> {
          entered.get(tag)?.(ctx!);
          await abortOf(ctx!.signal);
          return (async function* () {
            yield 0;
          })();
        },
        /** A stream that yields nothing and waits, sending nothing that could fail. */
        // biome-ignore lint/correctness/useYield: it ends with no item, once told to stop.
        async *waits(tag: string, ctx?: CallContext): AsyncGenerator<number> {
          entered.get(tag)?.(ctx!);
          await abortOf(ctx!.signal);
        },
        ping(): string {
          return 'pong';
        },
      },
      { concurrency: 1 },
    );
    try {
      type StopEarly = {
        late(tag: string): Promise<AsyncIterable<number>>;
        waits(tag: string): AsyncIterable<number>;
        ping(): string;
      };
      const s = stub<StopEarly>(proc, 'stop-early');
      // return() on a call whose handler has not answered yet: the call is cancelled at once.
      const late = s.late('late') as unknown as AsyncIterator<number>;
      const ctx = await within(lateCtx, 10_000, 'the late handler');
      assert.deepEqual(await within(late.return!(), 10_000, 'return() before the answer'), {
        value: undefined,
        done: true,
      });
      await within(abortOf(ctx.signal), 10_000, "the late handler's signal");
      // return() on a stream that began, whose handler waits and sends nothing (a send to the
      // deleted mailbox would fail): the CANCEL is what stops it.
      const begun = await (s.waits('begun') as unknown as Promise<AsyncIterator<number>>);
      const begunContext = await within(begunCtx, 10_000, 'the stream begun');
      await begun.return!();
      await within(abortOf(begunContext.signal), 10_000, "the begun stream's signal");
      // return() the moment the stream is offered, while its mailbox is still being made: the
      // mailbox is deleted as soon as it exists, not kept until the caller's process ends.
      const before = new Set((await proc.mailboxes()).map((m) => m.id));
      const stoppedAtOnce = await (s.waits('at-once') as unknown as Promise<AsyncIterator<number>>);
      await stoppedAtOnce.return!();
      const made = async (): Promise<number[]> =>
        (await proc.mailboxes()).filter((m) => !before.has(m.id) && m.owner === proc.id).map((m) => m.id);
      await until(
        made,
        (ids) => ids.length === 0,
        10_000,
        'the mailbox of a stream stopped at once to be deleted',
      );
      // A caller that cancels after the stream was offered, before its START (by hand): the
      // server stops waiting for a START that will not come.
      const service = await proc.openMailbox('rpc:stop-early');
      const replies = await proc.createMailbox(null, { mode: 0o622 });
      await service.send([1, 'waits', ['offered'], replies.id], { codec: 'msgpack' });
      const offer = (await replies.receive({ timeout: 10_000 }))!;
      assert.deepEqual(offer.body, [1, 2]);
      const control = await proc.openMailbox(`rpc:ctl:${serverProc.id}`);
      await control.send({ id: 1 }, { codec: 'msgpack', type: 1 });
      // Its one handler (concurrency 1) is free again.
      assert.equal(await within(s.ping(), 10_000, 'a call after the cancelled offer'), 'pong');
      assert.equal(server.running, 0);
      control.close();
      service.close();
      await replies.delete();
    } finally {
      // Bounded: a server still waiting for the cancelled offer's START would never close.
      await within(server.close({ abort: true }), 10_000, 'the server to close').finally(() =>
        serverProc.close(),
      );
    }
  });

  test('a server answers only into mailboxes of the process that made the call, answers and streams alike', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    const other = await connect({ socket: kernel.socket });
    let stopped = (_why: unknown): void => {};
    const streamStopped = new Promise<unknown>((resolve) => (stopped = resolve));
    const server = await serve(serverProc, 'owners', {
      add: (a: number, b: number) => a + b,
      items(ctx?: CallContext): AsyncGenerator<number> {
        ctx!.signal.addEventListener('abort', () => stopped(ctx!.signal.reason), { once: true });
        return (async function* () {
          yield 1;
          yield 2;
        })();
      },
    });
    try {
      const raw = { codec: 'msgpack' } as const;
      const mine = await proc.openMailbox('rpc:owners');
      const theirs = await other.openMailbox('rpc:owners');
      const box = await other.createMailbox(null, { mode: 0o622 });
      // This process names the other's mailbox, first while the server has no handle on it,
      // then once it has one from answering the other: neither is answered.
      await mine.send([1, 'add', [1, 1], box.id], raw);
      await theirs.send([2, 'add', [2, 2], box.id], raw);
      await mine.send([3, 'add', [3, 3], box.id], raw);
      await theirs.send([4, 'add', [4, 4], box.id], raw);
      const ids: number[] = [];
      while (!ids.includes(4)) ids.push(((await box.receive({ timeout: 10_000 }))!.body as number[])[0]!);
      assert.deepEqual(ids, [2, 4], "only the other's own calls are answered there");
      // A stream's START naming the other's mailbox: no item goes there, and the handler is stopped.
      const replies = await proc.createMailbox(null, { mode: 0o622 });
      await mine.send([5, 'items', [], replies.id], raw);
      const offer = (await replies.receive({ timeout: 10_000 }))!;
      assert.deepEqual(offer.body, [5, 2]);
      const items = await other.createMailbox(null, { capacity: 4, mode: 0o622 });
      const control = await proc.openMailbox(`rpc:ctl:${serverProc.id}`);
      await control.send({ id: 5, to: items.id }, { codec: 'msgpack', type: 2 });
      const why = await within(streamStopped, 10_000, 'the stream stopped');
      assert.match(String(why), /named a stream mailbox it does not own/);
      assert.equal((await items.stat()).sent, 0, 'nothing was sent to the mailbox of another');
      control.close();
      mine.close();
      theirs.close();
      await replies.delete();
    } finally {
      await server.close({ abort: true });
      await other.close();
      await serverProc.close();
    }
  });

  test('a caller hears only the server that took its call, and a server only the caller that made it', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    const caller = await connect({ socket: kernel.socket });
    const forger = await connect({ socket: kernel.socket });
    const release = new Map<string, () => void>();
    const entered = new Map<string, (ctx: CallContext) => void>();
    const contextOf = (tag: string): Promise<CallContext> =>
      new Promise((resolve) => entered.set(tag, resolve));
    const server = await serve(serverProc, 'hears', {
      async held(tag: string, ctx?: CallContext): Promise<string> {
        await new Promise<void>((resolve) => {
          release.set(tag, resolve);
          ctx!.signal.addEventListener('abort', () => resolve(), { once: true });
          entered.get(tag)?.(ctx!);
        });
        return tag;
      },
      async *stream(tag: string, ctx?: CallContext): AsyncGenerator<string> {
        await new Promise<void>((resolve) => {
          release.set(tag, resolve);
          ctx!.signal.addEventListener('abort', () => resolve(), { once: true });
          entered.get(tag)?.(ctx!);
        });
        yield tag;
      },
    });
    try {
      type Hears = { held(tag: string): Promise<string>; stream(tag: string): AsyncIterable<string> };
      const s = stub<Hears>(caller, 'hears');
      // The caller's first call: id 1. Taken (the kernel has sent its receipt) before anyone forges.
      const heldCtx = contextOf('answer');
      const answer = s.held('answer');
      answer.catch(() => {}); // awaited below; a failure before then is the test's, not this one's
      const ctx = await within(heldCtx, 10_000, 'the handler');
      await allRead(proc, 'rpc:hears', 'the call taken');
      // A third process's CANCEL of call 1 is not the caller's: the handler runs on.
      const control = await forger.openMailbox(`rpc:ctl:${serverProc.id}`);
      await control.send({ id: 1 }, { codec: 'msgpack', type: 1 });
      await allRead(proc, `rpc:ctl:${serverProc.id}`, 'the forged CANCEL read');
      assert.equal(ctx.signal.aborted, false, "another process's CANCEL is ignored");
      // Its answer to call 1, in the caller's reply mailbox: not the server's, dropped.
      const reply = await replyMailboxOf(caller);
      // Nor may it read the answers there.
      const fromReply = await forger.openMailbox(reply.id, { role: 'read' });
      await assert.rejects(fromReply.receive({ nowait: true }), code('EACCES'));
      fromReply.close();
      const toReply = await forger.openMailbox(reply.id, { role: 'write' });
      await toReply.send([1, 0, 'forged'], { codec: 'msgpack' });
      release.get('answer')!();
      assert.equal(
        await within(answer, 10_000, 'the answer'),
        'answer',
        "the server's answer, not the forged one",
      );
      // Items in a stream's mailbox from another process are not the server's either.
      const streamCtx = contextOf('item');
      const stream = await (s.stream('item') as unknown as Promise<AsyncIterator<string>>);
      await within(streamCtx, 10_000, 'the stream begun');
      const box = (await caller.mailboxes()).find(
        (m) => m.owner === caller.id && m.capacity === STREAM_CAPACITY,
      )!;
      const toStream = await forger.openMailbox(box.id, { role: 'write' });
      await toStream.send('forged', { codec: 'msgpack', type: 1 });
      await toStream.send(null, { codec: 'msgpack', type: 2 });
      release.get('item')!();
      assert.deepEqual(await within(stream.next(), 10_000, 'the item'), { value: 'item', done: false });
      assert.deepEqual(await within(stream.next(), 10_000, 'the end'), { value: undefined, done: true });
      control.close();
      toReply.close();
      toStream.close();
    } finally {
      await server.close({ abort: true });
      await forger.close();
      await caller.close();
      await serverProc.close();
    }
  });

  test('an answer written before any server took the call is not the call’s: the answer of the server that takes it is', async () => {
    // The caller took the first answer to come while it did not know who had the call (its
    // receipt not yet in): a process that wrote one into the reply mailbox first had it taken.
    const caller = await connect({ socket: kernel.socket });
    const forger = await connect({ socket: kernel.socket });
    const serverProc = await connect({ socket: kernel.socket });
    try {
      const waiting = stub<{ echo(tag: string): Promise<string> }>(caller, 'early-answer', {
        waitForServer: true,
      });
      // The caller's first call (id 1), queued: no server yet.
      const answer = waiting.echo('real');
      answer.catch(() => {}); // awaited below
      await until(
        () => proc.stat('rpc:early-answer'),
        (st) => st.count === 1,
        10_000,
        'the call queued',
      );
      const reply = await replyMailboxOf(caller);
      const toReply = await forger.openMailbox(reply.id, { role: 'write' });
      await toReply.send([1, 0, 'forged'], { codec: 'msgpack' });
      await allRead(proc, reply.id, 'the forged answer read');
      const server = await serve(serverProc, 'early-answer', { echo: (tag: string) => tag });
      assert.equal(
        await within(answer, 10_000, 'the answer'),
        'real',
        "the server's answer, not the forged one",
      );
      toReply.close();
      await server.close();
    } finally {
      await forger.close();
      await caller.close();
      await serverProc.close();
    }
  });

  test('handlers of one dead caller: one watching it when it died, and one that looks at ctx.signal only after, both stop', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    const caller = await connect({ socket: kernel.socket });
    const contexts = new Map<string, (ctx: CallContext) => void>();
    const contextOf = (tag: string): Promise<CallContext> =>
      new Promise((resolve) => contexts.set(tag, resolve));
    const abortOf = (signal: AbortSignal): Promise<void> =>
      new Promise((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    let open = (): void => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const server = await serve(serverProc, 'two-handlers', {
      async wait(tag: string, ctx?: CallContext): Promise<string> {
        contexts.get(tag)?.(ctx!);
        await gate;
        return tag;
      },
    });
    try {
      const eager = contextOf('eager');
      const late = contextOf('late');
      call(caller, 'two-handlers', 'wait', ['eager']).catch(() => {});
      call(caller, 'two-handlers', 'wait', ['late']).catch(() => {});
      const eagerCtx = await within(eager, 10_000, 'the eager handler');
      const lateCtx = await within(late, 10_000, 'the late handler');
      // The first looks now, so the server watches the caller; the second has not looked yet.
      const eagerStopped = abortOf(eagerCtx.signal);
      await caller.close();
      await within(eagerStopped, 10_000, "the eager handler's signal");
      // Its look comes after the watch of that caller has fired: it must watch anew.
      await within(abortOf(lateCtx.signal), 10_000, "the late handler's signal");
      assert.match(String(lateCtx.signal.reason), /the caller of two-handlers\.wait, process \d+/);
    } finally {
      open();
      await server.close({ abort: true });
      await serverProc.close();
    }
  });

  test('a server that closes and disconnects at once still delivers the answers of the calls it finished', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    // A fresh caller: the server's first answer to it has to open its reply mailbox first.
    const caller = await connect({ socket: kernel.socket });
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = 0;
    let bothStarted = (): void => {};
    const running = new Promise<void>((resolve) => (bothStarted = resolve));
    const server = await serve(serverProc, 'closing', {
      async slow(x: number): Promise<number> {
        if (++started === 2) bothStarted();
        await gate;
        return x * 2;
      },
    });
    try {
      const answers = Promise.all([
        call(caller, 'closing', 'slow', [1]),
        call(caller, 'closing', 'slow', [2]),
      ]);
      await within(running, 5000, 'both handlers running');
      const closed = server.close();
      release();
      await within(closed, 5000, 'close()');
      // As a server's shutdown does: close, then leave at once.
      await serverProc.close();
      assert.deepEqual(await within(answers, 5000, 'the answers'), [2, 4]);
    } finally {
      await caller.close();
      await serverProc.close();
    }
  });

  test('a streaming call: every item in order, then done; an error ends it after the items before', async () => {
    const items: number[] = [];
    for await (const i of calc.ticks(40)) items.push(i);
    assert.deepStrictEqual(
      items,
      Array.from({ length: 40 }, (_, i) => i),
    );
    // Awaiting a streaming call gives the iterator too.
    const it = await calc.ticks(3);
    assert.deepStrictEqual(await it.next(), { value: 0, done: false });
    assert.equal((await it.return!()).done, true);
    const got: number[] = [];
    const failing = calc.ticks(10, 4);
    await assert.rejects(
      (async () => {
        for await (const i of failing) got.push(i);
      })(),
      (e: unknown) => e instanceof RemoteError && e.remoteCode === 'E_TICK' && /rpc\.test\.js/.test(e.stack!),
    );
    assert.deepStrictEqual(got, [0, 1, 2, 3]);
    // It threw once; read again, it is done.
    assert.deepStrictEqual(await failing.next(), { value: undefined, done: true });
    // Iterating a call that answers with a value is a clear error.
    await assert.rejects(
      (async () => {
        for await (const _ of calc.add(1, 2) as unknown as AsyncIterable<number>) assert.fail();
      })(),
      /calc\.add answered with a value, not a stream/,
    );
  });

  test('a synchronous generator streams as an async one does, and a caller that stops early runs its finally', async () => {
    // It was answered as a value: "the result is an instance of Object", typed Promise<Generator>.
    const items: number[] = [];
    for await (const i of calc.ticksSync(25)) items.push(i);
    assert.deepStrictEqual(
      items,
      Array.from({ length: 25 }, (_, i) => i),
    );
    let n = 0;
    for await (const _ of calc.ticksSync(100_000, 'sync-break')) if (++n === 3) break;
    const end = await event(
      (e) => e.event === 'ticks-sync-end' && e.tag === 'sync-break',
      10_000,
      'stream end',
    );
    assert.equal(end.aborted, true, "the handler's ctx.signal aborted");
    assert.ok((end.produced as number) < 100_000, `produced ${end.produced}: stopped, not run to the end`);
  });

  /**
   * Waits (bounded) until a stream mailbox made since `before` (this process's, anonymous) is
   * full and a sender waits for room in it: the server has run as far ahead as it may.
   */
  async function streamFull(before: Set<number>, capacity: number): Promise<void> {
    await until(
      () => proc.mailboxes(),
      (all) =>
        all.some(
          (m) =>
            !before.has(m.id) &&
            m.owner === proc.id &&
            m.capacity === capacity &&
            m.count === capacity &&
            m.waitingSenders.length > 0,
        ),
      10_000,
      `a stream mailbox of ${capacity} full, its server waiting for room`,
    );
  }

  test('a streaming call cancelled midway: the server sees it, having run only about capacity ahead', async () => {
    const consumed: number[] = [];
    const earlier = new Set((await proc.mailboxes()).map((m) => m.id));
    for await (const i of calc.ticks(100_000, undefined, 'cancel-16')) {
      consumed.push(i);
      if (consumed.length === 5) {
        // The server has filled the stream's mailbox and blocks (a sleep here was not always
        // long enough on a loaded machine: it had produced 13 of the 21).
        await streamFull(earlier, STREAM_CAPACITY);
        break;
      }
    }
    const end = await event((e) => e.event === 'ticks-end' && e.tag === 'cancel-16', 10_000, 'stream end');
    assert.equal(end.aborted, true, 'the handler’s ctx.signal aborted');
    const produced = end.produced as number;
    assert.ok(
      produced >= 5 + STREAM_CAPACITY && produced <= 5 + STREAM_CAPACITY + 3,
      `produced ${produced}: the ${consumed.length} consumed, a mailbox of ${STREAM_CAPACITY}, and a few`,
    );
    // A smaller capacity holds the server closer.
    let n = 0;
    const earlierSmall = new Set((await proc.mailboxes()).map((m) => m.id));
    for await (const _ of calc.$with({ streamCapacity: 2 }).ticks(100_000, undefined, 'cancel-2')) {
      if (++n === 3) {
        await streamFull(earlierSmall, 2);
        break;
      }
    }
    const small = await event((e) => e.event === 'ticks-end' && e.tag === 'cancel-2', 10_000, 'stream end');
    assert.equal(small.aborted, true);
    assert.ok((small.produced as number) <= 3 + 2 + 3, `produced ${small.produced}`);
  });

  test('a stream past its deadline does not end as if complete: the caller times out, and no END is sent', async () => {
    // The handler ends cleanly once its deadline aborts ctx.signal; the server sent END then, so
    // a caller whose own timer had not yet fired took the stream for complete (and empty).
    await assert.rejects(
      within(
        (async () => {
          for await (const _ of calc.$with({ timeout: 200 }).untilAborted('deadline-stub'))
            assert.fail('no items');
        })(),
        10_000,
        'the stream',
      ),
      code('ETIMEDOUT'),
    );
    await event((e) => e.event === 'until-aborted-end' && e.tag === 'deadline-stub', 10_000, 'its end');
    // By hand, with a deadline but no timer of a caller's own: what the server sends is all there is.
    const service = await proc.openMailbox('rpc:calc');
    const replies = await proc.createMailbox(null, { mode: 0o622 });
    const deadline = Date.now() + proc.kernelClockOffset + 2000;
    await service.send([1, 'untilAborted', ['deadline-raw'], replies.id, deadline], { codec: 'msgpack' });
    const offer = (await replies.receive({ timeout: 10_000 }))!;
    assert.deepEqual(offer.body, [1, 2], 'a stream is offered');
    const items = await proc.createMailbox(null, { capacity: 4, mode: 0o622 });
    const control = await proc.openMailbox(`rpc:ctl:${offer.sender}`);
    await control.send({ id: 1, to: items.id }, { codec: 'msgpack', type: 2 });
    const end = await event(
      (e) => e.event === 'until-aborted-end' && e.tag === 'deadline-raw',
      10_000,
      'the handler ended by its deadline',
    );
    assert.match(String(end.why), /passed its deadline/);
    // A call the server answers after that: its connection sends in order, so an END would be in.
    assert.equal(await calc.add(1, 1), 2);
    assert.equal(await items.receive({ nowait: true }), null, 'no END past the deadline');
    await Promise.all([items.delete(), replies.delete()]);
    service.close();
    control.close();
  });

  test('a call that reaches the server past its deadline is not run: its caller has given up', async () => {
    // By hand, as a caller whose timer fired while its call waited in the service's queue: the
    // server must not spend a handler on it, nor answer into a reply mailbox nobody reads.
    const service = await proc.openMailbox('rpc:calc');
    const replies = await proc.createMailbox(null, { mode: 0o622 });
    const past = Date.now() + proc.kernelClockOffset - 1000;
    await service.send([7, 'add', [2, 3], replies.id, past], { codec: 'msgpack' });
    // The server takes its calls in order, and its connection sends in order: once this one is
    // answered, an answer to the first would be in.
    assert.equal(await calc.add(1, 1), 2);
    assert.equal(await replies.receive({ nowait: true }), null, 'no answer to a call past its deadline');
    // The same call with time left is answered: what kept the first out was its deadline.
    await service.send([8, 'add', [2, 3], replies.id, past + 60_000], { codec: 'msgpack' });
    const answer = (await replies.receive({ timeout: 10_000 }))!;
    assert.ok(JSON.stringify(answer.body).includes('5'), `answered: ${JSON.stringify(answer.body)}`);
    await replies.delete();
    service.close();
  });

  test('a server closing with abort ends its streams with why, and none of their callers waits for ever', async () => {
    const serverProc = await connect({ socket: kernel.socket });
    const aborted = (signal: AbortSignal): Promise<void> =>
      new Promise((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    let entered = (): void => {};
    const lateEntered = new Promise<void>((resolve) => (entered = resolve));
    let release = (): void => {};
    const lateGate = new Promise<void>((resolve) => (release = resolve));
    const server = await serve(serverProc, 'closing', {
      /** Ends cleanly when told to stop: the stream was cut short, not complete. */
      async *quits(ctx?: CallContext): AsyncGenerator<number> {
        yield 0;
        await aborted(ctx!.signal);
      },
      /** Throws its signal's reason when told to stop. */
      async *throws(ctx?: CallContext): AsyncGenerator<number> {
        yield 0;
        await aborted(ctx!.signal);
        throw ctx!.signal.reason;
      },
      /** Runs ahead until its send waits for room in the caller's full mailbox. */
      async *runsAhead(): AsyncGenerator<number> {
        for (let i = 0; ; i++) yield i;
      },
      /** Answers with a stream only after the server was told to close. */
      async late(): Promise<AsyncGenerator<number>> {
        entered();
        await lateGate;
        return (async function* () {
          yield 0;
        })();
      },
    });
    try {
      type Closing = {
        quits(): AsyncIterable<number>;
        throws(): AsyncIterable<number>;
        runsAhead(): AsyncIterable<number>;
        late(): Promise<AsyncIterable<number>>;
      };
      const s = stub<Closing>(proc, 'closing');
      const earlier = new Set((await proc.mailboxes()).map((m) => m.id));
      const quits = s.quits();
      const throws = s.throws();
      const runsAhead = s.runsAhead();
      // Its call fails before anyone iterates it: its failure is taken now (no unhandled rejection).
      const late = Promise.resolve(s.late()).then(
        () => assert.fail('late should fail'),
        (e: unknown) => e,
      );
      assert.deepEqual(await quits.next(), { value: 0, done: false });
      assert.deepEqual(await throws.next(), { value: 0, done: false });
      assert.deepEqual(await runsAhead.next(), { value: 0, done: false });
      await streamFull(earlier, STREAM_CAPACITY);
      await within(lateEntered, 10_000, 'the late handler');
      // And one whose START is still to come when the server closes (the caller's side by hand).
      const service = await proc.openMailbox('rpc:closing');
      const replies = await proc.createMailbox(null, { mode: 0o622 });
      await service.send([1, 'quits', [], replies.id], { codec: 'msgpack' });
      const offer = (await replies.receive({ timeout: 10_000 }))!;
      assert.deepEqual(offer.body, [1, 2]);
      const closed = server.close({ abort: true });
      release();
      const items = await proc.createMailbox(null, { capacity: 4, mode: 0o622 });
      const control = await proc.openMailbox(`rpc:ctl:${offer.sender}`);
      await control.send({ id: 1, to: items.id }, { codec: 'msgpack', type: 2 });
      const isClosing = (e: unknown): boolean =>
        e instanceof RemoteError &&
        e.remoteCode === 'ECANCELED' &&
        /the server of 'closing' is closing/.test(e.message);
      for (const [what, it] of [
        ['a stream that ends when told', quits],
        ['a stream that throws when told', throws],
        ['a stream waiting for room', runsAhead],
      ] as const) {
        await assert.rejects(
          within(
            (async () => {
              for await (const _ of it);
            })(),
            10_000,
            what,
          ),
          isClosing,
          what,
        );
      }
      assert.ok(isClosing(await within(late, 10_000, 'a stream offered after the close')));
      let last: unknown = null;
      for (let i = 0; i < 5 && last === null; i++) {
        const m = await items.receive({ timeout: 10_000 });
        if (m?.type === 3) last = m.body;
      }
      assert.match(String((last as { message?: string } | null)?.message), /is closing/, 'an ERROR, not END');
      await within(closed, 10_000, 'close()');
      await Promise.all([items.delete(), replies.delete()]);
      service.close();
      control.close();
    } finally {
      await serverProc.close();
    }
  });

  test('a stream whose server is killed: the items it sent, then an error naming it', async () => {
    const { child, id } = await startServer('streamer');
    const streamer = stub<Calc>(proc, 'streamer');
    const got: number[] = [];
    const earlier = new Set((await proc.mailboxes()).map((m) => m.id));
    const err = await within(
      (async () => {
        try {
          for await (const i of streamer.ticks(1_000_000)) {
            got.push(i);
            if (got.length === 3) {
              // Killed once it has filled the stream's mailbox (100 ms were not always enough
              // under load), and the rest read once the kernel has ended it.
              await streamFull(earlier, STREAM_CAPACITY);
              child.kill('SIGKILL');
              await until(
                () => proc.processes(),
                (ps) => !ps.some((p) => p.id === id),
                10_000,
                'the killed server ended',
              );
            }
          }
        } catch (e) {
          return e;
        }
        return null;
      })(),
      30_000,
      'the broken stream',
    );
    assert.ok(err instanceof ServerDownError, String(err));
    assert.equal(err.server, id);
    assert.deepStrictEqual(
      got,
      Array.from({ length: got.length }, (_, i) => i),
      'no item lost or repeated',
    );
    assert.ok(got.length >= 3 + STREAM_CAPACITY, `the items already sent were read (${got.length})`);
  });

  test('a server with concurrency 2 never runs 3 handlers at once', async () => {
    await startServer('gauge', 2);
    const gauge = stub<Calc>(proc, 'gauge');
    const box = await proc.openMailbox('rpc:gauge');
    await gauge.gauge(0);
    // Each handler runs until released, so the state below lasts until the test has seen it
    // (handlers of 300 ms could end before a loaded machine's polls caught it).
    const release = await proc.createMailbox('gauge-release', { mode: 0o666 });
    const maxima = Promise.all(Array.from({ length: 8 }, () => gauge.gauge(0, 'gauge-release')));
    // The server takes two and is given nothing more while they run: six wait in the service
    // mailbox, for it or any other server. (Its one stream's credit comes back as handlers finish.)
    const st = await until(
      () => box.stat(),
      (s) => s.queued === 6 && s.inflight === 0,
      10_000,
      'two requests running, six queued behind the busy server',
    );
    box.close();
    // One stream, its credit held by the two handlers, not a receive per request: it waits for
    // nothing, and ps shows the two in hand.
    assert.deepEqual(st.waitingReceivers, []);
    assert.ok((await proc.processes()).some((p) => p.holds.includes("mailbox 'rpc:gauge': 2 in hand")));
    for (let i = 0; i < 8; i++) await release.send(i);
    const seenMax = await within(maxima, 10_000, 'gauge calls');
    assert.ok(Math.max(...seenMax) === 2, `max running ${Math.max(...seenMax)}`);
    assert.equal((await gauge.stats()).maxRunning, 2);
    await release.delete();
  });

  test('examples/rpc-client.mjs runs against its server', async () => {
    const child = spawn(process.execPath, ['rpc-client.mjs'], {
      cwd: EXAMPLES,
      env: kernel.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const exit = await within(
      new Promise<number | null>((resolve) => child.once('close', resolve)),
      30_000,
      'the example',
    );
    assert.equal(exit, 0, `stdout:\n${out}\nstderr:\n${err}`);
    assert.match(out, /add\(2, 3\) = 5/);
    assert.match(out, /divide\(1, 0\) failed remotely: RangeError: division by zero/);
    assert.match(out, /countdown: 3 2 1 liftoff/);
    assert.match(out, /slow\(\) timed out: ETIMEDOUT/);
  });
});

describe('RPC without the kernel', () => {
  test("a server that loses its kernel aborts its handlers' signals, and its closed resolves", {
    timeout: 30_000,
  }, async () => {
    const kernel = await startTestKernel();
    try {
      const server = await connect({ socket: kernel.socket });
      const caller = await connect({ socket: kernel.socket });
      let entered: () => void = () => {};
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      let aborted: unknown = null;
      const svc = await serve(server, 'waits-for-signal', {
        // Waits for its signal only: before, it waited for ever once the kernel was gone.
        wait: (ctx: { signal: AbortSignal }) =>
          new Promise<string>((resolve) => {
            entered();
            ctx.signal.addEventListener('abort', () => {
              aborted = ctx.signal.reason;
              resolve('stopped');
            });
          }),
      });
      const pending = call(caller, 'waits-for-signal', 'wait').catch((e: PostboxError) => e.code);
      await inHandler;
      assert.equal(await kernel.stop(), 0);
      const stopped = await Promise.race([
        svc.closed,
        new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000).unref()),
      ]);
      assert.notEqual(stopped, 'still running', 'closed resolves once the handler stops');
      assert.ok(aborted instanceof PostboxError && aborted.code === 'ECANCELED', String(aborted));
      assert.notEqual(await pending, undefined);
    } finally {
      await kernel.stop();
    }
  });
});

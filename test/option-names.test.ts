/**
 * A misspelt option is refused with EINVAL, naming the nearest real one, instead of being
 * ignored: `receive({ wait: false })` would otherwise wait, `createMailbox('m', { capcity: 5 })`
 * make an unbounded mailbox. Checked on its own, then through a real kernel: the call fails and
 * nothing happens (no message sent, no mailbox made, nothing received).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConnectionRefusedError,
  connect,
  InvalidArgumentError,
  type IterateOptions,
  PostboxError,
} from '../src/client/mod.js';
import { unknownOption } from '../src/client/option-names.js';
import { dial, listen } from '../src/faces/connection.js';
import { mkfifo, openFifo, unlinkFifo } from '../src/faces/fifo.js';
import { spawn } from '../src/faces/pipe.js';
import { serviceMailbox } from '../src/faces/rpc/wire.js';
import { serve, stub } from '../src/faces/rpc.js';
import { kernelForTests } from './helpers/kernel.js';

const NAMES = { nowait: true, timeout: true, maxSize: true, type: true } as const;

function refusal(err: unknown, option: string, near: string | null): true {
  assert.ok(err instanceof InvalidArgumentError, `EINVAL, not ${String(err)}`);
  assert.equal((err as PostboxError).code, 'EINVAL');
  assert.match(err.message, new RegExp(`no option '${option}'`));
  if (near === null) assert.doesNotMatch(err.message, /did you mean/);
  else assert.match(err.message, new RegExp(`did you mean '${near}'`));
  return true;
}

test('known names pass; an unknown one is named, with the nearest known one', () => {
  assert.equal(unknownOption(undefined, NAMES, 'f()'), null);
  assert.equal(unknownOption({}, NAMES, 'f()'), null);
  assert.equal(unknownOption({ nowait: true, timeout: 5 }, NAMES, 'f()'), null);
  refusal(unknownOption({ wait: false }, NAMES, 'f()'), 'wait', 'nowait');
  refusal(unknownOption({ timeuot: 5 }, NAMES, 'f()'), 'timeuot', 'timeout');
  refusal(unknownOption({ maxsize: 5 }, NAMES, 'f()'), 'maxsize', 'maxSize');
  refusal(unknownOption({ colour: 'red' }, NAMES, 'f()'), 'colour', null);
  // Short names are not "contained" in every long one.
  refusal(unknownOption({ x: 1 }, NAMES, 'f()'), 'x', null);
  // An inherited name is not an option: only the object's own keys count, and "toString" is
  // not known because Object.prototype has it.
  assert.equal(unknownOption(Object.create({ colour: 'red' }), NAMES, 'f()'), null);
  refusal(unknownOption({ toString: 1 }, NAMES, 'f()'), 'toString', null);
});

test('options that are not an object are refused', () => {
  for (const bad of ['nowait', 5, null, [1], true]) {
    const err = unknownOption(bad, NAMES, 'f()');
    assert.ok(err instanceof InvalidArgumentError, String(bad));
    assert.match(err.message, /f\(\) takes an options object/);
  }
});

test('connect() refuses a misspelt option before connecting', async () => {
  await assert.rejects(connect({ sockt: '/nonexistent/k.sock' } as never), (e) =>
    refusal(e, 'sockt', 'socket'),
  );
});

test('connect() refuses a url it cannot use, an inbox capacity that is not one, an empty name and a signal that is not one, before connecting', async () => {
  for (const options of [
    { url: 'tcp://127.0.0.1' },
    { url: 'http://127.0.0.1:47123' },
    { socket: '/nonexistent/k.sock', inboxCapacity: Number.NaN },
    { socket: '/nonexistent/k.sock', inboxCapacity: -1 },
    { socket: '/nonexistent/k.sock', name: '' },
    { socket: '/nonexistent/k.sock', signal: 5 as never },
  ]) {
    await assert.rejects(connect(options), (e) => e instanceof InvalidArgumentError, JSON.stringify(options));
  }
});

test('connect() refuses an empty Unix socket path, and names $POSTBOX_URL when a bad address came from it', async () => {
  // An empty path went on to the OS and came back as "no kernel is answering at  (ECONNREFUSED).
  // Start one with `npx postbox kernel --socket `", naming nothing.
  for (const options of [{ url: 'unix:' }, { socket: '' }]) {
    await assert.rejects(
      connect(options),
      (e) => e instanceof InvalidArgumentError && /needs a path, not an empty string/.test(e.message),
      JSON.stringify(options),
    );
  }
  // Set in a shell profile, $POSTBOX_URL is not in the program: say it is where the address came from.
  const saved = process.env.POSTBOX_URL;
  try {
    for (const url of ['/tmp/k.sock', 'tcp://127.0.0.1', 'unix:']) {
      process.env.POSTBOX_URL = url;
      await assert.rejects(
        connect(),
        (e) => e instanceof InvalidArgumentError && e.message.includes('$POSTBOX_URL'),
        url,
      );
    }
  } finally {
    if (saved === undefined) delete process.env.POSTBOX_URL;
    else process.env.POSTBOX_URL = saved;
  }
});

test('connect() refuses port 0, which only a listener can use, before connecting', async () => {
  // It went on to dial port 0 and came back as "no kernel is answering at tcp://127.0.0.1:0".
  await assert.rejects(
    connect({ url: 'tcp://127.0.0.1:0' }),
    (e) => e instanceof InvalidArgumentError && /port 0 .* is for a kernel's --listen/.test(e.message),
  );
});

test('connect() to a host no resolver knows says so, not that no kernel answers there', {
  // A resolver that cannot reach its DNS server answers EAI_AGAIN only after its own retries.
  timeout: 60_000,
}, async () => {
  await assert.rejects(
    connect({ url: 'tcp://no-such-host.invalid:7420' }),
    (e) =>
      e instanceof ConnectionRefusedError &&
      /no host named 'no-such-host\.invalid' was found \((ENOTFOUND|EAI_AGAIN)\)/.test(e.message),
  );
});

describe('through a kernel', () => {
  const { join } = kernelForTests();

  test('createMailbox and openMailbox: refused, and no mailbox is made', async () => {
    const p = await join();
    await assert.rejects(p.createMailbox('opt-a', { capcity: 5 } as never), (e) =>
      refusal(e, 'capcity', 'capacity'),
    );
    await assert.rejects(p.openMailbox('opt-a', { creat: true } as never), (e) =>
      refusal(e, 'creat', 'create'),
    );
    await assert.rejects(p.openMailbox('opt-a', { create: { mod: 0o600 } } as never), (e) =>
      refusal(e, 'mod', 'mode'),
    );
    assert.equal((await p.mailboxes()).filter((m) => m.name === 'opt-a').length, 0);
    const box = await p.createMailbox('opt-a', { capacity: 5 });
    assert.equal((await box.stat()).capacity, 5, 'spelt right, it is taken');
  });

  test('send and sendMany: refused, and nothing is sent; a plain send is unaffected', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('opt-b');
    await assert.rejects(box.send('x', { priorty: 3 } as never), (e) => refusal(e, 'priorty', 'priority'));
    await assert.rejects(box.sendMany(['x', 'y'], { tiemout: 3 } as never), (e) =>
      refusal(e, 'tiemout', 'timeout'),
    );
    await assert.rejects(p.send(p.id, 'x', { recipt: true } as never), (e) =>
      refusal(e, 'recipt', 'receipt'),
    );
    assert.equal((await box.stat()).count, 0, 'nothing reached the mailbox');
    await box.send('ok');
    await box.send('typed', { type: 2, priority: 1 });
    assert.equal((await box.stat()).count, 2);
  });

  test("a body its codec cannot take is EINVAL, with the codec's own error as its cause", async () => {
    // The cause was dropped: only its message survived, copied into EINVAL's.
    const p = await join();
    const box = await p.createMailbox('opt-body');
    const cases: [() => Promise<unknown>, RegExp][] = [
      [() => box.send(() => 1), /a function is not a message body/],
      [() => box.send(5, { codec: 'string' }), /codec 'string' needs a string body/],
    ];
    for (const [send, why] of cases)
      await assert.rejects(send(), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e));
        assert.match(e.message, /^cannot encode the body: /);
        assert.ok(e.cause instanceof TypeError, `cause: ${String(e.cause)}`);
        assert.match(e.cause.message, why);
        return true;
      });
    // In a batch, the message's number is added, the same cause under it.
    await assert.rejects(box.sendMany(['ok', () => 1]), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.match(e.message, /^message 1: cannot encode the body: /);
      assert.ok(
        e.cause instanceof InvalidArgumentError && e.cause.cause instanceof TypeError,
        String(e.cause),
      );
      return true;
    });
    // Headers JSON cannot hold (a bigint) likewise keep JSON's error.
    await assert.rejects(box.send('x', { headers: { n: 1n } as never }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.ok(e.cause instanceof TypeError, `cause: ${String(e.cause)}`);
      return true;
    });
    assert.equal((await box.stat()).count, 0);
  });

  test('receive, messages and batches: refused, and nothing is taken', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('opt-c');
    await box.send('kept');
    await assert.rejects(box.receive({ wait: false } as never), (e) => refusal(e, 'wait', 'nowait'));
    await assert.rejects(p.receive({ nowiat: true } as never), (e) => refusal(e, 'nowiat', 'nowait'));
    assert.throws(
      () => box.messages({ prefech: 10 } as never),
      (e) => refusal(e, 'prefech', 'prefetch'),
    );
    assert.throws(
      () => box.batches({ maxx: 10 } as never),
      (e) => refusal(e, 'maxx', 'max'),
    );
    assert.throws(
      () => box.messages({ nowait: true } as never),
      (e) => refusal(e, 'nowait', null),
      'an iterator takes no nowait',
    );
    assert.throws(
      () => p.messages({ prefetch: 1, holdcredit: true } as never),
      (e) => refusal(e, 'holdcredit', 'holdCredit'),
    );
    assert.equal((await box.stat()).count, 1, 'the message is still there');
    const m = await box.receive({ nowait: true });
    assert.equal(m?.body, 'kept');
  });

  test('an iterator over a priority mailbox (one at a time) takes its options as any other', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('opt-d', { order: 'priority' });
    await box.send('a', { priority: 1 });
    for await (const m of box.messages({ prefetch: 8, holdCredit: false })) {
      assert.equal(m.body, 'a');
      break;
    }
  });

  test('the faces and the rest of the client refuse misspellings too, and nothing is done', async () => {
    const p = await join();
    const box = await p.createMailbox<string>('opt-e', { capacity: 5, mode: 0o666 });
    await assert.rejects(box.setLimits({ capcity: 1 } as never), (e) => refusal(e, 'capcity', 'capacity'));
    assert.equal((await box.stat()).capacity, 5, 'the limit is unchanged');
    await assert.rejects(p.monitor(p.id, { timeout: 10 } as never), (e) => refusal(e, 'timeout', null));
    await assert.rejects(serve(p, 'opt-svc', { f() {} }, { concurency: 4 } as never), (e) =>
      refusal(e, 'concurency', 'concurrency'),
    );
    assert.throws(
      () => stub(p, 'opt-svc', { timout: 5 } as never),
      (e) => refusal(e, 'timout', 'timeout'),
    );
    assert.throws(
      () => stub<{ f(): void }>(p, 'opt-svc').$with({ timout: 5 } as never),
      (e) => refusal(e, 'timout', 'timeout'),
    );
    await assert.rejects(listen(p, 'opt-port', { backlg: 1 } as never), (e) =>
      refusal(e, 'backlg', 'backlog'),
    );
    await assert.rejects(dial(p, 'opt-port', { timout: 100 } as never), (e) =>
      refusal(e, 'timout', 'timeout'),
    );
    const port = await listen(p, 'opt-port');
    await assert.rejects(port.accept({ timout: 100 } as never), (e) => refusal(e, 'timout', 'timeout'));
    const accepted = port.accept();
    const conn = await dial(p, 'opt-port');
    const server = await accepted;
    await assert.rejects(conn.send('x', { priority: 3 } as never), (e) => refusal(e, 'priority', null));
    await assert.rejects(server.receive({ timout: 5 } as never), (e) => refusal(e, 'timout', 'timeout'));
    await conn.send('y');
    assert.equal((await server.receive())?.text(), 'y', 'the refused send sent nothing');
    await conn.close();
    await server.close();
    await port.close();
    // The pipe faces: { handover: true } went unseen, and the child got a plain pipe.
    await mkfifo(p, 'opt-fifo');
    await assert.rejects(openFifo(p, 'opt-fifo', 'r', { signl: undefined } as never), (e) =>
      refusal(e, 'signl', 'signal'),
    );
    await unlinkFifo(p, 'opt-fifo');
    await assert.rejects(spawn(p, process.execPath, ['-e', ''], 'r', { handover: true } as never), (e) =>
      refusal(e, 'handover', 'handOver'),
    );
    assert.deepEqual(
      (await p.mailboxes()).filter((m) => m.name === serviceMailbox('opt-svc')),
      [],
      'no service mailbox was made by the refused serve()',
    );
  });

  test('values that are not what an option takes: EINVAL at once, and nothing is sent or taken', async () => {
    const p = await join();
    const other = await join();
    const box = await p.createMailbox<string>('opt-f', { mode: 0o666 });
    await (await other.openMailbox(box.id)).send('from the other');
    const einval = (e: unknown): true => {
      assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
      return true;
    };
    // A name on a mailbox was written as "from anyone" and took another sender's message.
    await assert.rejects(box.receive({ from: 'someone' } as never), einval);
    await assert.rejects(box.receive({ from: -1, nowait: true }), einval);
    await assert.rejects(box.receive({ from: 1.5, nowait: true }), einval);
    // 0 is "from anyone" on the wire: as an option it would take the other sender's message.
    await assert.rejects(box.receive({ from: 0, nowait: true }), einval);
    assert.throws(() => box.messages({ from: 'someone' } as never), einval);
    assert.throws(() => p.messages({ from: 'someone' } as never), einval);
    await assert.rejects(box.receive({ signal: 5 } as never), einval);
    await assert.rejects(box.send('x', { signal: {} } as never), einval);
    assert.throws(() => box.messages({ signal: 'x' } as never), einval);
    await assert.rejects(p.monitor(other.id, { signal: 5 } as never), einval);
    // RPC threw a TypeError with no code, and the process later died of another in close().
    await assert.rejects(
      stub<{ ping(): string }>(p, 'nobody-here')
        .$with({ signal: {} } as never)
        .ping(),
      /ping\(\): signal must be an AbortSignal/,
    );
    await assert.rejects(
      dial(p, 'nobody-here', { signal: 'x' } as never),
      /dial\(\): signal must be an AbortSignal/,
    );
    await assert.rejects(box.send((() => 1) as never), einval, 'a function is not a body');
    // Inside a body they were changed on the way, silently: the function left out, the
    // Promise and WeakMap sent as {}.
    await assert.rejects(box.send({ f() {} } as never), /the body\.f is a function/);
    await assert.rejects(box.send([1, Promise.resolve(2)] as never), /the body\[1\] is a Promise/);
    await assert.rejects(box.send(new WeakMap() as never), /an instance of WeakMap/);
    await assert.rejects(
      box.send({ s: Symbol('s') } as never, { codec: 'msgpack' }),
      /the body\.s is a symbol/,
    );
    // except and truncate qualify type and maxSize; alone they were ignored (except: true took
    // the first message of any type). 'yes' and 1 were read as false.
    await assert.rejects(box.receive({ except: true, nowait: true }), /except needs a positive type/);
    await assert.rejects(box.receive({ except: true, type: -3, nowait: true }), einval);
    await assert.rejects(box.receive({ truncate: true, nowait: true }), /truncate needs maxSize/);
    await assert.rejects(box.receive({ nowait: 1 } as never), /nowait must be true or false, not 1/);
    await assert.rejects(box.receive({ except: 'yes', type: 2 } as never), einval);
    // A misspelt onFull went out as no code at all, read by the kernel as 'wait'.
    await assert.rejects(box.send('x', { onFull: 'dorp' } as never), /onFull must be wait, fail/);
    await assert.rejects(box.send('x', { onFull: 'toString' } as never), /onFull must be wait, fail/);
    // The head carries the headers' length in 16 bits: one byte more would be written as 0.
    const headers = (n: number): Record<string, string> => ({ h: 'x'.repeat(n - '{"h":""}'.length) });
    await assert.rejects(box.send('x', { headers: headers(65_536) }), /user headers are over 65535 bytes/);
    await assert.rejects(box.sendMany(['x'], { headers: headers(65_536) }), einval);
    // A time limit is a whole number of ms, 0 to 2^32 - 1 (the wire's u32), for sends as for
    // receives.
    for (const timeout of [1.5, -1, 2 ** 32, Number.NaN]) {
      await assert.rejects(box.receive({ timeout }), einval, `receive, timeout ${timeout}`);
      await assert.rejects(box.send('x', { timeout }), einval, `send, timeout ${timeout}`);
    }
    assert.throws(() => box.messages({ except: true }), einval);
    assert.throws(() => box.batches({ truncate: true }), einval);
    // Names that would drive the terminal of whoever runs `postbox ls` or `ps`, or read as an id.
    await assert.rejects(p.createMailbox('evil\u001b[2J'), /cannot hold control characters/);
    await assert.rejects(p.createMailbox('two\nlines'), einval);
    await assert.rejects(p.createMailbox('c1\u009bm'), einval);
    // A line separator breaks a line as \n does; a bidirectional override shows what follows it
    // backwards, so a name could pass for another in a listing.
    await assert.rejects(
      p.createMailbox('two\u2028lines'),
      /cannot hold control characters: "two\\u2028lines"/,
    );
    await assert.rejects(
      p.createMailbox('gpj.\u202eexe'),
      /cannot hold control characters: "gpj.\\u202eexe"/,
    );
    await assert.rejects(p.createMailbox('isolate\u2066d'), einval);
    await assert.rejects(join({ name: 'rlo\u202e' }), /control characters/);
    assert.ok(
      await p.createMailbox('zero\u200bwidth, joined 👩\u200d💻'),
      'zero-width characters are not controls',
    );
    await assert.rejects(p.createMailbox('#5'), /cannot start with '#'/);
    await assert.rejects(join({ name: 'bell\u0007' }), /control characters/);
    await assert.rejects(join({ name: '#7' }), /a process name cannot start with '#'/);
    assert.ok(await p.createMailbox('tab-free é ü 名前 #ok'), 'other characters are fine');
    // A second mailbox with a key already taken hid the first from msgget for good.
    const keyed = await p.createMailbox('keyed-1', { key: 0x7777 });
    await assert.rejects(p.createMailbox('keyed-2', { key: 0x7777 }), (e: PostboxError) => {
      assert.equal(e.code, 'EEXIST');
      assert.match(e.message, /key 0x00007777 is taken by mailbox 'keyed-1'/);
      return true;
    });
    await keyed.delete();
    // A structured body cut short by truncate threw a plain Error with no code.
    await box.send({ long: 'x'.repeat(100) } as never, { codec: 'msgpack' });
    const cut = await box.receive({ maxSize: 10, truncate: true, from: p.id });
    assert.equal(cut?.size, 10);
    assert.throws(
      () => cut?.body,
      (e: PostboxError) => e.code === 'EPROTO' && /not valid msgpack/.test(e.message),
    );
    // An iterator given an aborted signal took every queued message, then waited for ever.
    const aborted = AbortSignal.abort();
    const before = await box.stat();
    for await (const _ of box.messages({ signal: aborted })) assert.fail('nothing is yielded');
    for await (const _ of box.batches({ signal: aborted })) assert.fail('nothing is yielded');
    for await (const _ of p.messages({ signal: aborted })) assert.fail('nothing is yielded');
    assert.equal((await box.stat()).count, before.count, 'nothing was taken');
    // Names: refused before connecting, with the code the docs give (a bad HELLO was EPROTO).
    await assert.rejects(join({ name: 'n'.repeat(300) }), (e: PostboxError) => e.code === 'ENAMETOOLONG');
    await assert.rejects(join({ name: '777' }), (e: PostboxError) => e.code === 'EINVAL');
    await assert.rejects(connect({ socket: 5 } as never), (e: PostboxError) => e.code === 'EINVAL');
    await assert.rejects(p.createMailbox('m'.repeat(1025)), (e: PostboxError) => e.code === 'ENAMETOOLONG');
    // Iterators checked nothing: a type of 'abc' was written as 0 (any type), a negative maxSize
    // threw a RangeError from deep in the frame writer.
    assert.throws(
      () => box.messages({ type: 'abc' } as never),
      /type must be an integer, not the string 'abc'/,
    );
    assert.throws(() => box.messages({ maxSize: -1 }), einval);
    assert.throws(() => p.messages({ type: 1.5 }), einval);
    // A prefetch past the wire's 32 bits threw a RangeError from deep in the frame writer.
    assert.throws(() => box.messages({ prefetch: 2 ** 32 }), /prefetch 4294967296 is over 4294967295/);
    assert.throws(() => p.batches({ prefetch: 2 ** 32 }), einval);
    assert.throws(() => box.consume(() => {}, { prefetch: 2 ** 32 }), einval);
    // NaN went as JSON null, read as unbounded; 1 and 'yes' were read as false.
    await assert.rejects(p.createMailbox('opt-g', { capacity: Number.NaN }), einval);
    await assert.rejects(p.createMailbox('opt-g', { system: 1 } as never), einval);
    await assert.rejects(p.createMailbox('opt-g', { transient: 'yes' } as never), einval);
    assert.deepEqual(
      (await p.mailboxes()).filter((m) => m.name === 'opt-g'),
      [],
      'no mailbox was made',
    );
    assert.equal((await box.stat()).count, 1, 'nothing was sent, nothing taken');
    assert.equal((await box.receive({ from: other.id, nowait: true }))?.body, 'from the other');
  });

  test('mailbox references and values JSON cannot carry: EINVAL, not a TypeError or a quiet default', async () => {
    const p = await join();
    const einval =
      (pattern: RegExp) =>
      (e: unknown): true => {
        assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
        assert.match(e.message, pattern);
        return true;
      };
    const before = (await p.mailboxes()).length;
    // A bigint threw JSON's TypeError; a symbol or function was left out, as if not given.
    await assert.rejects(
      p.createMailbox(null, { capacity: 10n } as never),
      einval(/capacity .* not the bigint 10n/),
    );
    await assert.rejects(p.createMailbox(null, { maxBytes: 10n } as never), einval(/maxBytes/));
    // Infinity went as JSON null: "maxMessageSize must be a positive whole number, not null".
    // Where a limit has no limit, it still means that.
    await assert.rejects(
      p.createMailbox(null, { maxMessageSize: Number.POSITIVE_INFINITY }),
      einval(/^maxMessageSize must be a finite number, not Infinity$/),
    );
    await assert.rejects(
      p.createMailbox(null, { capacity: Number.NEGATIVE_INFINITY }),
      einval(/^capacity must be a finite number, not -Infinity$/),
    );
    const unbounded = await p.createMailbox(null, { capacity: Number.POSITIVE_INFINITY });
    assert.equal(unbounded.info.capacity, null, 'capacity Infinity is unbounded');
    await unbounded.delete();
    await assert.rejects(p.createMailbox(null, { mode: Symbol('m') } as never), einval(/mode .* a symbol/));
    // A symbol for a name made an unnamed mailbox; undefined threw "reading 'key'".
    await assert.rejects(p.createMailbox(Symbol('x') as never), einval(/a mailbox name .* not a symbol/));
    await assert.rejects(
      p.openMailbox(undefined as never),
      einval(/name, an id or \{ key \}, not undefined/),
    );
    await assert.rejects(p.openMailbox(null as never), einval(/not null/));
    // create: 5 made the mailbox.
    await assert.rejects(
      p.openMailbox('opt-h', { create: 5 } as never),
      einval(/create must be true, false/),
    );
    // Ids that cannot be one were "removed" or "no such mailbox" (ENOENT).
    await assert.rejects(p.openMailbox(1.5), einval(/a mailbox id is a positive integer, not 1.5/));
    await assert.rejects(p.openMailbox(-1), einval(/positive integer/));
    // A type given as text read as if it were right: "not 1".
    const box = await p.createMailbox('opt-h2');
    await assert.rejects(box.send('x', { type: '1' } as never), einval(/not the string '1'/));
    assert.equal((await p.mailboxes()).length, before + 1, 'only opt-h2 was made');
    // A closed handle's calls fail as its sends do, instead of acting on the mailbox.
    await box.close();
    const closed = (e: unknown): true => {
      assert.ok(e instanceof PostboxError && e.code === 'ENOTCONN', `ENOTCONN, not ${String(e)}`);
      return true;
    };
    await assert.rejects(box.stat(), closed);
    await assert.rejects(box.delete(), closed);
    await assert.rejects(box.chmod(0o600), closed);
    assert.ok(
      (await p.mailboxes()).some((m) => m.name === 'opt-h2'),
      'the mailbox is still there',
    );
  });

  test('a process or mailbox id that cannot be one is EINVAL in every call that takes one', async () => {
    const p = await join();
    const other = await join();
    const box = await p.createMailbox('opt-ids', { mode: 0o666 });
    const einval = (e: unknown): true => {
      assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
      assert.match(e.message, /(process|mailbox) id is a positive integer, not/);
      return true;
    };
    for (const id of [0, -1, 1.5, 2 ** 32 + other.id]) {
      // lookup, grant, revoke and transfer said ESRCH ("process 1.5 has terminated"), monitor
      // resolved with 'noproc', stat said ENOENT ("mailbox #1.5 was removed"); send and sendTo
      // cut 2^32 + n to n and sent there.
      await assert.rejects(p.lookup(id), einval, `lookup(${id})`);
      await assert.rejects(p.monitor(id), einval, `monitor(${id})`);
      await assert.rejects(box.grant(id), einval, `grant(${id})`);
      await assert.rejects(box.revoke(id), einval, `revoke(${id})`);
      await assert.rejects(box.transfer(id), einval, `transfer(${id})`);
      await assert.rejects(p.send(id, 'x'), einval, `send(${id})`);
      await assert.rejects(p.stat(id), einval, `stat(${id})`);
      await assert.rejects(
        p.sendTo(id === 2 ** 32 + other.id ? 2 ** 32 + box.id : id, 'x'),
        einval,
        `sendTo(${id})`,
      );
      await assert.rejects(p.openMailbox(id), einval, `openMailbox(${id})`);
    }
    await assert.rejects(p.stat(true as never), /stat\(\) takes a mailbox name or id, not true/);
    assert.equal((await box.stat()).count, 0, 'nothing was sent');
    assert.equal(await other.receive({ nowait: true }), null, 'nothing reached the other process');
    assert.equal((await box.stat()).owner, p.id, 'ownership stayed');
  });

  test("a loop's bad sender or option is EINVAL when the loop is made, naming the call, on every kind of loop", async () => {
    const p = await join();
    const fifo = await p.createMailbox('opt-from-fifo');
    const byPriority = await p.createMailbox('opt-from-priority', { order: 'priority' });
    await fifo.send('kept');
    await byPriority.send('kept');
    const named =
      (call: string, shown: RegExp) =>
      (e: unknown): true => {
        assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
        assert.ok(e.message.startsWith(`${call}: from `), e.message);
        assert.match(e.message, shown);
        return true;
      };
    const aName = /not the name 'bob'/;
    const notAnId = /must be a process id/;
    // A loop read one message at a time (priority order, prefetch 0) checked its sender only at
    // its first receive: a consumer's first receive rejected where nobody could catch it, and
    // the program died; the inbox sent the name on to the kernel. A pushed-ahead loop said
    // "messages()" whichever call was made.
    for (const box of [fifo, byPriority]) {
      assert.throws(() => box.consume(() => {}, { from: 'bob' as never }), named('consume()', aName));
      assert.throws(() => box.messages({ from: -1 }), named('messages()', notAnId));
      assert.throws(() => box.batches({ from: 'bob' as never }), named('batches()', aName));
      assert.throws(() => box.messages({ from: 'bob' as never, prefetch: 0 }), named('messages()', aName));
    }
    assert.throws(() => p.consume(() => {}, { from: 'bob' as never }), named('consume()', aName));
    assert.throws(() => p.messages({ from: 'bob' as never, prefetch: 0 }), named('messages()', aName));
    assert.throws(() => p.batches({ from: 1.5 }), named('batches()', notAnId));
    // The rest of a loop's options, likewise: each of these rejected a consumer's first receive.
    const refusedAtOnce =
      (call: string, shown: RegExp) =>
      (e: unknown): true => {
        assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
        assert.ok(e.message.startsWith(`${call}: `), e.message);
        assert.match(e.message, shown);
        return true;
      };
    const badOptions: [IterateOptions, RegExp][] = [
      [{ type: 'x' as never }, /type must be an integer/],
      [{ maxSize: -1 }, /maxSize must be a whole number/],
      [{ prefetch: -1 }, /prefetch must be a whole number/],
      [{ prefetch: 0, holdCredit: 'yes' as never }, /holdCredit must be true or false/],
    ];
    for (const [options, shown] of badOptions) {
      assert.throws(() => byPriority.consume(() => {}, options), refusedAtOnce('consume()', shown));
      assert.throws(() => byPriority.messages(options), refusedAtOnce('messages()', shown));
      assert.throws(() => p.consume(() => {}, options), refusedAtOnce('consume()', shown));
    }
    assert.equal((await fifo.stat()).count, 1, 'nothing was taken');
    assert.equal((await byPriority.stat()).count, 1, 'nothing was taken');
  });

  test('connections take time limits as the rest of the client does: 0 is no limit, a bad one is EINVAL', async () => {
    const p = await join();
    const einval =
      (option: string) =>
      (e: unknown): true => {
        assert.ok(e instanceof InvalidArgumentError, `EINVAL, not ${String(e)}`);
        assert.match(e.message, new RegExp(`${option} must be a whole number of ms`));
        return true;
      };
    // accept() checked nothing: -1 timed out at once, a bigint threw a TypeError, a fraction was
    // blamed on a receive() the caller never made; listen() took any handshakeTimeout.
    const port = await listen(p, 'opt-times');
    await assert.rejects(port.accept({ timeout: -1 }), einval('timeout'));
    await assert.rejects(port.accept({ timeout: 10n } as never), einval('timeout'));
    await assert.rejects(port.accept({ timeout: 1.5 }), /accept\(\): timeout/);
    await assert.rejects(listen(p, 'opt-times-2', { handshakeTimeout: -1 }), einval('handshakeTimeout'));
    await assert.rejects(
      listen(p, 'opt-times-2', { handshakeTimeout: 'x' } as never),
      einval('handshakeTimeout'),
    );
    // Past the kernel's longest timeout, dial() waited for ever.
    await assert.rejects(dial(p, 'opt-times', { timeout: 2 ** 32 }), einval('timeout'));
    // 0 timed out at once, before even trying, where a send's or a receive's 0 is no limit.
    const accepting = port.accept({ timeout: 0 });
    const client = await dial(p, 'opt-times', { timeout: 0 });
    const server = await accepting;
    // A receive's signal that is not one threw a TypeError; a timeout past Node's longest timer
    // timed out after 1 ms; 0 timed out at once.
    await assert.rejects(
      server.receive({ signal: 5 } as never),
      /receive\(\): signal must be an AbortSignal/,
    );
    await assert.rejects(server.receive({ timeout: 2 ** 31 }), einval('timeout'));
    const waiting = server.receive({ timeout: 0 });
    await client.send('late');
    assert.equal((await waiting)?.text(), 'late', 'timeout 0 waited for the message');
    // close() took any options: a misspelt one was ignored, a bad timeout closed at once.
    await assert.rejects(client.close({ timout: 5 } as never), (e) => refusal(e, 'timout', 'timeout'));
    await assert.rejects(client.close({ timeout: -1 }), einval('timeout'));
    await client.close({ timeout: 0 });
    await server.close();
    await port.close();
  });

  test('monitor() aborted while the kernel sets it up: ECANCELED, not a wait forever', async () => {
    const p = await join();
    const other = await join();
    const ac = new AbortController();
    const watching = p.monitor(other.id, { signal: ac.signal });
    ac.abort();
    await assert.rejects(watching, (e: PostboxError) => e.code === 'ECANCELED');
  });

  test('the edges of what the client checks are allowed: the longest name, a capacity-0 inbox, except with type 1', async () => {
    // Each check is made in the client before anything is written; one that refused its own
    // edge would refuse what docs/api.md allows, with no kernel to ask.
    const longest = await join({ name: 'n'.repeat(255) });
    assert.equal(longest.name, 'n'.repeat(255));
    await assert.rejects(join({ name: 'n'.repeat(256) }), (e: PostboxError) => e.code === 'ENAMETOOLONG');
    const rendezvous = await join({ inboxCapacity: 0 });
    // Infinity is the documented unbounded inbox, as leaving it out is.
    const unbounded = await join({ inboxCapacity: Number.POSITIVE_INFINITY });
    assert.equal((await unbounded.stat(unbounded.inbox)).capacity, null);
    await assert.rejects(
      longest.send(rendezvous.id, 'x', { nowait: true }),
      (e: PostboxError) => e.code === 'EAGAIN',
    );
    const box = await longest.createMailbox();
    await box.send('one', { type: 1 });
    await box.send('two', { type: 2 });
    assert.equal((await box.receive({ type: 1, except: true, nowait: true }))?.body, 'two');
    await assert.rejects(
      box.receive({ type: 0, except: true, nowait: true }),
      (e: PostboxError) => e.code === 'EINVAL',
    );
    // User headers of 65535 bytes, the most the head's 16-bit length carries.
    const largest = { h: 'x'.repeat(65_535 - '{"h":""}'.length) };
    const headed = await longest.createMailbox();
    await headed.send('with the largest headers', { headers: largest });
    assert.deepEqual((await headed.receive({ nowait: true }))?.headers, largest);
  });
});

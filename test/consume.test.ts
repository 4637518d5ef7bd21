/**
 * `consume()`: a handler called for each message as the kernel pushes it, against a real kernel
 * process, over the Unix socket and over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Consumer, connect, type Mailbox, type PostboxProcess } from '../src/client/mod.js';
import { startTestKernel, type TestKernel } from './helpers/kernel.js';

/** Resolves once `n` messages went through `handled`, or rejects if `closed` settles first. */
function counted(n: number): { hit(): void; reached: Promise<void> } {
  let seen = 0;
  let resolve: () => void = () => {};
  const reached = new Promise<void>((r) => {
    resolve = r;
  });
  return {
    hit: () => {
      if (++seen === n) resolve();
    },
    reached,
  };
}

for (const transport of ['unix', 'tcp'] as const) {
  describe(`consume() over ${transport}`, { timeout: 60_000 }, () => {
    let kernel: TestKernel;
    let me: PostboxProcess;
    let other: PostboxProcess;
    const join = (): Promise<PostboxProcess> =>
      connect(transport === 'tcp' ? { url: kernel.tcpUrl!, token: kernel.token } : { socket: kernel.socket });

    before(async () => {
      kernel = await startTestKernel({ tcp: transport === 'tcp' });
      me = await join();
      other = await join();
    });
    after(async () => {
      await me.close();
      await other.close();
      assert.equal(await kernel.stop(), 0, 'the kernel exits cleanly on SIGTERM');
    });

    test('the handler gets every message once, in order; stop() gives back what was pushed and not handed out', async () => {
      const box = await me.createMailbox<number>(null, { mode: 0o666 });
      const sender = await other.openMailbox<number>(box.id);
      await sender.sendMany(Array.from({ length: 1000 }, (_, i) => i));
      const got: number[] = [];
      const done = counted(1000);
      const c = box.consume(
        (m) => {
          got.push(m.body);
          done.hit();
        },
        { prefetch: 64 },
      );
      await done.reached;
      assert.deepEqual(
        got,
        Array.from({ length: 1000 }, (_, i) => i),
      );
      // Now a stop with messages pushed ahead: 100 more, of which the handler takes 10.
      await c.stop();
      const later: number[] = [];
      const ten = counted(10);
      let c2: Consumer<number> | null = null;
      c2 = box.consume(
        (m) => {
          later.push(m.body);
          ten.hit();
          if (later.length === 10) void c2!.stop();
        },
        { prefetch: 64 },
      );
      await sender.sendMany(Array.from({ length: 100 }, (_, i) => 1000 + i));
      await c2.closed;
      assert.deepEqual(
        later,
        Array.from({ length: 10 }, (_, i) => 1000 + i),
      );
      const st = await box.stat();
      assert.equal(st.count, 90, 'the 90 not handed out are back in the mailbox');
      assert.equal(st.inflight, 0);
      assert.equal((await box.receive())!.body, 1010, 'and the next receive gets the first of them');
      await box.delete();
    });

    test('a handler that throws stops the consumer: closed rejects with its error, the message is taken, the rest go back', async () => {
      const box = await me.createMailbox<number>(null, { mode: 0o666 });
      await box.sendMany(Array.from({ length: 50 }, (_, i) => i));
      const boom = new Error('cannot handle 7');
      const got: number[] = [];
      const c = box.consume(
        (m) => {
          got.push(m.body);
          if (m.body === 7) throw boom;
        },
        { prefetch: 16 },
      );
      await assert.rejects(c.closed, (err) => err === boom);
      await assert.rejects(c.stop(), (err) => err === boom, 'stop() after the end settles as closed did');
      assert.deepEqual(
        got,
        Array.from({ length: 8 }, (_, i) => i),
        'nothing is handed out after the throw',
      );
      const st = await box.stat();
      assert.equal(
        st.count,
        42,
        'the one that threw counts as taken (as in a for await loop); the others are back',
      );
      assert.equal(st.inflight, 0);
      await box.delete();
    });

    test('holdCredit: at most prefetch async handlers run at once; closed waits for them; a rejection stops it', async () => {
      const box = await me.createMailbox<number>(null, { mode: 0o666 });
      await box.sendMany(Array.from({ length: 40 }, (_, i) => i));
      let running = 0;
      let most = 0;
      const finishers: (() => void)[] = [];
      const got: number[] = [];
      const all = counted(40);
      const c = box.consume(
        async (m) => {
          got.push(m.body);
          running++;
          most = Math.max(most, running);
          await new Promise<void>((resolve) => finishers.push(resolve));
          running--;
          all.hit();
        },
        { prefetch: 4, holdCredit: true },
      );
      // Finish the handlers one at a time, as they come: each finish lets one more in.
      for (let turns = 0; (got.length < 40 || finishers.length > 0) && turns < 100_000; turns++) {
        finishers.shift()?.();
        await new Promise((r) => setImmediate(r));
      }
      await all.reached;
      assert.equal(most, 4, 'never more than prefetch in progress');
      assert.deepEqual(
        got,
        Array.from({ length: 40 }, (_, i) => i),
      );
      await c.stop();
      // Stopping while two are in progress: closed settles only after they finish.
      await box.sendMany([100, 101]);
      const c2 = box.consume(
        async () => {
          await new Promise<void>((resolve) => finishers.push(resolve));
        },
        { prefetch: 4, holdCredit: true },
      );
      for (let turns = 0; finishers.length < 2 && turns < 100_000; turns++)
        await new Promise((r) => setImmediate(r));
      let closed = false;
      const stopping = c2.stop().then(() => {
        closed = true;
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(closed, false, 'stop() waits for the handlers in progress');
      for (const f of finishers.splice(0)) f();
      await stopping;
      // A rejection stops the consumer with that error.
      await box.sendMany([200, 201, 202]);
      const bad = new Error('rejected 201');
      const c3 = box.consume(
        async (m) => {
          if (m.body === 201) throw bad;
        },
        { prefetch: 1, holdCredit: true },
      );
      await assert.rejects(c3.closed, (err) => err === bad);
      assert.equal((await box.stat()).count, 1, '202 is left');
      await box.delete();
    });

    test('handlers in progress that reject one after another: closed rejects with the first error', async () => {
      const box = await me.createMailbox<number>(null, { mode: 0o666 });
      await box.sendMany([0, 1]);
      const rejecters: ((err: Error) => void)[] = [];
      const c = box.consume(
        () =>
          new Promise<void>((_, reject) => {
            rejecters.push(reject);
          }),
        { prefetch: 4, holdCredit: true },
      );
      for (let turns = 0; rejecters.length < 2 && turns < 100_000; turns++)
        await new Promise((r) => setImmediate(r));
      assert.equal(rejecters.length, 2, 'both handlers are in progress');
      const first = new Error('first');
      rejecters[0]!(first);
      await new Promise((r) => setImmediate(r));
      rejecters[1]!(new Error('second'));
      await assert.rejects(c.closed, (err) => err === first, 'a later error does not replace the first');
      await box.delete();
    });

    test("a pipe's last writer closes: closed resolves once the handler has had all it wrote", async () => {
      const name = `consume-pipe-${transport}`;
      const box = await me.createMailbox<string>(name, { mode: 0o666, endOnLastWriter: true, role: 'read' });
      const writer = await other.openMailbox<string>(name, { role: 'write' });
      const got: string[] = [];
      const c = box.consume((m) => {
        got.push(m.body);
      });
      await writer.sendMany(['one', 'two']);
      await writer.close();
      await c.closed;
      assert.deepEqual(got, ['one', 'two']);
      await box.delete();
    });

    test('the mailbox removed under a consumer: closed rejects with EIDRM', async () => {
      const box = await me.createMailbox(null, { mode: 0o666 });
      const c = box.consume(() => {});
      await box.stat();
      const theirs = await other.openMailbox(box.id);
      await theirs.send('one');
      await box.delete();
      await assert.rejects(c.closed, { code: 'EIDRM' });
    });

    test('a signal stops it; one already aborted takes nothing', async () => {
      const box = await me.createMailbox<number>(null, { mode: 0o666 });
      await box.sendMany([1, 2, 3]);
      const got: number[] = [];
      const ac = new AbortController();
      ac.abort();
      await box.consume((m) => got.push(m.body), { signal: ac.signal }).closed;
      assert.equal(got.length, 0);
      assert.equal((await box.stat()).count, 3);
      const live = new AbortController();
      const c = box.consume(
        (m) => {
          got.push(m.body);
          if (m.body === 2) live.abort();
        },
        { signal: live.signal, prefetch: 8 },
      );
      await c.closed;
      assert.deepEqual(got, [1, 2]);
      assert.equal((await box.stat()).count, 1);
      await box.delete();
    });

    test('a priority mailbox is consumed one receive at a time, highest first, and stop() ends a wait', async () => {
      const box = await me.createMailbox<string>(null, { mode: 0o666, order: 'priority' });
      await box.send('low', { priority: 1 });
      await box.send('high', { priority: 9 });
      const got: string[] = [];
      const two = counted(2);
      const c = box.consume((m) => {
        got.push(m.body);
        two.hit();
      });
      await two.reached;
      assert.deepEqual(got, ['high', 'low']);
      // It is now waiting in a receive: stop() must end that wait, not hang on it.
      await c.stop();
      await box.send('after', { priority: 5 });
      assert.equal((await box.stat()).count, 1, 'nothing waits to take it');
      await box.delete();
    });

    test('on a priority mailbox, holdCredit bounds the async handlers in progress: prefetch 1 takes the highest after each', async () => {
      const box = await me.createMailbox<string>(null, { mode: 0o666, order: 'priority' });
      const sender = await other.openMailbox<string>(box.id);
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const got: number[] = [];
      const started = counted(1);
      const three = counted(3);
      const c = box.consume(
        async (m) => {
          got.push(m.priority);
          started.hit();
          if (got.length === 1) await gate;
          three.hit();
        },
        { prefetch: 1, holdCredit: true },
      );
      await sender.send('first', { priority: 5 });
      await started.reached;
      await sender.send('low', { priority: 1 });
      await sender.send('high', { priority: 9 });
      // The handler is still busy: the consumer must not be receiving, so both wait in the mailbox.
      assert.equal((await box.stat()).count, 2);
      release();
      await three.reached;
      assert.deepEqual(got, [5, 9, 1], 'each message received when a handler was free: highest first');
      await c.stop();
      assert.throws(() => box.consume(() => {}, { holdCredit: true, prefetch: 0 }), {
        code: 'EINVAL',
        message: /holdCredit needs an iterator that is pushed ahead/,
      });
      await box.delete();
    });

    test('type < 0 (lowest type first) is read one receive at a time by every iterator, never pushed ahead', async () => {
      const box = await me.createMailbox<string>(null, { mode: 0o666 });
      const sender = await other.openMailbox<string>(box.id);
      // Each way of iterating takes the type-3 message, then is busy while 5, 1 and 4 arrive:
      // msgrcv(-5) one call at a time then takes 1, 4, 5, whatever came first.
      const ways: Record<string, (busy: Promise<void>, took: () => void) => Promise<number[]>> = {
        'messages()': async (busy, took) => {
          const got: number[] = [];
          for await (const m of box.messages({ type: -5 })) {
            got.push(m.type);
            if (got.length === 1) {
              took();
              await busy;
            }
            if (got.length === 4) break;
          }
          return got;
        },
        'batches()': async (busy, took) => {
          const got: number[] = [];
          for await (const batch of box.batches({ type: -5 })) {
            for (const m of batch) got.push(m.type);
            if (got.length === 1) {
              took();
              await busy;
            }
            if (got.length === 4) break;
          }
          return got;
        },
        'consume()': async (busy, took) => {
          const got: number[] = [];
          const four = counted(4);
          const c = box.consume(
            async (m) => {
              got.push(m.type);
              four.hit();
              if (got.length === 1) {
                took();
                await busy;
              }
            },
            { type: -5, prefetch: 1, holdCredit: true },
          );
          await four.reached;
          await c.stop();
          return got;
        },
      };
      for (const [way, run] of Object.entries(ways)) {
        let release: () => void = () => {};
        const busy = new Promise<void>((r) => {
          release = r;
        });
        let took: () => void = () => {};
        const first = new Promise<void>((r) => {
          took = r;
        });
        const result = run(busy, took);
        await sender.send('three', { type: 3 });
        await first;
        for (const type of [5, 1, 4]) await sender.send(`type ${type}`, { type });
        assert.equal((await box.stat()).count, 3, `${way}: nothing is pushed ahead while the loop is busy`);
        release();
        assert.deepEqual(await result, [3, 1, 4, 5], way);
      }
      await box.delete();
    });

    test('the inbox: proc.consume() gets what is sent to the process, from whom it was sent', async () => {
      const got: [number, string][] = [];
      const three = counted(3);
      const c = me.consume<string>((m) => {
        got.push([m.sender, m.body]);
        three.hit();
      });
      await me.lookup(me.id); // answered after the stream is open
      for (const s of ['a', 'b', 'c']) await other.send(me.id, s);
      await three.reached;
      await c.stop();
      assert.deepEqual(got, [
        [other.id, 'a'],
        [other.id, 'b'],
        [other.id, 'c'],
      ]);
    });

    test('the inbox: proc.consume() with a signal already aborted takes nothing and is closed at once', async () => {
      await other.send(me.id, 'left alone');
      const got: string[] = [];
      await me.consume<string>((m) => got.push(m.body), { signal: AbortSignal.abort() }).closed;
      assert.deepEqual(got, []);
      assert.equal((await me.receive<string>({ nowait: true }))?.body, 'left alone', 'still in the inbox');
    });

    test('bad input is EINVAL before anything is opened; a closed handle is ENOTCONN', async () => {
      const box: Mailbox = await me.createMailbox(null);
      assert.throws(() => box.consume('handler' as unknown as () => void), {
        code: 'EINVAL',
        message: /consume\(\) takes a function to call for each message, not the string 'handler'/,
      });
      assert.throws(() => box.consume(() => {}, { prefetch: 0.5 }), { code: 'EINVAL', message: /prefetch/ });
      assert.throws(() => box.consume(() => {}, { bogus: 1 } as never), { code: 'EINVAL', message: /bogus/ });
      assert.throws(() => box.consume(() => {}, { signal: 5 } as never), {
        code: 'EINVAL',
        message: /consume\(\): signal must be an AbortSignal/,
      });
      assert.throws(() => me.consume('x' as never), { code: 'EINVAL' });
      const st = await box.stat();
      assert.equal(st.waitingReceivers.length, 0, 'no stream was left open by the bad calls');
      await box.close();
      assert.throws(() => box.consume(() => {}), { code: 'ENOTCONN' });
      await me.openMailbox(box.id).then((b) => b.delete());
    });
  });
}

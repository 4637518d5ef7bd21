/**
 * What the kernel's errors say they are about. Errors name the mailbox or process concerned
 * (BRIEF.md, Errors): the kernel named a process only in its message, so `err.process` was unset
 * at the client for an ESRCH or an EBUSY, and an EMSGSIZE the kernel measured came without
 * `err.size` and `err.limit`, which one the client measured has.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BusyError, MessageSizeError, type PostboxError } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';

/** Asserts `err` is a PostboxError of `code` about `process` (and `mailbox`, if given). */
function about(code: string, process: string, mailbox?: string): (err: unknown) => boolean {
  return (err: unknown) => {
    const e = err as PostboxError;
    assert.equal(e.code, code, e.message);
    assert.equal(e.process, process, `${e.message}: its process`);
    if (mailbox !== undefined) assert.equal(e.mailbox, mailbox, `${e.message}: its mailbox`);
    return true;
  };
}

describe("the kernel's errors carry their subject", () => {
  const { join } = kernelForTests();

  test('ESRCH names the process asked for, by id or name, whatever the call', async () => {
    const p = await join();
    await assert.rejects(p.lookup(999999), about('ESRCH', '999999'));
    await assert.rejects(p.lookup('subjects-ghost'), about('ESRCH', 'subjects-ghost'));
    const box = await p.createMailbox('subjects-grant');
    await assert.rejects(box.grant(999998), about('ESRCH', '999998'));
    await assert.rejects(box.transfer('subjects-ghost'), about('ESRCH', 'subjects-ghost'));
    // A direct send (TO_PROCESS) and a receive `from` a process that has ended.
    await assert.rejects(p.send(999997, 'hi'), about('ESRCH', '999997'));
    const gone = await join();
    const goneId = gone.id;
    await gone.close();
    await assert.rejects(
      box.receive({ from: goneId, timeout: 5000 }),
      about('ESRCH', String(goneId), 'subjects-grant'),
    );
  });

  test('EBUSY names the process that holds the right, by name if it has one', async () => {
    const owner = await join();
    const holder = await join({ name: 'subjects-holder' });
    const other = await join();
    const box = await owner.createMailbox('subjects-exclusive', { policy: 'exclusive', mode: 0o666 });
    const held = await holder.openMailbox('subjects-exclusive');
    // The holder's first receive takes the right; it stays waiting. A call after it on the same
    // connection is answered after the kernel has handled it.
    const waiting = held.receive();
    await holder.usage();
    const theirs = await other.openMailbox('subjects-exclusive');
    await assert.rejects(
      theirs.receive({ nowait: true }),
      about('EBUSY', 'subjects-holder', 'subjects-exclusive'),
    );
    // An unnamed holder is named by its id.
    const unnamed = await owner.createMailbox('subjects-exclusive-2', { policy: 'exclusive', mode: 0o666 });
    const first = unnamed.receive();
    await owner.usage();
    const second = await other.openMailbox('subjects-exclusive-2');
    await assert.rejects(
      second.receive({ nowait: true }),
      about('EBUSY', String(owner.id), 'subjects-exclusive-2'),
    );
    // mq_notify's registration is held as well.
    const watched = await owner.createMailbox('subjects-notify', { mode: 0o666 });
    await watched.notify(() => {});
    const late = await holder.openMailbox('subjects-notify');
    await assert.rejects(
      late.notify(() => {}),
      about('EBUSY', String(owner.id), 'subjects-notify'),
    );
    await box.send('done');
    await unnamed.send('done');
    assert.equal((await waiting)?.body, 'done');
    assert.equal((await first)?.body, 'done');
  });

  test("a pair's EBUSY names both processes it links: holders, in the order they joined, and process the first", async () => {
    const first = await join({ name: 'subjects-pair-a' });
    const second = await join();
    const third = await join();
    const pair = await first.createMailbox('subjects-pair', { policy: 'pair', mode: 0o666 });
    // A send takes a place in the pair, as a receive does.
    await pair.send('from a');
    const theirs = await second.openMailbox('subjects-pair');
    assert.equal((await theirs.receive({ nowait: true }))?.body, 'from a');
    const late = await third.openMailbox('subjects-pair');
    const both = ['subjects-pair-a', String(second.id)];
    for (const refused of [late.receive({ nowait: true }), late.send('from c')])
      await assert.rejects(refused, (err: unknown) => {
        assert.ok(err instanceof BusyError, String(err));
        about('EBUSY', 'subjects-pair-a', 'subjects-pair')(err);
        assert.deepEqual(err.holders, both, err.message);
        return true;
      });
    // One holder is a list of one, whatever held it.
    const excl = await first.createMailbox('subjects-excl', { policy: 'exclusive', mode: 0o666 });
    const waiting = excl.receive();
    await first.usage();
    await assert.rejects(
      (await third.openMailbox('subjects-excl')).receive({ nowait: true }),
      (err: unknown) => {
        assert.ok(err instanceof BusyError, String(err));
        assert.deepEqual(err.holders, ['subjects-pair-a'], err.message);
        return true;
      },
    );
    const watched = await second.createMailbox('subjects-notify-2', { mode: 0o666 });
    await watched.notify(() => {});
    await assert.rejects(
      (await third.openMailbox('subjects-notify-2')).notify(() => {}),
      (err: unknown) => {
        assert.ok(err instanceof BusyError, String(err));
        assert.deepEqual(err.holders, [String(second.id)], err.message);
        return true;
      },
    );
    await excl.send('done');
    assert.equal((await waiting)?.body, 'done');
  });

  test("an owner-only operation's EACCES names the owner, who may; a refusal by the mode names no process", async () => {
    const owner = await join({ name: 'subjects-owner' });
    const other = await join();
    const box = await owner.createMailbox('subjects-owned', { mode: 0o662, system: true });
    const theirs = await other.openMailbox('subjects-owned');
    const refusals = [
      theirs.chmod(0o666),
      theirs.grant(other.id),
      theirs.revoke(other.id),
      theirs.transfer(other.id),
      theirs.setLimits({ capacity: 5 }),
      theirs.delete(),
    ];
    for (const refused of refusals)
      await assert.rejects(refused, about('EACCES', 'subjects-owner', 'subjects-owned'));
    // An unnamed owner is named by its id.
    const unnamed = await other.createMailbox('subjects-owned-2', { system: true });
    await assert.rejects(
      (await owner.openMailbox('subjects-owned-2')).delete(),
      about('EACCES', String(other.id), 'subjects-owned-2'),
    );
    // Refused by the mode, no owner stands in the way: the caller lacks the right.
    await assert.rejects(theirs.receive({ nowait: true }), (err: unknown) => {
      assert.equal((err as PostboxError).code, 'EACCES');
      assert.equal((err as PostboxError).process, undefined, (err as Error).message);
      return true;
    });
    await box.delete();
    await unnamed.delete();
  });

  test('a call about a mailbox names it whatever refuses it: one not found by name or id, its arguments, a process it names', async () => {
    const p = await join();
    /** Asserts an error of `code` about mailbox `mailbox`. */
    const on =
      (code: string, mailbox: string) =>
      (err: unknown): boolean => {
        const e = err as PostboxError;
        assert.equal(e.code, code, e.message);
        assert.equal(e.mailbox, mailbox, `${e.message}: its mailbox`);
        return true;
      };
    await assert.rejects(p.openMailbox('subjects-nowhere'), on('ENOENT', 'subjects-nowhere'));
    const box = await p.createMailbox('subjects-args');
    await assert.rejects(box.setLimits({ capacity: -1 }), on('EINVAL', 'subjects-args'));
    await assert.rejects(box.setLimits({ maxBytes: 1.5 }), on('EINVAL', 'subjects-args'));
    await assert.rejects(box.chmod(0o1777), on('EINVAL', 'subjects-args'));
    await assert.rejects(box.grant(999996), (err: unknown) => {
      on('ESRCH', 'subjects-args')(err);
      return about('ESRCH', '999996')(err);
    });
    // A create's arguments name the mailbox it would have made.
    await assert.rejects(
      p.createMailbox('subjects-unmade', { capacity: -1 }),
      on('EINVAL', 'subjects-unmade'),
    );
    await assert.rejects(
      p.createMailbox('subjects-unmade', { messageSize: 8 }),
      on('EINVAL', 'subjects-unmade'),
    );
    // Removed, it is named as a send to it names it: by the name it had.
    const handle = await p.openMailbox('subjects-args');
    await box.delete();
    await assert.rejects(handle.stat(), on('ENOENT', 'subjects-args'));
    await assert.rejects(handle.chmod(0o666), on('ENOENT', 'subjects-args'));
  });

  test('an EMSGSIZE the kernel measured against a mailbox gives the size and the limit', async () => {
    const p = await join();
    const small = await p.createMailbox('subjects-small', { maxMessageSize: 100 });
    await assert.rejects(small.send(new Uint8Array(101)), (err: unknown) => {
      assert.ok(err instanceof MessageSizeError, String(err));
      assert.equal(err.mailbox, 'subjects-small');
      assert.deepEqual([err.size, err.limit], [101, 100], err.message);
      return true;
    });
    // In order, a message over the byte limit could never get in.
    const bytes = await p.createMailbox('subjects-bytes', { capacity: 10, maxBytes: 50 });
    await assert.rejects(bytes.send('x'.repeat(60), { headers: { a: 'b' } }), (err: unknown) => {
      assert.ok(err instanceof MessageSizeError, String(err));
      assert.deepEqual([err.size, err.limit], [69, 50], err.message);
      return true;
    });
    // A send waiting for room whose message the lowered limit can never take.
    const full = await p.createMailbox('subjects-full', { capacity: 1, maxBytes: 100 });
    await full.send('x'.repeat(80));
    const waiting = full.send('y'.repeat(90));
    await full.stat().then((s) => assert.equal(s.waitingSenders.length, 1));
    await full.setLimits({ maxBytes: 85 });
    await assert.rejects(waiting, (err: unknown) => {
      assert.ok(err instanceof MessageSizeError, String(err));
      assert.deepEqual([err.size, err.limit], [90, 85], err.message);
      return true;
    });
  });

  test('a fixed-size mailbox refuses a message of another size, over or under, with its size and the one size it takes as the limit', async () => {
    const p = await join();
    const ring = await p.createMailbox('subjects-fixed', { messageSize: 8, capacity: 4 });
    /** Asserts a send is refused EMSGSIZE about the ring, measured at `size`. */
    const refusedAt =
      (size: number) =>
      (err: unknown): boolean => {
        assert.ok(err instanceof MessageSizeError, String(err));
        assert.equal(err.mailbox, 'subjects-fixed');
        assert.deepEqual([err.size, err.limit], [size, 8], err.message);
        return true;
      };
    await assert.rejects(ring.send('x'.repeat(12)), refusedAt(12));
    await assert.rejects(ring.send('x'.repeat(3)), refusedAt(3));
    // Headers count, as they do against maxMessageSize: 5 bytes and {"a":""} are 13.
    await assert.rejects(ring.send('x'.repeat(5), { headers: { a: '' } }), refusedAt(13));
    // sendMany checks a mailbox's sizes before it sends any, and says so as the kernel does.
    await assert.rejects(ring.sendMany(['x'.repeat(8), 'x'.repeat(7)]), refusedAt(7));
    const small = await p.createMailbox(null, { maxMessageSize: 10 });
    await assert.rejects(small.sendMany(['x', 'x'.repeat(11)]), (err: unknown) => {
      assert.ok(err instanceof MessageSizeError, String(err));
      assert.equal(err.mailbox, `#${small.id}`);
      assert.deepEqual([err.size, err.limit], [11, 10], err.message);
      return true;
    });
    await ring.send('x'.repeat(8));
    assert.equal((await ring.receive({ nowait: true }))?.body, 'x'.repeat(8));
    assert.equal((await ring.receive({ nowait: true }))?.body, undefined, 'the refused batch sent none');
  });
});

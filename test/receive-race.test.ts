/**
 * Racing receives on several mailboxes (api.md, "Waiting on several mailboxes"): a receive that
 * lost a `Promise.race` still waits in the kernel and takes the next message; aborted once the
 * race is won, it either has its message (the kernel answered first) or takes nothing, so every
 * message sent is seen once and nothing is left waiting.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Message } from '../src/client/mod.js';
import { kernelForTests } from './helpers/kernel.js';

describe('receives raced on several mailboxes', { timeout: 60_000 }, () => {
  const k = kernelForTests();

  test('the receive that lost a race takes the next message to come', async () => {
    const me = await k.join();
    const a = await me.createMailbox<string>(null);
    const b = await me.createMailbox<string>(null);
    await b.send('b');
    const loser = a.receive();
    assert.equal((await Promise.race([loser, b.receive()]))?.body, 'b');
    await a.send('a');
    assert.equal((await loser)?.body, 'a');
    assert.equal(await a.receive({ nowait: true }), null, 'the race result never saw it');
  });

  test('aborted once the race is won, the receives lose nothing and leave nothing waiting', async () => {
    const me = await k.join();
    const sender = await k.join();
    const boxes = [await me.createMailbox<number>(null), await me.createMailbox<number>(null)];
    const seen: number[] = [];
    const rounds = 200;
    // The sender sends to both in turn while the receiver races them: some rounds find the
    // second receive answered before its abort arrives.
    const sending = (async () => {
      for (let i = 0; i < rounds; i++) await sender.sendTo(boxes[i % 2]!.id, i);
    })();
    for (let round = 0; seen.length < rounds && round < rounds * 2; round++) {
      const race = new AbortController();
      const waits = boxes.map((box) => box.receive({ signal: race.signal, timeout: 10_000 }));
      await Promise.any(waits);
      race.abort();
      for (const r of await Promise.allSettled(waits)) {
        if (r.status === 'fulfilled') seen.push((r.value as Message<number>).body);
        else assert.equal((r.reason as { code?: string }).code, 'ECANCELED');
      }
    }
    await sending;
    assert.deepEqual(
      seen.sort((x, y) => x - y),
      Array.from({ length: rounds }, (_, i) => i),
    );
    for (const box of boxes) assert.deepEqual((await box.stat()).waitingReceivers, []);
  });
});

/**
 * The indexed store against a naive model: for random sequences of inserts, removals,
 * give-backs and selections, the store picks exactly the message a linear scan in delivery
 * order would pick (System V msgrcv rules, POSIX priority order).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ANY, MessageStore, type Selection, selects } from '../src/kernel/message-store.js';
import { MESSAGE_HEAD_BYTES, Off, writeInt64 } from '../src/protocol/frame.js';
import { prng } from './helpers/prng.js';

interface Msg {
  seq: number;
  type: number;
  sender: number;
  priority: number;
  slot: number;
}

function frame(m: Omit<Msg, 'slot'>): Buffer {
  const b = Buffer.alloc(MESSAGE_HEAD_BYTES + 4);
  writeInt64(b, m.type, Off.TYPE);
  b.writeUInt32LE(m.sender, Off.SENDER);
  writeInt64(b, m.seq, Off.SEQ);
  b.writeUInt16LE(m.priority, Off.PRIORITY);
  return b;
}

/** What a linear scan in delivery order picks. */
function naiveFirst(model: Msg[], sel: Selection, byPriority: boolean): Msg | undefined {
  const order = [...model].sort((a, b) => (byPriority ? b.priority - a.priority : 0) || a.seq - b.seq);
  if (sel.type < 0) {
    const eligible = order.filter((m) => m.type <= -sel.type && (sel.from === 0 || m.sender === sel.from));
    if (eligible.length === 0) return undefined;
    const lowest = Math.min(...eligible.map((m) => m.type));
    return eligible.find((m) => m.type === lowest);
  }
  return order.find((m) => selects(sel, m.type, m.sender));
}

for (const byPriority of [false, true]) {
  test(`store selection matches a linear scan (${byPriority ? 'priority' : 'fifo'} order), 300 seeds`, () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = prng(seed);
      const store = new MessageStore(byPriority, 2);
      const model: Msg[] = [];
      const taken: Msg[] = [];
      let seq = 0;
      for (let step = 0; step < 120; step++) {
        const op = r();
        if (op < 0.5) {
          const m = {
            seq: ++seq,
            type: 1 + Math.floor(r() * 5),
            sender: 1 + Math.floor(r() * 3),
            priority: Math.floor(r() * 3),
          };
          const b = frame(m);
          if (!byPriority && r() < 0.5) {
            // A run of sends appends with its fields given, whether or not the lists are built.
            store.append(b, 0, b.length, 4, m.type, m.seq, m.sender);
            model.push({ ...m, slot: -1 });
          } else model.push({ ...m, slot: store.insert(b, 0, b.length, 4) });
        } else if (op < 0.6 && taken.length > 0) {
          // A receiver gives a message back: it returns to its place by sequence number.
          const m = taken.splice(Math.floor(r() * taken.length), 1)[0]!;
          const b = frame(m);
          model.push({ ...m, slot: store.insert(b, 0, b.length, 4) });
        } else {
          const t = Math.floor(r() * 13) - 6;
          const sel: Selection = {
            type: t,
            except: t > 0 && r() < 0.3,
            from: r() < 0.3 ? 1 + Math.floor(r() * 3) : 0,
          };
          const want = naiveFirst(model, sel, byPriority);
          const got = store.first(sel);
          assert.equal(
            got === -1 ? undefined : store.seq(got),
            want?.seq,
            `seed ${seed} step ${step} sel ${JSON.stringify(sel)}`,
          );
          if (want !== undefined && r() < 0.8) {
            if (!byPriority && sel.type === 0 && sel.from === 0 && r() < 0.5) {
              // The pump's run takes the oldest and is handed the next.
              const next = store.removeHead(got, 4);
              assert.equal(next, store.first(sel), `seed ${seed} step ${step}: removeHead's next`);
            } else store.remove(got, 4);
            model.splice(model.indexOf(want), 1);
            taken.push(want);
          }
        }
        assert.equal(store.count, model.length);
        assert.equal(store.bytes, model.length * 4);
      }
      const oldest = store.oldest();
      assert.equal(
        oldest === -1 ? undefined : store.seq(oldest),
        model.length ? Math.min(...model.map((m) => m.seq)) : undefined,
      );
    }
  });
}

test('the lecture example: types 1–6, msgrcv type 2 until empty, then type 0', () => {
  const crew = ['Kirk', 'Spock', 'McCoy', 'Scott', 'Uhura', 'Sulu', 'Chekov', 'Chapel', 'Rand', 'Riley'];
  const types = [1, 2, 3, 4, 5, 6, 2, 3, 2, 1];
  const store = new MessageStore(false);
  crew.forEach((_, i) => {
    const b = frame({ seq: i + 1, type: types[i]!, sender: 1, priority: 0 });
    store.insert(b, 0, b.length, 4);
  });
  const drain = (sel: Selection): string[] => {
    const out: string[] = [];
    for (let s = store.first(sel); s !== -1; s = store.first(sel)) {
      out.push(crew[store.seq(s) - 1]!);
      store.remove(s, 4);
    }
    return out;
  };
  assert.deepEqual(drain({ type: 2, except: false, from: 0 }), ['Spock', 'Chekov', 'Rand']);
  assert.deepEqual(drain({ type: -3, except: false, from: 0 }), ['Kirk', 'Riley', 'McCoy', 'Chapel']);
  assert.deepEqual(drain({ type: 0, except: false, from: 0 }), ['Scott', 'Uhura', 'Sulu']);
});

/** A store that counts how many sequence numbers it reads: the steps of its walks. */
class CountingStore extends MessageStore {
  reads = 0;
  override seq(slot: number): number {
    this.reads++;
    return super.seq(slot);
  }
}

for (const indexed of [false, true]) {
  test(`messages given back oldest first go to their places without walking the queue (${indexed ? 'type and sender lists built' : 'order list only'})`, () => {
    // A receiver held the first 2,000 of 22,000 and gives them back, oldest first, as giveBack
    // does, to the 20,000 still queued. Each lands right after the one before it: a walk from
    // the tail alone read every queued message's sequence number for each of them.
    const held = 2_000;
    const queued = 20_000;
    const store = new CountingStore(false);
    const frames = Array.from({ length: held + queued }, (_, i) =>
      frame({ seq: i + 1, type: 1 + (i % 3), sender: 1 + (i % 2), priority: 0 }),
    );
    for (const b of frames.slice(held)) store.insert(b, 0, b.length, 4);
    if (indexed) store.first({ type: 2, except: false, from: 0 });
    store.reads = 0;
    for (const b of frames.slice(0, held)) store.insert(b, 0, b.length, 4);
    assert.ok(store.reads <= 20 * held, `${store.reads} sequence numbers read for ${held} given back`);
    const order: number[] = [];
    store.forEach((s) => {
      order.push(store.seq(s));
    });
    assert.deepEqual(
      order,
      frames.map((_, i) => i + 1),
    );
    for (const type of [1, 2, 3]) {
      const sel: Selection = { type, except: false, from: 0 };
      assert.equal(store.seq(store.first(sel)), type, `the first of type ${type}`);
    }
    assert.equal(store.seq(store.first({ type: 0, except: false, from: 2 })), 2, 'the first from sender 2');
  });
}

test('a store says whether it is as new: replacing it at a removal would free nothing', () => {
  const oneIn = (store: MessageStore, seq: number): number => {
    const b = frame({ seq, type: 1, sender: 1, priority: 0 });
    return store.insert(b, 0, b.length, 4);
  };
  const fresh = new MessageStore(false);
  assert.equal(fresh.asNew, true, 'a new store, with no slots yet');
  const slot = oneIn(fresh, 1);
  assert.equal(fresh.asNew, false, 'one message held');
  fresh.remove(slot, 4);
  assert.equal(fresh.count, 0);
  assert.equal(fresh.asNew, false, 'emptied, but with the slots its first message made');

  const grown = new MessageStore(false);
  const slots = Array.from({ length: 9 }, (_, i) => oneIn(grown, i + 1));
  assert.deepEqual(
    slots.map((s) => grown.seq(s)),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    'each message in a slot of its own as the slots grow from none',
  );
  for (const s of slots) grown.remove(s, 4);
  assert.equal(grown.count, 0);
  assert.equal(grown.asNew, false, 'emptied, but with the slots it grew to');

  const indexed = new MessageStore(false);
  const s = oneIn(indexed, 1);
  indexed.first({ type: 2, except: false, from: 0 }); // builds the type and sender lists
  indexed.remove(s, 4);
  assert.equal(indexed.asNew, false, 'emptied, but with its lists');

  assert.equal(new MessageStore(true).asNew, true, 'a new priority store');
  assert.equal(new MessageStore(false, 64).asNew, false, "a fixed-size mailbox's, with all its slots");
});

// Pins MessageStore.removeHead's `if (bucket.back === slot) bucket.back = NIL` (MUTANTS.md M60) and
// unlink's `if (list.back === slot) list.back = NIL` (M64).
for (const how of ['removeHead', 'remove'] as const) {
  test(`a message given back and then taken by ${how} is forgotten as the place the next one given back goes after`, () => {
    // The store remembers the message last given back, where the next one is looked for first.
    // Taken, and its slot freed, it must be forgotten, or the next one given back reads a freed
    // slot (a TypeError: its buffer is gone).
    const store = new MessageStore(false);
    const put = (seq: number): number => {
      const b = frame({ seq, type: 1, sender: 1, priority: 0 });
      return store.insert(b, 0, b.length, 4);
    };
    const take = (slot: number): void => {
      if (how === 'removeHead') store.removeHead(slot, 4);
      else store.remove(slot, 4);
    };
    const third = put(3);
    put(4);
    const second = put(2); // given back: it goes ahead of 3 and 4
    assert.equal(store.oldest(), second);
    take(second);
    take(third); // freed after it: the slot 3 comes back into is not the one 2 had
    put(3); // given back again
    const order: number[] = [];
    store.forEach((s) => {
      order.push(store.seq(s));
    });
    assert.deepEqual(order, [3, 4]);
    assert.equal(store.seq(store.oldest()), 3);
  });
}

test('an emptied store gives back slots far beyond what it needed twice in its last eight fills, and keeps those it needs again', () => {
  const store = new MessageStore(false);
  let seq = 0;
  /** Queues n messages (types 1–3), checks the room they had, then takes them all, in order or by type. */
  const fill = (n: number, room: number, byType: boolean): void => {
    for (let i = 0; i < n; i++) {
      const b = frame({ seq: ++seq, type: 1 + (seq % 3), sender: 1, priority: 0 });
      store.insert(b, 0, b.length, 4);
    }
    assert.equal(store.slotRoom, room, `${n} queued in slots for ${room}`);
    let last = 0;
    for (let left = n; left > 0; left--) {
      const slot = byType ? store.first({ type: -3, except: false, from: 0 }) : store.first(ANY);
      const s = store.seq(slot);
      if (!byType) assert.ok(s > last, 'in order');
      last = s;
      if (byType) store.remove(slot, 4);
      else store.removeHead(slot, 4);
    }
    assert.equal(store.count, 0);
  };
  fill(100_000, 131_072, false);
  assert.equal(store.slotRoom, 0, 'a burst of 100,000, drained: its slots go');
  assert.equal(store.asNew, true);
  fill(70_000, 131_072, true);
  assert.equal(store.slotRoom, 131_072, 'a fill of 70,000 after one of 100,000: kept');
  fill(1_000, 131_072, false);
  fill(70_000, 131_072, true);
  for (let i = 1; i <= 5; i++) {
    fill(3_000, 131_072, i % 2 === 0);
    assert.equal(store.slotRoom, 131_072, `${i} small fills after two of 70,000 among the last eight: kept`);
  }
  fill(3_000, 131_072, false);
  assert.equal(
    store.slotRoom,
    8_192,
    'one fill of 70,000 left among the last eight: down to twice 3,000, rounded up to 8,192',
  );
  fill(3_000, 8_192, true);
  assert.equal(store.slotRoom, 8_192);

  const ring = new MessageStore(false, 70_000);
  const slots = Array.from({ length: 70_000 }, (_, i) => {
    const b = frame({ seq: i + 1, type: 1, sender: 1, priority: 0 });
    return ring.insert(b, 0, b.length, 4);
  });
  for (const s of slots) ring.remove(s, 4);
  assert.equal(ring.slotRoom, 70_000, "a fixed-size mailbox's slots are its ring's places: kept");
});

for (const byPriority of [false, true]) {
  test(`a ${byPriority ? 'priority' : 'fifo'} store that holds under an eighth of its slots while as many go through moves what it holds into fewer, in order, and says where each went; filled past an eighth again now and then, or a fixed-size ring, it keeps them`, () => {
    const moves: Int32Array[] = [];
    const store = new MessageStore(byPriority, 0, { slotsMoved: (to) => moves.push(to) });
    let seq = 0;
    const fields = (s: number): Omit<Msg, 'slot'> => ({
      seq: s,
      type: 1 + (s % 3),
      sender: 1 + (s % 2),
      priority: byPriority ? s % 4 : 0,
    });
    const put = (): void => {
      const b = frame(fields(++seq));
      store.insert(b, 0, b.length, 4);
    };
    /** One in, one out: a receiver just behind its senders. */
    const through = (n: number): void => {
      for (let i = 0; i < n; i++) {
        put();
        store.remove(store.oldest(), 4);
      }
    };
    for (let i = 0; i < 100_000; i++) put();
    assert.equal(store.slotRoom, 131_072);
    while (store.count > 1_000) store.remove(store.oldest(), 4);
    for (let round = 0; round < 3; round++) {
      // 100,000 through at 1,000, then a burst to 20,000, past an eighth, and back: it keeps them.
      through(100_000);
      while (store.count < 20_000) put();
      while (store.count > 1_000) store.remove(store.oldest(), 4);
    }
    assert.deepEqual(
      [moves.length, store.slotRoom],
      [0, 131_072],
      'filled past an eighth again, every 100,000',
    );
    assert.notEqual(store.first({ type: 2, except: false, from: 0 }), -1, 'its lists built');
    through(131_071);
    assert.deepEqual(
      [moves.length, store.slotRoom],
      [0, 131_072],
      'not yet: one fewer put in than it has slots',
    );
    const held = new Map<number, number>();
    store.forEach((s) => {
      held.set(s, store.seq(s));
    });
    through(1);
    assert.equal(moves.length, 1, 'as many put in as it has slots, under an eighth of them');
    assert.equal(store.slotRoom, 2_048, 'twice the most it held meanwhile (1,000), rounded up');
    assert.equal(store.count, 1_000);
    const to = moves[0]!;
    // The one put in last went into a moved store; the one taken out was the oldest.
    const oldest = Math.min(...held.values());
    for (const [slot, s] of held) if (s !== oldest) assert.equal(store.seq(to[slot]!), s, `seq ${s}`);
    const order: number[] = [];
    store.forEach((slot) => {
      order.push(store.seq(slot));
    });
    if (!byPriority)
      assert.deepEqual(
        order,
        [...order].sort((a, b) => a - b),
        'in order',
      );
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      [...Array(1_000).keys()].map((i) => seq - 999 + i),
    );
    // Selection by type and sender, and a message given back, on the moved store.
    const model = order.map((s) => ({ ...fields(s), slot: -1 }));
    for (const sel of [
      { type: 2, except: false, from: 0 },
      { type: -1, except: false, from: 0 },
      { type: 0, except: false, from: 2 },
      { type: 3, except: true, from: 1 },
    ]) {
      assert.equal(store.seq(store.first(sel)), naiveFirst(model, sel, byPriority)?.seq, JSON.stringify(sel));
    }
    const first = store.seq(store.oldest());
    const b = frame({ ...fields(first - 1), priority: 3 });
    store.insert(b, 0, b.length, 4);
    assert.equal(store.seq(store.first(ANY)), first - 1, 'given back ahead of the rest');

    const ring = new MessageStore(byPriority, 70_000, { slotsMoved: (to) => moves.push(to) });
    const slots = Array.from({ length: 70_000 }, () => {
      const f = frame(fields(++seq));
      return ring.insert(f, 0, f.length, 4);
    });
    for (const s of slots.slice(0, 69_000)) ring.remove(s, 4);
    for (let i = 0; i < 140_000; i++) {
      const f = frame(fields(++seq));
      ring.insert(f, 0, f.length, 4);
      ring.remove(ring.oldest(), 4);
    }
    assert.deepEqual(
      [moves.length, ring.slotRoom],
      [1, 70_000],
      "a fixed-size mailbox's slots are its ring's places",
    );
  });
}

test('a message given back before its store moves the messages it holds is no guide to where the next one given back goes', () => {
  const moves: Int32Array[] = [];
  const store = new MessageStore(false, 0, { slotsMoved: (to) => moves.push(to) });
  let seq = 1_000; // below: room for messages given back
  const put = (): void => {
    const b = frame({ seq: ++seq, type: 1 + (seq % 3), sender: 1, priority: 0 });
    store.insert(b, 0, b.length, 4);
  };
  for (let i = 0; i < 100_000; i++) put();
  while (store.count > 1_000) store.remove(store.oldest(), 4);
  // Given back, older than every one held: the place the next given back is looked for first.
  const first = frame({ seq: 500, type: 9, sender: 1, priority: 0 });
  assert.ok(store.insert(first, 0, first.length, 4) >= 2_048, 'in a slot the move takes away');
  // It stays while as many as the store has slots go through, the rest a thousand at most.
  const notIt = { type: 9, except: true, from: 0 };
  for (let i = 0; i < 131_072 && moves.length === 0; i++) {
    put();
    store.remove(store.first(notIt), 4);
  }
  assert.equal(moves.length, 1, 'moved into fewer slots');
  const next = frame({ seq: 400, type: 9, sender: 1, priority: 0 });
  store.insert(next, 0, next.length, 4);
  const held = (): [number, number][] => {
    const out: [number, number][] = [];
    store.forEach((s) => {
      out.push([s, store.seq(s)]);
    });
    return out;
  };
  const order = held().map(([, s]) => s);
  assert.deepEqual(order.slice(0, 2), [400, 500]);
  assert.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
  );
  // One taken from the middle of the moved store: its neighbours are linked both ways.
  const [slot, middle] = held()[500]!;
  store.remove(slot, 4);
  assert.deepEqual(
    held().map(([, s]) => s),
    order.filter((s) => s !== middle),
  );
  assert.equal(store.count, order.length - 1);
});

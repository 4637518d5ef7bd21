/**
 * The line of receivers waiting on a mailbox (src/kernel/receiver-line.ts, and the places of
 * line-places.ts): pure, so checked directly, and against the array with a turn index that it
 * replaced, over random operations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PLACE_LIMIT } from '../src/kernel/line-places.js';
import { type ReceiverKind, ReceiverLine } from '../src/kernel/receiver-line.js';
import { prng } from './helpers/prng.js';

class Receiver {
  prevInLine: Receiver | null = null;
  nextInLine: Receiver | null = null;
  place = 0;
  kind: ReceiverKind<Receiver> | null = null;
  prevOfKind: Receiver | null = null;
  nextOfKind: Receiver | null = null;
  runFirst: Receiver | null = null;
  runLast: Receiver | null = null;
  constructor(
    readonly id: number,
    readonly peer: object,
    readonly exactType = 0,
    readonly exactSender = 0,
  ) {}
}

const ids = (line: ReceiverLine<Receiver>): number[] => [...line].map((r) => r.id);

/** The array the mailbox kept: arrival order, `rr` the index whose turn is next. */
class ArrayLine {
  items: Receiver[] = [];
  rr = 0;
  insertBeforeTurn(r: Receiver): void {
    if (this.items.length === 0) {
      this.items.push(r);
      return;
    }
    this.items.splice(this.rr, 0, r);
    this.rr++;
  }
  remove(r: Receiver): void {
    const i = this.items.indexOf(r);
    this.items.splice(i, 1);
    if (this.rr > i) this.rr--;
    if (this.rr >= this.items.length) this.rr = 0;
  }
  /** Round robin's order: from the turn, going round. */
  turns(): Receiver[] {
    const n = this.items.length;
    return Array.from({ length: n }, (_, k) => this.items[(this.rr + k) % n]!);
  }
  /** The mailbox's nextTurn as it was: the first after r of another process, else the one after r. */
  nextTurn(r: Receiver): Receiver {
    const n = this.items.length;
    const i = this.items.indexOf(r);
    for (let k = 1; k < n; k++) if (this.items[(i + k) % n]!.peer !== r.peer) return this.items[(i + k) % n]!;
    return this.items[(i + 1) % n]!;
  }
}

function turns(line: ReceiverLine<Receiver>): number[] {
  const out: number[] = [];
  let r = line.turn();
  for (let k = 0; k < line.length; k++, r = line.after(r!)) out.push(r!.id);
  return out;
}

/** The members of a kind, first to last. */
function members(kind: ReceiverKind<Receiver> | null): Receiver[] {
  const out: Receiver[] = [];
  for (let r = kind?.head ?? null; r !== null; r = r.nextOfKind) out.push(r);
  return out;
}

/** Each run's ends name each other, and every receiver between them is of the same process. */
function assertRuns(line: ReceiverLine<Receiver>, where: string): void {
  const items = [...line];
  for (let i = 0; i < items.length; ) {
    const first = items[i]!;
    const last = first.runLast;
    assert.ok(last !== null, `${where}: ${first.id} starts a run`);
    let j = i;
    for (; items[j] !== last; j++) {
      assert.ok(j < items.length, `${where}: the run from ${first.id} ends in line`);
      assert.equal(items[j]!.peer, first.peer, `${where}: one process's run`);
      assert.equal(items[j]!.runFirst, null, `${where}: ${items[j]!.id} is not a run's last`);
      if (j > i) assert.equal(items[j]!.runLast, null, `${where}: ${items[j]!.id} is not a run's first`);
    }
    assert.equal(last.peer, first.peer);
    assert.equal(last.runFirst, first, `${where}: the last of the run from ${first.id} names it`);
    if (last !== first) assert.equal(last.runLast, null);
    i = j + 1;
  }
}

test('arrival order; anyone may leave from where they stand, the turn passing on', () => {
  const line = new ReceiverLine<Receiver>(true);
  const peer = {};
  const r = Array.from({ length: 5 }, (_, i) => new Receiver(i, peer));
  for (const x of r) line.join(x);
  assert.equal(line.length, 5);
  assert.equal(line.first(), r[0]);
  line.setTurn(r[2]!);
  line.remove(r[2]!);
  assert.equal(line.turn(), r[3], 'the next one has the turn');
  line.remove(r[0]!);
  assert.deepEqual(ids(line), [1, 3, 4]);
  line.setTurn(r[4]!);
  line.remove(r[4]!);
  assert.equal(line.turn(), r[1], 'from the last, the turn goes round to the first');
  assert.deepEqual(
    line.clear().map((x) => x.id),
    [1, 3],
  );
  assert.equal(line.length, 0);
  assert.equal(line.first(), null);
  assert.equal(line.turn(), null);
  assert.ok(r.every((x) => x.prevInLine === null && x.nextInLine === null && x.kind === null));
  assert.ok(r.every((x) => x.runFirst === null && x.runLast === null));
});

test('leaving while the line is walked skips nobody', () => {
  const line = new ReceiverLine<Receiver>(false);
  for (let i = 0; i < 10; i++) line.join(new Receiver(i, {}));
  const seen: number[] = [];
  for (const x of line) {
    seen.push(x.id);
    if (x.id % 2 === 0) line.remove(x);
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(ids(line), [1, 3, 5, 7, 9]);
});

test('a sender or type no receiver waits for any more is forgotten: its list goes', () => {
  // System V's clients each wait for their own pid: a list kept for each that ever waited would
  // grow with every client the mailbox served.
  for (const roundRobin of [false, true]) {
    const line = new ReceiverLine<Receiver>(roundRobin);
    const peer = {};
    const bySender = [new Receiver(0, peer, 0, 7), new Receiver(1, peer, 0, 7)];
    const byType = new Receiver(2, peer, 9);
    for (const r of [...bySender, byType]) line.join(r);
    line.remove(bySender[0]!);
    assert.deepEqual(members(line.ofSender(7)), [bySender[1]], 'one left: kept');
    line.remove(bySender[1]!);
    line.remove(byType);
    assert.equal(line.ofSender(7), null, `sender 7 forgotten (roundRobin ${roundRobin})`);
    assert.equal(line.ofType(9), null, `type 9 forgotten (roundRobin ${roundRobin})`);
    assert.equal(line.keyed, 0);
  }
});

test('oneProcess says whether every receiver in line is one process’s', () => {
  const line = new ReceiverLine<Receiver>(true);
  const a = {};
  const b = {};
  assert.ok(line.oneProcess());
  const r = [new Receiver(0, a), new Receiver(1, a), new Receiver(2, b)];
  line.join(r[0]!);
  line.join(r[1]!);
  assert.ok(line.oneProcess());
  line.join(r[2]!);
  assert.ok(!line.oneProcess());
  line.remove(r[2]!);
  assert.ok(line.oneProcess());
  line.clear();
  line.join(r[2]!);
  assert.ok(line.oneProcess(), 'clear forgets who was in line');
});

test('round robin: turns, places, kinds, runs and the next turn match the array it replaced, over random joins, turns and leaves', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const rand = prng(seed);
    const pick = (n: number): number => Math.floor(rand() * n);
    const line = new ReceiverLine<Receiver>(true);
    const model = new ArrayLine();
    const peers = [{}, {}, {}];
    let next = 0;
    for (let step = 0; step < 400; step++) {
      const where = `seed ${seed}, step ${step}`;
      const op = rand();
      if (op < 0.45 || model.items.length === 0) {
        // Runs of one process, and processes one by one; of one type, one sender, or neither.
        const peer = rand() < 0.6 && next > 0 ? (model.items.at(-1)?.peer ?? peers[0]!) : peers[pick(3)]!;
        const k = pick(4);
        const r = new Receiver(next++, peer, k === 1 ? 1 + pick(3) : 0, k === 2 ? 1 + pick(2) : 0);
        line.join(r);
        model.insertBeforeTurn(r);
      } else if (op < 0.6) {
        // The turn put anywhere: the line must not depend on where it stands.
        const at = pick(model.items.length);
        line.setTurn(model.items[at]!);
        model.rr = at;
      } else if (op < 0.8) {
        // A turn taken, as the mailbox takes it.
        const r = model.items[pick(model.items.length)]!;
        const turn = model.nextTurn(r);
        assert.equal(line.nextTurnAfter(r), turn, `${where}: the turn after ${r.id}`);
        line.setTurn(turn);
        model.rr = model.items.indexOf(turn);
      } else {
        const r = model.items[pick(model.items.length)]!;
        line.remove(r);
        model.remove(r);
        assert.ok(r.prevOfKind === null && r.nextOfKind === null && r.kind === null, `${where}: unlinked`);
        assert.ok(r.runFirst === null && r.runLast === null, `${where}: out of its run`);
      }
      assert.deepEqual(
        turns(line),
        model.turns().map((r) => r.id),
        where,
      );
      assert.equal(line.length, model.items.length);
      // The array starts where the line does only going round: the line's own order, from its first.
      const inLine = [...line];
      for (let i = 1; i < inLine.length; i++)
        assert.ok(inLine[i - 1]!.place < inLine[i]!.place, `${where}: places in order`);
      assertRuns(line, where);
      const order = model.turns();
      for (let i = 1; i < order.length; i++)
        assert.ok(line.rank(order[i - 1]!) < line.rank(order[i]!), `${where}: ranks from the turn`);
      const kinds: [ReceiverKind<Receiver> | null, (r: Receiver) => boolean][] = [
        [line.others(), (r) => r.exactSender === 0 && r.exactType === 0],
        ...[1, 2].map((s): [ReceiverKind<Receiver> | null, (r: Receiver) => boolean] => [
          line.ofSender(s),
          (r) => r.exactSender === s,
        ]),
        ...[1, 2, 3].map((t): [ReceiverKind<Receiver> | null, (r: Receiver) => boolean] => [
          line.ofType(t),
          (r) => r.exactSender === 0 && r.exactType === t,
        ]),
      ];
      for (const [kind, isOf] of kinds) {
        const of = inLine.filter(isOf);
        assert.deepEqual(members(kind), of, `${where}: a kind in the line's order`);
        if (of.length > 0)
          assert.equal(line.firstOf(kind!), order.find(isOf), `${where}: the first from the turn`);
      }
      assert.equal(line.keyed, inLine.filter((r) => r.exactSender !== 0 || r.exactType !== 0).length);
    }
  }
});

test('first come: each kind in arrival order, the first of it its head', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = prng(seed);
    const line = new ReceiverLine<Receiver>(false);
    const model: Receiver[] = [];
    for (let step = 0; step < 2000; step++) {
      const op = rand();
      if (op < 0.55 || model.length === 0) {
        // Types 1–5, or 0: a receive of any type, type < 0, or except; senders 1–2 or any.
        const sender = rand() < 0.3 ? 1 + Math.floor(rand() * 2) : 0;
        const r = new Receiver(step, {}, Math.floor(rand() * 6), sender);
        line.join(r);
        model.push(r);
      } else if (op < 0.995) {
        const r = model.splice(Math.floor(rand() * model.length), 1)[0]!;
        line.remove(r);
        assert.ok(r.prevOfKind === null && r.nextOfKind === null, 'unlinked');
      } else {
        for (const r of line.clear()) assert.ok(r.prevOfKind === null && r.nextOfKind === null);
        model.length = 0;
      }
      for (let type = 1; type <= 5; type++) {
        const of = model.filter((r) => r.exactSender === 0 && r.exactType === type);
        assert.deepEqual(members(line.ofType(type)), of, `seed ${seed}, step ${step}, type ${type}`);
        if (of.length > 0) assert.equal(line.firstOf(line.ofType(type)!), of[0]);
      }
      for (let sender = 1; sender <= 2; sender++)
        assert.deepEqual(
          members(line.ofSender(sender)),
          model.filter((r) => r.exactSender === sender),
        );
      assert.deepEqual(
        members(line.others()),
        model.filter((r) => r.exactSender === 0 && r.exactType === 0),
      );
      assert.equal(line.keyed, model.filter((r) => r.exactSender !== 0 || r.exactType !== 0).length);
      assert.deepEqual(
        ids(line),
        model.map((r) => r.id),
      );
      for (let i = 1; i < model.length; i++)
        assert.ok(model[i - 1]!.place < model[i]!.place, 'arrival order');
    }
  }
});

test('round robin: many joins at one place in the line keep their order and places, and move few places', () => {
  const line = new ReceiverLine<Receiver>(true);
  const peer = {};
  const first = Array.from({ length: 1000 }, (_, i) => new Receiver(i, peer));
  for (const r of first) line.join(r);
  line.setTurn(first[500]!);
  // Each joins just before the turn, which stays: each between the last to join and the turn.
  const joined = Array.from({ length: 20_000 }, (_, i) => new Receiver(1000 + i, peer));
  // Counted over the first 3,000 joins: spreads of ranges ever larger come now and then, and a
  // density that did not grow with a range's size (moving ~100 places a join here) passed 200.
  const counted = 3_000;
  let moved = 0;
  joined.forEach((r, i) => {
    if (i >= counted) {
      line.join(r);
      return;
    }
    const inLine = [...line];
    const before = inLine.map((x) => x.place);
    line.join(r);
    for (let k = 0; k < inLine.length; k++) if (inLine[k]!.place !== before[k]) moved++;
  });
  const order = ids(line);
  assert.deepEqual(order.slice(0, 500), [...Array(500).keys()]);
  assert.deepEqual(
    order.slice(500, 500 + 20_000),
    [...Array(20_000).keys()].map((i) => 1000 + i),
  );
  assert.deepEqual(
    order.slice(20_500),
    [...Array(500).keys()].map((i) => 500 + i),
  );
  const places = [...line].map((r) => r.place);
  for (let i = 1; i < places.length; i++) assert.ok(places[i - 1]! < places[i]!, `place ${i} in order`);
  assert.ok(places.at(-1)! < PLACE_LIMIT);
  // List labelling moves O(log n) places a join on average; spreading the whole line over each time
  // its places ran out between two would move 1,000 or more.
  assert.ok(moved / counted < 25, `${(moved / counted).toFixed(1)} places moved a join`);
});

/**
 * The line of receivers waiting on a mailbox (src/kernel/receiver-line.ts): pure, so checked
 * directly, and against the array with a turn index that it replaced, over random operations.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReceiverLine } from '../src/kernel/receiver-line.js';
import { prng } from './helpers/prng.js';

class Receiver {
  prevInLine: Receiver | null = null;
  nextInLine: Receiver | null = null;
  prevOfKind: Receiver | null = null;
  nextOfKind: Receiver | null = null;
  arrival = 0;
  constructor(
    readonly id: number,
    readonly peer: object,
    readonly exactType = 0,
  ) {}
}

const ids = (line: ReceiverLine<Receiver>): number[] => [...line].map((r) => r.id);

/** The array the mailbox kept: arrival order, `rr` the index whose turn is next. */
class ArrayLine {
  items: Receiver[] = [];
  rr = 0;
  push(r: Receiver): void {
    this.items.push(r);
  }
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
  turns(): number[] {
    const n = this.items.length;
    return Array.from({ length: n }, (_, k) => this.items[(this.rr + k) % n]!.id);
  }
}

function turns(line: ReceiverLine<Receiver>): number[] {
  const out: number[] = [];
  let r = line.turn();
  for (let k = 0; k < line.length; k++, r = line.after(r!)) out.push(r!.id);
  return out;
}

test('arrival order; anyone may leave from where they stand, the turn passing on', () => {
  const line = new ReceiverLine<Receiver>();
  const peer = {};
  const r = Array.from({ length: 5 }, (_, i) => new Receiver(i, peer));
  for (const x of r) line.push(x);
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
  assert.ok(r.every((x) => x.prevInLine === null && x.nextInLine === null));
});

test('leaving while the line is walked skips nobody', () => {
  const line = new ReceiverLine<Receiver>();
  for (let i = 0; i < 10; i++) line.push(new Receiver(i, {}));
  const seen: number[] = [];
  for (const x of line) {
    seen.push(x.id);
    if (x.id % 2 === 0) line.remove(x);
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(ids(line), [1, 3, 5, 7, 9]);
});

test('oneProcess says whether every receiver in line is one process’s', () => {
  const line = new ReceiverLine<Receiver>();
  const a = {};
  const b = {};
  assert.ok(line.oneProcess());
  const r = [new Receiver(0, a), new Receiver(1, a), new Receiver(2, b)];
  line.push(r[0]!);
  line.insertBeforeTurn(r[1]!);
  assert.ok(line.oneProcess());
  line.push(r[2]!);
  assert.ok(!line.oneProcess());
  line.remove(r[2]!);
  assert.ok(line.oneProcess());
  line.clear();
  line.push(r[2]!);
  assert.ok(line.oneProcess(), 'clear forgets who was in line');
});

test('round robin turns match the array it replaced, over random joins, turns and leaves', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const rand = prng(seed);
    const line = new ReceiverLine<Receiver>();
    const model = new ArrayLine();
    const peers = [{}, {}, {}];
    let next = 0;
    for (let step = 0; step < 400; step++) {
      const op = rand();
      if (op < 0.45 || model.items.length === 0) {
        const r = new Receiver(next++, peers[Math.floor(rand() * peers.length)]!);
        line.insertBeforeTurn(r);
        model.insertBeforeTurn(r);
      } else if (op < 0.7) {
        // A turn taken: the turn moves to someone in line, as the mailbox's nextTurn moves it.
        const at = Math.floor(rand() * model.items.length);
        line.setTurn(model.items[at]!);
        model.rr = at;
      } else {
        const r = model.items[Math.floor(rand() * model.items.length)]!;
        line.remove(r);
        model.remove(r);
      }
      assert.deepEqual(turns(line), model.turns(), `seed ${seed}, step ${step}`);
      assert.equal(line.length, model.items.length);
    }
  }
});

test('arrival order matches a plain array over random joins and leaves', () => {
  const rand = prng(7);
  const line = new ReceiverLine<Receiver>();
  const model: Receiver[] = [];
  for (let step = 0; step < 5000; step++) {
    if (rand() < 0.55 || model.length === 0) {
      const r = new Receiver(step, {});
      line.push(r);
      model.push(r);
    } else {
      const r = model.splice(Math.floor(rand() * model.length), 1)[0]!;
      line.remove(r);
    }
  }
  assert.deepEqual(
    ids(line),
    model.map((r) => r.id),
  );
  assert.equal(line.first(), model[0] ?? null);
});

test('an indexed line keeps, for each type, those waiting for it, and the others, each in arrival order', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = prng(seed);
    const line = new ReceiverLine<Receiver>(true);
    const model: Receiver[] = [];
    for (let step = 0; step < 2000; step++) {
      const op = rand();
      if (op < 0.55 || model.length === 0) {
        // Types 1–5, or 0: a receive of any type, type < 0, or except.
        const r = new Receiver(step, {}, Math.floor(rand() * 6));
        line.push(r);
        model.push(r);
      } else if (op < 0.995) {
        const r = model.splice(Math.floor(rand() * model.length), 1)[0]!;
        line.remove(r);
        assert.ok(r.prevOfKind === null && r.nextOfKind === null, 'unlinked');
      } else {
        for (const r of line.clear()) assert.ok(r.prevOfKind === null && r.nextOfKind === null);
        model.length = 0;
      }
      const kind = (first: Receiver | null): Receiver[] => {
        const out: Receiver[] = [];
        for (let r = first; r !== null; r = r.nextOfKind) out.push(r);
        return out;
      };
      for (let type = 1; type <= 5; type++)
        assert.deepEqual(
          kind(line.waitingFor(type)),
          model.filter((r) => r.exactType === type),
          `seed ${seed}, step ${step}, type ${type}`,
        );
      assert.deepEqual(
        kind(line.others()),
        model.filter((r) => r.exactType === 0),
      );
      assert.equal(line.typed, model.filter((r) => r.exactType !== 0).length);
      assert.deepEqual(
        ids(line),
        model.map((r) => r.id),
      );
      for (let i = 1; i < model.length; i++)
        assert.ok(model[i - 1]!.arrival < model[i]!.arrival, 'arrival order');
    }
  }
  const line = new ReceiverLine<Receiver>();
  line.push(new Receiver(0, {}, 3));
  assert.equal(line.typed, 0, 'a line not indexed keeps no lists');
  assert.equal(line.waitingFor(3), null);
});

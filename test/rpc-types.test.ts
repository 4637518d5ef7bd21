/**
 * Compile-time test of the RPC face's types: tsc builds this file with the rest, so a type
 * regression in stubs breaks the build. Each `Expect<Equal<…>>` must hold, and each line under
 * `@ts-expect-error` must be an error (else tsc reports the unused directive). At run time it
 * only checks that it was built.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PostboxProcess, TypedAsyncIterator } from '../src/client/mod.js';
import {
  type CallContext,
  type CallOptions,
  type Stub,
  type StubParameters,
  stub,
} from '../src/faces/rpc.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

const handlers = {
  add(a: number, b: number): number {
    return a + b;
  },
  async greet(name: string, _ctx?: CallContext): Promise<string> {
    return `hello ${name}`;
  },
  aborted(_tag: string, ctx: CallContext): boolean {
    return ctx.signal.aborted;
  },
  optional(a: number, b?: string, _ctx?: CallContext): { a: number; b: string | undefined } {
    return { a, b };
  },
  rest(...xs: number[]): number {
    return xs.length;
  },
  async *ticks(n: number, _ctx?: CallContext): AsyncGenerator<number> {
    yield n;
  },
  dates(): AsyncIterable<Date> {
    return (async function* () {
      yield new Date();
    })();
  },
  *countdown(n: number): Generator<number> {
    yield n;
  },
  async later(): Promise<AsyncIterable<string>> {
    return (async function* () {
      yield 'x';
    })();
  },
  structured(): { when: Date; tags: Set<string>; index: Map<string, bigint>; raw: Uint8Array } {
    return { when: new Date(), tags: new Set(), index: new Map(), raw: new Uint8Array() };
  },
  nothing(): void {},
  nullable(): string | null {
    return null;
  },
  fails(): never {
    throw new Error('always');
  },
  /** Not a function: not on the stub. */
  version: 3,
  /** `$` names are the stub's own. */
  $internal(): number {
    return 1;
  },
};
type Handlers = typeof handlers;
type Calc = Stub<Handlers>;

/** Every assertion here must hold for this file to compile. */
export type Assertions = [
  // Answers are promises of the handler's (awaited) result.
  Expect<Equal<ReturnType<Calc['add']>, Promise<number>>>,
  Expect<Equal<ReturnType<Calc['greet']>, Promise<string>>>,
  Expect<Equal<ReturnType<Calc['nothing']>, Promise<void>>>,
  Expect<Equal<ReturnType<Calc['nullable']>, Promise<string | null>>>,
  Expect<Equal<ReturnType<Calc['fails']>, Promise<never>>>,
  Expect<
    Equal<
      ReturnType<Calc['structured']>,
      Promise<{ when: Date; tags: Set<string>; index: Map<string, bigint>; raw: Uint8Array }>
    >
  >,
  // Streams are async iterators of the items.
  Expect<Equal<ReturnType<Calc['ticks']>, TypedAsyncIterator<number>>>,
  Expect<Equal<ReturnType<Calc['dates']>, TypedAsyncIterator<Date>>>,
  Expect<Equal<ReturnType<Calc['later']>, TypedAsyncIterator<string>>>,
  Expect<Equal<ReturnType<Calc['countdown']>, TypedAsyncIterator<number>>>,
  // The trailing context, required or optional, is the server's: the stub leaves it out.
  Expect<Equal<Parameters<Calc['add']>, [a: number, b: number]>>,
  Expect<Equal<Parameters<Calc['greet']>, [name: string]>>,
  Expect<Equal<Parameters<Calc['aborted']>, [_tag: string]>>,
  Expect<Equal<Parameters<Calc['optional']>, [a: number, b?: string]>>,
  Expect<Equal<Parameters<Calc['rest']>, number[]>>,
  Expect<Equal<StubParameters<[CallContext]>, []>>,
  Expect<Equal<StubParameters<[x: unknown]>, [x: unknown]>>,
  // Only methods, and no `$` names, become stub methods.
  Expect<Equal<Extract<keyof Calc, 'version' | '$internal'>, never>>,
  Expect<Equal<ReturnType<Calc['$with']>, Calc>>,
  Expect<Equal<Parameters<Calc['$with']>, [options: CallOptions]>>,
];

/** Usage that must (and must not) compile. Never run: it needs a kernel. */
async function usage(proc: PostboxProcess): Promise<void> {
  const calc = stub<Handlers>(proc, 'calc', { timeout: 1000 });
  const sum: number = await calc.add(1, 2);
  const text: string = await calc.greet('ann');
  const opt: { a: number; b: string | undefined } = await calc.optional(1);
  await calc.optional(1, 'b');
  await calc.rest();
  await calc.rest(1, 2, 3);
  for await (const n of calc.ticks(3)) {
    const x: number = n;
    void x;
  }
  const it: AsyncIterableIterator<Date> = calc.dates();
  const timed: number = await calc.$with({ timeout: 50, signal: AbortSignal.timeout(10) }).add(1, 2);
  void [sum, text, opt, it, timed];

  // @ts-expect-error a string where a number goes
  await calc.add('1', 2);
  // @ts-expect-error too few arguments
  await calc.add(1);
  // @ts-expect-error too many arguments
  await calc.add(1, 2, 3);
  // @ts-expect-error the context is not the caller's to pass
  await calc.aborted('tag', {} as CallContext);
  // @ts-expect-error the answer is a number, not a string
  const wrong: string = await calc.add(1, 2);
  // @ts-expect-error a stream is iterated, not awaited as a value
  const notAValue: number = await calc.ticks(3);
  // @ts-expect-error not a method of the handlers
  calc.version;
  // @ts-expect-error `$` names are not callable methods
  calc.$internal();
  // @ts-expect-error no such method
  calc.subtract(1, 2);
  // @ts-expect-error an unknown option
  calc.$with({ timout: 5 });
  void [wrong, notAValue];
}

test('the RPC stub types compile (checked by tsc; see the Assertions type)', () => {
  assert.equal(typeof usage, 'function');
});

/**
 * Types of the RPC face: a stub's methods are derived from the handler object's type, with no
 * code generation. A trailing {@link CallContext} parameter is the server's business and is left
 * out of the stub; a handler returning an async iterable becomes a stub method returning an
 * async iterator.
 */
import type { TypedAsyncIterator } from '../../client/mailbox.js';

/** What a handler learns about the call, as an optional last parameter. */
export interface CallContext {
  /**
   * Aborts when the caller cancels or times out, its stream consumer stops, the deadline passes,
   * or the caller process ends (watched from the first time a handler looks at `signal`).
   */
  readonly signal: AbortSignal;
  /** Process id of the caller. */
  readonly caller: number;
  readonly service: string;
  readonly method: string;
  /**
   * When the caller gives up, ms since the epoch by this (the server's) clock, if it set a timeout:
   * sent by the kernel's clock and read through each side's offset to it, so clocks may differ.
   */
  readonly deadline: number | undefined;
}

/** Per-call options: `stub.$with(options).method(...)`, or a stub's defaults. */
export interface CallOptions {
  /** Give up after this many ms: the call rejects with ETIMEDOUT and the server is told. */
  timeout?: number | undefined;
  /** Abort the call: it rejects with ECANCELED and the server is told (the handler's ctx.signal aborts). */
  signal?: AbortSignal | undefined;
  /** Queue the call while no server runs, instead of failing at once with ENOENT. */
  waitForServer?: boolean | undefined;
  /** Capacity of a streaming call's mailbox: how far the server may run ahead (default 16). */
  streamCapacity?: number | undefined;
  /**
   * Capture the caller's stack when the call is made (about 3 µs a call), for code that does
   * not await its calls. By default a failed call's stack is that of the async functions
   * awaiting it, each at the line of its await, and a call that succeeds costs nothing for it.
   */
  captureStack?: boolean | undefined;
}

type IsAny<T> = 0 extends 1 & T ? true : false;
type IsContext<T> =
  IsAny<T> extends true
    ? false
    : [Exclude<T, undefined>] extends [never]
      ? false
      : [Exclude<T, undefined>] extends [CallContext]
        ? true
        : false;
type DropLast<P extends unknown[]> = P extends [...infer I, unknown]
  ? I
  : P extends [...infer I, unknown?]
    ? I
    : never;

/** A handler's parameters without a trailing {@link CallContext} (required or optional). */
export type StubParameters<P extends unknown[]> = P extends []
  ? []
  : Required<P> extends [...unknown[], infer Last]
    ? IsContext<Last> extends true
      ? DropLast<P>
      : P
    : P;

/** What a stub method returns for a handler returning R (a handler that only throws: Promise<never>). */
export type StubResult<R> = [Awaited<R>] extends [never]
  ? Promise<never>
  : IsAny<Awaited<R>> extends true
    ? Promise<Awaited<R>>
    : [Awaited<R>] extends [AsyncIterable<infer T>]
      ? TypedAsyncIterator<T>
      : [Awaited<R>] extends [Generator<infer T, unknown, unknown>]
        ? TypedAsyncIterator<T>
        : Promise<Awaited<R>>;

/** A stub method for handler F. */
export type StubMethod<F> = F extends (...args: infer P) => infer R
  ? (...args: StubParameters<P>) => StubResult<R>
  : never;

/** The handler object's methods (functions), as stub methods. */
export type StubMethods<T> = {
  readonly [K in keyof T as K extends string
    ? K extends `$${string}` | 'then'
      ? never
      : T[K] extends (...args: never[]) => unknown
        ? K
        : never
    : never]: StubMethod<T[K]>;
};

/**
 * A typed stub of a service whose handler object has type T (`typeof handlers`).
 *
 * @example
 * ```ts
 * const calc = stub<Calc>(proc, 'calc');
 * const sum: number = await calc.add(1, 2);
 * for await (const t of calc.ticks(3)) console.log(t);
 * await calc.$with({ timeout: 500 }).add(3, 4);
 * ```
 */
export type Stub<T> = StubMethods<T> & {
  /** The same stub with these options merged over its defaults, for the next calls made through it. */
  $with(options: CallOptions): Stub<T>;
  /** The service's name. */
  readonly $service: string;
};

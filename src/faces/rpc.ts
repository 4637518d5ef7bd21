/**
 * RPC over mailboxes: typed stubs, remote errors with both stacks, timeouts, cancellation that
 * reaches the handler, streaming results with backpressure, and servers sharing a service round
 * robin. A thin layer: a service is a mailbox, a reply is a message, a stream is a bounded
 * mailbox (docs/rpc.md).
 *
 * @example
 * ```ts
 * // calc-server.ts
 * import { connect } from 'postbox';
 * import { serve, type CallContext } from 'postbox/rpc';
 * export const calc = {
 *   add(a: number, b: number) { return a + b; },
 *   async *count(n: number, ctx?: CallContext) { for (let i = 0; i < n; i++) yield i; },
 * };
 * export type Calc = typeof calc;
 * await serve(await connect(), 'calc', calc);
 *
 * // client.ts
 * import { connect } from 'postbox';
 * import { stub } from 'postbox/rpc';
 * import type { Calc } from './calc-server.js';
 * const c = stub<Calc>(await connect(), 'calc');
 * console.log(await c.add(1, 2));            // 3
 * for await (const i of c.count(3)) console.log(i);
 * ```
 */
import { checkOptions } from '../client/option-names.js';
import { badProcess } from '../client/option-values.js';
import type { PostboxProcess } from '../client/process.js';
import type { RpcCall } from './rpc/call.js';
import { CALL_OPTIONS, Caller } from './rpc/client.js';
import type { CallOptions, Stub } from './rpc/types.js';
import { serviceMailbox } from './rpc/wire.js';

export { RpcCall } from './rpc/call.js';
export { SERVICE_ATTRIBUTES } from './rpc/client.js';
export {
  NoServerError,
  REMOTE_ERROR_CODE,
  RemoteError,
  ServerDownError,
} from './rpc/errors.js';
export { isCallContext, type ServeOptions, type Server, serve } from './rpc/server.js';
export { StreamReader } from './rpc/stream.js';
export type {
  CallContext,
  CallOptions,
  Stub,
  StubMethod,
  StubMethods,
  StubParameters,
  StubResult,
} from './rpc/types.js';
export { DEFAULT_CONCURRENCY, STREAM_CAPACITY, type WireError } from './rpc/wire.js';

/**
 * A typed stub of `service`: `T` is the type of the server's handler object. Each method sends
 * a call and returns a promise of the answer (or, for a handler returning an async iterable, an
 * async iterator of its items). Stubs are cheap; every stub of a process shares its one reply
 * mailbox.
 *
 * @param defaults options for every call made through the stub (see {@link CallOptions}).
 * @example
 * ```ts
 * import { stub } from 'postbox/rpc';
 * import type { Calc } from './calc-server.js';
 * const calc = stub<Calc>(proc, 'calc', { timeout: 5000 });
 * const n = await calc.add(1, 2);                              // Promise<number>
 * const m = await calc.$with({ signal: AbortSignal.timeout(100) }).add(3, 4); // this call only
 * ```
 */
export function stub<T extends object>(
  proc: PostboxProcess,
  service: string,
  defaults: CallOptions = {},
): Stub<T> {
  const badProc = badProcess(proc, 'stub()');
  if (badProc !== null) throw badProc;
  serviceMailbox(service);
  checkOptions(defaults, CALL_OPTIONS, 'stub()');
  return makeStub<T>(Caller.of(proc), service, defaults);
}

function makeStub<T>(caller: Caller, service: string, options: CallOptions): Stub<T> {
  const methods = new Map<string, (...args: unknown[]) => RpcCall<unknown>>();
  const withOptions = (more: CallOptions): Stub<T> => {
    checkOptions(more, CALL_OPTIONS, '$with()');
    return makeStub<T>(caller, service, { ...options, ...more });
  };
  return new Proxy(Object.create(null) as Stub<T>, {
    get(_target, name) {
      if (typeof name !== 'string' || name === 'then') return undefined; // never a thenable
      if (name === '$with') return withOptions;
      if (name === '$service') return service;
      let fn = methods.get(name);
      if (fn === undefined) {
        const method = name;
        const f = (...args: unknown[]): RpcCall<unknown> => caller.call(service, method, args, options, f);
        fn = f;
        methods.set(name, f);
      }
      return fn;
    },
  });
}

/**
 * Calls `service.method(...args)` without a typed stub. Resolves with the answer, or with an
 * async iterator for a streaming method.
 *
 * @example
 * ```ts
 * const sum = await call(proc, 'calc', 'add', [1, 2], { timeout: 1000 });
 * ```
 */
export function call(
  proc: PostboxProcess,
  service: string,
  method: string,
  args: unknown[] = [],
  options: CallOptions = {},
): RpcCall<unknown> {
  const badProc = badProcess(proc, 'call()');
  if (badProc !== null) throw badProc;
  return Caller.of(proc).call(service, method, args, options, call);
}

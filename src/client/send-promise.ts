import type { PostboxError } from '../protocol/errors.js';
import type { SendResult } from './send-result.js';

const PENDING = 0;
const FULFILLED = 1;
const REJECTED = 2;

/**
 * What `send()` returns: the promise of the kernel's answer, made only when someone asks for it.
 *
 * A producer seldom awaits every send: it awaits every hundredth to bound what is outstanding,
 * or none and relies on the connection to report a failure. A native promise per send costs its
 * two resolving closures and a resolve call when the ACK comes, for a promise nobody looks at;
 * this costs one small object, settled by a store. The native promise is made on the first
 * `then`, `catch`, `finally` or `await`, already settled if the answer is in.
 *
 * It behaves as a promise everywhere a promise is taken (`await`, `Promise.all`, `race`,
 * `assert.rejects`), and a failure nobody listens for is an unhandled rejection, as a native
 * promise's would be. It is not `instanceof Promise`: `Promise.resolve(p)` gives a native one.
 *
 * @example
 * ```ts
 * const p = mailbox.send('hello'); // a SendPromise
 * const { outcome } = await p;    // 'queued'
 * ```
 */
export class SendPromise implements Promise<SendResult> {
  private state = PENDING;
  private settled: SendResult | PostboxError | undefined = undefined;
  private native: Promise<SendResult> | null = null;
  private onFulfil: ((r: SendResult) => void) | null = null;
  private onReject: ((e: PostboxError) => void) | null = null;

  get [Symbol.toStringTag](): string {
    return 'SendPromise';
  }

  // The connection's ACK queue settles it as an AckSettler, by its shape: the published types
  // leave resolve and reject out, so they cannot say it implements that interface.

  /** @internal The kernel accepted the send (count: see AckSettler; one here). */
  resolve(value: SendResult, _count: number): void {
    this.settle(FULFILLED, value);
  }

  /** @internal The send failed. */
  reject(err: PostboxError, _id: number): void {
    this.settle(REJECTED, err);
  }

  private settle(state: typeof FULFILLED | typeof REJECTED, value: SendResult | PostboxError): void {
    if (this.state !== PENDING) return;
    this.state = state;
    this.settled = value;
    const listener = state === FULFILLED ? this.onFulfil : this.onReject;
    if (listener !== null) {
      this.onFulfil = this.onReject = null;
      (listener as (v: SendResult | PostboxError) => void)(value);
    } else if (state === REJECTED) {
      // Nobody has asked yet: a rejected promise now, so that an error nobody handles is
      // reported as unhandled, exactly when a native promise's would be.
      this.native = Promise.reject(value);
    }
  }

  // biome-ignore lint/suspicious/noThenProperty: a thenable is the point: await and Promise.all take it as a promise.
  then<A = SendResult, B = never>(
    onfulfilled?: ((value: SendResult) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.promise().then(onfulfilled, onrejected);
  }

  catch<B = never>(onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<SendResult | B> {
    return this.promise().catch(onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<SendResult> {
    return this.promise().finally(onfinally);
  }

  private promise(): Promise<SendResult> {
    if (this.native !== null) return this.native;
    if (this.state === FULFILLED) this.native = Promise.resolve(this.settled as SendResult);
    else
      this.native = new Promise<SendResult>((resolve, reject) => {
        this.onFulfil = resolve;
        this.onReject = reject;
      });
    return this.native;
  }
}

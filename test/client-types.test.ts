/**
 * Compile-time test of the client's public types: tsc builds this file with the rest, so a type
 * that loosens (an `any` back in a step's value, a receiver that may be missing after
 * `'received'`) breaks the build. Each `Expect<Equal<…>>` must hold, and each line under
 * `@ts-expect-error` must be an error. At run time it only checks that it was built.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type {
  AnnouncedLimits,
  BatchIterator,
  CreditedMessages,
  Mailbox,
  MailboxOptions,
  Message,
  MessageIterator,
  OpenMailboxOptions,
  PostboxProcess,
  SendResult,
  TimeoutError,
  WouldBlockError,
} from '../src/client/mod.js';
import type { PipeReader } from '../src/faces/pipe.js';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;
type Step<I extends { next(): Promise<unknown> }> = Awaited<ReturnType<I['next']>>;

/** Every assertion here must hold for this file to compile. */
export type Assertions = [
  Expect<Equal<ReturnType<Mailbox<string>['messages']>, MessageIterator<string>>>,
  Expect<Equal<ReturnType<Mailbox<string>['batches']>, BatchIterator<string>>>,
  Expect<Equal<ReturnType<PipeReader['messages']>, MessageIterator>>,
  // A step is a message or the end, and the end's value is undefined, not any.
  Expect<Equal<Step<MessageIterator<string>>, IteratorResult<Message<string>, undefined>>>,
  Expect<Equal<Step<BatchIterator<string>>, IteratorResult<Message<string>[], undefined>>>,
  Expect<Equal<(Step<MessageIterator<string>> & { done: true })['value'], undefined>>,
  Expect<Equal<Extract<SendResult, { outcome: 'received' }>['receiver'], number>>,
  // Each error class has its one code.
  Expect<Equal<TimeoutError['code'], 'ETIMEDOUT'>>,
  Expect<Equal<WouldBlockError['code'], 'EAGAIN'>>,
  // Options and results a wrapper passes on have names it can import.
  Expect<Equal<Parameters<PostboxProcess['openMailbox']>[1], OpenMailboxOptions | undefined>>,
  Expect<Equal<Parameters<Mailbox['setLimits']>[0], Pick<MailboxOptions, 'capacity' | 'maxBytes'>>>,
  Expect<Equal<PostboxProcess['limits'], AnnouncedLimits>>,
];

/** Usage that must (and must not) compile. Never run: it needs a kernel. */
async function usage(proc: PostboxProcess): Promise<void> {
  const box = await proc.openMailbox<string>('jobs');
  const step = await box.messages().next();
  if (!step.done) {
    const body: string = step.value.body;
    void body;
  } else {
    const end: undefined = step.value;
    void end;
  }
  // @ts-expect-error before `done` is checked, the value may be the end's undefined
  step.value.body;

  const held: CreditedMessages<string> = box.messages({ holdCredit: true });
  for await (const m of held) {
    const body: string = m.body;
    void body;
    held.returnCredit();
  }
  // Still usable where the standard library's iterator type is asked for.
  const standard: AsyncIterableIterator<Message<string>> = box.messages();
  void standard;

  const r = await box.send('x', { receipt: true });
  if (r.outcome === 'received') {
    const who: number = r.receiver;
    void who;
  } else {
    const none: undefined = r.receiver;
    void none;
  }
  // The inbox is typed as a mailbox is, by what the caller expects.
  const direct = await proc.receive<{ done: number }>();
  if (direct !== null) {
    const done: number = direct.body.done;
    void done;
  }
  for await (const m of proc.messages<string>()) {
    const text: string = m.body;
    void text;
  }
  // @ts-expect-error the receiver is known only once the outcome says 'received'
  const unknownReceiver: number = r.receiver;
  void unknownReceiver;
}

test('the client types compile (checked by tsc; see the Assertions type)', () => {
  assert.equal(typeof usage, 'function');
});

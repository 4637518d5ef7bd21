/**
 * Postbox client: join the kernel as a process, and pass messages directly or through mailboxes.
 *
 * @example
 * ```ts
 * import { connect } from 'postbox';
 * const p = await connect({ name: 'producer' });
 * const jobs = await p.openMailbox('jobs', { create: { capacity: 10 } });
 * await jobs.send('hello');
 * ```
 */
export type { CodecName } from '../protocol/codec.js';
export * from '../protocol/errors.js';
export type { ConnectOptions } from './connect-options.js';
export { type ConsumeOptions, Consumer, type MessageHandler } from './consumer.js';
export {
  type BatchIterator,
  type BatchOptions,
  type CreditedMessages,
  type IterateOptions,
  Mailbox,
  type MailboxInfo,
  type MailboxStat,
  MessageBatches,
  type MessageIterator,
  MessageStream,
  type TypedAsyncIterator,
} from './mailbox.js';
export { Message } from './message.js';
export {
  connect,
  type DownEvent,
  type MailboxOptions,
  type OpenMailboxOptions,
  PostboxProcess,
  type ProcessInfo,
  type ProcessRef,
  type ProcessStat,
} from './process.js';
export type { ReceiveOptions } from './receive-options.js';
export type { SendOptions } from './send-options.js';
export { SendPromise } from './send-promise.js';
export type { SendManyResult, SendResult } from './send-result.js';
export type { AnnouncedLimits } from './welcome.js';

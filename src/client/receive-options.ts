import { InvalidArgumentError, type PostboxError } from '../protocol/errors.js';
import { MAX_TIMEOUT_MS, NO_MAX_SIZE } from '../protocol/frame.js';
import { describeValue, type OptionNames } from './option-names.js';

/** Options of a receive. */
export interface ReceiveOptions {
  /** System V msgrcv selection: 0 any, > 0 that type, < 0 the lowest type ≤ |type|. */
  type?: number | undefined;
  /** With a positive type: the first message not of that type (MSG_EXCEPT). EINVAL without one. */
  except?: boolean | undefined;
  /** Return null at once if nothing matches. */
  nowait?: boolean | undefined;
  /** Give up after this many ms (ETIMEDOUT). */
  timeout?: number | undefined;
  /** Give up when aborted (ECANCELED). */
  signal?: AbortSignal | undefined;
  /** Largest body accepted; a larger message is E2BIG and stays queued unless `truncate`. */
  maxSize?: number | undefined;
  /** Cut a larger body to maxSize and consume it (MSG_NOERROR). EINVAL without maxSize. */
  truncate?: boolean | undefined;
}

/** The names a receive takes: {@link ReceiveOptions} and the sender to select (`from`). */
export const RECEIVE_OPTIONS: OptionNames<ReceiveOptions & { from?: unknown }> = {
  type: true,
  except: true,
  nowait: true,
  timeout: true,
  signal: true,
  maxSize: true,
  truncate: true,
  from: true,
};

/** Checks a receive's (or an iterator's) selection and limits; the error names the first bad one. */
function checkReceiveOptions(o: ReceiveOptions): PostboxError | null {
  if (o.type !== undefined && !Number.isSafeInteger(o.type))
    return new InvalidArgumentError(`type must be an integer, not ${describeValue(o.type)}`);
  for (const flag of RECEIVE_FLAGS) {
    const v = o[flag];
    if (v !== undefined && typeof v !== 'boolean')
      return new InvalidArgumentError(`${flag} must be true or false, not ${describeValue(v)}`);
  }
  // Both only qualify another option; alone they would be ignored, and the caller surely
  // meant something by them.
  if (o.except === true && !(o.type !== undefined && o.type > 0))
    return new InvalidArgumentError(
      'except needs a positive type: it selects the first message not of that type',
    );
  if (o.truncate === true && o.maxSize === undefined)
    return new InvalidArgumentError('truncate needs maxSize: it cuts a message longer than maxSize to it');
  if (
    o.timeout !== undefined &&
    (!Number.isInteger(o.timeout) || o.timeout < 0 || o.timeout > MAX_TIMEOUT_MS)
  ) {
    return new InvalidArgumentError(
      `timeout must be a whole number of ms up to ${MAX_TIMEOUT_MS} (49.7 days), not ${describeValue(o.timeout)}`,
    );
  }
  if (
    o.maxSize !== undefined &&
    (!Number.isInteger(o.maxSize) || o.maxSize < 0 || o.maxSize >= NO_MAX_SIZE)
  ) {
    return new InvalidArgumentError(
      `maxSize must be a whole number of bytes, not ${describeValue(o.maxSize)}`,
    );
  }
  return null;
}

const RECEIVE_FLAGS = ['except', 'nowait', 'truncate'] as const;

export { checkReceiveOptions };

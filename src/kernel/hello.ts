import { badHostName, badProcessName, MAX_PROCESS_NAME } from '../protocol/names.js';

/** Processes, and their inboxes, an operator may add past the kernel's limits (Unix socket). */
export const OPERATOR_RESERVE = 4;

export interface HelloPayload {
  /** Joins within {@link OPERATOR_RESERVE} past the limits (`postbox ls`, `ps`, `rm`, …). */
  operator?: boolean;
  name?: string;
  pid?: number;
  host?: string;
  token?: string;
  inboxCapacity?: number;
  /** Answers RECALL with RETURN (or its TAKE): see {@link Mailbox.withdrawSend}. */
  recall?: boolean;
}

export function parseHello(v: unknown): HelloPayload {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Error('payload must be a JSON object');
  const o = v as Record<string, unknown>;
  const out: HelloPayload = {};
  if (o.name !== undefined && o.name !== null) {
    if (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > MAX_PROCESS_NAME)
      throw new Error(`name must be a string of 1 to ${MAX_PROCESS_NAME} characters`);
    const bad = badProcessName(o.name);
    if (bad !== null) throw new Error(bad);
    out.name = o.name;
  }
  if (o.pid !== undefined) {
    if (!Number.isSafeInteger(o.pid)) throw new Error('pid must be an integer');
    out.pid = o.pid as number;
  }
  if (o.host !== undefined) {
    if (typeof o.host !== 'string') throw new Error('host must be a string');
    const bad = badHostName(o.host);
    if (bad !== null) throw new Error(bad);
    out.host = o.host;
  }
  if (o.token !== undefined) {
    if (typeof o.token !== 'string') throw new Error('token must be a string');
    out.token = o.token;
  }
  if (o.operator !== undefined) {
    if (typeof o.operator !== 'boolean') throw new Error('operator must be true or false');
    out.operator = o.operator;
  }
  if (o.recall !== undefined) {
    if (typeof o.recall !== 'boolean') throw new Error('recall must be true or false');
    out.recall = o.recall;
  }
  if (o.inboxCapacity !== undefined && o.inboxCapacity !== null) {
    if (!Number.isSafeInteger(o.inboxCapacity) || (o.inboxCapacity as number) < 0)
      throw new Error('inboxCapacity must be a whole number');
    out.inboxCapacity = o.inboxCapacity as number;
  }
  return out;
}

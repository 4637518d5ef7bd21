import type { MailboxInfo, MailboxStat } from './mailbox.js';
import type { DownEvent, ProcessInfo, ProcessStat } from './process.js';

/**
 * What the client reads of the kernel's answers: each RESULT's fields by the op it answers, and
 * each EVENT's by its kind, checked where they are read. Taken on trust, `{}` as the answer to an
 * `open` failed the application later with a TypeError of its own (a handle closed as
 * `undefined`), a `stat` whose counts were strings was handed over as such, a list that was no
 * array failed with "page.sort is not a function", and a monitor's `down` without its reason
 * resolved with `reason: undefined`. A broken or hostile kernel is EPROTO, naming the op.
 *
 * Only control-plane answers come here: a send's and a receive's are fixed-size frames checked by
 * frame-check.ts, so none of this is on the message path.
 */

/**
 * Why a value is not what it should be, or null if it is: ` is "5", not a whole number` for the
 * value itself, `.count is …` or `[3].count is …` for a part of it (see {@link said}).
 */
type Check = (v: unknown) => string | null;

/** The longest a malformed value is shown: a list of a million is not echoed into an error. */
const SHOWN_CHARS = 80;

function shown(v: unknown): string {
  if (v === undefined) return 'absent';
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch {
    return 'nested too deep to show';
  }
  return text.length <= SHOWN_CHARS ? text : `${text.slice(0, SHOWN_CHARS)}… (${text.length} characters)`;
}

function is(what: string, test: (v: unknown) => boolean): Check {
  return (v) => (test(v) ? null : ` is ${shown(v)}, not ${what}`);
}

const isWhole = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const isId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 1;

const WHOLE = is('a whole number', isWhole);
const WHOLE_OR_NULL = is('a whole number or null', (v) => v === null || isWhole(v));
const ID = is('an id', isId);
const ID_OR_NULL = is('an id or null', (v) => v === null || isId(v));
// A System V key, or an OS pid as a process said it in its HELLO: any integer.
const INTEGER = is('an integer', Number.isSafeInteger);
const TIME = is('a time (ms)', (v) => typeof v === 'number' && Number.isFinite(v));
const STRING = is('a string', (v) => typeof v === 'string');
const STRING_OR_NULL = is('a string or null', (v) => v === null || typeof v === 'string');
const BOOLEAN = is('true or false', (v) => typeof v === 'boolean');
// 128 bits in hex, as the kernel makes them: another string would be handed on as a passkey
// that opens nothing.
const PASSKEY = is('a passkey (32 hex digits)', (v) => typeof v === 'string' && /^[0-9a-f]{32}$/.test(v));

function oneOf(...values: readonly string[]): Check {
  return is(`one of ${values.map((s) => `"${s}"`).join(', ')}`, (v) => values.includes(v as string));
}

/** A member older kernels leave out. */
function optional(check: Check): Check {
  return (v) => (v === undefined ? null : check(v));
}

function listOf(item: Check): Check {
  return (v) => {
    if (!Array.isArray(v)) return ` is ${shown(v)}, not an array`;
    for (let i = 0; i < v.length; i++) {
      const bad = item(v[i]);
      if (bad !== null) return `[${i}]${bad}`;
    }
    return null;
  };
}

/**
 * An object with these members (others are let through: a newer kernel may say more). Typed by
 * the interface the application is given, so that a member added to it is checked too.
 */
function shape<T = Record<string, unknown>>(fields: { readonly [K in keyof T]-?: Check }): Check {
  const names = Object.keys(fields);
  const checks = names.map((name) => (fields as Record<string, Check>)[name]!);
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return ` is ${shown(v)}, not an object`;
    const o = v as Record<string, unknown>;
    for (let i = 0; i < names.length; i++) {
      const bad = checks[i]!(o[names[i]!]);
      if (bad !== null) return `.${names[i]}${bad}`;
    }
    return null;
  };
}

/**
 * A reason as a sentence: `count is "5", …` for a member, `[3].count is …` for one of a list's,
 * `the answer is null, …` for the whole.
 */
function said(bad: string, whole: string): string {
  if (bad.startsWith('.')) return bad.slice(1);
  return bad.startsWith(' ') ? `${whole}${bad}` : bad;
}

const IDS = listOf(ID);
const STRINGS = listOf(STRING);

/** What a mailbox description holds, but its handle (create and open answer with one). */
const DESCRIPTION = {
  id: ID,
  name: STRING_OR_NULL,
  capacity: WHOLE_OR_NULL,
  maxMessageSize: WHOLE,
  maxBytes: WHOLE,
  order: oneOf('fifo', 'priority'),
  policy: oneOf('first', 'round-robin', 'exclusive', 'pair'),
  messageSize: WHOLE,
  mode: WHOLE,
  owner: ID_OR_NULL,
  system: BOOLEAN,
  group: IDS,
  key: INTEGER,
  endOnLastWriter: BOOLEAN,
  admission: oneOf('in-order', 'fits'),
  rightsAtOpen: BOOLEAN,
  unlinked: BOOLEAN,
  // Only in the answer to the create that asked for one.
  passkey: optional(PASSKEY),
  hasPasskey: optional(BOOLEAN),
} as const;

/** A handle's description, from the create or open that made the handle. */
const OPENED = shape<MailboxInfo>({ ...DESCRIPTION, handle: ID });
/** A mailbox's description from any other call (chmod, setLimits, …): no handle. */
const DESCRIBED = shape<MailboxInfo>({ ...DESCRIPTION, handle: optional(ID) });

const STAT = shape<MailboxStat>({
  ...DESCRIPTION,
  handle: optional(ID),
  inboxOf: optional(WHOLE_OR_NULL),
  count: WHOLE,
  bytes: WHOLE,
  queued: WHOLE,
  inflight: WHOLE,
  waitingSenders: IDS,
  waitingSendersCount: WHOLE,
  waitingReceipts: IDS,
  waitingReceiptsCount: WHOLE,
  waitingReceivers: IDS,
  waitingReceiversCount: WHOLE,
  holders: IDS,
  opens: WHOLE,
  readers: WHOLE,
  writers: WHOLE,
  lastSendPid: INTEGER,
  lastReceivePid: INTEGER,
  sent: WHOLE,
  received: WHOLE,
  replaced: WHOLE,
  dropped: WHOLE,
  lastSendTime: TIME,
  lastSendProcess: WHOLE,
  lastReceiveTime: TIME,
  lastReceiveProcess: WHOLE,
  changeTime: TIME,
  createTime: TIME,
});

const PROCESS_INFO = {
  id: ID,
  name: STRING_OR_NULL,
  pid: INTEGER,
  host: STRING,
  // 0 for a process whose inbox is gone.
  inbox: WHOLE,
} as const;

const PROCESS_STAT = shape<ProcessStat>({
  ...PROCESS_INFO,
  transport: STRING,
  inboxMessages: WHOLE,
  owns: STRINGS,
  ownsCount: optional(WHOLE),
  blockedOn: STRINGS,
  holds: STRINGS,
  watching: WHOLE,
  handles: WHOLE,
  unread: WHOLE,
  connectedAt: TIME,
});

/** `{}`: the op has nothing to say, and the client reads nothing of it. */
const NOTHING = shape({});

/** Why a monitor's process ended, as its `down` EVENT says. */
const DOWN_REASONS: readonly DownEvent['reason'][] = [
  'exit',
  'crash',
  'timeout',
  'shutdown',
  'protocol',
  'noproc',
];

/** Each EVENT by its `event` member. */
const EVENTS = {
  down: shape<DownEvent & { event: string }>({
    event: STRING,
    process: ID,
    name: STRING_OR_NULL,
    reason: oneOf(...DOWN_REASONS),
    kernelFault: optional(is('true', (v) => v === true)),
  }),
  message: shape({ mailbox: ID }),
  reader: shape({ mailbox: ID }),
  removed: shape({ mailbox: ID }),
} as const;

/** The kind of an EVENT: its `event` member. */
export type EventKind = keyof typeof EVENTS;

/** What the answers to one call must be: its RESULT, and the EVENTs it announces. */
export interface CallAnswer {
  readonly op: string;
  readonly result: Check;
  /** The kinds of EVENT the call's result announces; none if it announces none. */
  readonly events: readonly EventKind[];
}

/** Every op the client calls, with what its RESULT and EVENTs hold. */
const ANSWERS = {
  create: { result: OPENED },
  open: { result: OPENED },
  close: { result: NOTHING },
  unlink: { result: NOTHING },
  delete: { result: NOTHING },
  release: { result: NOTHING },
  // null: it has none. A renewal's answer is always the new one (see {@link answerOf}).
  passkey: { result: shape({ passkey: is('a passkey or null', (v) => v === null || PASSKEY(v) === null) }) },
  stat: { result: STAT },
  list: { result: listOf(STAT) },
  busiest: { result: shape({ scanned: WHOLE, next: ID_OR_NULL, mailboxes: listOf(STAT) }) },
  usage: {
    result: shape({
      mailboxes: WHOLE,
      processes: WHOLE,
      totalBytes: WHOLE,
      partialBytes: WHOLE,
      mostWaitingBytes: optional(WHOLE),
      connections: optional(WHOLE),
      connectionRoom: optional(WHOLE_OR_NULL),
      openFiles: optional(WHOLE_OR_NULL),
    }),
  },
  chmod: { result: DESCRIBED },
  grant: { result: DESCRIBED },
  revoke: { result: DESCRIBED },
  transfer: { result: DESCRIBED },
  set: { result: DESCRIBED },
  processes: { result: listOf(PROCESS_STAT) },
  lookup: { result: shape<ProcessInfo>(PROCESS_INFO) },
  // `{ monitor, process }`, or `{ monitor, down: true, reason: "noproc" }` for no such process.
  monitor: {
    result: shape({
      monitor: ID,
      down: optional(BOOLEAN),
      reason: optional(oneOf('noproc')),
      process: optional(ID),
    }),
    events: ['down'],
  },
  demonitor: { result: NOTHING },
  // With `on: false` (see {@link answerOf}), `{}`.
  notify: { result: shape({ event: ID }), events: ['message'], cancellable: true },
  // `{ readers }` if a reader has it open already, else `{ event }` and the EVENT to come.
  awaitReader: { result: readersOrEvent(), events: ['reader', 'removed'], cancellable: true },
  bye: { result: NOTHING },
} as const satisfies Record<string, { result: Check; events?: readonly EventKind[]; cancellable?: true }>;

/** A kernel call the client makes. */
export type CallOp = keyof typeof ANSWERS;

function readersOrEvent(): Check {
  const fields = shape({ readers: optional(WHOLE), event: optional(ID) });
  return (v) =>
    fields(v) ??
    ((v as { readers?: unknown }).readers === undefined && (v as { event?: unknown }).event === undefined
      ? ' has neither readers nor an event'
      : null);
}

const CALLS = {} as Record<CallOp, CallAnswer>;
/** The answers of calls that take back, with `on: false`, what an earlier one set up: `{}`. */
const CANCELLING = {} as Partial<Record<CallOp, CallAnswer>>;
for (const op of Object.keys(ANSWERS) as CallOp[]) {
  const a: { result: Check; events?: readonly EventKind[]; cancellable?: true } = ANSWERS[op];
  CALLS[op] = { op, result: a.result, events: a.events ?? [] };
  if (a.cancellable === true) CANCELLING[op] = { op, result: NOTHING, events: [] };
}

/** The answer to a `passkey` call with `renew: true`: the new passkey, never null. */
const RENEWED: CallAnswer = { op: 'passkey', result: shape({ passkey: PASSKEY }), events: [] };

/** What the answers to a call of `op` with these arguments must be. */
export function answerOf(op: CallOp, args: Record<string, unknown>): CallAnswer {
  if (op === 'passkey' && args.renew === true) return RENEWED;
  return (args.on === false ? CANCELLING[op] : undefined) ?? CALLS[op];
}

/** Why a call's RESULT is not what its op answers, or null if it is. */
export function badResult(answer: CallAnswer, result: unknown): string | null {
  const bad = answer.result(result);
  return bad === null ? null : said(bad, 'the answer');
}

/**
 * Why an EVENT is not one that the call of `answer` announced (any kind the client knows, for a
 * handler registered without one), or null if it is.
 */
export function badEvent(answer: CallAnswer | null, event: unknown): string | null {
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    return `the event is ${shown(event)}, not an object`;
  const kind = (event as { event?: unknown }).event;
  const kinds: readonly string[] = answer?.events ?? Object.keys(EVENTS);
  if (typeof kind !== 'string' || !kinds.includes(kind))
    return `its event is ${shown(kind)}, not ${kinds.map((k) => `"${k}"`).join(' or ')}`;
  const bad = EVENTS[kind as EventKind](event);
  return bad === null ? null : said(bad, 'the event');
}

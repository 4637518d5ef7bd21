import { once } from 'node:events';
import { parseArgs } from 'node:util';
import type { MailboxStat } from '../client/mailbox.js';
import { connect, type PostboxProcess, type ProcessRef } from '../client/process.js';
import {
  ConnectionRefusedError,
  NoProcessError,
  NotFoundError,
  PermissionError,
} from '../protocol/errors.js';
import { defaultSocketPath } from '../transport/address.js';
import { cut } from './table.js';
import { UsageError } from './usage-error.js';

/** Options every command takes: where the kernel is, and --help. */
export const connectionOptions = {
  socket: { type: 'string' },
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The help lines of {@link connectionOptions}. */
export const connectionHelp = `  --socket PATH        the kernel's Unix socket (default: $POSTBOX_SOCKET, else
                       $XDG_RUNTIME_DIR/postbox/kernel.sock, else <tmp>/postbox-<user>/kernel.sock)
  --url URL            tcp://HOST:PORT of a kernel on another machine (token from $POSTBOX_TOKEN),
                       or unix:PATH (default: $POSTBOX_URL)
  -h, --help           this help
`;

/**
 * node:util parseArgs takes `--type -2` for a missing value followed by an option, and refuses it
 * in three lines that do not show the value. Joins a value led by one dash to its numeric option
 * (`--type=-2`), so negative numbers read naturally and a bad one (`--type -x`) is named in the
 * number's own one-line error.
 */
export function joinDashedValues(argv: string[], options: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a.startsWith('--') && options.includes(a.slice(2)) && next !== undefined && /^-[^-]/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** Checks the number of positional arguments. */
export function positionals(given: string[], names: string[], optional = 0): (string | undefined)[] {
  const required = names.length - optional;
  if (given.length < required)
    throw new UsageError(`missing ${names.slice(given.length, required).join(' and ')}`);
  if (given.length > names.length) throw new UsageError(`unexpected argument '${given[names.length]}'`);
  return names.map((_, i) => given[i]);
}

/** A whole number option: `--flag N`, within [min, max]. */
export function parseInteger(
  value: string | undefined,
  flag: string,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const digits = /^[-+]?\d+$/.test(value.trim());
  const n = digits ? Number(value) : Number.NaN;
  // A number past 2^53 is a whole number still: say what is wrong with it.
  if (digits && !Number.isSafeInteger(n) && max === Number.MAX_SAFE_INTEGER)
    throw new UsageError(
      `--${flag} must be a whole number ${min === Number.MIN_SAFE_INTEGER ? 'up' : `from ${min}`} to ${Number.MAX_SAFE_INTEGER} (2^53 − 1), not '${value}'`,
    );
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${flag} must be ${wholeNumbers(min, max)}, not '${value}'`);
  return n;
}

/** Words for a range of whole numbers; the safe-integer bounds mean "no bound", not a number to show. */
function wholeNumbers(min: number, max: number): string {
  const noMin = min === Number.MIN_SAFE_INTEGER;
  if (max === Number.MAX_SAFE_INTEGER) {
    if (noMin) return 'a whole number';
    if (min === 0) return 'a whole number, 0 or more';
    return min === 1 ? 'a positive whole number' : `a whole number from ${min}`;
  }
  return noMin ? `a whole number up to ${max}` : `a whole number from ${min} to ${max}`;
}

/** Bytes: `4096`, `64K`, `1M`, `2G` (powers of 1024), at least `min`. */
export function parseBytes(value: string | undefined, flag: string, min: 0 | 1 = 1): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)\s*([kmg]?)i?b?$/i.exec(value.trim());
  const scale = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m?.[2] ?? '').toLowerCase()];
  const n = m === null || scale === undefined ? Number.NaN : Number(m[1]) * scale;
  if (!Number.isSafeInteger(n) || n < min)
    throw new UsageError(
      `--${flag} must be ${min === 0 ? 'a number of bytes, 0 or more,' : 'a positive number of bytes'} such as 4096 or 64K, not '${value}'`,
    );
  return n;
}

/**
 * A mode like ipc_perm: three octal digits, optionally with a leading 0 or 0o (`0662`). `what` is
 * how the error names it: the flag, or `MODE` for chmod's operand.
 */
export function parseMode(value: string | undefined, what = '--mode'): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:0o?)?([0-7]{3})$/i.exec(value.trim());
  if (m === null) throw new UsageError(`${what} must be three octal digits such as 0662, not '${value}'`);
  return Number.parseInt(m[1]!, 8);
}

/** A capacity: a whole number (0 is a rendezvous) or `unbounded`. */
export function parseCapacity(value: string | undefined): number | 'unbounded' | undefined {
  if (value === undefined) return undefined;
  if (/^(unbounded|inf|infinity|∞)$/i.test(value.trim())) return 'unbounded';
  return parseInteger(value, 'capacity', 0);
}

/** One of a set of words. */
export function parseChoice<T extends string>(
  value: string | undefined,
  flag: string,
  choices: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value))
    throw new UsageError(`--${flag} must be ${choices.join(', ')}; not '${value}'`);
  return value as T;
}

/**
 * A process named on the command line (`send --process`, `recv --from`): an id if it is all
 * digits, else a name. An empty one, or digits past what an id can be (Number() would round
 * them to another id), is a usage error rather than a lookup of something nobody could have.
 */
export function processOperand(ref: string, what: string): ProcessRef {
  if (ref === '') throw new UsageError(`${what} needs a process name or id, not an empty string`);
  if (!/^\d+$/.test(ref)) return ref;
  const id = Number(ref);
  if (!Number.isSafeInteger(id)) throw new UsageError(`${what}: ${ref} is too large to be a process id`);
  // Ids start at 1: 0 would reach the library, whose refusal names its own call (`receive()`).
  if (id === 0) throw new UsageError(`${what}: 0 is no process id (ids start at 1)`);
  return id;
}

/** Connects as a new process where the flags or the environment say the kernel is. */
export async function connectFromFlags(
  values: { socket?: string; url?: string },
  operator = false,
): Promise<PostboxProcess> {
  if (values.socket !== undefined && values.url !== undefined)
    throw new UsageError('give --socket or --url, not both');
  // An empty path would be taken as "no path" further down, and the default tried instead.
  if (values.socket === '') throw new UsageError('--socket needs a path, not an empty string');
  if (values.url !== undefined && !/^(tcp:\/\/|unix:)/.test(values.url))
    throw new UsageError(`--url must be tcp://HOST:PORT or unix:PATH, not '${values.url}'`);
  if (values.url === 'unix:') throw new UsageError('--url unix:PATH needs a path');
  try {
    // --socket must win over $POSTBOX_URL too, which the client would otherwise prefer.
    const url = values.url ?? (values.socket !== undefined ? `unix:${values.socket}` : undefined);
    return await connect({ ...(url !== undefined ? { url } : {}), ...(operator ? { operator } : {}) });
  } catch (err) {
    if (err instanceof ConnectionRefusedError) {
      // The client's own words when nothing answered; anything else is a kernel that answered
      // and refused this process (a wrong or missing token), which it says in its own words.
      if (err.message.startsWith('no kernel is answering') || err.message.startsWith('permission denied'))
        throw kernelNotRunning(err, values);
      // Permission denied, as a socket this user may not use is: a script tells "no kernel, try
      // later" (exit 1) from "you may not" (exit 5) by the exit code alone.
      const where = values.url ?? process.env.POSTBOX_URL ?? values.socket ?? 'the kernel';
      throw new PermissionError(`the kernel at ${where} refused this process: ${err.message}`);
    }
    if (err instanceof TypeError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * No kernel answered where the command looked (code ECONNREFUSED, exit 1). The message names the
 * OS's own cause, which may be another code (ENOENT: no socket there), and says what to do next.
 */
export class KernelNotRunningError extends ConnectionRefusedError {}

/**
 * Why nothing answered, in words that say what to do: start a kernel, check the TCP address,
 * or, when the socket is there but this user may not connect to it, that (a kernel's socket is
 * private to the user who started it: starting another would not help).
 */
function kernelNotRunning(
  err: ConnectionRefusedError,
  values: { socket?: string; url?: string },
): KernelNotRunningError | PermissionError {
  // The client names the OS's code in its message: ECONNREFUSED, ENOENT, EACCES, ETIMEDOUT...
  const why = /\((E[A-Z0-9]+)\)/.exec(err.message)?.[1] ?? err.code;
  const url = values.url ?? process.env.POSTBOX_URL;
  // Not the token: nothing took the connection to read one (a wrong token is the kernel's own refusal).
  if (url?.startsWith('tcp://'))
    return new KernelNotRunningError(
      `no kernel is answering at ${url} (${why}).\nIs a kernel listening there (\`postbox kernel --listen ${url}\` on that machine)?`,
    );
  const socket = url?.startsWith('unix:') ? url.slice(5) : (values.socket ?? defaultSocketPath());
  if (why === 'EACCES' || why === 'EPERM')
    return new PermissionError(
      `permission denied on the socket ${socket} (${why}): a kernel's socket is private to the user who started it; run the command as that user`,
    );
  const isDefault =
    values.socket === undefined && url === undefined && process.env.POSTBOX_SOCKET === undefined;
  const start = isDefault ? 'postbox kernel' : `postbox kernel --socket ${socket}`;
  return new KernelNotRunningError(
    `the kernel is not running: nothing answers at ${socket} (${why}).\n` +
      `Start it with \`${start}\` (or \`npm start\` in a Postbox checkout) and try again.`,
  );
}

/**
 * Runs fn with a connected process, and closes the process afterwards whatever happens. An
 * `operator` command (one that looks or cleans up) joins even at the kernel's limits, within
 * the reserve kept for that.
 */
export async function withProcess<T>(
  values: { socket?: string; url?: string },
  fn: (proc: PostboxProcess) => Promise<T>,
  operator = false,
): Promise<T> {
  const proc = await connectFromFlags(values, operator);
  try {
    return await fn(proc);
  } finally {
    await proc.close().catch(() => {});
  }
}

/**
 * Runs a command that takes only the connection flags and `--json` (`ls`, `ps`, `limits`): prints
 * its help for `--help`, refuses any operand, and hands `show` a connected process.
 */
export async function runListing(
  argv: string[],
  help: string,
  show: (proc: PostboxProcess, json: boolean, top: number | undefined) => Promise<number>,
  options: { top?: boolean } = {},
): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args: options.top ? joinDashedValues(argv, ['top']) : argv,
    options: {
      ...connectionOptions,
      json: { type: 'boolean' },
      ...(options.top ? { top: { type: 'string' } } : {}),
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    return 0;
  }
  positionals(rest, []);
  const top = parseInteger(values.top as string | undefined, 'top', 1, 1000);
  return withOperatorProcess(values, (proc) => show(proc, values.json === true, top));
}

/** {@link withProcess} for a command that looks or cleans up: it joins even at the limits. */
export function withOperatorProcess<T>(
  values: { socket?: string; url?: string },
  fn: (proc: PostboxProcess) => Promise<T>,
): Promise<T> {
  return withProcess(values, fn, true);
}

/** A mailbox named on the command line: `NAME`, `#ID`, or a number (an id, else a name). */
export function describeRef(ref: string): string {
  return /^#\d+$/.test(ref) ? `mailbox ${ref}` : `mailbox '${ref}'`;
}

/**
 * Finds a mailbox's current state by `NAME`, `#ID` or number id, with the kernel's stat (so no
 * handle is opened: opening a FIFO would count as one of its readers or writers). One stat, not
 * the kernel's whole list: with 100,000 mailboxes, finding one in the list took each `send` or
 * `recv` 2 s and 180 MB.
 */
export async function findMailbox(proc: PostboxProcess, ref: string): Promise<MailboxStat> {
  if (ref.length === 0) throw new UsageError('a mailbox name cannot be empty');
  const hash = /^#(\d+)$/.exec(ref);
  if (hash !== null) {
    const mb = await statById(proc, Number(hash[1]));
    if (isMailbox(mb)) return mb;
    // As typed: a number past 2⁵³ would print rounded.
    throw await notFound(proc, mb, ref, `no mailbox ${ref}`);
  }
  // A bare number is an id first, as `#ID` is: a name of digits (which only the library can
  // make) must not turn `postbox rm 18` into the removal of some other mailbox than #18.
  const byId = /^\d+$/.test(ref) ? await statById(proc, Number(ref)) : null;
  if (isMailbox(byId)) return byId;
  // An unlinked mailbox has lost its name (it lives on until its last handle closes): the
  // kernel no longer finds it by that name.
  const named = await statOrNull(proc.stat(ref));
  if (named !== null) return named;
  throw await notFound(proc, byId, ref, `no mailbox '${ref}'`);
}

/** What has this id, mailbox or inbox, or null if nothing has. */
function statById(proc: PostboxProcess, id: number): Promise<MailboxStat | null> {
  // No id the kernel gives is outside 1 to 2³²−1: asking would be refused as a malformed id.
  if (!(Number.isSafeInteger(id) && id >= 1 && id <= 0xffffffff)) return Promise.resolve(null);
  return statOrNull(proc.stat(id));
}

/** A stat of a mailbox, not of a process's inbox (which lists leave out). */
function isMailbox(mb: MailboxStat | null): mb is MailboxStat {
  return mb !== null && (mb.inboxOf ?? null) === null;
}

/** A stat's answer, or null where the kernel has no such mailbox. */
async function statOrNull(stat: Promise<MailboxStat>): Promise<MailboxStat | null> {
  try {
    return await stat;
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

/**
 * ENOENT for a reference that names no mailbox: if its id is a process's inbox, the error says
 * so (the command line works on mailboxes; an inbox is reached through its process), else
 * `message`.
 */
async function notFound(
  proc: PostboxProcess,
  byId: MailboxStat | null,
  ref: string,
  message: string,
): Promise<NotFoundError> {
  const owner = byId?.inboxOf ?? null;
  if (byId === null || owner === null) return new NotFoundError(message, { mailbox: ref });
  const name = (await lookupProcesses(proc, [owner])).names.get(owner) ?? null;
  const who = name === null ? `process ${owner}` : `process ${owner} ('${name}')`;
  return new NotFoundError(
    `#${byId.id} is the inbox of ${who}, not a mailbox: an inbox is reached through its process (in the library, send(${owner}, body))`,
    { mailbox: ref },
  );
}

/**
 * How tables name a mailbox, in at most `max` characters: a longer name is cut, with "…", so
 * that one long name does not widen the column for every row (--json keeps it whole).
 */
export function mailboxLabel(
  mb: { id: number; name: string | null; unlinked?: boolean },
  max = Number.POSITIVE_INFINITY,
): string {
  if (mb.name === null) return `#${mb.id}`;
  const suffix = mb.unlinked === true ? ' (unlinked)' : '';
  return `${cut(mb.name, max - suffix.length)}${suffix}`;
}

/** Processes a table names: id → name and OS pid; those found ended are in neither. */
export interface KnownProcesses {
  names: Map<number, string | null>;
  pids: Map<number, number>;
  ended: Set<number>;
}

/**
 * Looks up the processes `ids` names that `known` does not know yet, each alone (the calls go out
 * together), and adds them to it: a table that names a few processes need not fetch every one
 * (`stat` and `ls` fetched 10,000 processes' rows for a handful of names). One that has ended is
 * left out of the names, and shown by its id.
 *
 * @example
 * ```ts
 * const known = await lookupProcesses(proc, [mb.owner ?? 0, ...mb.waitingReceivers]);
 * processLabel(mb.owner, known.names); // 'worker(7)'
 * ```
 */
export async function lookupProcesses(
  proc: PostboxProcess,
  ids: Iterable<number | null>,
  known: KnownProcesses = { names: new Map(), pids: new Map(), ended: new Set() },
): Promise<KnownProcesses> {
  const ask = new Set<number>();
  for (const id of ids)
    if (id !== null && id > 0 && !known.names.has(id) && !known.ended.has(id)) ask.add(id);
  const found = await Promise.all(
    [...ask].map((id) =>
      proc.lookup(id).catch((err: unknown) => {
        if (err instanceof NoProcessError) return id;
        throw err;
      }),
    ),
  );
  for (const p of found) {
    if (typeof p === 'number') {
      known.ended.add(p);
      continue;
    }
    known.names.set(p.id, p.name);
    known.pids.set(p.id, p.pid);
  }
  return known;
}

/**
 * How tables name the processes in a list of waiting operations (a process id per operation):
 * each process once, in order of its first, with how many it has if more than one
 * (`alice(7) ×3000, 8`): a producer pipelining sends into a full mailbox is one sender. The
 * kernel lists the first 100 operations of a line; `total` counts them all, and those not listed
 * are counted at the end (`alice(7) ×100 +19900 more`).
 */
export function waitersLabel(
  ids: readonly number[],
  total: number,
  names: Map<number, string | null>,
  max = Number.POSITIVE_INFINITY,
): string {
  if (ids.length === 0) return '-';
  const counts = new Map<number, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  const listed = [...counts]
    .map(([id, n]) => {
      const label = processLabel(id, names, max);
      return n === 1 ? label : `${label} ×${n}`;
    })
    .join(', ');
  return total > ids.length ? `${listed} +${total - ids.length} more` : listed;
}

/**
 * How tables name a process: `alice(7)`, or `7` if it has no name; `-` for none. A name is cut
 * to `max` columns (its id is kept whole): one long name must not widen every row.
 */
export function processLabel(
  id: number | null | undefined,
  names: Map<number, string | null>,
  max = Number.POSITIVE_INFINITY,
): string {
  if (id === null || id === undefined || id === 0) return '-';
  const name = names.get(id);
  return name === null || name === undefined ? String(id) : `${cut(name, max)}(${id})`;
}

/**
 * Writes to stdout, waiting while its buffer is full (so a slow reader slows us down). Returns
 * false once nobody reads stdout any more (`postbox recv --follow | head -1`).
 */
export async function writeOut(text: string | Uint8Array): Promise<boolean> {
  const out = process.stdout;
  if (out.destroyed || out.writableEnded) return false;
  if (out.write(text)) return true;
  try {
    await once(out, 'drain');
    return true;
  } catch {
    return false;
  }
}

/** JSON for scripts, one value per call. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * One JSON array, as {@link printJson} writes it, from items that come a page at a time: written
 * as they come, never held whole. A million mailboxes' stats are about a gigabyte, over the
 * longest string V8 makes (`ls --json` failed with "Invalid string length"). Stops early, false,
 * once nobody reads stdout.
 */
export async function printJsonPages(pages: AsyncIterable<readonly unknown[]>): Promise<boolean> {
  for await (const text of jsonArrayText(pages)) if (!(await writeOut(text))) return false;
  return true;
}

/**
 * The text of {@link printJsonPages}, a page at a time: joined, `JSON.stringify(all, null, 2)`
 * and a newline.
 *
 * @example
 * ```ts
 * for await (const text of jsonArrayText(me.mailboxPages())) process.stdout.write(text);
 * ```
 */
export async function* jsonArrayText(pages: AsyncIterable<readonly unknown[]>): AsyncGenerator<string> {
  let first = true;
  for await (const page of pages) {
    if (page.length === 0) continue;
    const items = page.map((item) => JSON.stringify(item, null, 2).replaceAll('\n', '\n  '));
    yield `${first ? '[\n  ' : ',\n  '}${items.join(',\n  ')}`;
    first = false;
  }
  yield first ? '[]\n' : '\n]\n';
}

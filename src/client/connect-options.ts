import { hostname } from 'node:os';
import {
  ConnectionRefusedError,
  InvalidArgumentError,
  NameTooLongError,
  PermissionError,
} from '../protocol/errors.js';
import { badProcessName, MAX_PROCESS_NAME } from '../protocol/names.js';
import {
  defaultSocketPath,
  parseTcpUrl,
  socketPathTooLong,
  untrustedDefaultSocket,
  withoutLineEnd,
} from '../transport/address.js';
import { describeValue, type OptionNames } from './option-names.js';
import { badSignal } from './option-values.js';

/** Where and how to reach the kernel. */
export interface ConnectOptions {
  /** Unique process name (EEXIST if taken). */
  name?: string | undefined;
  /** Unix socket path of the kernel; default by the documented rule (POSTBOX_SOCKET, …). */
  socket?: string | undefined;
  /** `tcp://HOST:PORT` for a kernel on another machine (or `unix:PATH`). Default POSTBOX_URL. */
  url?: string | undefined;
  /** Token for TCP; default POSTBOX_TOKEN. */
  token?: string | undefined;
  /** Capacity of this process's inbox (default unbounded). */
  inboxCapacity?: number | undefined;
  /**
   * Join even when the kernel's process or mailbox limit is reached, within a small reserve
   * kept for operators (Unix socket only), as `postbox ls`, `ps`, `stat`, `limits`, `rm` and
   * `watch` do: so that one can still look and clean up. For short-lived inspection, not work.
   */
  operator?: boolean | undefined;
  /**
   * How long to keep trying, in ms, while there is no kernel to join at the address yet: nothing
   * listens (its socket is missing or refuses), or a kernel drops the connection before it
   * answers (killed or restarting) or answers that it is shutting down. For a program started
   * beside its kernel, as services are by systemd or a compose file, and for one that joins
   * again when its kernel restarts. Default 0: fail at once. A kernel that answers and refuses
   * (a bad token, a taken name) fails at once whatever this says.
   *
   * @example
   * ```ts
   * const me = await connect({ name: 'worker', waitForKernel: 30_000 });
   * ```
   */
  waitForKernel?: number | undefined;
  /**
   * How long, in ms, the join has to reach the kernel and be answered before it fails with
   * ETIMEDOUT: a kernel that is stopped (SIGSTOP, a debugger) or wedged still takes
   * connections, and without a bound the join would wait for it forever; over TCP, a host that
   * drops the connection's packets (a firewall, a machine that is down) would hold the connect
   * for the OS's own limit, some two minutes. With `waitForKernel`,
   * an attempt that timed out is tried again while the wait lasts. A kernel's Unix socket whose
   * queue of connections is full (more processes joining at once than it has taken yet) is
   * tried again within this time, waiting or not. Default 20,000.
   *
   * @example
   * ```ts
   * const me = await connect({ timeout: 2_000 }); // ETIMEDOUT if the kernel does not answer in 2 s
   * ```
   */
  timeout?: number | undefined;
  /**
   * Gives up joining when aborted, with ECANCELED: while waiting for a kernel to appear
   * (`waitForKernel`) or for one to answer. A program that waits for its kernel without bound
   * can still be stopped, as every other wait in Postbox can. If the kernel's welcome came
   * first, the process has joined and `connect()` resolves with it.
   *
   * @example
   * ```ts
   * const stop = new AbortController();
   * process.once('SIGTERM', () => stop.abort());
   * const me = await connect({ waitForKernel: Infinity, signal: stop.signal });
   * ```
   */
  signal?: AbortSignal | undefined;
}

/** The names {@link ConnectOptions} has. */
export const CONNECT_OPTIONS: OptionNames<ConnectOptions> = {
  name: true,
  socket: true,
  url: true,
  token: true,
  inboxCapacity: true,
  operator: true,
  waitForKernel: true,
  timeout: true,
  signal: true,
};

/** How long a kernel that took the connection has to answer the join, unless told (NATS's default too). */
const DEFAULT_JOIN_TIMEOUT_MS = 20_000;

/** What {@link ConnectOptions} ask for, checked: where the kernel is, what to tell it, how long to try. */
export interface JoinPlan {
  readonly transport: 'unix' | 'tcp';
  /** The socket's path, or the `tcp://` URL. */
  readonly address: string;
  /** The host and port of a `tcp://` address; null for a Unix socket. */
  readonly tcp: { host: string; port: number } | null;
  /** The HELLO's fields. */
  readonly hello: Record<string, unknown>;
  /** `waitForKernel`, in ms. */
  readonly wait: number;
  /** The join's `timeout`, in ms. */
  readonly timeout: number;
  readonly signal: AbortSignal | undefined;
}

/**
 * Checks connect()'s options and settles where the kernel is (an explicit option beats the
 * environment) and the HELLO to send. Throws what is wrong, before any socket is opened.
 *
 * @example
 * ```ts
 * const plan = planJoin({ url: 'tcp://db1:7420', token: 's3cret', timeout: 2_000 });
 * // plan.transport === 'tcp', plan.hello.token === 's3cret'
 * ```
 */
export function planJoin(options: ConnectOptions): JoinPlan {
  // An explicit option beats the environment: url, then socket, then POSTBOX_URL, then the
  // POSTBOX_SOCKET / default rule.
  const url = options.url ?? (options.socket === undefined ? process.env.POSTBOX_URL : undefined);
  let transport: 'unix' | 'tcp';
  let address: string;
  for (const key of ['url', 'socket', 'token', 'name'] as const) {
    const v = options[key];
    if (v !== undefined && typeof v !== 'string')
      throw new InvalidArgumentError(`connect(): ${key} must be a string, not ${describeValue(v)}`);
  }
  // The kernel would refuse these too, but as a bad HELLO (EPROTO): say what is wrong here.
  if (options.name !== undefined) {
    if (options.name.length > MAX_PROCESS_NAME)
      throw new NameTooLongError(
        `a process name is at most ${MAX_PROCESS_NAME} characters, not ${options.name.length}`,
      );
    const bad = options.name === '' ? 'a process name cannot be empty' : badProcessName(options.name);
    if (bad !== null) throw new InvalidArgumentError(bad);
  }
  // Set in a shell profile, $POSTBOX_URL is nowhere in the program: a bad one says it is the culprit.
  const urlFrom = options.url !== undefined ? 'url' : '$POSTBOX_URL';
  if (url !== undefined && !url.startsWith('tcp://') && !url.startsWith('unix:'))
    throw new InvalidArgumentError(`${urlFrom} must be tcp://HOST:PORT or unix:PATH, not '${url}'`);
  // An empty path would reach the OS and come back as "no kernel is answering at " (nowhere).
  if (url === 'unix:') throw new InvalidArgumentError(`${urlFrom} 'unix:' needs a path, not an empty string`);
  if (url === undefined && options.socket === '')
    throw new InvalidArgumentError('socket needs a path, not an empty string');
  if (options.operator !== undefined && typeof options.operator !== 'boolean')
    throw new InvalidArgumentError(`operator must be true or false, not ${describeValue(options.operator)}`);
  const inbox = options.inboxCapacity;
  if (
    inbox !== undefined &&
    inbox !== Number.POSITIVE_INFINITY &&
    !(Number.isSafeInteger(inbox) && inbox >= 0)
  )
    throw new InvalidArgumentError(
      `inboxCapacity must be 0, a positive whole number or Infinity, not ${describeValue(inbox)}`,
    );
  const wait = options.waitForKernel ?? 0;
  if (typeof wait !== 'number' || !(wait >= 0))
    throw new InvalidArgumentError(
      `waitForKernel must be a number of ms (0 or more, or Infinity), not ${describeValue(wait)}`,
    );
  const timeout = options.timeout ?? DEFAULT_JOIN_TIMEOUT_MS;
  if (typeof timeout !== 'number' || !(timeout > 0))
    throw new InvalidArgumentError(
      `timeout must be a number of ms (more than 0, or Infinity), not ${describeValue(timeout)}`,
    );
  const signal = options.signal;
  const badSig = badSignal(signal, 'connect()');
  if (badSig !== null) throw badSig;
  let tcp: { host: string; port: number } | null = null;
  if (url?.startsWith('tcp://')) {
    let bad: string | null = null;
    try {
      tcp = parseTcpUrl(url);
      // Port 0 means "any free port" to a listener; a process dialling it reaches nothing.
      if (tcp.port === 0)
        bad = `port 0 in '${url}' is for a kernel's --listen (it picks a free port); connect to the port the kernel printed`;
    } catch (err) {
      bad = (err as Error).message;
    }
    if (bad !== null) throw new InvalidArgumentError(urlFrom === 'url' ? bad : `$POSTBOX_URL: ${bad}`);
    transport = 'tcp';
    address = url;
  } else {
    address = url?.startsWith('unix:') ? url.slice(5) : (options.socket ?? defaultSocketPath());
    transport = 'unix';
    // Node would cut the path and connect elsewhere, then report ECONNREFUSED: "no kernel".
    const tooLong = socketPathTooLong(address);
    if (tooLong !== null) throw new NameTooLongError(tooLong);
    const untrusted = untrustedDefaultSocket(address);
    if (untrusted !== null) throw new PermissionError(untrusted);
  }
  const token = options.token ?? process.env.POSTBOX_TOKEN;
  const hello: Record<string, unknown> = { pid: process.pid, host: hostname() };
  if (options.name !== undefined) hello.name = options.name;
  // The kernel drops a token's line end too: the token file's contents as read work as it.
  if (token !== undefined && transport === 'tcp') hello.token = withoutLineEnd(token);
  if (options.inboxCapacity !== undefined) hello.inboxCapacity = options.inboxCapacity;
  if (options.operator === true) hello.operator = true;
  hello.recall = true;
  return { transport, address, tcp, hello, wait, timeout, signal };
}

/**
 * What to tell a process that found no kernel to join and is not waiting any longer: from one
 * attempt's socket `code`, and whether that attempt was one worth waiting out (`retry`).
 */
export function noKernelError(plan: JoinPlan, code: string, retry: boolean): ConnectionRefusedError {
  // A socket this user may not use: a kernel may well be running there (another user's),
  // and starting one at that path would not help. (The command line reads the code in
  // brackets to say the same.)
  if (plan.transport === 'unix' && (code === 'EACCES' || code === 'EPERM'))
    return new ConnectionRefusedError(
      `permission denied on the socket ${plan.address} (${code}): a kernel's socket is private to the user who started it; connect as that user, or start a kernel of your own with --socket PATH`,
    );
  // The command that starts a kernel where this process looked for one.
  const hint =
    plan.transport !== 'unix'
      ? ''
      : plan.address === defaultSocketPath()
        ? ' Start one with `npm start` or `npx postbox kernel`.'
        : ` Start one with \`npx postbox kernel --socket ${plan.address}\`.`;
  // A name the resolver does not know is not a kernel that is down: say which it is.
  if (plan.tcp !== null && (code === 'ENOTFOUND' || code === 'EAI_AGAIN'))
    return new ConnectionRefusedError(
      `no host named '${plan.tcp.host}' was found (${code}), so no kernel could be reached at ${plan.address}: check the host in the URL`,
    );
  const waited = plan.wait > 0 && retry ? ` after waiting ${plan.wait} ms` : '';
  return new ConnectionRefusedError(`no kernel is answering at ${plan.address}${waited} (${code}).${hint}`);
}

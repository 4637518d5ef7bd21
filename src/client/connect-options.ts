import type { OptionNames } from './option-names.js';

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

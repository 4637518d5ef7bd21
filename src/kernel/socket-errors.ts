/**
 * Why a kernel could not have its socket: each refusal a class with the OS's code, as a program
 * that starts a kernel (`startKernel()`) tells them apart.
 */

/**
 * The base of the kernel's socket refusals: named after its class, as PostboxError is, so a
 * trace reads 'KernelRunningError: …', not 'Error: …'.
 *
 * @example
 * ```ts
 * import { KernelSocketError, startKernel } from 'postbox/kernel';
 * try { await startKernel({ socket: '/tmp/app.sock' }); }
 * catch (err) { if (err instanceof KernelSocketError) console.error(err.code, err.message); }
 * ```
 */
export abstract class KernelSocketError extends Error {
  abstract readonly code: string;
  override get name(): string {
    return this.constructor.name;
  }
}

/** The socket's folder is another user's, or anyone may replace what is in it. */
export class SocketFolderNotPrivateError extends KernelSocketError {
  readonly code = 'EACCES';
  constructor(
    readonly folder: string,
    why: string,
  ) {
    super(
      `the socket's folder ${folder} ${why}: another user could put a socket of their own in the kernel's place and be sent what its processes send; give a folder of your own (--socket PATH)`,
    );
  }
}

/** The socket path ends with '/': it names a folder, and a socket is a file in one. */
export class SocketPathIsFolderError extends KernelSocketError {
  readonly code = 'EISDIR';
  constructor(readonly socketPath: string) {
    super(
      `the socket path ${socketPath} ends with '/', so it names a folder; give the socket's own name in it, e.g. --socket ${socketPath}kernel.sock`,
    );
  }
}

/** The socket path is longer than the OS takes; Node would cut it and listen elsewhere. */
export class SocketPathTooLongError extends KernelSocketError {
  readonly code = 'ENAMETOOLONG';
  constructor(
    readonly socketPath: string,
    message: string,
  ) {
    super(message);
  }
}

/** The socket path holds something that is not a socket (a file, a folder): it is left alone. */
export class SocketPathTakenError extends KernelSocketError {
  readonly code = 'EEXIST';
  constructor(readonly socketPath: string) {
    super(
      `${socketPath} exists and is not a socket; the kernel will not replace it (choose another --socket PATH)`,
    );
  }
}

/** Another kernel already answers on the socket. */
export class KernelRunningError extends KernelSocketError {
  readonly code = 'EADDRINUSE';
  constructor(readonly socketPath: string) {
    super(
      `a kernel is already running on ${socketPath}; stop it first, or start this one with --socket PATH`,
    );
  }
}

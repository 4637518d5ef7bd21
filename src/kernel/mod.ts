/**
 * The kernel, for running it in a program of your own (tests, a single-program setup) or as
 * the `postbox kernel` daemon.
 */
export { Kernel, type KernelOptions } from './kernel.js';
export {
  defaultLimits,
  InvalidLimitError,
  type KernelLimits,
  kernelLimits,
  type MailboxAttributes,
  type MailboxOrder,
  type ReceiverPolicy,
} from './limits.js';
export {
  EmptyTokenError,
  KernelRunningError,
  KernelSocketError,
  type RunningKernel,
  SocketFolderNotPrivateError,
  SocketPathIsFolderError,
  SocketPathTakenError,
  SocketPathTooLongError,
  type StartKernelOptions,
  startKernel,
  tokenFileFor,
} from './server.js';

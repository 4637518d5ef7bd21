/**
 * Ctrl-C and SIGTERM for commands that wait: the first one aborts what is waiting (the kernel's
 * answer is final, so an aborted receive took nothing and an aborted send will never be
 * delivered) and lets the command close its process; a second one exits at once. A kernel that
 * does not answer (stopped, or over TCP a link gone dark) would hold the command after the first
 * with nothing on the screen, so after a second of that it says what it waits for and how to stop;
 * so would a reader that does not take the command's output.
 */

import { setMaxListeners } from 'node:events';

const controller = new AbortController();
// Every pipelined send and receive listens to it.
setMaxListeners(0, controller.signal);
let installed = false;
let reason: 'SIGINT' | 'SIGTERM' | 'EPIPE' | null = null;

/** How long a command may wait for the kernel after the first signal before it says so, ms. */
const INTERRUPT_NOTICE_MS = 1000;

/** An AbortSignal that fires on the first SIGINT or SIGTERM (or when stdout's reader is gone). */
export function interruptSignal(): AbortSignal {
  if (!installed) {
    installed = true;
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, () => {
        if (controller.signal.aborted) process.exit(sig === 'SIGINT' ? 130 : 143);
        interrupt(sig);
        // Unref'd: a command that finishes in time exits without it.
        setTimeout(() => {
          const again = sig === 'SIGINT' ? 'press Ctrl-C' : 'send SIGTERM';
          // Output its reader has not taken holds the command as well as a kernel that does not
          // answer, and it is what a stop now loses: a recv's messages, taken and not yet printed.
          const unwritten = process.stdout.writableLength;
          process.stderr.write(
            unwritten > 0
              ? `postbox: waiting for standard output to take the last ${unwritten} bytes; ${again} again to stop now (they are then lost, and with them what a recv took and had not yet printed)\n`
              : `postbox: waiting for the kernel to confirm the interrupt; ${again} again to stop now (what was waiting may then still go through)\n`,
          );
        }, INTERRUPT_NOTICE_MS).unref();
      });
    }
  }
  return controller.signal;
}

/** Aborts the waiting command, for the given reason. */
export function interrupt(why: 'SIGINT' | 'SIGTERM' | 'EPIPE'): void {
  if (controller.signal.aborted) return;
  reason = why;
  controller.abort();
}

/** Why the command was interrupted, or null. */
export function interruptedBy(): 'SIGINT' | 'SIGTERM' | 'EPIPE' | null {
  return reason;
}

/** Exit code of a one-shot command stopped by an interrupt: 130 / 143 like a shell, 0 for EPIPE. */
export function interruptExitCode(): number {
  return reason === 'SIGTERM' ? 143 : reason === 'EPIPE' ? 0 : 130;
}

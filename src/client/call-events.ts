/**
 * The one event a call announces (a monitor's `down`, a FIFO's reader): kept if it comes before
 * anyone waits for it, as it can come in the same read as the call's answer.
 */
export class AnnouncedEvent {
  private event: Record<string, unknown> | null = null;
  private waiter: ((event: Record<string, unknown>) => void) | null = null;
  /** The handler to give {@link CallEvents}. */
  readonly handler = (event: Record<string, unknown>): void => {
    if (this.waiter !== null) this.waiter(event);
    else this.event = event;
  };
  /** The event, if it has come. */
  get arrived(): Record<string, unknown> | null {
    return this.event;
  }
  /** Calls `fn` with the event when it comes (at once if it has). */
  onArrival(fn: (event: Record<string, unknown>) => void): void {
    if (this.event !== null) fn(this.event);
    else this.waiter = fn;
  }
}

/**
 * The events a call sets up (a monitor, a notification, a wait for a reader): their handler is
 * registered as the call's RESULT is read, not when the awaiting code resumes, because the first
 * EVENT can come in the same read as the RESULT and would find no handler yet.
 */
export interface CallEvents<T> {
  /** The event id in the result, or undefined if the result needs no events. */
  idOf: (result: T) => number | undefined;
  handler: (event: Record<string, unknown>) => void;
}

/**
 * Log lines that strangers can cause at will, summed up: the first of a kind is written at once,
 * the rest of its window are counted and said in one line when the window ends. A peer that
 * connects and is refused (a wrong token, no HELLO, no descriptors left) thousands of times a
 * second must not write thousands of lines a second to the operator's log.
 */
export class LogThrottle {
  private readonly windows = new Map<string, { count: number; last: string; timer: NodeJS.Timeout }>();

  /**
   * @param log where lines go
   * @param windowMs how long after a kind's first line the others are only counted
   * @param summary the line that says how many more there were, and the last of them
   *
   * @example
   * ```ts
   * const t = new LogThrottle(console.error, 10_000, (n, last) => `${n} more like it; the last: ${last}`);
   * t.note('ECONNREFUSED', 'closing connection: wrong token'); // written
   * t.note('ECONNREFUSED', 'closing connection: wrong token'); // counted, said in 10 s
   * ```
   */
  constructor(
    private readonly log: (line: string) => void,
    private readonly windowMs: number,
    private readonly summary: (count: number, last: string, kind: string) => string,
  ) {}

  /** Writes `line`, or counts it if a line of its `kind` was written within the window. */
  note(kind: string, line: string): void {
    const w = this.windows.get(kind);
    if (w !== undefined) {
      w.count++;
      w.last = line;
      return;
    }
    this.log(line);
    const timer = setTimeout(() => this.end(kind), this.windowMs);
    timer.unref();
    this.windows.set(kind, { count: 0, last: line, timer });
  }

  /** Says what every open window counted (the kernel is stopping). */
  flush(): void {
    for (const kind of [...this.windows.keys()]) this.end(kind);
  }

  private end(kind: string): void {
    const w = this.windows.get(kind);
    if (w === undefined) return;
    clearTimeout(w.timer);
    this.windows.delete(kind);
    if (w.count > 0) this.log(this.summary(w.count, w.last, kind));
  }
}

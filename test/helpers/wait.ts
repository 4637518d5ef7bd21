/**
 * Polls a condition that has no event to wait on (another process's state, seen through the
 * kernel's stat), bounded in time. Returns the last value that satisfied it.
 */
export async function until<T>(
  probe: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (let i = 0; Date.now() < deadline; i++) {
    last = await probe();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, Math.min(5 + i * 5, 50)));
  }
  throw new Error(`${what} not reached in ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

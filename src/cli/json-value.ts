/**
 * A structured body as plain JSON for the command line's output: msgpack bodies carry Map, Set,
 * Date, bigint, typed arrays and cycles, which JSON.stringify writes as `{}`, throws on, or
 * loops on. Each becomes the JSON a reader would expect:
 *
 * | value                 | written as                                              |
 * | --------------------- | ------------------------------------------------------- |
 * | Map                   | an object if every key is a string, else `[key, value]` pairs |
 * | Set, typed array      | an array                                                |
 * | Date                  | its ISO string                                          |
 * | bigint                | its decimal digits, as a string (a number would round)  |
 * | an object seen before | `"[Circular]"`                                          |
 *
 * A body of `undefined` has no JSON at all: the callers write it as `null`.
 *
 * @example
 * ```ts
 * JSON.stringify(toJsonValue(new Map([['k', 1n]]))); // '{"k":"1"}'
 * ```
 */
export function toJsonValue(value: unknown, seen = new Set<object>()): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (ArrayBuffer.isView(value) && !(value instanceof DataView))
    return Array.from(value as unknown as ArrayLike<number | bigint>, (n) => toJsonValue(n, seen));
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  try {
    if (value instanceof Map) {
      const entries = [...value.entries()];
      if (entries.every(([k]) => typeof k === 'string'))
        return Object.fromEntries(entries.map(([k, v]) => [k, toJsonValue(v, seen)]));
      return entries.map(([k, v]) => [toJsonValue(k, seen), toJsonValue(v, seen)]);
    }
    if (value instanceof Set) return [...value].map((v) => toJsonValue(v, seen));
    if (Array.isArray(value)) return value.map((v) => toJsonValue(v, seen));
    if (value instanceof Error) return { name: value.name, message: value.message };
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJsonValue(v, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}

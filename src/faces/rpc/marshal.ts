/**
 * What may cross an RPC call: the msgpack codec's structured-clone values. The codec drops
 * functions silently and turns class instances into plain objects, so arguments and results are
 * walked first and anything it cannot represent faithfully is refused with a clear message.
 */

const allowedProtos = new Set<unknown>([
  Object.prototype,
  null,
  Array.prototype,
  Date.prototype,
  Map.prototype,
  Set.prototype,
  RegExp.prototype,
  ArrayBuffer.prototype,
]);

/**
 * Why `value` cannot be sent, naming where it is (`args[1].when`), or null if it can.
 * Cycles are fine (the codec keeps them); each object is visited once.
 */
export function unsendable(value: unknown, path: string): string | null {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return null;
    case 'function':
      return `${path} is a function, which cannot be sent`;
    case 'symbol':
      return `${path} is a symbol, which cannot be sent`;
    default:
      if (value === null) return null;
      return walk(value as object, path, new Set());
  }
}

/** As {@link unsendable} for an argument list: names `args[i]`. */
export function unsendableArgs(args: readonly unknown[]): string | null {
  let seen: Set<object> | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a === 'object' && a !== null) {
      seen ??= new Set();
      const why = walk(a, `args[${i}]`, seen);
      if (why !== null) return why;
    } else if (typeof a === 'function' || typeof a === 'symbol') {
      return unsendable(a, `args[${i}]`);
    }
  }
  return null;
}

function walk(value: object, path: string, seen: Set<object>): string | null {
  if (seen.has(value)) return null;
  seen.add(value);
  if (ArrayBuffer.isView(value)) return null; // typed arrays, Buffers, DataView
  const proto = Object.getPrototypeOf(value) as unknown;
  if (!allowedProtos.has(proto)) {
    if (value instanceof Error) return null;
    if (value instanceof Promise) return `${path} is a Promise, which cannot be sent (await it first)`;
    const ctor = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    const what = typeof ctor === 'string' && ctor.length > 0 ? `an instance of ${ctor}` : 'an exotic object';
    return `${path} is ${what}, which cannot be sent as it is (send a plain object, array, Map, Set, Date or typed array)`;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const why = child(value[i], `${path}[${i}]`, seen);
      if (why !== null) return why;
    }
    return null;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const why = child(k, `${path} (a Map key)`, seen) ?? child(v, `${path}.get(${describeKey(k)})`, seen);
      if (why !== null) return why;
    }
    return null;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const why = child(v, `${path} (a Set element)`, seen);
      if (why !== null) return why;
    }
    return null;
  }
  if (proto === Object.prototype || proto === null) {
    for (const k of Object.keys(value)) {
      const why = child((value as Record<string, unknown>)[k], `${path}${propertyPath(k)}`, seen);
      if (why !== null) return why;
    }
  }
  return null; // Date, RegExp, ArrayBuffer
}

function child(v: unknown, path: string, seen: Set<object>): string | null {
  if (typeof v === 'object') return v === null ? null : walk(v, path, seen);
  if (typeof v === 'function' || typeof v === 'symbol') return unsendable(v, path);
  return null;
}

function propertyPath(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}

function describeKey(k: unknown): string {
  if (typeof k === 'string') return JSON.stringify(k);
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  return '…';
}

/**
 * What a structured (msgpack) body can carry. The codec drops functions and symbols silently,
 * sends a Promise or a WeakMap as an empty object and turns class instances into plain objects,
 * so a body is walked first and what it cannot represent is refused with a clear message, as
 * `structuredClone` refuses it. Message bodies let class instances through as plain objects (as
 * `structuredClone` does); RPC arguments and results refuse them too, since a method's caller
 * would otherwise get an object without its methods.
 */

/** How class instances are taken: as plain objects (their own fields), or refused. */
export type ClassInstances = 'plain' | 'refuse';

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
export function unsendable(value: unknown, path: string, classes: ClassInstances = 'refuse'): string | null {
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
      return walk(value as object, path, new Set(), classes);
  }
}

/** As {@link unsendable} for an argument list: names `args[i]`. */
export function unsendableArgs(args: readonly unknown[]): string | null {
  let seen: Set<object> | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (typeof a === 'object' && a !== null) {
      seen ??= new Set();
      const why = walk(a, `args[${i}]`, seen, 'refuse');
      if (why !== null) return why;
    } else if (typeof a === 'function' || typeof a === 'symbol') {
      return unsendable(a, `args[${i}]`);
    }
  }
  return null;
}

function walk(value: object, path: string, seen: Set<object>, classes: ClassInstances): string | null {
  if (seen.has(value)) return null;
  seen.add(value);
  if (ArrayBuffer.isView(value)) return null; // typed arrays, Buffers, DataView
  const proto = Object.getPrototypeOf(value) as unknown;
  let asPlain = proto === Object.prototype || proto === null;
  if (!allowedProtos.has(proto)) {
    if (value instanceof Error) return null;
    if (value instanceof Promise) return `${path} is a Promise, which cannot be sent (await it first)`;
    const ctor = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    const what = typeof ctor === 'string' && ctor.length > 0 ? `an instance of ${ctor}` : 'an exotic object';
    // Objects whose state is not in their own fields would arrive empty.
    if (classes === 'refuse' || opaque(value))
      return `${path} is ${what}, which cannot be sent as it is (send a plain object, array, Map, Set, Date or typed array)`;
    asPlain = true;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const why = child(value[i], `${path}[${i}]`, seen, classes);
      if (why !== null) return why;
    }
    return null;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const why =
        child(k, `${path} (a Map key)`, seen, classes) ??
        child(v, `${path}.get(${describeKey(k)})`, seen, classes);
      if (why !== null) return why;
    }
    return null;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const why = child(v, `${path} (a Set element)`, seen, classes);
      if (why !== null) return why;
    }
    return null;
  }
  if (asPlain) {
    for (const k of Object.keys(value)) {
      const why = child((value as Record<string, unknown>)[k], `${path}${propertyPath(k)}`, seen, classes);
      if (why !== null) return why;
    }
  }
  return null; // Date, RegExp, ArrayBuffer
}

/** Built-ins that keep their state out of reach: sent as `{}`, which is never what was meant. */
function opaque(value: object): boolean {
  return value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef;
}

function child(v: unknown, path: string, seen: Set<object>, classes: ClassInstances): string | null {
  if (typeof v === 'object') return v === null ? null : walk(v, path, seen, classes);
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

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
  const fault = firstFault(value, classes);
  return fault === null ? null : `${path}${fault.path}${fault.what}`;
}

/** As {@link unsendable} for an argument list: names `args[i]`. */
export function unsendableArgs(args: readonly unknown[]): string | null {
  const fault = firstFault(args, 'refuse');
  return fault === null ? null : `args${fault.path}${fault.what}`;
}

/**
 * Objects a walk may visit before it keeps a set of those seen. Most bodies are small and have
 * no cycles: they are walked without one (a set per message cost RPC 5 % of its calls). A body
 * with more objects, or a cycle, is walked again with the set, which visits each object once.
 */
const WALK_WITHOUT_SET = 256;
let budget = 0;
/** Thrown by a walk without a set that has used up its budget: walk again with one. */
const TOO_MANY = Symbol('walk again with a set');

function firstFault(value: unknown, classes: ClassInstances): Fault | null {
  budget = WALK_WITHOUT_SET;
  try {
    return child(value, null, classes);
  } catch (e) {
    if (e !== TOO_MANY) throw e;
    return child(value, new Set(), classes);
  }
}

/**
 * What cannot be sent and where, relative to the value walked. The path is built only on the way
 * back from a fault: a body that can be sent (nearly all) costs no strings.
 */
interface Fault {
  path: string;
  what: string;
}

const fault = (what: string): Fault => ({ path: '', what });

function within(f: Fault | null, segment: () => string): Fault | null {
  if (f !== null) f.path = segment() + f.path;
  return f;
}

function walk(value: object, seen: Set<object> | null, classes: ClassInstances): Fault | null {
  if (ArrayBuffer.isView(value)) return null; // typed arrays, Buffers, DataView
  const proto = Object.getPrototypeOf(value) as unknown;
  let asPlain = proto === Object.prototype || proto === null;
  if (!allowedProtos.has(proto)) {
    if (value instanceof Error) return null;
    if (value instanceof Promise) return fault(' is a Promise, which cannot be sent (await it first)');
    const ctor = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    const what = typeof ctor === 'string' && ctor.length > 0 ? `an instance of ${ctor}` : 'an exotic object';
    // Objects whose state is not in their own fields would arrive empty.
    if (classes === 'refuse' || opaque(value))
      return fault(
        ` is ${what}, which cannot be sent as it is (send a plain object, array, Map, Set, Date or typed array)`,
      );
    asPlain = true;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const f = child(value[i], seen, classes);
      if (f !== null) return within(f, () => `[${i}]`);
    }
    return null;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const fk = child(k, seen, classes);
      if (fk !== null) return within(fk, () => ' (a Map key)');
      const fv = child(v, seen, classes);
      if (fv !== null) return within(fv, () => `.get(${describeKey(k)})`);
    }
    return null;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const f = child(v, seen, classes);
      if (f !== null) return within(f, () => ' (a Set element)');
    }
    return null;
  }
  if (asPlain) {
    for (const k of Object.keys(value)) {
      const f = child((value as Record<string, unknown>)[k], seen, classes);
      if (f !== null) return within(f, () => propertyPath(k));
    }
  }
  return null; // Date, RegExp, ArrayBuffer
}

/** Built-ins that keep their state out of reach: sent as `{}`, which is never what was meant. */
function opaque(value: object): boolean {
  return value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef;
}

/** A value inside another. Cycles are fine (the codec keeps them): see {@link firstFault}. */
function child(v: unknown, seen: Set<object> | null, classes: ClassInstances): Fault | null {
  switch (typeof v) {
    case 'function':
      return fault(' is a function, which cannot be sent');
    case 'symbol':
      return fault(' is a symbol, which cannot be sent');
    case 'object': {
      if (v === null) return null;
      if (seen === null) {
        if (--budget < 0) throw TOO_MANY;
        return walk(v, null, classes);
      }
      if (seen.has(v)) return null;
      seen.add(v);
      return walk(v, seen, classes);
    }
    default:
      return null;
  }
}

function propertyPath(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}

function describeKey(k: unknown): string {
  if (typeof k === 'string') return JSON.stringify(k);
  if (typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean') return String(k);
  return '…';
}

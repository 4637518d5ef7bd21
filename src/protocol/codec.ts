import { Packr } from 'msgpackr';
import { Codec, type CodecCode } from './frame.js';
import { unsendable } from './sendable.js';

/**
 * Body codecs. The codec tag travels in every message header, so any reader (another language,
 * the command line) knows how to decode a body without being told out of band.
 */

// structuredClone fidelity for JS values (Map vs object, Set, Date, typed arrays, bigint,
// undefined vs null). Records are self-describing within each message, so any decoder, in any
// process, reads any message without shared state.
const packr = new Packr({ structuredClone: true, mapsAsObjects: false, useRecords: true });

/** The codec a sender names in its options. */
export type CodecName = 'bytes' | 'string' | 'json' | 'msgpack';

const codeByName: Record<CodecName, CodecCode> = {
  bytes: Codec.BYTES,
  string: Codec.STRING,
  json: Codec.JSON,
  msgpack: Codec.MSGPACK,
};
const nameByCode: CodecName[] = ['bytes', 'string', 'json', 'msgpack'];

/** Name of a codec tag, or undefined if the tag is unknown. */
export function codecName(code: number): CodecName | undefined {
  return nameByCode[code];
}

/**
 * Picks a codec for a body: bytes stay bytes, strings are UTF-8, anything else is msgpack
 * unless the caller names another codec.
 */
export function encodeBody(body: unknown, codec?: CodecName): { code: CodecCode; bytes: Buffer | string } {
  if (codec === undefined) {
    if (typeof body === 'string') return { code: Codec.STRING, bytes: body };
    if (body instanceof Uint8Array) return { code: Codec.BYTES, bytes: asBuffer(body) };
    return { code: Codec.MSGPACK, bytes: packStructured(body) };
  }
  const code = codeByName[codec];
  switch (code) {
    case Codec.BYTES:
      if (!(body instanceof Uint8Array))
        throw new TypeError("codec 'bytes' needs a Buffer or Uint8Array body");
      return { code, bytes: asBuffer(body) };
    case Codec.STRING:
      if (typeof body !== 'string') throw new TypeError("codec 'string' needs a string body");
      return { code, bytes: body };
    case Codec.JSON: {
      const json = JSON.stringify(body);
      if (json === undefined) throw new TypeError('this body has no JSON form');
      return { code, bytes: json };
    }
    case Codec.MSGPACK:
      return { code, bytes: packStructured(body) };
    default:
      throw new TypeError(`unknown codec '${String(codec)}'; use bytes, string, json or msgpack`);
  }
}

/**
 * msgpack of a body, refusing what msgpack would change silently: a function or symbol (left
 * out, or sent as nothing), a Promise or WeakMap (sent as an empty object).
 */
function packStructured(body: unknown): Buffer {
  if (typeof body === 'function') throw new TypeError('a function is not a message body');
  const why = unsendable(body, 'the body', 'plain');
  if (why !== null) throw new TypeError(why);
  return packr.pack(body);
}

/** Decodes a body by its codec tag. Unknown tags give the raw bytes. */
export function decodeBody(code: number, bytes: Buffer): unknown {
  switch (code) {
    case Codec.STRING:
      return bytes.toString('utf8');
    case Codec.JSON:
      return JSON.parse(bytes.toString('utf8'));
    case Codec.MSGPACK:
      return packr.unpack(bytes);
    default:
      return bytes;
  }
}

function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

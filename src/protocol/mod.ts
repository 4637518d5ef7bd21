/** The wire protocol, for other clients and tools: frame layout, opcodes, codecs, errors. */
export * from './codec.js';
export * from './decoder.js';
export * from './errors.js';
export * from './frame.js';

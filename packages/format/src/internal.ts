/**
 * Internals of @liverestore/format for the other packages, tests and tools of this
 * repository: the shared async utilities, the HTTP/1.1 client and body reading and option checks, header sizes
 * and field constants, range checkers, key material helpers, the selected zstd codec. Not a
 * stable API: it changes without notice. Modules are re-exported whole, so a name of the main entry may appear
 * here too (the same object).
 */
export * from './async-util.js';
export * from './blob.js';
export * from './body-reader.js';
export * from './byte-size.js';
export * from './chunk.js';
export * from './chunk-arriving.js';
export * from './chunk-index.js';
export * from './chunker.js';
export * from './crypt-config.js';
export * from './dynamic-index.js';
export * from './errors.js';
export * from './fixed-index.js';
export * from './hex.js';
export * from './http1/http1-client.js';
export * from './http1/http1-connection.js';
export * from './http1/http1-head.js';
export * from './magic.js';
export * from './option-checks.js';
export * from './transient-errors.js';
export * from './zstd-codec.js';
export * from './zstd-frame.js';

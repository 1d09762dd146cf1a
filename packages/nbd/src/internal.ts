/**
 * Internals of @liverestore/nbd for tests and tools in this repository: the wire format
 * (constants, header encoders and decoders) and the request validator. Not a stable API.
 * @internal
 */
export * from './validate-request.js';
export * from './wire.js';

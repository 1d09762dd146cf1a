/**
 * Internals of @liverestore/format for the other packages, tests and tools of this
 * repository: the shared async utilities. Not a stable API: it changes without notice.
 * @internal
 */
export * from './async-util.js';

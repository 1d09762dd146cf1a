/**
 * Shared memory whose data starts on a system page boundary, as O_DIRECT needs of the
 * memory it writes from. A plain SharedArrayBuffer's data is not page-aligned (an
 * O_DIRECT write from it fails with EINVAL); a shared WebAssembly.Memory's is.
 */

/** WebAssembly memory comes in 64 KiB pages. */
export const WASM_PAGE_BYTES = 64 * 1024;
/** The most a WebAssembly.Memory holds (65,536 pages of 64 KiB: 4 GiB). */
const WASM_MAX_BYTES = 65_536 * WASM_PAGE_BYTES;

/** The part of the WebAssembly global used here (the project's lib has no DOM types). */
const wasmMemory = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (descriptor: object) => { readonly buffer: SharedArrayBuffer } };
  }
).WebAssembly.Memory;

/**
 * A SharedArrayBuffer of exactly `bytes`, page-aligned where it can be: `bytes` a multiple
 * of 64 KiB up to 4 GiB. Otherwise a plain one (`aligned` false): O_DIRECT writes from it
 * fail, and their callers write through the page cache.
 */
export function pageAlignedSharedBuffer(bytes: number): { buffer: SharedArrayBuffer; aligned: boolean } {
  if (bytes === 0 || bytes % WASM_PAGE_BYTES !== 0 || bytes > WASM_MAX_BYTES)
    return { buffer: new SharedArrayBuffer(bytes), aligned: false };
  const pages = bytes / WASM_PAGE_BYTES;
  return { buffer: new wasmMemory({ initial: pages, maximum: pages, shared: true }).buffer, aligned: true };
}

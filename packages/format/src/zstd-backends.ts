/*
 * The zstd implementations liverestore can run on, each behind the same two small
 * interfaces. Which one runs is decided once, in zstd-codec.ts.
 *
 *   zstd-napi              native libzstd (an optional dependency built by node-gyp at
 *                          install): one-shot ZSTD_decompressDCtx into a bounded output
 *   node:zlib              zstdCompressSync / zstdDecompressSync, Node.js >= 22.15 / 23.8
 *   @foxglove/wasm-zstd    WebAssembly build of libzstd: runs wherever Node.js runs
 *
 * `bench codecs` also times candidates the product does not ship (a native encoder,
 * another WebAssembly build, fzstd); docs/formats.md says why they lost.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';

const require = createRequire(import.meta.url);

/** Compresses whole chunks with one zstd implementation. */
export interface ZstdEncoderBackend {
  /** Package (or `node:zlib`) doing the work, as shown by `bench codecs` and `--version`. */
  readonly name: string;
  readonly version: string;
  /** One zstd frame of `data` at `level`. */
  compress(data: Uint8Array, level: number): Buffer;
}

/** Decompresses zstd payloads into a bounded output. */
export interface ZstdDecoderBackend {
  readonly name: string;
  readonly version: string;
  /**
   * Decodes `payload`, which must decode to at most `capacityBytes`; throws on corrupt
   * input and on output beyond the capacity. `capacityBytes` is what the decoder may
   * allocate for the output, so callers keep it as tight as the headers allow.
   */
  decompress(payload: Uint8Array, capacityBytes: number): Buffer;
  /**
   * {@link decompress} that returns the plaintext in the decoder's own memory instead of
   * copying it into a new Buffer: the view is valid until the next call on this thread.
   * Saves a copy and a fresh allocation per chunk; optional. A decoder that can write
   * where it is told (zstd-napi) decodes into `into` instead, when that holds
   * `capacityBytes`, and returns a view of it: the plaintext is then where the caller
   * wants it, with no copy at all.
   */
  decompressView?(payload: Uint8Array, capacityBytes: number, into?: Uint8Array): Uint8Array;
}

type NodeZstdCompress = (data: Uint8Array, options?: object) => Buffer;
type NodeZstdDecompress = (data: Uint8Array, options?: object) => Buffer;

function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** node:zlib's zstd, where this Node.js has it (>= 22.15 / 23.8); undefined elsewhere. */
export function nodeZlibZstd(): { encoder: ZstdEncoderBackend; decoder: ZstdDecoderBackend } | undefined {
  const z = zlib as { zstdCompressSync?: NodeZstdCompress; zstdDecompressSync?: NodeZstdDecompress };
  const compressSync = z.zstdCompressSync;
  const decompressSync = z.zstdDecompressSync;
  if (typeof compressSync !== 'function' || typeof decompressSync !== 'function') return undefined;
  const constants = zlib.constants as unknown as Record<string, number>;
  const levelParam = constants.ZSTD_c_compressionLevel;
  const version = `Node.js ${process.version}`;
  return {
    encoder: {
      name: 'node:zlib',
      version,
      compress: (data, level) =>
        compressSync(data, {
          // The content size in the frame header lets any decoder size its output exactly.
          pledgedSrcSize: data.byteLength,
          ...(levelParam === undefined ? {} : { params: { [levelParam]: level } }),
        }),
    },
    decoder: {
      name: 'node:zlib',
      version,
      decompress: (payload, capacityBytes) =>
        decompressSync(payload, {
          maxOutputLength: Math.max(capacityBytes, 1),
          // One output buffer for a whole chunk instead of zlib's 16 KiB steps.
          chunkSize: Math.max(64, Math.min(capacityBytes, 4 * 1024 * 1024)),
        }),
    },
  };
}

/** The C entry points of the @foxglove/wasm-zstd Emscripten build (one-shot ZSTD_compress / ZSTD_decompress). */
interface EmscriptenZstd {
  /** The module's memory; replaced when memory grows, so read it after every allocation. */
  readonly HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  _compressBound(sourceBytes: number): number;
  /** Bytes written to `dest`, or a negative value on failure. */
  _compress(dest: number, destBytes: number, source: number, sourceBytes: number, level: number): number;
  /** Bytes written to `dest`, or a negative value on failure (corrupt input, `destBytes` too small). */
  _decompress(dest: number, destBytes: number, source: number, sourceBytes: number): number;
}

/** The part of the WebAssembly global used here (the project's lib has no DOM types). */
interface WasmInstance {
  readonly exports: object;
}
const wasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      Module: new (bytes: Uint8Array) => object;
      Instance: new (module: object, imports: object) => WasmInstance;
    };
  }
).WebAssembly;

/**
 * Instantiates the Emscripten build synchronously: its .wasm is compiled with `new
 * WebAssembly.Module` (Node.js allows synchronous compilation of any size; ≈ 5 ms for this
 * 400 KiB module, as fast as the asynchronous path) and handed to the build through its
 * `instantiateWasm` hook, so the module runs before this returns. Hence no top-level await
 * in @liverestore/format, which CommonJS programs can then require() on Node.js 20
 * (require() of an ES module graph with top-level await fails or aborts there).
 */
function instantiateWasmZstd(): EmscriptenZstd {
  const name = '@foxglove/wasm-zstd';
  const factory = require(`${name}/dist/wasm-zstd.js`) as (module: object) => unknown;
  const wasmModule = new wasmApi.Module(readFileSync(require.resolve(`${name}/dist/wasm-zstd.wasm`)));
  const module = {
    instantiateWasm(imports: object, receive: (instance: WasmInstance) => void) {
      const instance = new wasmApi.Instance(wasmModule, imports);
      receive(instance);
      return instance.exports;
    },
  };
  void factory(module);
  const ready = module as unknown as Partial<EmscriptenZstd>;
  if (typeof ready._compress !== 'function' || ready.HEAPU8 === undefined)
    throw new Error(`${name} did not initialise synchronously`);
  return ready as EmscriptenZstd;
}

/** A region of the module's heap, kept across calls and grown when a call needs more. */
class HeapBuffer {
  pointer = 0;
  bytes = 0;

  constructor(private readonly module: EmscriptenZstd) {}

  reserve(bytes: number): number {
    if (bytes > this.bytes) {
      if (this.pointer !== 0) this.module._free(this.pointer);
      this.pointer = this.module._malloc(bytes);
      if (this.pointer === 0) {
        this.bytes = 0;
        throw new RangeError(`WebAssembly zstd could not allocate ${bytes} bytes`);
      }
      this.bytes = bytes;
    }
    return this.pointer;
  }
}

/**
 * The one-shot calls of libzstd on the module's heap, with the input and output regions
 * kept from call to call (a chunk costs no malloc, and its plaintext can be read in place).
 */
function heapZstd(module: EmscriptenZstd) {
  const input = new HeapBuffer(module);
  const output = new HeapBuffer(module);
  /** Copies `data` into the input region; the heap may have grown, so views are taken after. */
  const load = (data: Uint8Array): number => {
    const at = input.reserve(Math.max(data.byteLength, 1));
    module.HEAPU8.set(data, at);
    return at;
  };
  const copyOut = (at: number, bytes: number): Buffer => Buffer.from(module.HEAPU8.subarray(at, at + bytes));
  return {
    compress(data: Uint8Array, level: number): Buffer {
      const src = load(data);
      const bound = module._compressBound(data.byteLength);
      const dest = output.reserve(bound);
      const n = module._compress(dest, bound, src, data.byteLength, level);
      if (n < 0) throw new Error('zstd compression failed');
      return copyOut(dest, n);
    },
    /** The plaintext in the output region: valid until the next call. */
    decompressView(payload: Uint8Array, capacityBytes: number): Uint8Array {
      const src = load(payload);
      const dest = output.reserve(Math.max(capacityBytes, 1));
      const n = module._decompress(dest, capacityBytes, src, payload.byteLength);
      if (n < 0) throw new Error('zstd payload is corrupt or larger than its output');
      return module.HEAPU8.subarray(dest, dest + n);
    },
  };
}

/**
 * libzstd compiled to WebAssembly (`@foxglove/wasm-zstd`, its Emscripten module driven
 * directly): needs no compiler and no download beyond npm, so it is the encoder and
 * decoder every Node.js can run. Its decoder writes into an output of the size it is given
 * and fails beyond it (one-shot ZSTD_decompress), so output is bounded and the window
 * costs nothing extra; `decompressView` reads the plaintext where the decoder wrote it.
 * Loads synchronously (see instantiateWasmZstd); throws when the module cannot be loaded.
 */
export function wasmZstd(): { encoder: ZstdEncoderBackend; decoder: ZstdDecoderBackend } {
  const name = '@foxglove/wasm-zstd';
  const zstd = heapZstd(instantiateWasmZstd());
  const version = packageVersion(name);
  return {
    encoder: { name, version, compress: (data, level) => zstd.compress(data, level) },
    decoder: {
      name,
      version,
      decompress: (payload, capacityBytes) => Buffer.from(zstd.decompressView(payload, capacityBytes)),
      decompressView: (payload, capacityBytes) => zstd.decompressView(payload, capacityBytes),
    },
  };
}

/**
 * The part of zstd-napi's binding used here: one-shot contexts, so output is bounded by
 * the buffer given, and the stream decoder of {@link napiZstdStream}.
 */
interface ZstdNapiBinding {
  readonly CCtx: new () => { compress(dest: Uint8Array, source: Uint8Array, level: number): number };
  readonly DCtx: new () => {
    decompress(dest: Uint8Array, source: Uint8Array): number;
    decompressStream(dest: Uint8Array, source: Uint8Array): [number, number, number];
    reset(directive: number): void;
    setParameter(param: number, value: number): void;
  };
  readonly DParameter: { readonly windowLogMax: number };
  readonly ResetDirective: { readonly sessionAndParameters: number };
  compressBound(sourceBytes: number): number;
  versionString(): string;
}

/** zstd-napi's binding, or undefined where the optional addon is not installed or did not build. */
function napiBinding(): ZstdNapiBinding | undefined {
  try {
    return require('zstd-napi/binding') as ZstdNapiBinding;
  } catch {
    return undefined;
  }
}

/** A zstd stream decoder: frames fed piece by piece, plaintext written where it is told. */
export interface ZstdStreamDecoder {
  /** Starts a new payload whose frames may declare windows up to 2^`windowLog` bytes (larger ones fail). */
  begin(windowLog: number): void;
  /**
   * Decodes what it can of `source` into `dest`: [0 once a frame ended (else a hint of the
   * input it still wants), bytes written to `dest`, bytes of `source` consumed]. Throws on
   * corrupt input.
   */
  decompress(dest: Uint8Array, source: Uint8Array): [number, number, number];
}

/**
 * A zstd stream decoder of `zstd-napi` (`ZSTD_decompressStream`), or undefined where the
 * optional addon is not installed: what decodes a blob as its body arrives. Its context
 * belongs to the thread that made it.
 */
export function napiZstdStream(): ZstdStreamDecoder | undefined {
  const binding = napiBinding();
  if (binding === undefined) return undefined;
  const dctx = new binding.DCtx();
  return {
    begin(windowLog) {
      dctx.reset(binding.ResetDirective.sessionAndParameters);
      dctx.setParameter(binding.DParameter.windowLogMax, windowLog);
    },
    decompress: (dest, source) => dctx.decompressStream(dest, source),
  };
}

/**
 * Native libzstd through `zstd-napi`, an optional dependency whose addon node-gyp builds
 * at install; undefined where it is not installed or did not build (no compiler), so the
 * caller falls back. Its one-shot `ZSTD_decompressDCtx` writes into the buffer it is given
 * and fails beyond it (bounded output, like the WebAssembly build), and one output region
 * per thread is reused from chunk to chunk (`decompressView`), so a decode touches no
 * fresh memory; or it writes into the caller's memory (`decompressView`'s `into`). Both
 * contexts belong to the thread that loaded this module.
 */
export function napiZstd(): { encoder: ZstdEncoderBackend; decoder: ZstdDecoderBackend } | undefined {
  const name = 'zstd-napi';
  const binding = napiBinding();
  if (binding === undefined) return undefined;
  const version = `${packageVersion(name)} (libzstd ${binding.versionString()})`;
  const cctx = new binding.CCtx();
  const dctx = new binding.DCtx();
  let region = Buffer.alloc(0);
  /** The reused output region, grown to at least `bytes`. */
  const reserve = (bytes: number): Buffer => {
    if (region.byteLength < bytes) region = Buffer.allocUnsafeSlow(bytes);
    return region;
  };
  const decompressView = (payload: Uint8Array, capacityBytes: number, into?: Uint8Array): Uint8Array => {
    const dest =
      into !== undefined && into.byteLength >= capacityBytes
        ? into.subarray(0, capacityBytes)
        : reserve(capacityBytes).subarray(0, capacityBytes);
    return dest.subarray(0, dctx.decompress(dest, payload));
  };
  return {
    encoder: {
      name,
      version,
      compress(data: Uint8Array, level: number): Buffer {
        const dest = reserve(binding.compressBound(data.byteLength));
        // A copy of exactly the frame's size: the caller may keep or transfer it.
        return Buffer.from(dest.subarray(0, cctx.compress(dest, data, level)));
      },
    },
    decoder: {
      name,
      version,
      decompress: (payload, capacityBytes) => Buffer.from(decompressView(payload, capacityBytes)),
      decompressView,
    },
  };
}

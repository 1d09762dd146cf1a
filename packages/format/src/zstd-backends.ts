/*
 * The zstd implementations liverestore can run on, each behind the same two small
 * interfaces. Which one runs is decided once, in zstd-codec.ts.
 *
 *   node:zlib              zstdCompressSync / zstdDecompressSync, Node.js >= 22.15 / 23.8
 *   @foxglove/wasm-zstd    WebAssembly build of libzstd: runs wherever Node.js runs
 *
 * `bench codecs` also times candidates the product does not ship (a native encoder,
 * another WebAssembly build, fzstd); docs/formats.md says why they lost.
 */

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

interface WasmZstdModule {
  isLoaded: Promise<unknown>;
  compress(data: Uint8Array, level: number): Buffer;
  decompress(data: Uint8Array, destBytes: number): Buffer;
}

/**
 * libzstd compiled to WebAssembly (`@foxglove/wasm-zstd`): needs no compiler and no
 * download beyond npm, so it is the encoder and decoder every Node.js can run. Its
 * decoder writes into a buffer of the size it is given and fails beyond it (one-shot
 * ZSTD_decompress), so output is bounded and the window costs nothing extra.
 */
export async function wasmZstd(
  load: (name: string) => unknown = require,
): Promise<{ encoder: ZstdEncoderBackend; decoder: ZstdDecoderBackend }> {
  const name = '@foxglove/wasm-zstd';
  const wasm = load(name) as WasmZstdModule;
  await wasm.isLoaded;
  const version = packageVersion(name);
  return {
    encoder: { name, version, compress: (data, level) => wasm.compress(data, level) },
    decoder: {
      name,
      version,
      decompress: (payload, capacityBytes) => wasm.decompress(payload, capacityBytes),
    },
  };
}

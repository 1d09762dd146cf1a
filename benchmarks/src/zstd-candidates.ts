/**
 * Every zstd implementation `bench codecs` compares, side by side: the product's
 * backends (@liverestore/format: the optional native zstd-napi, node:zlib, the WebAssembly
 * build @foxglove/wasm-zstd)
 * and candidates only this benchmark depends on (the native @toondepauw/node-zstd,
 * @bokuweb/zstd-wasm, fzstd). A candidate that cannot load here is listed with the reason.
 */

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { napiZstd, nodeZlibZstd, wasmZstd } from '@liverestore/format';
import { decompress as fzstdDecompress } from 'fzstd';
import { ZSTD_LEVEL } from './codec-inputs.js';

const require = createRequire(import.meta.url);

/** One implementation's encoder and/or decoder, or why it is missing. */
export interface ZstdCandidate {
  /** Package and version, e.g. `@foxglove/wasm-zstd 1.0.1`. */
  readonly label: string;
  readonly compress?: (data: Buffer, level: number) => Uint8Array;
  /** `sizeBytes` is the plaintext length the caller expects (what the read path knows). */
  readonly decompress?: (frame: Uint8Array, sizeBytes: number) => Uint8Array;
  /** Why it does not run here. */
  readonly skip?: string;
  /** Said next to its rows, e.g. that a decoder has no output bound. */
  readonly note?: string;
}

/** Version of a dependency of the benchmarks package (read from disk: some export maps hide package.json). */
export function packageVersion(name: string): string {
  try {
    const url = new URL(`../../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function failure(err: unknown): string {
  return err instanceof Error ? (err.message.split('\n')[0] ?? err.name) : String(err);
}

interface NativeModule {
  Encoder: new (level: number) => { encodeSync(data: Buffer): Buffer };
  Decoder: new () => { decodeSync(data: Buffer): Buffer };
}

interface BokuwebModule {
  init(): Promise<void>;
  compress(data: Uint8Array, level: number): Uint8Array;
  decompress(data: Uint8Array, options?: { defaultHeapSize?: number }): Uint8Array;
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Loads every candidate; none throws. */
export async function loadZstdCandidates(): Promise<ZstdCandidate[]> {
  const out: ZstdCandidate[] = [];
  const node = nodeZlibZstd();
  out.push(
    node === undefined
      ? { label: 'node:zlib zstd', skip: `node:zlib of Node.js ${process.version} has no zstd (>= 22.15)` }
      : {
          label: `node:zlib (Node.js ${process.version})`,
          compress: (data, level) => node.encoder.compress(data, level),
          decompress: (frame, sizeBytes) => node.decoder.decompress(frame, sizeBytes),
        },
  );
  const napi = napiZstd();
  out.push(
    napi === undefined
      ? {
          label: 'zstd-napi (native)',
          skip: 'not installed or its addon did not build (optional dependency)',
        }
      : {
          label: `${napi.decoder.name} ${napi.decoder.version} (native)`,
          compress: (data, level) => napi.encoder.compress(data, level),
          decompress: (frame, sizeBytes) => napi.decoder.decompress(frame, sizeBytes),
        },
  );
  try {
    const native = require('@toondepauw/node-zstd') as NativeModule;
    const encoder = new native.Encoder(ZSTD_LEVEL);
    const decoder = new native.Decoder();
    out.push({
      label: `@toondepauw/node-zstd ${packageVersion('@toondepauw/node-zstd')} (native)`,
      // The level is fixed at construction; every case runs ZSTD_LEVEL.
      compress: (data) => encoder.encodeSync(data),
      decompress: (frame) => decoder.decodeSync(asBuffer(frame)),
      note:
        'streaming encoder and decoder (no content size in its frames); its decoder grows its output without ' +
        'a bound (a decompression bomb risk): measured, not shipped',
    });
  } catch (err) {
    out.push({ label: '@toondepauw/node-zstd (native)', skip: `does not load here: ${failure(err)}` });
  }
  try {
    const wasm = wasmZstd();
    out.push({
      label: `${wasm.encoder.name} ${wasm.encoder.version} (WebAssembly)`,
      compress: (data, level) => wasm.encoder.compress(data, level),
      decompress: (frame, sizeBytes) => wasm.decoder.decompress(frame, sizeBytes),
    });
  } catch (err) {
    out.push({ label: '@foxglove/wasm-zstd (WebAssembly)', skip: `does not load here: ${failure(err)}` });
  }
  try {
    const bokuweb = require('@bokuweb/zstd-wasm') as BokuwebModule;
    await bokuweb.init();
    out.push({
      label: `@bokuweb/zstd-wasm ${packageVersion('@bokuweb/zstd-wasm')} (WebAssembly)`,
      compress: (data, level) => bokuweb.compress(data, level),
      decompress: (frame, sizeBytes) => bokuweb.decompress(frame, { defaultHeapSize: sizeBytes }),
      note: 'its decoder allocates the content size a frame declares, unchecked',
    });
  } catch (err) {
    out.push({ label: '@bokuweb/zstd-wasm (WebAssembly)', skip: `does not load here: ${failure(err)}` });
  }
  out.push({
    label: `fzstd ${packageVersion('fzstd')} (JavaScript)`,
    decompress: (frame) => fzstdDecompress(frame),
  });
  return out;
}

/*
 * The one zstd codec of liverestore, chosen once when this module loads (synchronously:
 * the WebAssembly build is compiled with `new WebAssembly.Module`, ≈ 5 ms, and no
 * top-level await keeps CommonJS consumers out), so that encodeBlob and decodeBlob stay
 * synchronous on every thread that imports @liverestore/format.
 *
 * Rule (numbers in docs/formats.md, measured by `bench codecs` and `bench backup`), the
 * first that loads does both directions:
 * 1. zstd-napi, native libzstd, where its optional addon built at install: one-shot
 *    contexts writing into a bounded output region reused per thread (decode 2.4× the
 *    WebAssembly build's on the VM mix here, encode 1.3–1.6×);
 * 2. node:zlib where this Node.js has zstd (>= 22.15, native libzstd);
 * 3. the WebAssembly build @foxglove/wasm-zstd, which runs wherever Node.js does: its
 *    decoder writes into a buffer of the size it is given (bounded) and its one-shot
 *    encoder keeps up with the backup pipeline on any content.
 * LIVERESTORE_ZSTD=node starts the rule at 2 (node:zlib, where Node has it), and
 * LIVERESTORE_ZSTD=wasm forces the WebAssembly build: each path stays testable anywhere.
 */

import { IntegrityError, LiverestoreError, blobTooLarge as tooLarge } from './errors.js';
import {
  napiZstd,
  nodeZlibZstd,
  wasmZstd,
  type ZstdDecoderBackend,
  type ZstdEncoderBackend,
} from './zstd-backends.js';
import { zstdPayloadBounds } from './zstd-frame.js';

/** Which implementation does what, and why: for `bench codecs`, `--version` and bug reports. */
export interface ZstdCodecInfo {
  /** e.g. `zstd-napi 0.0.13 (libzstd 1.5.7)`, `node:zlib Node.js v24.1.0` or `@foxglove/wasm-zstd 1.0.1`. */
  readonly encoder: string;
  /** e.g. `@foxglove/wasm-zstd 1.0.1`. */
  readonly decoder: string;
  /** Why the faster candidates were passed over (empty when the first one runs). */
  readonly notes: readonly string[];
}

/** The selected encoder and decoder, plus how they were chosen. */
export interface ZstdCodec {
  readonly info: ZstdCodecInfo;
  readonly encoder: ZstdEncoderBackend | undefined;
  readonly decoder: ZstdDecoderBackend | undefined;
}

/** An encoder and a decoder from the same implementation. */
type BackendPair = { encoder: ZstdEncoderBackend; decoder: ZstdDecoderBackend };

/** Where the candidates come from; tests replace one to force a fallback. */
export interface ZstdLoaders {
  readonly napi: typeof napiZstd;
  readonly nodeZlib: typeof nodeZlibZstd;
  readonly wasm: () => BackendPair;
}

/** The real candidates of this machine. */
export const DEFAULT_ZSTD_LOADERS: ZstdLoaders = {
  napi: napiZstd,
  nodeZlib: nodeZlibZstd,
  wasm: () => wasmZstd(),
};

/**
 * What `LIVERESTORE_ZSTD` may say: `auto` (the rule above), `node` (node:zlib where Node
 * has zstd, else WebAssembly) or `wasm` (WebAssembly for both).
 */
export type ZstdPreference = 'auto' | 'node' | 'wasm';

const PREFERENCES: readonly string[] = ['auto', 'node', 'wasm'] satisfies ZstdPreference[];

function label(backend: { name: string; version: string } | undefined): string {
  return backend === undefined ? 'none' : `${backend.name} ${backend.version}`;
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

function codecOf(pair: BackendPair | undefined, notes: readonly string[]): ZstdCodec {
  return {
    info: { encoder: label(pair?.encoder), decoder: label(pair?.decoder), notes },
    encoder: pair?.encoder,
    decoder: pair?.decoder,
  };
}

/** Applies the selection rule to `loaders`; never throws (a codec without backends says why in `notes`). */
export function selectZstdCodec(
  preference: ZstdPreference = 'auto',
  loaders: ZstdLoaders = DEFAULT_ZSTD_LOADERS,
): ZstdCodec {
  const notes: string[] = [];
  if (preference === 'auto') {
    const napi = loaders.napi();
    if (napi !== undefined) return codecOf(napi, notes);
    notes.push('zstd-napi (optional native libzstd) is not installed or its addon did not build');
  } else {
    notes.push(`LIVERESTORE_ZSTD=${preference} passes over zstd-napi`);
  }
  if (preference !== 'wasm') {
    const node = loaders.nodeZlib();
    if (node !== undefined) return codecOf(node, notes);
    notes.push(`node:zlib of Node.js ${process.version} has no zstd (needs >= 22.15)`);
  } else {
    notes.push('LIVERESTORE_ZSTD=wasm forces the WebAssembly build');
  }
  try {
    return codecOf(loaders.wasm(), notes);
  } catch (err) {
    notes.push(`WebAssembly zstd unavailable: ${reason(err)}`);
    return codecOf(undefined, notes);
  }
}

/** Reads LIVERESTORE_ZSTD; an unknown value runs the rule and says so (in `--version`), rather than failing every import. */
function codecFromEnv(value: string | undefined): ZstdCodec {
  if (value !== undefined && PREFERENCES.includes(value)) return selectZstdCodec(value as ZstdPreference);
  const codec = selectZstdCodec('auto');
  if (value === undefined || value === '') return codec;
  return {
    ...codec,
    info: {
      ...codec.info,
      notes: [...codec.info.notes, `LIVERESTORE_ZSTD="${value}" ignored (auto, node or wasm)`],
    },
  };
}

/** The codec this process uses, selected when the module loaded. */
export const zstdCodec: ZstdCodec = codecFromEnv(process.env.LIVERESTORE_ZSTD);

/** Which zstd implementation encodes and which decodes in this process, and why. */
export const zstdCodecInfo: ZstdCodecInfo = zstdCodec.info;

function unavailable(what: string, codec: ZstdCodec): LiverestoreError {
  return new LiverestoreError(
    'ERR_LR_ZSTD_UNAVAILABLE',
    `no zstd ${what} could be loaded (${codec.info.notes.join('; ')})`,
  );
}

/** zstd-compresses `data` at `level` with the codec's encoder. */
export function zstdCompress(data: Uint8Array, level: number, codec: ZstdCodec = zstdCodec): Buffer {
  if (codec.encoder === undefined) throw unavailable('encoder', codec);
  return codec.encoder.compress(data, level);
}

/** Windows up to this size are always accepted (zstd's own decoder default limit is 128 MiB; level 19 uses 8 MiB). */
const ZSTD_WINDOW_FLOOR_BYTES = 8 * 1024 * 1024;

/**
 * The largest window a frame of a payload that decodes to at most `maxBytes` may declare:
 * encoders declare windows of a few MiB whatever the content size (the zstd CLI on stdin
 * says 512 KiB at level 1), so the window gets a ceiling, not the output's bound.
 */
export function zstdWindowLimitBytes(maxBytes: number): number {
  return Math.max(2 * maxBytes, ZSTD_WINDOW_FLOOR_BYTES);
}

/**
 * Decodes a zstd payload to at most `maxBytes`, allocating no more than its headers
 * promise: a frame that declares more than `maxBytes`, or whose raw and RLE blocks alone
 * exceed it, is refused before decoding (`ERR_LR_BLOB_TOO_LARGE`); otherwise the decoder
 * gets an output of min(maxBytes, what the headers allow), so a 4 MiB chunk costs a
 * 4 MiB buffer whatever the limit. Corrupt input is `ERR_LR_DECOMPRESS_FAILED`.
 */
export function zstdDecompress(payload: Uint8Array, maxBytes: number, codec: ZstdCodec = zstdCodec): Buffer {
  const decoder = codec.decoder;
  if (decoder === undefined) throw unavailable('decoder', codec);
  return decodeChecked(payload, maxBytes, (capacity) => decoder.decompress(payload, capacity));
}

/**
 * {@link zstdDecompress} that hands the plaintext to `use` without copying it out of the
 * decoder's memory where the decoder can (zstd-napi, WebAssembly): `plain` is valid only during the
 * call. The hot path of chunk reads, which hash the plaintext and copy it once to where
 * it goes, or, given `into` (see ZstdDecoderBackend.decompressView), find it there.
 */
export function zstdDecompressWith<T>(
  payload: Uint8Array,
  maxBytes: number,
  use: (plain: Uint8Array) => T,
  codec: ZstdCodec = zstdCodec,
  into?: Uint8Array,
): T {
  const decoder = codec.decoder;
  if (decoder === undefined) throw unavailable('decoder', codec);
  const decompressView = decoder.decompressView;
  if (decompressView === undefined) return use(zstdDecompress(payload, maxBytes, codec));
  // `use` runs after the checks, so that its own errors are not taken for corrupt input.
  return use(
    decodeChecked(payload, maxBytes, (capacity) => decompressView.call(decoder, payload, capacity, into)),
  );
}

/** The header checks of {@link zstdDecompress} around one decode at the capacity they allow. */
function decodeChecked<T extends Uint8Array>(
  payload: Uint8Array,
  maxBytes: number,
  decode: (capacityBytes: number) => T,
): T {
  const bounds = zstdPayloadBounds(payload);
  if (bounds.declaredBytes !== undefined && bounds.declaredBytes > maxBytes)
    throw tooLarge(maxBytes, `its frames declare ${bounds.declaredBytes}`);
  if (bounds.minBytes > maxBytes) throw tooLarge(maxBytes, `its blocks hold at least ${bounds.minBytes}`);
  // A streaming decoder (node:zlib) allocates the declared window first; the one-shot
  // decoders (zstd-napi, WebAssembly) do not, but all refuse the same payloads.
  if (bounds.maxWindowBytes > zstdWindowLimitBytes(maxBytes))
    throw tooLarge(maxBytes, `a frame declares a ${bounds.maxWindowBytes}-byte window`);
  // node:zlib decodes a truncated frame to what it holds, without an error: refuse it first.
  if (!bounds.complete)
    throw new IntegrityError('ERR_LR_DECOMPRESS_FAILED', 'zstd payload is truncated or corrupt');
  const capacity = Math.min(maxBytes, bounds.declaredBytes ?? bounds.maxBytes);
  let out: T;
  try {
    out = decode(Math.max(capacity, 1));
  } catch (cause) {
    // Beyond the limit itself it is too large; beyond a tighter capacity the frame lied
    // about its size, which is corruption (as the one-shot decoder reports it).
    if ((cause as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' && capacity >= maxBytes)
      throw tooLarge(maxBytes, 'while decoding');
    const maybeLarger = bounds.declaredBytes === undefined && bounds.maxBytes > maxBytes;
    throw new IntegrityError(
      'ERR_LR_DECOMPRESS_FAILED',
      maybeLarger
        ? `zstd payload is corrupt or decodes to more than ${maxBytes} bytes (its frames do not declare their size)`
        : 'zstd payload is corrupt',
      { cause },
    );
  }
  if (out.byteLength > maxBytes) throw tooLarge(maxBytes, `it decoded to ${out.byteLength}`);
  return out;
}

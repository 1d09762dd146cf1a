/**
 * The cases of `bench codecs`, in table order: the write path (DEFLATE and every zstd
 * encoder), the read path (DEFLATE and every zstd decoder), verification, decryption,
 * copying, and the whole chunk decode of @liverestore/format.
 */

import { createDecipheriv, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import * as zlib from 'node:zlib';
import { decodeChunk, encodeBlob, zstdCodecInfo, zstdDecompress } from '@liverestore/format';
import { deflateSync as fflateDeflate, inflateSync as fflateInflate } from 'fflate';
import {
  AES_IV_BYTES,
  AES_KEY,
  CHUNK_BYTES,
  type ChunkInputs,
  DEFLATE_LEVEL,
  type MixInputs,
  ZSTD_LEVEL,
} from './codec-inputs.js';
import type { ZstdCandidate } from './zstd-candidates.js';

/** One measured operation: `run` processes every chunk once and returns something derived from the work. */
export interface CodecCase {
  readonly name: string;
  /** Set when the case cannot run here; the row shows the reason. */
  readonly skip?: string;
  readonly run: (chunks: readonly ChunkInputs[]) => number;
  /** Checks the case's output on one chunk before timing, so a broken case cannot look fast. */
  readonly check?: (chunk: ChunkInputs) => boolean;
}

function crc32Available(): boolean {
  return typeof (zlib as { crc32?: unknown }).crc32 === 'function';
}

function zstdEncodeCases(candidates: readonly ZstdCandidate[]): CodecCase[] {
  return candidates
    .filter((c) => c.compress !== undefined || c.skip !== undefined)
    .map((c) => {
      const name = `zstd L${ZSTD_LEVEL} encode: ${c.label}`;
      if (c.skip !== undefined) return { name, skip: c.skip, run: () => 0 };
      const compress = c.compress!;
      return {
        name,
        run: (chunks) => chunks.reduce((n, chunk) => n + compress(chunk.plain, ZSTD_LEVEL).length, 0),
        // Every encoder's frames must decode with the product decoder.
        check: (chunk) => zstdDecompress(compress(chunk.plain, ZSTD_LEVEL), CHUNK_BYTES).equals(chunk.plain),
      };
    });
}

function zstdDecodeCases(candidates: readonly ZstdCandidate[]): CodecCase[] {
  return candidates
    .filter((c) => c.decompress !== undefined || c.skip !== undefined)
    .map((c) => {
      const name = `zstd decode: ${c.label}`;
      if (c.skip !== undefined) return { name, skip: c.skip, run: () => 0 };
      const decompress = c.decompress!;
      return {
        name,
        run: (chunks) => chunks.reduce((n, chunk) => n + decompress(chunk.zstd, CHUNK_BYTES).length, 0),
        check: (chunk) => chunk.plain.equals(decompress(chunk.zstd, CHUNK_BYTES)),
      };
    });
}

/** A streaming zstd decompression context of zstd-napi's binding (`ZSTD_decompressStream`). */
interface ZstdStreamContext {
  /** Returns [0 when the frame is done, plaintext bytes written to `dest`, bytes of `source` consumed]. */
  decompressStream(dest: Uint8Array, source: Uint8Array): [number, number, number];
  /** 1: ZSTD_reset_session_only, a new frame next. */
  reset(directive: 1): void;
}

/** zstd-napi's streaming context (its optional native addon), or undefined where it is not installed. */
function zstdStreamContext(): ZstdStreamContext | undefined {
  try {
    const binding = createRequire(import.meta.url)('zstd-napi/binding') as {
      DCtx: new () => ZstdStreamContext;
    };
    return new binding.DCtx();
  } catch {
    return undefined;
  }
}

/**
 * The plaintext of `frame` decoded the way a decode fed while the body arrives would run
 * it: the frame given `pieceBytes` at a time (what a socket read brings), each piece
 * decompressed into `out` at once and the plaintext it yields hashed then (SHA-256
 * updated per piece). Returns the digest; `out` holds the plaintext.
 */
function decodeAsArriving(
  dctx: ZstdStreamContext,
  frame: Uint8Array,
  pieceBytes: number,
  out: Buffer,
): Buffer {
  dctx.reset(1);
  const hash = createHash('sha256');
  let written = 0;
  let done = false;
  for (let at = 0; at < frame.byteLength && !done; at += pieceBytes) {
    let piece = frame.subarray(at, Math.min(frame.byteLength, at + pieceBytes));
    while (piece.byteLength > 0 || !done) {
      const [left, produced, consumed] = dctx.decompressStream(out.subarray(written), piece);
      if (produced > 0) hash.update(out.subarray(written, written + produced));
      written += produced;
      piece = piece.subarray(consumed);
      done = left === 0;
      if (produced === 0 && consumed === 0) break; // needs the next piece
    }
  }
  if (!done) throw new Error('zstd frame ended early');
  return hash.digest();
}

/**
 * What decoding a chunk while its body arrives would cost a decode thread, against what it
 * runs now (one-shot decompression into the chunk's memory, then one SHA-256 of it): the
 * same zstd-napi, fed 64 KiB or 256 KiB of the frame at a time.
 */
function arrivingDecodeCases(): CodecCase[] {
  const dctx = zstdStreamContext();
  const skip =
    dctx === undefined
      ? 'zstd-napi not installed or its addon did not build (optional dependency)'
      : undefined;
  const out = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const whole = (frame: Uint8Array): Buffer => {
    dctx!.reset(1);
    const [left, produced] = dctx!.decompressStream(out, frame);
    if (left !== 0) throw new Error('zstd frame did not end');
    return createHash('sha256').update(out.subarray(0, produced)).digest();
  };
  const cases: [string, (frame: Uint8Array) => Buffer][] = [
    ['zstd + SHA-256, whole chunk (as decode threads run)', whole],
    [
      'zstd + SHA-256, fed 256 KiB pieces (decode as it arrives)',
      (f) => decodeAsArriving(dctx!, f, 256 * 1024, out),
    ],
    [
      'zstd + SHA-256, fed 64 KiB pieces (decode as it arrives)',
      (f) => decodeAsArriving(dctx!, f, 64 * 1024, out),
    ],
  ];
  return cases.map(([what, decode]) => ({
    name: `${what}: zstd-napi`,
    ...(skip === undefined ? {} : { skip }),
    run: (chunks) => chunks.reduce((n, c) => n + decode(c.zstd)[0]!, 0),
    check: (c) => decode(c.zstd).equals(c.digest) && out.subarray(0, c.plain.byteLength).equals(c.plain),
  }));
}

/** All cases; `candidates` from {@link loadZstdCandidates}. */
export function codecCases(candidates: readonly ZstdCandidate[]): CodecCase[] {
  const out = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  return [
    {
      name: 'DEFLATE L1 encode: fflate deflateSync',
      run: (chunks) =>
        chunks.reduce((n, c) => n + fflateDeflate(c.plain, { level: DEFLATE_LEVEL }).length, 0),
    },
    {
      name: 'DEFLATE L1 encode: node:zlib deflateRawSync',
      run: (chunks) =>
        chunks.reduce((n, c) => n + zlib.deflateRawSync(c.plain, { level: DEFLATE_LEVEL }).length, 0),
    },
    ...zstdEncodeCases(candidates),
    {
      name: `encodeBlob (format), default zstd: ${zstdCodecInfo.encoder}`,
      run: (chunks) => chunks.reduce((n, c) => n + encodeBlob(c.plain).length, 0),
    },
    {
      name: 'DEFLATE decode: node:zlib inflateRawSync',
      run: (chunks) => chunks.reduce((n, c) => n + zlib.inflateRawSync(c.deflated).length, 0),
      check: (c) => c.plain.equals(zlib.inflateRawSync(c.deflated)),
    },
    {
      name: 'DEFLATE decode: node:zlib inflateRawSync, chunkSize 4 MiB',
      run: (chunks) =>
        chunks.reduce((n, c) => n + zlib.inflateRawSync(c.deflated, { chunkSize: CHUNK_BYTES }).length, 0),
    },
    {
      name: 'DEFLATE decode: fflate inflateSync',
      run: (chunks) => chunks.reduce((n, c) => n + fflateInflate(c.deflated).length, 0),
      check: (c) => c.plain.equals(fflateInflate(c.deflated)),
    },
    {
      name: 'DEFLATE decode: fflate inflateSync, preallocated out',
      run: (chunks) => chunks.reduce((n, c) => n + fflateInflate(c.deflated, { out }).length, 0),
    },
    ...zstdDecodeCases(candidates),
    {
      name: 'SHA-256: node:crypto',
      run: (chunks) => chunks.reduce((n, c) => n + createHash('sha256').update(c.plain).digest()[0]!, 0),
    },
    {
      name: 'CRC-32: node:zlib crc32',
      ...(crc32Available() ? {} : { skip: `node:zlib of Node ${process.version} has no crc32` }),
      run: (chunks) => chunks.reduce((n, c) => n ^ zlib.crc32(c.plain), 0),
    },
    {
      name: `AES-256-GCM decrypt: node:crypto, ${AES_IV_BYTES}-byte IV`,
      run: (chunks) =>
        chunks.reduce((n, c) => {
          const decipher = createDecipheriv('aes-256-gcm', AES_KEY, c.iv, { authTagLength: 16 });
          decipher.setAuthTag(c.tag);
          const plain = decipher.update(c.ciphertext);
          decipher.final();
          return n + plain.length;
        }, 0),
    },
    {
      name: 'memcpy: Buffer.copy (ceiling)',
      run: (chunks) => chunks.reduce((n, c) => n + c.plain.copy(out), 0),
    },
    {
      name: 'decodeChunk (format), deflate blob',
      run: (chunks) => chunks.reduce((n, c) => n + decodeChunk(c.deflateBlob, c.digest).length, 0),
      check: (c) => c.plain.equals(decodeChunk(c.deflateBlob, c.digest)),
    },
    {
      name: `decodeChunk (format), zstd blob: ${zstdCodecInfo.decoder}`,
      run: (chunks) =>
        chunks.reduce((n, c) => n + decodeChunk(c.zstdBlob, c.digest, { maxBytes: CHUNK_BYTES }).length, 0),
      check: (c) => c.plain.equals(decodeChunk(c.zstdBlob, c.digest, { maxBytes: CHUNK_BYTES })),
    },
    ...arrivingDecodeCases(),
  ];
}

/** Runs every case's check on every chunk; throws naming the first case that returns wrong bytes. */
export function checkOutputs(cases: readonly CodecCase[], inputs: MixInputs): void {
  for (const c of cases) {
    if (c.skip !== undefined || c.check === undefined) continue;
    for (const chunk of inputs.chunks) {
      if (!c.check(chunk)) throw new Error(`${c.name} returned wrong bytes on the ${inputs.choice.name} mix`);
    }
  }
}

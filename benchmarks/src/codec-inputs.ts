/**
 * The data the codec benchmark runs on: 4 MiB chunks of a synthetic image from
 * @liverestore/testkit for each content mix, and everything derived from them once,
 * before any timing (compressed streams, ciphertexts, chunk blobs as the store holds them).
 */

import { createCipheriv, createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { blobKind, encodeBlob, MAGIC, zstdCompress } from '@liverestore/format';
import { type ContentMix, DEFAULT_MIX, type ImageSpec, imageBytes, imageRegions } from '@liverestore/testkit';
import { deflateSync as fflateDeflate } from 'fflate';

/** Chunk size of every case: the PBS and liverestore default for fixed-index archives. */
export const CHUNK_BYTES = 4 * 1024 * 1024;
/** DEFLATE level of `--compress deflate` backups (the format package's default): throughput over ratio. */
export const DEFLATE_LEVEL = 1;
/** zstd level of backups: PBS writes level 1. */
export const ZSTD_LEVEL = 1;
/** PBS encrypts with AES-256-GCM and a 16-byte IV (not the usual 12). */
export const AES_IV_BYTES = 16;

/** A named content mix the benchmark can run on. */
export interface MixChoice {
  readonly name: string;
  readonly description: string;
  readonly mix: ContentMix;
}

/** The mixes `--mix` accepts: compressible text, incompressible noise, and a typical VM disk. */
export const MIXES: readonly MixChoice[] = [
  { name: 'text', description: 'file-system-like text and records, compressible', mix: { text: 1 } },
  { name: 'random', description: 'incompressible noise (media, encrypted files)', mix: { random: 1 } },
  {
    name: 'vm',
    description: "testkit's default VM mix: 30% zero, 40% text, 20% random, 10% repeat",
    mix: DEFAULT_MIX,
  },
];

/** A PBS zstd blob: magic, CRC-32 (LE) of the payload, payload. */
export function zstdBlob(payload: Uint8Array): Buffer {
  const blob = Buffer.allocUnsafe(12 + payload.byteLength);
  MAGIC.zstdBlob.copy(blob, 0);
  blob.writeUInt32LE(zlib.crc32(payload), 8);
  blob.set(payload, 12);
  return blob;
}

/** One chunk and everything derived from it. */
export interface ChunkInputs {
  readonly plain: Buffer;
  readonly digest: Buffer;
  /** fflate level-1 raw DEFLATE, what backups write. */
  readonly deflated: Buffer;
  /** node:zlib level-1 raw DEFLATE, for the ratio table only. */
  readonly zlibDeflated: Buffer;
  /** Level-1 zstd frame from the product encoder (what backups write). */
  readonly zstd: Buffer;
  readonly ciphertext: Buffer;
  readonly iv: Buffer;
  readonly tag: Buffer;
  /** `encodeBlob(plain, deflate)`: DEFLATE, or uncompressed when DEFLATE did not shrink the chunk. */
  readonly deflateBlob: Buffer;
  /** A PBS zstd blob that always holds the zstd frame (to time zstd decoding even of noise). */
  readonly zstdBlob: Buffer;
  /** `encodeBlob(plain)` as a default backup stores it: zstd, or uncompressed when zstd did not shrink it. */
  readonly storedBlob: Buffer;
}

/** The chunks of one mix, with how they were made. */
export interface MixInputs {
  readonly choice: MixChoice;
  readonly spec: ImageSpec;
  readonly chunks: readonly ChunkInputs[];
  /** Fractions of the chunks' bytes by content kind, as the testkit laid them out. */
  readonly composition: Readonly<Record<string, number>>;
}

/** A fixed key: the benchmark measures speed, not secrecy, and must be reproducible. */
export const AES_KEY = createHash('sha256').update('liverestore codec benchmark key').digest();

/**
 * Distance between the sampled chunks, in chunks: 17 × 4 MiB = 68 MiB, so every chunk
 * comes from another 64 MiB extent of the testkit layout (another draw of regions)
 * and at another position in it, rather than 8 neighbours sharing a few regions.
 */
export const CHUNK_STRIDE = 17;

/** Builds the chunks of `choice` (every {@link CHUNK_STRIDE}th chunk of the image) and all derived inputs. */
export function prepareMix(choice: MixChoice, seed: number, chunkCount: number): MixInputs {
  const spec: ImageSpec = { sizeBytes: chunkCount * CHUNK_STRIDE * CHUNK_BYTES, seed, mix: choice.mix };
  const composition: Record<string, number> = {};
  const chunks: ChunkInputs[] = [];
  for (let i = 0; i < chunkCount; i++) {
    const offset = i * CHUNK_STRIDE * CHUNK_BYTES;
    for (const region of imageRegions(spec, offset, CHUNK_BYTES)) {
      composition[region.kind] =
        (composition[region.kind] ?? 0) + region.lengthBytes / (chunkCount * CHUNK_BYTES);
    }
    const plain = imageBytes(spec, offset, CHUNK_BYTES);
    const iv = createHash('sha256').update(`iv ${i}`).digest().subarray(0, AES_IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', AES_KEY, iv, { authTagLength: 16 });
    const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
    const zstdPayload = zstdCompress(plain, ZSTD_LEVEL);
    const deflated = fflateDeflate(plain, { level: DEFLATE_LEVEL });
    chunks.push({
      plain,
      digest: createHash('sha256').update(plain).digest(),
      deflated: Buffer.from(deflated.buffer, deflated.byteOffset, deflated.byteLength),
      zlibDeflated: zlib.deflateRawSync(plain, { level: DEFLATE_LEVEL }),
      zstd: zstdPayload,
      ciphertext,
      iv,
      tag: cipher.getAuthTag(),
      deflateBlob: encodeBlob(plain, { compress: 'deflate', level: DEFLATE_LEVEL }),
      zstdBlob: zstdBlob(zstdPayload),
      storedBlob: encodeBlob(plain, { compress: 'zstd', level: ZSTD_LEVEL }),
    });
  }
  return { choice, spec, chunks, composition };
}

/** How many of the chunks' blobs of `kind` (deflate or stored zstd) `encodeBlob` kept compressed. */
export function compressedBlobCount(inputs: MixInputs, kind: 'deflate' | 'zstd'): number {
  return inputs.chunks.filter(
    (c) => blobKind(kind === 'deflate' ? c.deflateBlob : c.storedBlob).compression === kind,
  ).length;
}

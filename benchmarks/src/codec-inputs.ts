/**
 * The data the codec benchmark runs on: 4 MiB chunks of a synthetic image from
 * @liverestore/testkit for each content mix, and everything derived from them once,
 * before any timing (compressed streams, ciphertexts, chunk blobs as the store holds them).
 */

import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { blobKind, encodeBlob, MAGIC } from '@liverestore/format';
import { type ContentMix, DEFAULT_MIX, type ImageSpec, imageBytes, imageRegions } from '@liverestore/testkit';
import { deflateSync as fflateDeflate } from 'fflate';
import { findOnPath } from './tools.js';

const runFile = promisify(execFile);

/** Chunk size of every case: the PBS and liverestore default for fixed-index archives. */
export const CHUNK_BYTES = 4 * 1024 * 1024;
/** DEFLATE level of backups (the format package's default): throughput over ratio. */
export const DEFLATE_LEVEL = 1;
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

/** How zstd inputs are made, or why they cannot be. */
export type ZstdEncoder =
  | { readonly kind: 'cli'; readonly path: string; readonly label: string }
  | { readonly kind: 'node'; readonly label: string }
  | { readonly kind: 'none'; readonly reason: string };

type ZstdCompressSync = (data: Uint8Array, options?: { params?: Record<number, number> }) => Buffer;

function nodeZstd(): ZstdCompressSync | undefined {
  const fn = (zlib as { zstdCompressSync?: unknown }).zstdCompressSync;
  return typeof fn === 'function' ? (fn as ZstdCompressSync) : undefined;
}

/**
 * Picks the zstd encoder: the `zstd` CLI (`zstd -1 -q -c`, what an independent
 * writer produces) when installed, else node:zlib's zstdCompressSync (Node ≥ 22.15).
 */
export async function findZstdEncoder(): Promise<ZstdEncoder> {
  const path = await findOnPath('zstd');
  if (path !== undefined) {
    let version = 'unknown version';
    try {
      const { stdout } = await runFile(path, ['-V']);
      version = /v\d+\.\d+\.\d+/.exec(stdout)?.[0] ?? version;
    } catch {
      // keep "unknown version"
    }
    return { kind: 'cli', path, label: `zstd CLI ${version}, zstd -1 -q -c` };
  }
  if (nodeZstd() !== undefined) return { kind: 'node', label: 'node:zlib zstdCompressSync, level 1' };
  return {
    kind: 'none',
    reason: `no zstd encoder: the zstd CLI is not installed and node:zlib of Node ${process.version} has no zstdCompressSync`,
  };
}

async function zstdCompress(encoder: ZstdEncoder, data: Buffer): Promise<Buffer> {
  switch (encoder.kind) {
    case 'cli': {
      return new Promise((resolve, reject) => {
        const child = execFile(
          encoder.path,
          ['-1', '-q', '-c'],
          { encoding: 'buffer', maxBuffer: 2 * data.byteLength + 65536 },
          (err, stdout) => (err === null ? resolve(stdout) : reject(err)),
        );
        child.stdin?.end(data);
      });
    }
    case 'node': {
      const level = (zlib.constants as unknown as Record<string, number>).ZSTD_c_compressionLevel;
      return nodeZstd()!(data, level === undefined ? {} : { params: { [level]: 1 } });
    }
    case 'none':
      throw new Error(encoder.reason);
  }
}

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
  readonly zstd: Buffer | undefined;
  readonly ciphertext: Buffer;
  readonly iv: Buffer;
  readonly tag: Buffer;
  /** `encodeBlob(plain)`: DEFLATE, or uncompressed when DEFLATE did not shrink the chunk. */
  readonly deflateBlob: Buffer;
  readonly zstdBlob: Buffer | undefined;
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
export async function prepareMix(
  choice: MixChoice,
  seed: number,
  chunkCount: number,
  zstd: ZstdEncoder,
): Promise<MixInputs> {
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
    const zstdPayload = zstd.kind === 'none' ? undefined : await zstdCompress(zstd, plain);
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
      zstdBlob: zstdPayload === undefined ? undefined : zstdBlob(zstdPayload),
    });
  }
  return { choice, spec, chunks, composition };
}

/** How many of the chunks' deflate blobs `encodeBlob` kept compressed. */
export function compressedBlobCount(inputs: MixInputs): number {
  return inputs.chunks.filter((c) => blobKind(c.deflateBlob).compression === 'deflate').length;
}

/*
 * Test helpers for @liverestore/datastore. They read the store the way formats.md
 * describes it (directory walk, readIndex, decodeChunk), never through the Datastore
 * class under test, so a test comparing the two checks an independent view.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChunkIndex, type CryptConfig, decodeChunk, readIndex } from '@liverestore/format';
import { MAGIC_SOURCE_STRINGS } from '@liverestore/format/internal';
import { tempDir } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';

export const KiB = 1024;
export const MiB = 1024 * 1024;

function sha256Prefix(text: string): readonly number[] {
  return [...createHash('sha256').update(text, 'utf8').digest().subarray(0, 8)];
}

/**
 * Blob magics, written out from formats.md (PBS) or derived from the documented strings
 * (ours: first 8 bytes of SHA-256 of the string in docs/formats.md).
 */
export const MAGICS = {
  uncompressed: [66, 171, 56, 7, 190, 131, 112, 161],
  zstd: [49, 185, 88, 66, 111, 182, 163, 127],
  encrypted: [123, 103, 133, 190, 34, 45, 76, 240],
  encryptedZstd: [230, 89, 27, 191, 11, 191, 216, 11],
  deflate: sha256Prefix(MAGIC_SOURCE_STRINGS.deflateBlob),
  encryptedDeflate: sha256Prefix(MAGIC_SOURCE_STRINGS.encryptedDeflateBlob),
  fixedIndex: [47, 127, 65, 237, 145, 253, 15, 205],
  dynamicIndex: [28, 145, 78, 165, 25, 186, 179, 205],
} as const;

export type MagicName = keyof typeof MAGICS;

/** Which of {@link MAGICS} a file starts with, or `unknown`. */
export function magicName(data: Uint8Array): MagicName | 'unknown' {
  const head = [...data.subarray(0, 8)];
  for (const [name, magic] of Object.entries(MAGICS) as [MagicName, readonly number[]][]) {
    if (magic.every((b, i) => head[i] === b)) return name;
  }
  return 'unknown';
}

export function sha256Hex(...parts: Uint8Array[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

/** A fresh temp dir removed when the test ends. */
export async function testDir(t: ExecutionContext, prefix = 'lr-datastore-'): Promise<string> {
  const dir = await tempDir(prefix);
  t.teardown(() => dir.cleanup());
  return dir.path;
}

/** A file in the store's chunk folder. */
export interface ChunkFile {
  /** The 4-hex folder it is in. */
  readonly prefix: string;
  readonly name: string;
  readonly path: string;
}

/** Every file under `<store>/.chunks/*` (temp files included), sorted by path. */
export async function listChunkFiles(storeDir: string): Promise<ChunkFile[]> {
  const root = join(storeDir, '.chunks');
  const out: ChunkFile[] = [];
  for (const prefix of (await readdir(root)).sort()) {
    for (const name of (await readdir(join(root, prefix))).sort()) {
      out.push({ prefix, name, path: join(root, prefix, name) });
    }
  }
  return out;
}

/** Hex digests of the chunk files (temp files left out), sorted. */
export async function chunkDigestsOnDisk(storeDir: string): Promise<string[]> {
  const files = await listChunkFiles(storeDir);
  return files
    .filter((f) => !f.name.startsWith('.tmp-'))
    .map((f) => f.name)
    .sort();
}

/** Distinct values, sorted: ava compares sets in insertion order, so compare these instead. */
export function sortedSet<T>(values: Iterable<T>): T[] {
  return [...new Set(values)].sort();
}

export function chunkFilePath(storeDir: string, hex: string): string {
  return join(storeDir, '.chunks', hex.slice(0, 4), hex);
}

/** Parses an index file of a snapshot directory with the format package's reader. */
export async function readIndexFile(snapshotDir: string, filename: string): Promise<ChunkIndex> {
  return readIndex(await readFile(join(snapshotDir, filename)));
}

/** Hex digests of an index, in order. */
export function indexDigests(index: ChunkIndex): string[] {
  const out: string[] = [];
  for (let i = 0; i < index.chunkCount; i++) out.push(index.digestAt(i).toString('hex'));
  return out;
}

/**
 * The bytes an index describes, read chunk by chunk from `.chunks/XXXX/<hex>` and
 * decoded with the digest check; also checks every chunk's length against the index.
 */
export async function reassemble(storeDir: string, index: ChunkIndex, crypt?: CryptConfig): Promise<Buffer> {
  const out = Buffer.alloc(index.sizeBytes);
  for (let i = 0; i < index.chunkCount; i++) {
    const digest = index.digestAt(i);
    const blob = await readFile(chunkFilePath(storeDir, digest.toString('hex')));
    const plain = decodeChunk(blob, digest, { crypt });
    const start = index.chunkStart(i);
    if (plain.byteLength !== index.chunkEnd(i) - start) {
      throw new Error(`chunk ${i} is ${plain.byteLength} bytes, index says ${index.chunkEnd(i) - start}`);
    }
    plain.copy(out, start);
  }
  return out;
}

/** The JSON inside an (unencrypted, uncompressed) manifest blob. */
export async function readManifestJson(snapshotDir: string): Promise<Record<string, unknown>> {
  const raw = await readFile(join(snapshotDir, 'index.json.blob'));
  if (magicName(raw) !== 'uncompressed') throw new Error(`manifest has magic ${magicName(raw)}`);
  return JSON.parse(raw.subarray(12).toString('utf8')) as Record<string, unknown>;
}

/** Writes `data` to `dir/name` and returns the path. */
export async function writeInput(dir: string, name: string, data: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, data);
  return path;
}

/** Chunk numbers of a fixed index of `chunkBytes` that the byte ranges touch. */
export function chunksTouched(
  ranges: readonly { offsetBytes: number; lengthBytes: number }[],
  chunkBytes: number,
): Set<number> {
  const out = new Set<number>();
  for (const r of ranges) {
    const first = Math.floor(r.offsetBytes / chunkBytes);
    const last = Math.floor((r.offsetBytes + r.lengthBytes - 1) / chunkBytes);
    for (let i = first; i <= last; i++) out.add(i);
  }
  return out;
}

/** Hex digests of `data` cut into fixed chunks (plain SHA-256). */
export function fixedChunkDigests(data: Uint8Array, chunkBytes: number): string[] {
  const out: string[] = [];
  for (let at = 0; at < data.byteLength; at += chunkBytes) {
    out.push(sha256Hex(data.subarray(at, Math.min(at + chunkBytes, data.byteLength))));
  }
  return out;
}

/** Text lines, compressible, for dynamic archives and DEFLATE tests. */
export function textBytes(lengthBytes: number, seed = 1): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < lengthBytes; i++) {
    const line = `${seed}:${i} kernel: [${(i * 7919) % 100003}] eth0: link up, ${i % 97} Mbps full duplex\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''), 'utf8').subarray(0, lengthBytes);
}

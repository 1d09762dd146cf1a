import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { fsyncDir, writeFileAtomic } from '@liverestore/datastore/internal';
import { LiveError, systemCode, targetIoError } from './errors.js';

/** First 8 bytes of an allocation map file. */
export const ALLOC_MAP_MAGIC = Buffer.from('LRALLOC\0', 'latin1');
export const ALLOC_MAP_VERSION = 1;
/** Suffix of the map file beside its target: `drive-scsi0.img.map`. */
export const ALLOC_MAP_SUFFIX = '.map';
const FIXED_HEADER_BYTES = 74;
const CHECKSUM_BYTES = 32;
const MAX_IDENTITY_BYTES = 4096;

/** What a map belongs to: one archive of one snapshot, restored at one region size. */
export interface MapIdentity {
  /** `vm/100/2026-11-26T10:00:00Z`. */
  readonly snapshot: string;
  /** `drive-scsi0.img`. */
  readonly archive: string;
  /** The archive's index checksum (hex, 32 bytes), as the manifest names it. */
  readonly indexCsum: string;
  readonly imageBytes: number;
  /** Bytes per region (the archive's fixed chunk size); the last region may be shorter. */
  readonly regionBytes: number;
  readonly regionCount: number;
}

/** A decoded map file. */
export interface DecodedMap {
  readonly identity: MapIdentity;
  /** How many times the map was persisted (informational). */
  readonly generation: number;
  /** One bit per region, LSB first: set = the region is local in the target file. */
  readonly bits: Uint8Array;
}

/** Bytes of the bitmap of `regionCount` regions. */
export function bitmapBytes(regionCount: number): number {
  return Math.ceil(regionCount / 8);
}

/**
 * Encodes a map file (little-endian):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic `LRALLOC\0` |
 * | 8 | 4 | version (1) |
 * | 12 | 4 | header length H = 74 + L (where the bitmap starts) |
 * | 16 | 8 | image size in bytes |
 * | 24 | 4 | region size in bytes |
 * | 28 | 4 | region count |
 * | 32 | 8 | generation (incremented by every persist) |
 * | 40 | 32 | index checksum of the archive (binary) |
 * | 72 | 2 | L, length of the identity text |
 * | 74 | L | identity, UTF-8: `SNAPSHOT ARCHIVE` (`vm/100/2026-…Z drive-scsi0.img`) |
 * | H | ⌈count/8⌉ | bitmap, bit i = byte i>>3, bit i&7: region i is local |
 * | end−32 | 32 | SHA-256 of every byte before it |
 */
export function encodeMap(identity: MapIdentity, bits: Uint8Array, generation: number): Buffer {
  const text = Buffer.from(`${identity.snapshot} ${identity.archive}`, 'utf8');
  if (text.length > MAX_IDENTITY_BYTES) throw new RangeError('snapshot and archive names are too long');
  const csum = Buffer.from(identity.indexCsum, 'hex');
  if (csum.length !== 32) throw new RangeError('indexCsum must be 32 bytes of hex');
  if (bits.length !== bitmapBytes(identity.regionCount)) throw new RangeError('bitmap length mismatch');
  const header = FIXED_HEADER_BYTES + text.length;
  const out = Buffer.alloc(header + bits.length + CHECKSUM_BYTES);
  ALLOC_MAP_MAGIC.copy(out, 0);
  out.writeUInt32LE(ALLOC_MAP_VERSION, 8);
  out.writeUInt32LE(header, 12);
  out.writeBigUInt64LE(BigInt(identity.imageBytes), 16);
  out.writeUInt32LE(identity.regionBytes, 24);
  out.writeUInt32LE(identity.regionCount, 28);
  out.writeBigUInt64LE(BigInt(generation), 32);
  csum.copy(out, 40);
  out.writeUInt16LE(text.length, 72);
  text.copy(out, FIXED_HEADER_BYTES);
  out.set(bits, header);
  createHash('sha256')
    .update(out.subarray(0, out.length - CHECKSUM_BYTES))
    .digest()
    .copy(out, out.length - CHECKSUM_BYTES);
  return out;
}

function corrupt(path: string, what: string): LiveError {
  return new LiveError(
    'ERR_LR_LIVE_MAP_CORRUPT',
    `allocation map ${path} is corrupt (${what}); it cannot tell which regions of the target are restored — ` +
      'remove the target directory and start over',
  );
}

/** Decodes and checks a map file (magic, version, lengths, checksum); `path` names it in errors. */
export function decodeMap(data: Uint8Array, path: string): DecodedMap {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < FIXED_HEADER_BYTES + CHECKSUM_BYTES) throw corrupt(path, `only ${buf.length} bytes`);
  if (!buf.subarray(0, 8).equals(ALLOC_MAP_MAGIC)) throw corrupt(path, 'bad magic');
  const version = buf.readUInt32LE(8);
  if (version !== ALLOC_MAP_VERSION) throw corrupt(path, `unknown version ${version}`);
  const expected = createHash('sha256')
    .update(buf.subarray(0, buf.length - CHECKSUM_BYTES))
    .digest();
  if (!expected.equals(buf.subarray(buf.length - CHECKSUM_BYTES))) throw corrupt(path, 'checksum mismatch');
  const header = buf.readUInt32LE(12);
  const textLength = buf.readUInt16LE(72);
  const imageBytes = Number(buf.readBigUInt64LE(16));
  const regionBytes = buf.readUInt32LE(24);
  const regionCount = buf.readUInt32LE(28);
  if (header !== FIXED_HEADER_BYTES + textLength) throw corrupt(path, 'header length');
  if (header + bitmapBytes(regionCount) + CHECKSUM_BYTES !== buf.length) throw corrupt(path, 'file length');
  if (
    !Number.isSafeInteger(imageBytes) ||
    regionBytes === 0 ||
    regionCount !== Math.ceil(imageBytes / regionBytes)
  ) {
    throw corrupt(path, 'sizes');
  }
  const text = buf.toString('utf8', FIXED_HEADER_BYTES, header);
  const space = text.lastIndexOf(' ');
  if (space <= 0) throw corrupt(path, 'identity');
  return {
    identity: {
      snapshot: text.slice(0, space),
      archive: text.slice(space + 1),
      indexCsum: buf.toString('hex', 40, 72),
      imageBytes,
      regionBytes,
      regionCount,
    },
    generation: Number(buf.readBigUInt64LE(32)),
    bits: new Uint8Array(buf.subarray(header, header + bitmapBytes(regionCount))),
  };
}

/**
 * Checks that a decoded map belongs to `expected`: another snapshot or archive is
 * `ERR_LR_LIVE_SNAPSHOT_MISMATCH`, other sizes `ERR_LR_LIVE_MAP_CORRUPT`.
 */
export function checkMapIdentity(found: MapIdentity, expected: MapIdentity, path: string): void {
  if (
    found.snapshot !== expected.snapshot ||
    found.archive !== expected.archive ||
    found.indexCsum !== expected.indexCsum
  ) {
    throw new LiveError(
      'ERR_LR_LIVE_SNAPSHOT_MISMATCH',
      `${path} belongs to a live restore of ${found.snapshot} ${found.archive} (index ${found.indexCsum.slice(0, 12)}…), ` +
        `not of ${expected.snapshot} ${expected.archive} (index ${expected.indexCsum.slice(0, 12)}…): ` +
        'give another --target-dir, or the snapshot this one was started with',
    );
  }
  if (
    found.imageBytes !== expected.imageBytes ||
    found.regionBytes !== expected.regionBytes ||
    found.regionCount !== expected.regionCount
  ) {
    throw corrupt(path, 'sizes differ from the archive it names');
  }
}

/** Reads a map file; undefined when it does not exist. */
export async function readMapFile(path: string): Promise<DecodedMap | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return undefined;
    throw new LiveError('ERR_LR_LIVE_TARGET_IO', `cannot read ${path} (${systemCode(err) ?? 'error'})`, {
      cause: err,
    });
  }
  try {
    const size = (await handle.stat()).size;
    if (size > 64 * 1024 * 1024) throw corrupt(path, `${size} bytes is too large`);
    const data = Buffer.alloc(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await handle.read(data, at, size - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return decodeMap(data.subarray(0, at), path);
  } finally {
    await handle.close();
  }
}

/** Fsyncs a directory, so a rename or create in it survives a crash. */
export const syncDir = fsyncDir;

/**
 * Writes a map file atomically (the datastore's temp file, fsync, rename, directory
 * fsync): a crash leaves the old map or the new one, never a mix.
 */
export async function writeMapFile(path: string, data: Buffer): Promise<void> {
  try {
    await writeFileAtomic(path, data, { syncDir: true });
  } catch (err) {
    throw targetIoError(err, path, 'writing the allocation map');
  }
}

/** The in-memory allocation bitmap of one drive. */
export class RegionBitmap {
  readonly bits: Uint8Array;
  #count = 0;

  constructor(
    readonly regionCount: number,
    bits?: Uint8Array,
  ) {
    this.bits = bits ?? new Uint8Array(bitmapBytes(regionCount));
    if (this.bits.length !== bitmapBytes(regionCount)) throw new RangeError('bitmap length mismatch');
    // Bits past the last region must be clear (a map is exact).
    for (let i = regionCount; i < this.bits.length * 8; i++) {
      if (this.has(i)) throw new RangeError('bitmap has bits set past the last region');
    }
    for (let i = 0; i < regionCount; i++) if (this.has(i)) this.#count++;
  }

  has(i: number): boolean {
    return (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  /** Sets bit `i`; returns false when it was set already. */
  set(i: number): boolean {
    if (this.has(i)) return false;
    this.bits[i >> 3]! |= 1 << (i & 7);
    this.#count++;
    return true;
  }

  /** Regions set. */
  get count(): number {
    return this.#count;
  }

  get complete(): boolean {
    return this.#count === this.regionCount;
  }

  snapshot(): Uint8Array {
    return this.bits.slice();
  }
}

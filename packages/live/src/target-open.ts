/**
 * Creating or resuming the target file and map of one drive: every refusal of a target
 * directory that does not belong to this restore lives here, before any byte is written.
 */
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { toHex } from '@liverestore/format';
import type { CachedChunkReader } from '@liverestore/reader';
import {
  ALLOC_MAP_SUFFIX,
  bitmapBytes,
  checkMapIdentity,
  encodeMap,
  type MapIdentity,
  RegionBitmap,
  readMapFile,
  syncDir,
} from './alloc-map.js';
import { LiveError, systemCode, targetIoError } from './errors.js';
import type { TargetFile, TargetFiles } from './target-file.js';

/**
 * What the map of `reader`'s archive restored from `snapshot` must name; an archive that is
 * not a fixed index (a disk image) is `ERR_LR_LIVE_NOT_A_DISK`.
 */
export function mapIdentityOf(reader: CachedChunkReader, snapshot: string): MapIdentity {
  const index = reader.index;
  if (index.kind !== 'fixed' || index.chunkCount === 0) {
    throw new LiveError('ERR_LR_LIVE_NOT_A_DISK', `archive ${reader.name} is not a disk image (fixed index)`);
  }
  return {
    snapshot,
    archive: reader.name,
    indexCsum: toHex(index.indexCsum),
    imageBytes: reader.size,
    regionBytes: index.chunkEnd(0) - index.chunkStart(0),
    regionCount: index.chunkCount,
  };
}

/** An opened target: the file, and what the map recorded (undefined `bits` = created now). */
export interface OpenedTarget {
  readonly file: TargetFile;
  /** The persisted bitmap of a resumed target; undefined when this call created the target. */
  readonly bits: Uint8Array | undefined;
  readonly generation: number;
}

/**
 * Opens (creates or resumes) `targetPath` and its map for `identity`:
 * - no map and no target: writes a map with nothing local, then the sparse target of the
 *   image size (so a target is never left without a map that names its snapshot);
 * - map and target: resumes after checking that the map belongs to `identity`
 *   (`ERR_LR_LIVE_SNAPSHOT_MISMATCH`), is intact (`ERR_LR_LIVE_MAP_CORRUPT`) and that the
 *   target has the image size (`ERR_LR_LIVE_TARGET_SIZE`);
 * - a target without a map was not made by a live restore: `ERR_LR_LIVE_TARGET_EXISTS`;
 * - a map with local regions but no target: `ERR_LR_LIVE_TARGET_MISSING`.
 */
export async function openTarget(
  targetPath: string,
  identity: MapIdentity,
  files: TargetFiles,
): Promise<OpenedTarget> {
  const mapPath = targetPath + ALLOC_MAP_SUFFIX;
  const targetDir = dirname(targetPath);
  try {
    await mkdir(targetDir, { recursive: true });
  } catch (err) {
    throw targetIoError(err, targetDir, 'creating');
  }
  const map = await readMapFile(mapPath);
  if (map !== undefined) checkMapIdentity(map.identity, identity, mapPath);
  const existing = await stat(targetPath).catch((err: unknown) => {
    if (systemCode(err) === 'ENOENT') return undefined;
    throw targetIoError(err, targetPath, 'stat of');
  });
  if (existing === undefined) {
    if (map !== undefined && new RegionBitmap(identity.regionCount, map.bits).count > 0) {
      throw new LiveError(
        'ERR_LR_LIVE_TARGET_MISSING',
        `${targetPath} is missing but its allocation map ${mapPath} records restored regions: ` +
          'the target was deleted; remove the map too to start over',
      );
    }
    if (map === undefined)
      await files.writeMap(
        mapPath,
        encodeMap(identity, new Uint8Array(bitmapBytes(identity.regionCount)), 0),
      );
    await createSparseTarget(targetPath, identity.imageBytes);
    return { file: await openFile(files, targetPath), bits: undefined, generation: map?.generation ?? 0 };
  }
  if (map === undefined) {
    throw new LiveError(
      'ERR_LR_LIVE_TARGET_EXISTS',
      `${targetPath} exists but has no allocation map (${mapPath}): it was not created by a live restore; ` +
        'remove it or give another --target-dir',
    );
  }
  if (!existing.isFile()) {
    throw new LiveError('ERR_LR_LIVE_TARGET_SIZE', `${targetPath} is not a regular file`);
  }
  const localCount = new RegionBitmap(identity.regionCount, map.bits).count;
  if (existing.size !== identity.imageBytes && localCount === 0) {
    // Nothing recorded local, so nothing flushed can be lost: a crash while the target
    // was being created (before its size was set) is repaired by setting it now.
    try {
      await truncate(targetPath, identity.imageBytes);
    } catch (err) {
      throw targetIoError(err, targetPath, 'resizing');
    }
  } else if (existing.size !== identity.imageBytes) {
    throw new LiveError(
      'ERR_LR_LIVE_TARGET_SIZE',
      `${targetPath} is ${existing.size} bytes, but ${identity.archive} of ${identity.snapshot} is ${identity.imageBytes}: ` +
        'the target was truncated or replaced; remove the target directory and start over',
    );
  }
  return { file: await openFile(files, targetPath), bits: map.bits, generation: map.generation };
}

async function openFile(files: TargetFiles, path: string): Promise<TargetFile> {
  try {
    return await files.openTarget(path);
  } catch (err) {
    throw targetIoError(err, path, 'opening');
  }
}

/** Creates a sparse file of `sizeBytes` (never overwriting one), durable with its directory entry. */
async function createSparseTarget(path: string, sizeBytes: number): Promise<void> {
  try {
    const handle = await open(path, 'wx', 0o644);
    try {
      await handle.truncate(sizeBytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await syncDir(dirname(path));
  } catch (err) {
    throw targetIoError(err, path, 'creating');
  }
}

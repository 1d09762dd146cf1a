import {
  BACKUP_TYPES,
  type BackupType,
  Chunker,
  type Compression,
  type CryptConfig,
  DEFAULT_DYNAMIC_AVG_BYTES,
  DEFAULT_FIXED_CHUNK_BYTES,
  encodeBlob,
  encodeManifest,
  type ManifestFile,
  toHex,
} from '@liverestore/format';
import { checkFixedChunkSize } from '@liverestore/format/internal';
import { type ArchiveRun, backupDynamic, backupFixed } from './archive-chunking.js';
import { resolveArchiveName } from './archive-name.js';
import type { BackupStore } from './backup-target.js';
import { ChunkSink } from './chunk-sink.js';
import { createChunkEncoder } from './encode-pool.js';
import { DatastoreError } from './errors.js';
import { checkOwner } from './group-owner.js';
import { openImageSource } from './image-source.js';
import { parseNamespace, ROOT_NAMESPACE } from './namespace.js';
import { formatSnapshot, inNamespace, isBackupId, type SnapshotRef } from './snapshot-ref.js';
import { DEFAULT_AUTH_ID } from './verify-state.js';

/** One input of a backup: archive name (`drive-scsi0`, `drive-scsi0.img`, `notes.txt`) and the file or device to read. */
export interface BackupInput {
  readonly name: string;
  readonly path: string;
}

/** Progress of a running backup, reported after every chunk. */
export interface BackupProgress {
  readonly archive: string;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** All archives together. */
  readonly totalBytesDone: number;
  readonly totalBytes: number;
}

/** Options of {@link backup}. */
export interface BackupOptions {
  /** PBS namespace to back up into (`a/b`, created if missing); default the root namespace. */
  readonly namespace?: string | undefined;
  /**
   * Owner written to a group's `owner` file when the group has none (PBS Authid, default
   * `root@pam`); an existing owner is kept.
   */
  readonly owner?: string | undefined;
  readonly type: BackupType;
  readonly id: string;
  readonly inputs: readonly BackupInput[];
  /** Default `zstd` (level 1, what PBS writes; chunks it does not shrink stay uncompressed). */
  readonly compress?: Compression;
  /** Fixed-index chunk size, a power of two from 64 KiB to 4 MiB. Default 4 MiB. */
  readonly chunkSizeBytes?: number;
  /** Average chunk size of dynamic archives. Default 4 MiB (PBS). */
  readonly dynamicAvgBytes?: number;
  readonly crypt?: CryptConfig | undefined;
  /** Snapshot time in seconds; default now, moved past the group's latest snapshot if needed. */
  readonly backupTime?: number;
  /** Worker threads compressing chunks; default the machine's parallelism (inline below 16 MiB of input); 0 = inline. */
  readonly encodeThreads?: number;
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly signal?: AbortSignal;
}

/** Per-archive counts of a finished backup. */
export interface ArchiveBackupResult {
  readonly name: string;
  readonly filename: string;
  readonly sizeBytes: number;
  readonly chunks: number;
  readonly chunksNew: number;
  readonly chunksReused: number;
  readonly zeroChunks: number;
}

/** What a backup did: the new snapshot and what it cost. */
export interface BackupResult {
  readonly ref: SnapshotRef;
  /** `vm/100/2026-11-26T10:00:00Z`. */
  readonly snapshot: string;
  readonly archives: readonly ArchiveBackupResult[];
  /** Bytes read from the inputs. */
  readonly bytesRead: number;
  /** Chunks written to the store by this backup. */
  readonly chunksNew: number;
  /** Chunks the store already had (from earlier backups or earlier in this one). */
  readonly chunksReused: number;
  /** Bytes of chunk blobs written. */
  readonly bytesWritten: number;
  readonly seconds: number;
}

/** Below this much input a backup encodes on the main thread (default of `encodeThreads`). */
const SMALL_BACKUP_BYTES = 16 * 1024 * 1024;

/**
 * Backs up files and block devices into a new snapshot of `store` (a local `Datastore`
 * or an `S3Datastore`).
 *
 * Chunks are deduplicated against the whole store (an unchanged chunk is neither
 * compressed nor written); the manifest is stored after every chunk and index it names,
 * and the snapshot becomes visible only then (locally: a temp directory renamed into
 * place), so a crash at any point leaves no partial snapshot and no torn chunk.
 */
export async function backup(store: BackupStore, options: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  if (!BACKUP_TYPES.includes(options.type)) {
    throw new DatastoreError(
      'ERR_LR_SNAPSHOT_INVALID',
      `backup type must be one of ${BACKUP_TYPES.join(', ')}, got "${options.type}"`,
    );
  }
  if (
    options.backupTime !== undefined &&
    (!Number.isSafeInteger(options.backupTime) || options.backupTime < 0)
  ) {
    throw new RangeError('backupTime must be a non-negative integer (seconds since the epoch)');
  }
  if (!isBackupId(options.id)) {
    throw new DatastoreError('ERR_LR_SNAPSHOT_INVALID', `"${options.id}" is not a valid backup id`);
  }
  if (options.inputs.length === 0) throw new TypeError('inputs must name at least one archive');
  const namespace = parseNamespace(options.namespace ?? ROOT_NAMESPACE);
  const owner = checkOwner(options.owner ?? DEFAULT_AUTH_ID);
  const chunkSizeBytes = options.chunkSizeBytes ?? DEFAULT_FIXED_CHUNK_BYTES;
  checkFixedChunkSize(chunkSizeBytes);
  const dynamicAvgBytes = options.dynamicAvgBytes ?? DEFAULT_DYNAMIC_AVG_BYTES;
  new Chunker(dynamicAvgBytes); // validates avgBytes before any work
  const compress = options.compress ?? 'zstd';
  if (compress === 'zstd') encodeBlob(Buffer.alloc(1), { compress }); // fails early without a zstd encoder

  const seen = new Set<string>();
  const runs: ArchiveRun[] = [];
  for (const input of options.inputs) {
    const archive = resolveArchiveName(input.name);
    if (seen.has(archive.filename)) {
      throw new DatastoreError('ERR_LR_ARCHIVE_NAME_INVALID', `archive ${archive.name} is given twice`);
    }
    seen.add(archive.filename);
    const source = await openImageSource(input.path);
    await source.handle.close();
    runs.push({ archive, path: input.path, sizeBytes: source.sizeBytes });
  }

  const target = store.openBackupTarget();
  const times = await target.snapshotTimes(options.type, options.id, namespace);
  const latest = times.at(-1) ?? -Infinity;
  const backupTime = Math.max(options.backupTime ?? Math.floor(Date.now() / 1000), latest + 1);
  const ref: SnapshotRef = inNamespace({ type: options.type, id: options.id, time: backupTime }, namespace);
  const draft = await target.beginSnapshot(ref, owner);

  // Starting worker threads costs ~100 ms: not worth it for a few chunks.
  const totalBytes = runs.reduce((sum, r) => sum + r.sizeBytes, 0);
  const encodeThreads = options.encodeThreads ?? (totalBytes < SMALL_BACKUP_BYTES ? 0 : undefined);
  const encoder = createChunkEncoder({
    compress,
    crypt: options.crypt,
    ...(encodeThreads === undefined ? {} : { threads: encodeThreads }),
  });
  const sink = new ChunkSink(target, encoder, options.crypt);
  let totalBytesDone = 0;
  const results: ArchiveBackupResult[] = [];
  const files: ManifestFile[] = [];
  try {
    for (const run of runs) {
      const before = { chunksNew: sink.chunksNew, chunksReused: sink.chunksReused };
      const progress = (bytesDone: number, delta: number): void => {
        totalBytesDone += delta;
        options.onProgress?.({
          archive: run.archive.name,
          bytesDone,
          bytesTotal: run.sizeBytes,
          totalBytesDone,
          totalBytes,
        });
      };
      const written =
        run.archive.kind === 'fixed'
          ? await backupFixed(run, sink, chunkSizeBytes, backupTime, progress, options.signal)
          : await backupDynamic(run, sink, dynamicAvgBytes, backupTime, progress, options.signal);
      await draft.writeFile(run.archive.filename, written.index);
      files.push({
        filename: run.archive.filename,
        cryptMode: options.crypt === undefined ? 'none' : 'encrypt',
        size: run.sizeBytes,
        csum: toHex(written.index.subarray(32, 64)),
      });
      results.push({
        name: run.archive.name,
        filename: run.archive.filename,
        sizeBytes: run.sizeBytes,
        chunks: written.chunks,
        chunksNew: sink.chunksNew - before.chunksNew,
        chunksReused: sink.chunksReused - before.chunksReused,
        zeroChunks: written.zeroChunks,
      });
    }
    // Every chunk must be durable before an index that names it becomes visible.
    await sink.flush();
    const manifest = encodeManifest(
      { backupType: options.type, backupId: options.id, backupTime, files, unprotected: {} },
      options.crypt === undefined ? {} : { crypt: options.crypt, fingerprint: options.crypt.fingerprint() },
    );
    await draft.commit(manifest);
  } catch (err) {
    await sink.flush().catch(() => undefined);
    await draft.abort();
    throw err;
  } finally {
    await encoder.close();
  }
  return {
    ref,
    snapshot: formatSnapshot(ref),
    archives: results,
    bytesRead: totalBytesDone,
    chunksNew: sink.chunksNew,
    chunksReused: sink.chunksReused,
    bytesWritten: sink.bytesWritten,
    seconds: (performance.now() - started) / 1000,
  };
}

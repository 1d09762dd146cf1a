import { createReadStream } from 'node:fs';
import {
  BACKUP_TYPES,
  type BackupType,
  Chunker,
  type Compression,
  type CryptConfig,
  checkFixedChunkSize,
  chunkDigest,
  DEFAULT_DYNAMIC_AVG_BYTES,
  DEFAULT_FIXED_CHUNK_BYTES,
  DIGEST_BYTES,
  encodeBlob,
  encodeManifest,
  type ManifestFile,
  toHex,
  writeDynamicIndex,
  writeFixedIndex,
} from '@liverestore/format';
import { type ArchiveName, resolveArchiveName } from './archive-name.js';
import type { BackupStore, BackupTarget } from './backup-target.js';
import { type ChunkEncoder, createChunkEncoder } from './encode-pool.js';
import { BackupSourceError, DatastoreError } from './errors.js';
import { checkOwner } from './group-owner.js';
import { openImageSource, readFully } from './image-source.js';
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

/** Chunks being encoded or written beyond the encoder's parallelism (keeps the disk busy too). */
const EXTRA_IN_FLIGHT = 4;

/** Shared state of one backup run: dedup set, counters, bounded write queue. */
class ChunkSink {
  readonly #known = new Set<string>();
  readonly #zeroDigests = new Map<number, Buffer>();
  readonly #jobs = new Set<Promise<void>>();
  #failure: unknown;
  chunksNew = 0;
  chunksReused = 0;
  bytesWritten = 0;

  constructor(
    readonly target: BackupTarget,
    readonly encoder: ChunkEncoder,
    readonly crypt: CryptConfig | undefined,
  ) {}

  /** Digest of `length` zero bytes, computed once per length: every zero chunk costs one compare. */
  zeroDigest(length: number): Buffer {
    let digest = this.#zeroDigests.get(length);
    if (digest === undefined) {
      digest = chunkDigest(Buffer.alloc(length), this.crypt);
      this.#zeroDigests.set(length, digest);
    }
    return digest;
  }

  /**
   * Stores one chunk unless known; returns its digest and whether it was new. A new
   * chunk's memory is handed to the encoder: the caller must not reuse `data`.
   */
  async add(data: Buffer, isZero: boolean): Promise<{ digest: Buffer; isNew: boolean }> {
    if (this.#failure !== undefined) throw this.#failure;
    const digest = isZero ? this.zeroDigest(data.byteLength) : chunkDigest(data, this.crypt);
    const hex = toHex(digest);
    if (this.#known.has(hex) || (await this.target.hasChunk(hex))) {
      this.#known.add(hex);
      this.chunksReused++;
      return { digest, isNew: false };
    }
    this.#known.add(hex);
    this.chunksNew++;
    const job = this.encoder
      .encode(data)
      .then(async (blob) => {
        this.bytesWritten += blob.byteLength;
        await this.target.insertChunk(hex, blob);
      })
      .catch((err: unknown) => {
        this.#failure ??= err;
      });
    this.#jobs.add(job);
    void job.finally(() => this.#jobs.delete(job));
    if (this.#jobs.size >= this.encoder.parallelism + EXTRA_IN_FLIGHT) await Promise.race(this.#jobs);
    return { digest, isNew: true };
  }

  /** Waits for every chunk write and makes the new chunks durable; throws the first error. */
  async flush(): Promise<void> {
    await Promise.all(this.#jobs);
    if (this.#failure !== undefined) throw this.#failure;
    await this.target.flushChunks();
  }
}

function isAllZero(buf: Buffer, zeros: Buffer): boolean {
  return buf.equals(zeros.subarray(0, buf.byteLength));
}

interface ArchiveRun {
  readonly archive: ArchiveName;
  readonly path: string;
  readonly sizeBytes: number;
}

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

interface WrittenIndex {
  readonly index: Buffer;
  readonly chunks: number;
  readonly zeroChunks: number;
}

async function backupFixed(
  run: ArchiveRun,
  sink: ChunkSink,
  chunkSizeBytes: number,
  ctime: number,
  progress: (bytesDone: number, delta: number) => void,
  signal: AbortSignal | undefined,
): Promise<WrittenIndex> {
  const source = await openImageSource(run.path);
  try {
    if (source.sizeBytes !== run.sizeBytes) {
      throw new BackupSourceError('ERR_LR_SOURCE_CHANGED', `${run.path} changed size while being backed up`);
    }
    const count = Math.ceil(run.sizeBytes / chunkSizeBytes);
    const digests = Buffer.alloc(count * DIGEST_BYTES);
    const zeros = Buffer.alloc(chunkSizeBytes);
    let zeroChunks = 0;
    for (let i = 0; i < count; i++) {
      signal?.throwIfAborted();
      const start = i * chunkSizeBytes;
      const length = Math.min(chunkSizeBytes, run.sizeBytes - start);
      // A fresh buffer per chunk: a new chunk's memory moves to the encoder thread.
      const data = Buffer.allocUnsafeSlow(length);
      await readFully(source, data, length, start, run.path);
      const isZero = isAllZero(data, zeros);
      if (isZero) zeroChunks++;
      const { digest } = await sink.add(data, isZero);
      digest.copy(digests, i * DIGEST_BYTES);
      progress(start + length, length);
    }
    return {
      index: writeFixedIndex({ sizeBytes: run.sizeBytes, chunkSizeBytes, digests, ctime }),
      chunks: count,
      zeroChunks,
    };
  } finally {
    await source.handle.close();
  }
}

async function backupDynamic(
  run: ArchiveRun,
  sink: ChunkSink,
  avgBytes: number,
  ctime: number,
  progress: (bytesDone: number, delta: number) => void,
  signal: AbortSignal | undefined,
): Promise<WrittenIndex> {
  const chunker = new Chunker(avgBytes);
  const entries: { endOffset: number; digest: Buffer }[] = [];
  const zeros = Buffer.alloc(chunker.maxBytes);
  let zeroChunks = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let offset = 0;
  let emitting = false;
  const emit = async (): Promise<void> => {
    emitting = true;
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    const isZero = isAllZero(data, zeros);
    if (isZero) zeroChunks++;
    const { digest } = await sink.add(data, isZero);
    offset += pendingBytes;
    entries.push({ endOffset: offset, digest });
    progress(offset, pendingBytes);
    pending = [];
    pendingBytes = 0;
    emitting = false;
  };
  const stream = createReadStream(run.path, {
    highWaterMark: 1024 * 1024,
    ...(signal === undefined ? {} : { signal }),
  });
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      let rest = piece;
      while (rest.byteLength > 0) {
        const cut = chunker.scan(rest);
        if (cut === 0) {
          pending.push(rest);
          pendingBytes += rest.byteLength;
          break;
        }
        pending.push(rest.subarray(0, cut));
        pendingBytes += cut;
        rest = rest.subarray(cut);
        await emit();
      }
    }
  } catch (cause) {
    if (emitting || (cause instanceof Error && cause.name === 'AbortError')) throw cause;
    throw new BackupSourceError('ERR_LR_SOURCE_UNREADABLE', `read error in ${run.path}`, { cause });
  }
  if (pendingBytes > 0) await emit();
  if (offset !== run.sizeBytes) {
    throw new BackupSourceError('ERR_LR_SOURCE_CHANGED', `${run.path} changed size while being backed up`);
  }
  return { index: writeDynamicIndex({ entries, ctime }), chunks: entries.length, zeroChunks };
}

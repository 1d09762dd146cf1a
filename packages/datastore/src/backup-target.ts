import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MANIFEST_BLOB_NAME } from '@liverestore/format';
import { fsyncDir, fsyncDirs, TEMP_PREFIX, trackTemp, writeFileAtomic } from './atomic-write.js';
import type { Datastore } from './datastore.js';
import { ensureGroupOwner } from './group-owner.js';
import { formatBackupTime, namespaceOf, type SnapshotRef } from './snapshot-ref.js';
import { sweepStaleTemps } from './temp-files.js';

/**
 * Where one backup run writes: a local directory or an S3 bucket. The backup writer
 * decides what to store and in which order (chunks, then indexes, then the manifest);
 * a target decides how a store makes each step durable and how a snapshot becomes
 * visible all at once.
 */
export interface BackupTarget {
  /** A path or `s3://BUCKET/STORE`, for messages. */
  readonly name: string;
  /** Times of the complete snapshots of a group, oldest first. */
  snapshotTimes(type: string, id: string, namespace: string): Promise<number[]>;
  /** True when the store has the chunk (dedup skips compressing and storing it). */
  hasChunk(digestHex: string): Promise<boolean>;
  /** Stores a chunk blob unless the store has it; true when this call stored it. */
  insertChunk(digestHex: string, blob: Uint8Array): Promise<boolean>;
  /** Makes every chunk inserted so far durable: nothing may name a chunk before this. */
  flushChunks(): Promise<void>;
  /** Starts a snapshot that stays invisible until {@link SnapshotDraft.commit}. */
  beginSnapshot(ref: SnapshotRef, owner: string): Promise<SnapshotDraft>;
}

/** A snapshot being written. */
export interface SnapshotDraft {
  /** Stores a file of the snapshot (an index). */
  writeFile(filename: string, bytes: Uint8Array): Promise<void>;
  /** Stores the manifest and makes the snapshot visible, after every chunk and file it names. */
  commit(manifest: Uint8Array): Promise<void>;
  /** Removes what the draft stored (chunks stay: other snapshots may share them). */
  abort(): Promise<void>;
}

/** A store a backup can write to. */
export interface BackupStore {
  /** A target for one backup run (it may keep per-run state). */
  openBackupTarget(): BackupTarget;
}

/**
 * A local datastore as a backup target: chunks written temp + fsync + rename, the
 * directories they changed fsynced once before an index names them; a snapshot assembled
 * in a temp directory and renamed into place after its manifest.
 */
export class LocalBackupTarget implements BackupTarget {
  /** Chunk directories already swept of stale temps (one readdir per directory written). */
  readonly #swept = new Set<string>();
  /** Directories whose entries new chunks changed: fsynced once, before the index names them. */
  readonly #dirtyDirs = new Set<string>();

  constructor(readonly store: Datastore) {}

  get name(): string {
    return this.store.dir;
  }

  snapshotTimes(type: string, id: string, namespace: string): Promise<number[]> {
    return this.store.snapshotTimes(type, id, namespace);
  }

  hasChunk(digestHex: string): Promise<boolean> {
    return this.store.hasChunk(digestHex);
  }

  async insertChunk(digestHex: string, blob: Uint8Array): Promise<boolean> {
    // Temp chunk files of dead processes (an interrupted backup) go the first time this
    // run writes into their directory.
    const dir = dirname(this.store.chunkPath(digestHex));
    if (!this.#swept.has(dir)) {
      this.#swept.add(dir);
      await sweepStaleTemps(dir);
    }
    return this.store.insertChunk(digestHex, blob, this.#dirtyDirs);
  }

  async flushChunks(): Promise<void> {
    await fsyncDirs(this.#dirtyDirs);
    this.#dirtyDirs.clear();
  }

  async beginSnapshot(ref: SnapshotRef, owner: string): Promise<SnapshotDraft> {
    const groupDir = this.store.groupDir(ref.type, ref.id, namespaceOf(ref));
    await mkdir(groupDir, { recursive: true });
    // Everything else in the group (snapshots, notes, PBS's lock files) is left as it is.
    await ensureGroupOwner(groupDir, owner);
    const tempDir = join(
      groupDir,
      `${TEMP_PREFIX}${formatBackupTime(ref.time)}-${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    await sweepStaleTemps(groupDir);
    // Tracked before it exists: a signal that lands once mkdir has made it, but before this
    // code runs again, must still find it (a backup killed then left the temp behind).
    const untrackTempDir = trackTemp(tempDir);
    try {
      await mkdir(tempDir);
    } catch (err) {
      untrackTempDir();
      throw err;
    }
    return {
      writeFile: (filename, bytes) => writeFileAtomic(join(tempDir, filename), bytes),
      commit: async (manifest) => {
        await writeFileAtomic(join(tempDir, MANIFEST_BLOB_NAME), manifest);
        await fsyncDir(tempDir);
        await rename(tempDir, this.store.snapshotDir(ref));
        untrackTempDir();
        await fsyncDir(groupDir);
      },
      abort: async () => {
        await rm(tempDir, { recursive: true, force: true });
        untrackTempDir();
      },
    };
  }
}

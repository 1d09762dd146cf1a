import { MANIFEST_BLOB_NAME } from '@liverestore/format';
import type { BackupTarget, SnapshotDraft } from '../backup-target.js';
import { namespaceOf, type SnapshotRef } from '../snapshot-ref.js';
import type { S3Datastore } from './s3-datastore.js';

/**
 * An S3 datastore as a backup target. A PUT answered 200 is stored, so chunks need no
 * flush. Every object is created with `If-None-Match: *`: a chunk already there is kept
 * (412), a snapshot file already there fails the backup (`ERR_LR_SNAPSHOT_EXISTS`) rather
 * than overwriting what another backup wrote. The snapshot becomes visible with its
 * manifest, stored last; an aborted backup deletes the index files it stored.
 */
export class S3BackupTarget implements BackupTarget {
  constructor(readonly store: S3Datastore) {}

  get name(): string {
    return this.store.name;
  }

  snapshotTimes(type: string, id: string, namespace: string): Promise<number[]> {
    return this.store.snapshotTimes(type, id, namespace);
  }

  hasChunk(digestHex: string): Promise<boolean> {
    return this.store.hasChunk(digestHex);
  }

  insertChunk(digestHex: string, blob: Uint8Array): Promise<boolean> {
    return this.store.insertChunk(digestHex, blob);
  }

  async flushChunks(): Promise<void> {}

  async beginSnapshot(ref: SnapshotRef, owner: string): Promise<SnapshotDraft> {
    await this.store.ensureGroupOwner(ref.type, ref.id, namespaceOf(ref), owner);
    /** Files this draft stored (only those: a name taken by another backup is not ours to delete). */
    const stored: string[] = [];
    return {
      writeFile: async (filename, bytes) => {
        await this.store.writeSnapshotFile(ref, filename, bytes);
        stored.push(filename);
      },
      commit: async (manifest) => {
        await this.store.writeSnapshotFile(ref, MANIFEST_BLOB_NAME, manifest);
      },
      abort: async () => {
        await this.store.deleteSnapshotFiles(ref, stored);
      },
    };
  }
}

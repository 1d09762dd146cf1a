import type { Datastore, SnapshotRef } from '@liverestore/datastore';
import type { ChunkSource } from '@liverestore/reader';
import type { ConfinedFile } from './confined-store.js';

/**
 * An object of an S3 datastore, read whole (a chunk blob is at most a few MiB; the S3
 * client gets it in one GET and retries or resumes it on its own). `bytes` is undefined
 * when only the size was asked for (a HEAD, a 304).
 */
export interface ObjectBody {
  readonly sizeBytes: number;
  readonly bytes: Uint8Array | undefined;
}

/** What a file response sends: a file of a local datastore (read in pieces) or an S3 object. */
export type ServedFile = ConfinedFile | ObjectBody;

/**
 * The datastore behind a server, local (ConfinedStore) or in an S3 bucket (S3ServedStore):
 * what the routes need of it. An S3 one keeps no state between requests, so any number of
 * servers can stand in front of one bucket (docs/scale-out.md).
 */
export interface ServedStore {
  /** A path or `s3://BUCKET/STORE`: logged, and redacted from error messages. */
  readonly name: string;
  /** The source image readers fetch chunks from (through the server's cache). */
  readonly chunkSource: ChunkSource;
  /** Namespaces, snapshots and their manifests, as the datastore lists them. */
  readonly listings: Pick<Datastore, 'listNamespaces' | 'listSnapshotRefs' | 'snapshotInfo'>;
  /** A chunk blob, body only when `wantBody`; `ERR_LR_CHUNK_MISSING` when absent. */
  openChunk(digestHex: string, wantBody: boolean): Promise<ServedFile>;
  /**
   * A file of a snapshot, body only when `wantBody`; `ERR_LR_SNAPSHOT_NOT_FOUND` without the
   * snapshot, `ERR_LR_SNAPSHOT_FILE_NOT_FOUND` without the file.
   */
  openSnapshotFile(ref: SnapshotRef, filename: string, wantBody: boolean): Promise<ServedFile>;
  /** Releases connections (an S3 client's); the server calls it on close. */
  close(): Promise<void>;
}

/** Closes what a {@link ServedFile} holds open (a local file's handle). */
export async function closeServedFile(file: ServedFile): Promise<void> {
  if ('handle' in file) await file.handle.close();
}

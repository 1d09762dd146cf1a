import { formatSnapshot, type S3ConnectionOptions, type SnapshotRef } from '@liverestore/datastore';
import { isSnapshotFileName } from '@liverestore/datastore/internal';
import { MANIFEST_BLOB_NAME } from '@liverestore/format';
import { S3ChunkSource } from '@liverestore/reader';
import { ServerError } from './errors.js';
import type { ObjectBody, ServedStore } from './served-store.js';

/** Default attempts after the first for one S3 request of a server (see {@link S3ServedStore.open}). */
export const SERVE_S3_RETRIES = 2;

function hasCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown } | undefined)?.code === code;
}

/**
 * An S3 datastore (`s3://BUCKET/STORE`, PBS 4.x layout) behind a server: listings, index
 * and manifest files and chunk blobs come from the bucket on every request, nothing is
 * kept but the image readers' chunk cache, so N servers can share one bucket. A snapshot
 * counts as present once its manifest is stored (a backup writes it last), as for every
 * other reader of an S3 datastore.
 */
export class S3ServedStore implements ServedStore {
  private constructor(readonly chunkSource: S3ChunkSource) {}

  /**
   * Opens the datastore (the bucket and the store must exist). A server retries a failed S3
   * request only {@link SERVE_S3_RETRIES} times by default: its clients retry too, and a
   * quick 503 lets a proxy in front try another server.
   */
  static async open(url: string, options: S3ConnectionOptions = {}): Promise<S3ServedStore> {
    return new S3ServedStore(await S3ChunkSource.open(url, { retries: SERVE_S3_RETRIES, ...options }));
  }

  get name(): string {
    return this.chunkSource.name;
  }

  get listings(): S3ChunkSource['store'] {
    return this.chunkSource.store;
  }

  async openChunk(digestHex: string, wantBody: boolean): Promise<ObjectBody> {
    const store = this.chunkSource.store;
    if (wantBody) {
      const bytes = await store.readChunk(digestHex);
      return { sizeBytes: bytes.length, bytes };
    }
    const head = await store.client.headObject(store.chunkKey(digestHex));
    if (head === undefined)
      throw new ServerError('ERR_LR_CHUNK_MISSING', `chunk ${digestHex} is missing from the datastore`);
    return { sizeBytes: head.sizeBytes, bytes: undefined };
  }

  async openSnapshotFile(ref: SnapshotRef, filename: string, wantBody: boolean): Promise<ObjectBody> {
    if (!isSnapshotFileName(filename))
      throw new ServerError('ERR_LR_HTTP_BAD_PATH', 'invalid snapshot file name');
    const store = this.chunkSource.store;
    const isManifest = filename === MANIFEST_BLOB_NAME;
    // The file and the manifest that makes its snapshot exist, asked for at once.
    const [manifest, file] = await Promise.all([
      isManifest ? undefined : store.client.headObject(store.snapshotFileKey(ref, MANIFEST_BLOB_NAME)),
      this.#snapshotObject(ref, filename, wantBody),
    ]);
    if (isManifest ? file === undefined : manifest === undefined)
      throw new ServerError('ERR_LR_SNAPSHOT_NOT_FOUND', `no snapshot ${formatSnapshot(ref)}`);
    if (file === undefined)
      throw new ServerError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `the snapshot has no file ${filename}`);
    return file;
  }

  /** A snapshot file's object (its size alone unless `wantBody`), undefined when absent. */
  async #snapshotObject(
    ref: SnapshotRef,
    filename: string,
    wantBody: boolean,
  ): Promise<ObjectBody | undefined> {
    const store = this.chunkSource.store;
    if (!wantBody) {
      const head = await store.client.headObject(store.snapshotFileKey(ref, filename));
      return head === undefined ? undefined : { sizeBytes: head.sizeBytes, bytes: undefined };
    }
    try {
      const bytes = await store.readSnapshotFile(ref, filename);
      return { sizeBytes: bytes.length, bytes };
    } catch (err) {
      if (hasCode(err, 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.chunkSource.close();
  }
}

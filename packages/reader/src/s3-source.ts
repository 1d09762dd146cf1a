import {
  type NamespaceScope,
  type S3ConnectionOptions,
  S3Datastore,
  type SnapshotRef,
  type SnapshotSpec,
} from '@liverestore/datastore';
import type { ChunkSource } from './chunk-source.js';

/**
 * An S3 datastore (`s3://BUCKET/STORE`, PBS 4.x layout) as a chunk source. Each chunk is
 * one GET of its object, many in flight at once over the client's keep-alive connections;
 * the client retries transient failures (5xx, 503 SlowDown, timeouts, a gateway
 * restarting), so the cache never has to.
 */
export class S3ChunkSource implements ChunkSource {
  /** Every blob is read into a fresh array only the caller holds. */
  readonly blobsAreTransferable = true;

  private constructor(readonly store: S3Datastore) {}

  /** Opens `s3://BUCKET/STORE`; endpoint, region and keys from `options`, else the AWS_* environment. */
  static async open(url: string, options: S3ConnectionOptions = {}): Promise<S3ChunkSource> {
    return new S3ChunkSource(await S3Datastore.open(url, options));
  }

  get name(): string {
    return this.store.name;
  }

  fetchChunk(digestHex: string, signal?: AbortSignal): Promise<Uint8Array> {
    return this.store.readChunk(digestHex, signal);
  }

  listSnapshots(scope?: NamespaceScope): Promise<SnapshotRef[]> {
    return this.store.listSnapshotRefs(scope);
  }

  listNamespaces(scope?: NamespaceScope): Promise<string[]> {
    return this.store.listNamespaces(scope);
  }

  resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    return this.store.resolveSnapshot(spec);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array> {
    return this.store.readSnapshotFile(ref, filename);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

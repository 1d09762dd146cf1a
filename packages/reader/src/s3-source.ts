import { type S3ConnectionOptions, S3Datastore } from '@liverestore/datastore';
import { linkedController } from '@liverestore/format/internal';
import { type FetchHints, StoreChunkSource } from './chunk-source.js';
import { type BlobRequest, LinkScheduler } from './link-scheduler.js';

/** Default background (readahead, sequential) fetches in flight at once: the HTTP source's lanes. */
export const DEFAULT_S3_BACKGROUND_FETCHES = 4;

/** Options of {@link S3ChunkSource.open}: the connection, and the lanes of background fetches. */
export interface S3ChunkSourceOptions extends S3ConnectionOptions {
  /** Background (readahead, sequential) fetches in flight at once. Default 4. */
  backgroundFetches?: number | undefined;
}

/**
 * An S3 datastore (`s3://BUCKET/STORE`, PBS 4.x layout) as a chunk source. Chunk fetches
 * share the link as the HTTP source's do (a {@link LinkScheduler}): an urgent fetch is one
 * GET of the chunk's object; background fetches run in a few lanes, make way for urgent
 * ones and resume with `Range` from the first byte not yet received. The S3 client
 * retries transient failures (5xx, 503 SlowDown, timeouts, a gateway restarting) and
 * resumes a cut body where it stopped, so the cache never has to retry.
 */
export class S3ChunkSource extends StoreChunkSource<S3Datastore> {
  /** Every blob is read into a fresh array only the caller holds. */
  readonly blobsAreTransferable = true;
  /** Bodies arrive into the hinted blob memory, each read reported (decoded as they arrive). */
  readonly blobsArrive = true;
  readonly #link: LinkScheduler;

  private constructor(store: S3Datastore, backgroundFetches: number) {
    super(store);
    this.#link = new LinkScheduler({ backgroundFetches, closed: store.client.closed });
  }

  /** Opens `s3://BUCKET/STORE`; endpoint, region and keys from `options`, else the AWS_* environment. */
  static async open(url: string, options: S3ChunkSourceOptions = {}): Promise<S3ChunkSource> {
    const { backgroundFetches = DEFAULT_S3_BACKGROUND_FETCHES, ...connection } = options;
    if (!Number.isSafeInteger(backgroundFetches) || backgroundFetches <= 0)
      throw new RangeError(`backgroundFetches must be a positive integer, got ${backgroundFetches}`);
    return new S3ChunkSource(await S3Datastore.open(url, connection), backgroundFetches);
  }

  get name(): string {
    return this.store.name;
  }

  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    const memory = hints?.blobMemory;
    const request: BlobRequest = async (piece, yieldTo) => {
      if (piece === undefined) return this.store.readChunk(digestHex, signal, memory);
      const stop = linkedController([signal, yieldTo]);
      try {
        await this.store.readChunkInto(digestHex, piece, stop.signal, memory);
      } finally {
        stop.dispose();
      }
      return undefined;
    };
    if (hints === undefined || hints.urgent) return this.#link.urgent(request);
    return this.#link.background(request, hints, signal);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

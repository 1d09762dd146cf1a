import type { SnapshotSpec } from '@liverestore/datastore';
import type { CryptConfig } from '@liverestore/format';
import type { NbdListen } from '@liverestore/nbd';
import type {
  ChunkCache,
  ChunkCacheStats,
  ChunkLoadRecord,
  ChunkSource,
  HttpChunkSourceOptions,
} from '@liverestore/reader';
import type { LiveDriveStats } from './live-drive.js';
import type { TargetFiles } from './target-file.js';

/** Options of {@link liveRestore}. */
export interface LiveRestoreOptions {
  /** A datastore directory or http(s):// URL, or an opened source (left open). */
  source: string | ChunkSource;
  http?: HttpChunkSourceOptions | undefined;
  /**
   * `vm/100/2026-11-26T10:00:00Z`, or `vm/100` for the latest (a resume must name the same
   * one), optionally `ns/prod/…`; or a parsed spec with its `namespace`.
   */
  snapshot: string | SnapshotSpec;
  crypt?: CryptConfig | undefined;
  /** Where the targets (`<archive name>`) and their maps (`<archive name>.map`) live; created if missing. */
  targetDir: string;
  /** A shared cache (left open); default: one of `cacheBytes` with `workers`, closed when the backup is no longer needed. */
  cache?: ChunkCache | undefined;
  cacheBytes?: number | undefined;
  workers?: number | undefined;
  /** Its cache decodes a guest's miss as the blob arrives (see ChunkCacheOptions.decodeAsArriving); default false. */
  decodeAsArriving?: boolean | undefined;
  /** Hears every chunk load of the cache it makes, with its phases (see ChunkCacheOptions.onLoad). */
  onLoad?: ((record: ChunkLoadRecord) => void) | undefined;
  /** Readahead of the guest readers, in chunks (default 8). */
  readaheadChunks?: number | undefined;
  /** Backup bytes per second the background copy may fetch (guest requests are not limited). */
  rateLimitBytesPerSecond?: number | undefined;
  /** Readahead of the background copy's readers, in chunks. Default 2. */
  copyReadaheadChunks?: number | undefined;
  /** Regions in flight per drive in the background copy. Default 2. */
  copyConcurrency?: number | undefined;
  /** The maps are persisted (fdatasync, then map) at least this often while regions become local. Default 1000. */
  persistIntervalMs?: number | undefined;
  /** `progress` events this often. Default 1000. */
  progressIntervalMs?: number | undefined;
  /** false: open the targets but do not start the background copy (call startCopy()). */
  startCopy?: boolean | undefined;
  /**
   * Where the NBD server listens (one writable export per drive, named like the archive):
   * default 127.0.0.1:10809 (port 0 picks one), `{ socket }` for a Unix socket, or false
   * for no server (serve `restore.drives` yourself, or use the drives directly).
   */
  listen?: NbdListen | false | undefined;
  /** Lines the NBD server logs (connections refused at its limit, clients cut for not reading their replies). */
  log?: ((line: string) => void) | undefined;
  /** PEM certificate and key: the NBD server requires TLS (see NbdServerOptions.tls). */
  tls?: { cert: Buffer | string; key: Buffer | string } | undefined;
  /**
   * After the copy stopped on a full target file system (`stalled`), it is tried again
   * this often (the exports keep serving meanwhile). Default 10000.
   */
  copyRetryMs?: number | undefined;
  /** The target files (default: the real ones); tests inject faults here. */
  files?: TargetFiles | undefined;
  /**
   * Write the regions the copy and copy-on-read fill with O_DIRECT, past the page cache,
   * where the file system allows it (default true; staged-direct.ts says why). Guest
   * writes always go through the page cache. Ignored with `files`.
   */
  directWrites?: boolean | undefined;
}

/** Progress of one drive. */
export interface DriveProgress {
  readonly name: string;
  readonly target: string;
  readonly sizeBytes: number;
  readonly bytesLocal: number;
  readonly regionsLocal: number;
  readonly regionCount: number;
  readonly complete: boolean;
  readonly bytesCopied: number;
  readonly bytesFilledForGuest: number;
  /** Of the bytes copied and filled, those read back from a copy of the same chunk in the target (LiveDriveStats). */
  readonly bytesFromTargetCopies: number;
  readonly bytesWrittenByGuest: number;
}

/** What a `progress` event carries. */
export interface LiveRestoreProgress {
  readonly snapshot: string;
  readonly elapsedSeconds: number;
  readonly bytesTotal: number;
  readonly bytesLocal: number;
  /** Bytes becoming local per second over the last few seconds. */
  readonly bytesPerSecond: number;
  /** Seconds until every drive is local at that rate; undefined when unknown. */
  readonly etaSeconds: number | undefined;
  /** Share of cache requests served without a fetch (hits and shared fetches), 0…1. */
  readonly cacheHitRate: number;
  readonly complete: boolean;
  readonly drives: readonly DriveProgress[];
}

/** What `done` resolves with. */
export interface LiveRestoreSummary {
  readonly snapshot: string;
  readonly targetDir: string;
  readonly seconds: number;
  /** Regions that were local when the restore (re)started. */
  readonly bytesLocalAtStart: number;
  readonly drives: readonly LiveDriveStats[];
  readonly cache: ChunkCacheStats;
}

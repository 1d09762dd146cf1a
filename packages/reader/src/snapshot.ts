import {
  type ArchiveInfo,
  formatSnapshot,
  isS3Url,
  parseSnapshotSpec,
  resolveArchiveName,
  type SnapshotRef,
  type SnapshotSpec,
} from '@liverestore/datastore';
import { archivesOfManifest, readSnapshotManifest } from '@liverestore/datastore/internal';
import {
  type ChunkIndex,
  type CryptConfig,
  checkIndexAgainstManifest,
  type Manifest,
  manifestFile,
  readIndex,
} from '@liverestore/format';
import { type ArchiveReaderOptions, CachedChunkReader } from './cached-chunk-reader.js';
import { localChunkAccess } from './chunk-access.js';
import type { ChunkCache } from './chunk-cache.js';
import { type ChunkSource, LocalChunkSource } from './chunk-source.js';
import { ReaderError } from './errors.js';
import { HttpChunkSource, type HttpChunkSourceOptions, isSourceUrl } from './http-source.js';
import { PersistentCacheSource } from './persistent-cache-source.js';
import type { PersistentChunkCacheOptions } from './persistent-chunk-cache.js';
import { S3ChunkSource, type S3ChunkSourceOptions } from './s3-source.js';

/** True when `text` looks like a URL (`scheme://…`) rather than a directory. */
export function looksLikeUrl(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

/**
 * Opens the source a user names: a datastore directory, the http(s):// URL of a
 * liverestore server, or an S3 datastore `s3://BUCKET/STORE` (connection settings in
 * `s3`, else from the AWS_* environment). Any other URL is `ERR_LR_SOURCE_UNSUPPORTED`.
 */
export async function openChunkSource(
  source: string,
  http: HttpChunkSourceOptions = {},
  s3: S3ChunkSourceOptions = {},
): Promise<ChunkSource> {
  if (isSourceUrl(source)) return HttpChunkSource.open(source, http);
  if (isS3Url(source)) return S3ChunkSource.open(source, s3);
  if (looksLikeUrl(source)) {
    throw new ReaderError(
      'ERR_LR_SOURCE_UNSUPPORTED',
      `unsupported source "${source}": give a datastore directory, an http(s):// URL or s3://BUCKET/STORE`,
    );
  }
  return LocalChunkSource.open(source);
}

/** Options of {@link openSnapshot}. */
export interface OpenSnapshotOptions {
  /** A datastore directory, http(s):// URL or s3://BUCKET/STORE, or an opened {@link ChunkSource} (kept open on close). */
  source: string | ChunkSource;
  /** Options of an http(s):// source (token, timeouts, TLS). */
  http?: HttpChunkSourceOptions | undefined;
  /** Connection settings of an s3:// source (endpoint, region, keys); absent ones come from AWS_*. */
  s3?: S3ChunkSourceOptions | undefined;
  /**
   * `vm/100/2026-11-26T10:00:00Z`, or `vm/100` for the group's latest snapshot, either
   * prefixed by its namespace as PBS prints it (`ns/prod/vm/100`); or a parsed spec, whose
   * `namespace` (`a/b`) says where to look.
   */
  snapshot: string | SnapshotSpec;
  /** The shared cache; any number of snapshots may share one. */
  cache: ChunkCache;
  /** Key of an encrypted snapshot; also checks the manifest signature. */
  crypt?: CryptConfig | undefined;
  /**
   * Keep the chunk blobs of a source named by `source` (a string) in a persistent cache
   * directory ({@link PersistentCacheSource}), so that the next restore fetches none it
   * holds. An opened source is wrapped by its caller instead.
   */
  chunkCache?: PersistentChunkCacheOptions | undefined;
}

/** An opened snapshot: its manifest, archives and readers, all over one shared cache. */
export class Snapshot {
  readonly #ownsSource: boolean;
  #closed = false;

  constructor(
    readonly source: ChunkSource,
    readonly ref: SnapshotRef,
    readonly manifest: Manifest,
    readonly cache: ChunkCache,
    readonly crypt: CryptConfig | undefined,
    ownsSource: boolean,
  ) {
    this.#ownsSource = ownsSource;
  }

  /** `vm/100/2026-11-26T10:00:00Z` (`ns/prod/vm/100/…` in a namespace). */
  get path(): string {
    return formatSnapshot(this.ref);
  }

  /** The index archives of the snapshot, as the manifest lists them. */
  get archives(): ArchiveInfo[] {
    return archivesOfManifest(this.manifest);
  }

  /** Reads and checks an archive's index (against the manifest: size and checksum). */
  async readIndex(archive: string): Promise<{ name: string; index: ChunkIndex; raw: Uint8Array }> {
    this.#checkOpen();
    const name = resolveArchiveName(archive);
    const entry = manifestFile(this.manifest, name.filename);
    if (entry.cryptMode === 'encrypt' && this.crypt === undefined) {
      throw new ReaderError(
        'ERR_LR_KEY_REQUIRED',
        `archive ${name.name} of ${this.path} is encrypted: a key file is needed`,
      );
    }
    const raw = await this.source.readSnapshotFile(this.ref, name.filename);
    const index = readIndex(raw);
    checkIndexAgainstManifest(entry, index);
    return { name: name.name, index, raw };
  }

  /** A {@link CachedChunkReader} for an archive (`drive-scsi0.img`, with or without `.fidx`). */
  async openArchive(archive: string, options: ArchiveReaderOptions = {}): Promise<CachedChunkReader> {
    const { name, index } = await this.readIndex(archive);
    const key = this.crypt?.exportKey();
    return new CachedChunkReader(
      name,
      index,
      localChunkAccess(this.cache, this.source, key),
      this.crypt,
      options,
    );
  }

  /** Closes the source if this snapshot opened it. Readers must not be used afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsSource) await this.source.close?.();
  }

  #checkOpen(): void {
    if (this.#closed) throw new ReaderError('ERR_LR_SNAPSHOT_CLOSED', `snapshot ${this.path} is closed`);
  }
}

/** Opens a snapshot of a source for reading through a shared cache. */
export async function openSnapshot(options: OpenSnapshotOptions): Promise<Snapshot> {
  const owns = typeof options.source === 'string';
  if (!owns && options.chunkCache !== undefined)
    throw new TypeError(
      'chunkCache needs a source given by name: wrap an opened source in a PersistentCacheSource',
    );
  let source =
    typeof options.source === 'string'
      ? await openChunkSource(options.source, options.http ?? {}, options.s3 ?? {})
      : options.source;
  try {
    if (options.chunkCache !== undefined)
      source = await PersistentCacheSource.open(source, options.chunkCache);
    const spec =
      typeof options.snapshot === 'string' ? parseSnapshotSpec(options.snapshot) : options.snapshot;
    const ref = await source.resolveSnapshot(spec);
    // The datastore's reading: a missing manifest is ERR_LR_SNAPSHOT_NOT_FOUND, as in verify.
    const manifest = await readSnapshotManifest(source, ref, options.crypt);
    return new Snapshot(source, ref, manifest, options.cache, options.crypt, owns);
  } catch (err) {
    if (owns) await source.close?.();
    throw err;
  }
}

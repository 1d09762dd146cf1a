import {
  formatSnapshot,
  MAX_NAMESPACE_DEPTH,
  type NamespaceScope,
  namespaceOf,
  ROOT_NAMESPACE,
  type SnapshotInfo,
  type SnapshotRef,
  type SnapshotSpec,
} from '@liverestore/datastore';
import {
  isSnapshotFileName,
  pickSnapshot,
  readSnapshotInfo,
  type SnapshotExtras,
  withSnapshotExtras,
} from '@liverestore/datastore/internal';
import { isHexDigest, LiverestoreError, MAX_BLOB_BYTES } from '@liverestore/format';
import { type BodyMemory, checkNonNegativeInteger, checkPositiveInteger } from '@liverestore/format/internal';
import type { ChunkSource, FetchHints } from './chunk-source.js';
import { ReaderError } from './errors.js';
import {
  listingQuery,
  parseListingEntries,
  parseNamespaceListing,
  snapshotFilePath,
} from './http-listing.js';
import { HttpTransport, type RequestKind, type RetryEvent } from './http-transport.js';
import { LinkScheduler } from './link-scheduler.js';
import type { TlsTrust } from './tls-trust.js';

/*
 * A liverestore HTTP server as a chunk source. The paths are the server's public interface:
 *
 *   GET /snapshots[?ns=a/b&max-depth=N]     JSON [{ snapshot, ns, type, id, time, archives }]
 *   GET /namespaces[?ns=a/b&max-depth=N]    JSON [{ ns }]
 *   GET /snapshots/[ns/a/…/]{type}/{id}/{time}/{file} raw snapshot file (index, index.json.blob)
 *   GET /chunks/{64 hex}                     raw chunk blob
 *
 * Errors come back as JSON `{ error: { code, message } }`. The source composes three
 * pieces: an HttpTransport (one keep-alive pool; a deadline per attempt covering headers
 * and body; connection failures, timeouts and 5xx retried with exponential backoff and
 * equal jitter, 4xx never), a LinkScheduler (urgent fetches first; background fetches in a
 * few lanes that make way and resume with `Range`, see FetchHints) and the body readers of
 * http-body.ts (bounded, copied into a fresh array the caller owns). Listings are parsed in
 * http-listing.ts. The server is not trusted: blobs are checked by the decode pool,
 * listings are validated.
 */

/** Default per-attempt deadline (headers and body). */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;
/** Default retries after the first attempt. */
export const DEFAULT_HTTP_RETRIES = 8;
/**
 * Default keep-alive pool size, and so requests on the wire at most. Four 4 MiB blobs in
 * flight fill a 1 Gbit/s link at 1 ms (and 16 MiB covers 100 ms at 1 Gbit/s); every
 * request's body is held while it arrives, so more only adds memory that grows with the
 * number of readers missing at once (16 cost `liverestore nbd` ≈ 25 MiB more at 8 drives
 * than at one, and no speed).
 */
export const DEFAULT_HTTP_CONNECTIONS = 4;
/** Default background fetches in flight at once (lanes). */
export const DEFAULT_HTTP_BACKGROUND_FETCHES = 4;
/** Largest chunk blob accepted: the largest blob payload plus a generous header allowance. */
export const MAX_HTTP_CHUNK_BYTES = MAX_BLOB_BYTES + 4096;
/** Largest snapshot listing accepted. */
export const MAX_HTTP_LISTING_BYTES = 64 * 1024 * 1024;
/** Largest snapshot file accepted (a fixed index of a 32 TiB disk in 4 MiB chunks is 256 MiB). */
export const MAX_HTTP_SNAPSHOT_FILE_BYTES = 512 * 1024 * 1024;

/** Options of {@link HttpChunkSource.open}. */
export interface HttpChunkSourceOptions {
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string | undefined;
  /** Deadline of one attempt, headers and body together. Default 30 000. */
  timeoutMs?: number | undefined;
  /** Attempts after the first for transient failures. Default 8. */
  retries?: number | undefined;
  /** Keep-alive connections to the server: requests on the wire at most. Default 4. */
  connections?: number | undefined;
  /** Background (readahead, sequential) fetches in flight at once. Default 4. */
  backgroundFetches?: number | undefined;
  /** Which certificates an https:// URL may show: a CA file, or one certificate's SHA-256 fingerprint. */
  tls?: TlsTrust | undefined;
  /** Told before each retry of a failed request (see RetryEvent). */
  onRetry?: ((event: RetryEvent) => void) | undefined;
}

/** True when `text` names an HTTP(S) source rather than a datastore directory. */
export function isSourceUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/**
 * A liverestore HTTP chunk server as a {@link ChunkSource}. Many fetches may be in flight
 * at once over a keep-alive pool; transient failures are retried here (the cache never
 * retries), so a server restart during a live restore costs a pause, not the restore.
 */
export class HttpChunkSource implements ChunkSource {
  /** The base URL, without credentials: what logs and errors show. */
  readonly name: string;
  /** Every chunk body is read into a fresh array that only the caller holds. */
  readonly blobsAreTransferable = true;
  /** Bodies arrive into the hinted blob memory, each read reported (decoded as they arrive). */
  readonly blobsArrive = true;
  readonly #transport: HttpTransport;
  readonly #link: LinkScheduler;
  /** Owner, protection and group notes of each snapshot the last listings named (servers that list them). */
  readonly #listedExtras = new Map<string, SnapshotExtras>();

  private constructor(base: URL, options: HttpChunkSourceOptions) {
    const authorization = options.token === undefined ? undefined : `Bearer ${options.token}`;
    this.#transport = new HttpTransport(base, {
      timeoutMs: options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS,
      retries: options.retries ?? DEFAULT_HTTP_RETRIES,
      connections: options.connections ?? DEFAULT_HTTP_CONNECTIONS,
      tls: options.tls,
      onRetry: options.onRetry,
      requestHeaders: authorization === undefined ? undefined : () => ({ authorization }),
      refusalHint: authorization === undefined ? 'a token is required' : 'the token was not accepted',
    });
    this.name = this.#transport.name;
    this.#link = new LinkScheduler({
      backgroundFetches: options.backgroundFetches ?? DEFAULT_HTTP_BACKGROUND_FETCHES,
      closed: this.#transport.closed,
    });
  }

  /**
   * Prepares a source for `url` (`http://host:port` or `https://host/prefix`). No request
   * is made yet: the first listing or fetch connects, so open itself cannot fail on the network.
   */
  static async open(url: string, options: HttpChunkSourceOptions = {}): Promise<HttpChunkSource> {
    if (!isSourceUrl(url)) throw new TypeError(`url must start with http:// or https://, got "${url}"`);
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new TypeError(`url is not a valid URL: "${url}"`);
    }
    if (base.username !== '' || base.password !== '')
      throw new TypeError('url must not carry credentials: pass token instead');
    if (base.search !== '' || base.hash !== '') throw new TypeError('url must not have a query or fragment');
    if (options.timeoutMs !== undefined) checkPositiveInteger(options.timeoutMs, 'timeoutMs');
    if (options.retries !== undefined) checkNonNegativeInteger(options.retries, 'retries');
    if (options.connections !== undefined) checkPositiveInteger(options.connections, 'connections');
    if (options.backgroundFetches !== undefined)
      checkPositiveInteger(options.backgroundFetches, 'backgroundFetches');
    if (options.token !== undefined && (options.token === '' || /[\r\n]/.test(options.token)))
      throw new TypeError('token must be a non-empty string without line breaks');
    return new HttpChunkSource(base, options);
  }

  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    if (!isHexDigest(digestHex)) {
      return Promise.reject(new ReaderError('ERR_LR_DIGEST_INVALID', `invalid chunk digest "${digestHex}"`));
    }
    const path = `/chunks/${digestHex}`;
    const kind = {
      notFoundCode: 'ERR_LR_CHUNK_MISSING',
      maxBytes: MAX_HTTP_CHUNK_BYTES,
      what: `chunk ${digestHex}`,
    };
    const memory = hints?.blobMemory;
    if (hints === undefined || hints.urgent) return this.#whole(path, kind, signal, memory);
    return this.#link.background(
      (piece, yieldTo) => this.#transport.get(path, kind, { signal, piece, yieldTo, memory }),
      hints,
      signal,
    );
  }

  async listSnapshots(scope: NamespaceScope = {}, signal?: AbortSignal): Promise<SnapshotRef[]> {
    const body = await this.#whole(
      `/snapshots${listingQuery(scope)}`,
      {
        notFoundCode: 'ERR_LR_SOURCE_BAD_RESPONSE',
        maxBytes: MAX_HTTP_LISTING_BYTES,
        what: 'the snapshot list',
      },
      signal,
    );
    const listed = parseListingEntries(body, this.name, scope);
    for (const { ref, extras } of listed) {
      if (extras === undefined) this.#listedExtras.delete(formatSnapshot(ref));
      else this.#listedExtras.set(formatSnapshot(ref), extras);
    }
    return listed.map((entry) => entry.ref);
  }

  /**
   * What the snapshot's manifest says, with the owner, protection and group notes the
   * server listed for it (after {@link listSnapshots} named it; the manifest alone otherwise).
   */
  async snapshotInfo(ref: SnapshotRef): Promise<SnapshotInfo> {
    const info = await readSnapshotInfo(this, ref);
    const extras = this.#listedExtras.get(formatSnapshot(ref));
    return extras === undefined ? info : withSnapshotExtras(info, extras);
  }

  /**
   * The namespaces the server has below `scope.namespace` (all levels by default). A server
   * from before namespaces has no `/namespaces`: it answers 404, read as only the root.
   */
  async listNamespaces(scope: NamespaceScope = {}, signal?: AbortSignal): Promise<string[]> {
    const full = { ...scope, maxDepth: scope.maxDepth ?? MAX_NAMESPACE_DEPTH };
    let body: Uint8Array;
    try {
      body = await this.#whole(
        `/namespaces${listingQuery(full)}`,
        {
          notFoundCode: 'ERR_LR_HTTP_NOT_FOUND',
          maxBytes: MAX_HTTP_LISTING_BYTES,
          what: 'the namespace list',
        },
        signal,
      );
    } catch (err) {
      const root = (scope.namespace ?? ROOT_NAMESPACE) === ROOT_NAMESPACE;
      if (root && err instanceof LiverestoreError && err.code === 'ERR_LR_HTTP_NOT_FOUND')
        return [ROOT_NAMESPACE];
      throw err;
    }
    return parseNamespaceListing(body, this.name, full);
  }

  async resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    const namespace = namespaceOf(spec);
    return pickSnapshot(spec, await this.listSnapshots({ namespace }), namespace, `at ${this.name}`);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string, signal?: AbortSignal): Promise<Uint8Array> {
    if (!isSnapshotFileName(filename)) {
      return Promise.reject(
        new ReaderError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `invalid snapshot file name "${filename}"`),
      );
    }
    return this.#whole(
      snapshotFilePath(ref, filename),
      {
        notFoundCode: 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND',
        maxBytes: MAX_HTTP_SNAPSHOT_FILE_BYTES,
        what: `file ${filename} of snapshot ${formatSnapshot(ref)}`,
      },
      signal,
    );
  }

  /** Stops every request in flight and closes the pool's sockets. */
  async close(): Promise<void> {
    await this.#transport.close();
  }

  /** A whole body, urgently (a reader waits for it). */
  #whole(
    path: string,
    kind: RequestKind,
    signal: AbortSignal | undefined,
    memory?: BodyMemory,
  ): Promise<Uint8Array> {
    return this.#link.urgent((piece, yieldTo) =>
      this.#transport.get(path, kind, { signal, piece, yieldTo, memory }),
    );
  }
}

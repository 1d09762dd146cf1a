import {
  type ChunkIndex,
  type CryptConfig,
  isHexDigest,
  MANIFEST_BLOB_NAME,
  type Manifest,
} from '@liverestore/format';
import type { BodyMemory } from '@liverestore/format/internal';
import type { BackupStore, BackupTarget } from '../backup-target.js';
import { DatastoreError } from '../errors.js';
import {
  isNamespaceComponent,
  NAMESPACE_DIR,
  type NamespaceScope,
  namespacePathSegments,
  parseNamespace,
  ROOT_NAMESPACE,
} from '../namespace.js';
import { MAX_CHUNK_FILE_BYTES } from '../regular-file.js';
import {
  readSnapshotArchiveIndex,
  readSnapshotInfo,
  readSnapshotManifest,
  type SnapshotInfo,
  withSnapshotExtras,
} from '../snapshot-files.js';
import {
  listStoreNamespaces,
  listStoreSnapshotRefs,
  resolveStoreNamespace,
  type SnapshotEntry,
  type StoreTree,
} from '../snapshot-listing.js';
import { pickSnapshot } from '../snapshot-pick.js';
import {
  formatBackupTime,
  formatSnapshot,
  inNamespace,
  isBackupId,
  namespaceOf,
  parseBackupTime,
  type SnapshotRef,
  type SnapshotSpec,
} from '../snapshot-ref.js';
import { S3BackupTarget } from './s3-backup-target.js';
import { type ObjectPiece, S3Client } from './s3-client.js';
import { S3Error } from './s3-error.js';
import { parseS3Url, resolveS3Settings, type S3ConnectionOptions, type S3Location } from './s3-settings.js';
import { readS3SnapshotExtras } from './s3-snapshot-extras.js';

/*
 * A datastore in an S3 bucket, in the layout of Proxmox Backup Server 4.x's S3 backend,
 * every key under the datastore's name:
 *
 *   STORE/.chunks/<4 hex>/<64 hex>                            chunk blob (same bytes as on disk)
 *   STORE/.cnt/[ns/<a>/ns/<b>/]<type>/<id>/owner              group owner (PBS Authid)
 *   STORE/.cnt/[ns/<a>/…/]<type>/<id>/<time>/<file>           index files, index.json.blob
 *
 * S3 has no rename, so a snapshot counts as present once its manifest (`index.json.blob`)
 * is: a backup stores every chunk and index first and the manifest last. Objects are
 * created with `If-None-Match: *`, so nothing already stored is ever overwritten.
 */

/** Key prefix of everything but chunks (PBS's `S3_CONTENT_PREFIX`). */
export const S3_CONTENT_PREFIX = '.cnt';
/** Key prefix of the chunks. */
export const S3_CHUNKS_PREFIX = '.chunks';
/** Largest snapshot file read (a fixed index of a 32 TiB disk in 4 MiB chunks is 256 MiB). */
const MAX_S3_SNAPSHOT_FILE_BYTES = 512 * 1024 * 1024;
/** A plain snapshot file name: nothing outside the snapshot is reachable. */
const SNAPSHOT_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function isNotFound(err: unknown): boolean {
  return err instanceof S3Error && err.code === 'ERR_LR_S3_NOT_FOUND';
}

/** A PBS-layout datastore in an S3 bucket (see the layout above). */
export class S3Datastore implements BackupStore {
  private constructor(
    readonly client: S3Client,
    readonly location: S3Location,
  ) {}

  /** A target for one backup run (see `backup`). */
  openBackupTarget(): BackupTarget {
    return new S3BackupTarget(this);
  }

  /**
   * Opens the datastore `s3://BUCKET/STORE`. Fails with `ERR_LR_S3_BUCKET_NOT_FOUND`
   * without the bucket and, unless `create`, with `ERR_LR_STORE_NOT_FOUND` when nothing is
   * stored under STORE yet.
   */
  static async open(
    url: string | S3Location,
    options: S3ConnectionOptions & { create?: boolean } = {},
  ): Promise<S3Datastore> {
    const location = typeof url === 'string' ? parseS3Url(url) : url;
    const client = new S3Client(location.bucket, resolveS3Settings(options));
    const store = new S3Datastore(client, location);
    try {
      await client.checkBucket();
      if (options.create !== true) {
        const page = await client.listPages(`${location.store}/`, { maxKeys: 1 }).next();
        if (page.done === true || page.value.keys.length === 0) {
          throw new DatastoreError(
            'ERR_LR_STORE_NOT_FOUND',
            `no datastore at ${store.name} (no object under ${location.store}/)`,
          );
        }
      }
      return store;
    } catch (err) {
      await client.close();
      throw err;
    }
  }

  /** `s3://BUCKET/STORE`. */
  get name(): string {
    return `s3://${this.location.bucket}/${this.location.store}`;
  }

  /** Key of a chunk: `STORE/.chunks/abcd/abcd…`. */
  chunkKey(digestHex: string): string {
    if (!isHexDigest(digestHex))
      throw new DatastoreError('ERR_LR_DIGEST_INVALID', `invalid chunk digest "${digestHex}"`);
    return `${this.location.store}/${S3_CHUNKS_PREFIX}/${digestHex.slice(0, 4)}/${digestHex}`;
  }

  /** Key prefix of a namespace's contents, ending in `/`: `STORE/.cnt/` for the root, `STORE/.cnt/ns/a/` for `a`. */
  namespacePrefix(namespace: string = ROOT_NAMESPACE): string {
    const segments = namespacePathSegments(parseNamespace(namespace));
    return `${this.location.store}/${S3_CONTENT_PREFIX}/${segments.map((s) => `${s}/`).join('')}`;
  }

  /** Key prefix of a group, ending in `/`. */
  groupPrefix(type: string, id: string, namespace: string = ROOT_NAMESPACE): string {
    return `${this.namespacePrefix(namespace)}${type}/${id}/`;
  }

  /** Key of a snapshot file. */
  snapshotFileKey(ref: SnapshotRef, filename: string): string {
    if (!SNAPSHOT_FILE.test(filename))
      throw new DatastoreError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `invalid snapshot file name "${filename}"`);
    return `${this.groupPrefix(ref.type, ref.id, namespaceOf(ref))}${formatBackupTime(ref.time)}/${filename}`;
  }

  /** True when the chunk is stored (one HEAD). */
  async hasChunk(digestHex: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.client.headObject(this.chunkKey(digestHex), signal)) !== undefined;
  }

  /** Stores a chunk blob unless one is there (`If-None-Match: *`); true when this call stored it. */
  async insertChunk(digestHex: string, blob: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    return (
      (await this.client.putObject(this.chunkKey(digestHex), blob, { ifAbsent: true, signal })) === 'created'
    );
  }

  /** The raw blob of a chunk; `ERR_LR_CHUNK_MISSING` when the store does not have it. */
  async readChunk(digestHex: string, signal?: AbortSignal, memory?: BodyMemory): Promise<Uint8Array> {
    try {
      return await this.client.getObject(this.chunkKey(digestHex), {
        maxBytes: MAX_CHUNK_FILE_BYTES,
        signal,
        memory,
      });
    } catch (cause) {
      if (isNotFound(cause))
        throw new DatastoreError('ERR_LR_CHUNK_MISSING', `chunk ${digestHex} is missing from ${this.name}`, {
          cause,
        });
      throw cause;
    }
  }

  /**
   * The rest of a chunk's blob from `piece.start` into `piece.blob` (see
   * {@link S3Client.readInto}); `ERR_LR_CHUNK_MISSING` when the store does not have it.
   */
  async readChunkInto(
    digestHex: string,
    piece: ObjectPiece,
    signal?: AbortSignal,
    memory?: BodyMemory,
  ): Promise<void> {
    try {
      await this.client.readInto(this.chunkKey(digestHex), piece, {
        maxBytes: MAX_CHUNK_FILE_BYTES,
        signal,
        memory,
      });
    } catch (cause) {
      if (isNotFound(cause))
        throw new DatastoreError('ERR_LR_CHUNK_MISSING', `chunk ${digestHex} is missing from ${this.name}`, {
          cause,
        });
      throw cause;
    }
  }

  /** A raw file of a snapshot; `ERR_LR_SNAPSHOT_FILE_NOT_FOUND` when absent. */
  async readSnapshotFile(ref: SnapshotRef, filename: string, signal?: AbortSignal): Promise<Uint8Array> {
    const key = this.snapshotFileKey(ref, filename);
    try {
      return await this.client.getObject(key, { maxBytes: MAX_S3_SNAPSHOT_FILE_BYTES, signal });
    } catch (cause) {
      if (isNotFound(cause))
        throw new DatastoreError(
          'ERR_LR_SNAPSHOT_FILE_NOT_FOUND',
          `snapshot ${formatSnapshot(ref)} has no file ${filename}`,
          {
            cause,
          },
        );
      throw cause;
    }
  }

  /**
   * Stores a snapshot file, never over an existing one: `ERR_LR_SNAPSHOT_EXISTS` when the
   * key is taken (another backup wrote the same snapshot).
   */
  async writeSnapshotFile(
    ref: SnapshotRef,
    filename: string,
    bytes: Uint8Array,
    signal?: AbortSignal,
  ): Promise<void> {
    const key = this.snapshotFileKey(ref, filename);
    if ((await this.client.putObject(key, bytes, { ifAbsent: true, signal })) === 'exists') {
      throw new DatastoreError(
        'ERR_LR_SNAPSHOT_EXISTS',
        `${this.name} already has ${formatSnapshot(ref)}/${filename}`,
      );
    }
  }

  /** Deletes files of a snapshot (what an interrupted backup stored). */
  async deleteSnapshotFiles(ref: SnapshotRef, filenames: readonly string[]): Promise<void> {
    await this.client.deleteObjects(filenames.map((f) => this.snapshotFileKey(ref, f)));
  }

  /** Writes a group's `owner` object unless there is one (PBS sets it once); true when it wrote. */
  async ensureGroupOwner(type: string, id: string, namespace: string, owner: string): Promise<boolean> {
    const key = `${this.groupPrefix(type, id, namespace)}owner`;
    return (await this.client.putObject(key, Buffer.from(`${owner}\n`), { ifAbsent: true })) === 'created';
  }

  /**
   * The complete snapshots (those with a manifest) of one backup type in a namespace, or of
   * one group of it when `id` is given: the keys `<type>/<id>/<time>/index.json.blob`, in
   * listing order.
   */
  async #snapshotEntries(namespace: string, type: string, id?: string): Promise<SnapshotEntry[]> {
    const typePrefix = `${this.namespacePrefix(namespace)}${type}/`;
    const entries: SnapshotEntry[] = [];
    for (const key of (await this.client.list(id === undefined ? typePrefix : `${typePrefix}${id}/`)).keys) {
      const [keyId = '', time = '', file, ...rest] = key.slice(typePrefix.length).split('/');
      if (file !== MANIFEST_BLOB_NAME || rest.length > 0 || !isBackupId(keyId)) continue;
      const seconds = parseBackupTime(time);
      if (seconds !== undefined) entries.push({ id: keyId, time: seconds });
    }
    return entries;
  }

  /** Times of the complete snapshots (those with a manifest) of a group, oldest first. */
  async snapshotTimes(type: string, id: string, namespace: string = ROOT_NAMESPACE): Promise<number[]> {
    if (!isBackupId(id)) return [];
    return (await this.#snapshotEntries(namespace, type, id)).map((e) => e.time).sort((a, b) => a - b);
  }

  /** The namespaces directly below `namespace`, sorted. */
  async #childNamespaces(namespace: string): Promise<string[]> {
    const prefix = `${this.namespacePrefix(namespace)}${NAMESPACE_DIR}/`;
    const { commonPrefixes } = await this.client.list(prefix, { delimiter: '/' });
    return commonPrefixes
      .map((p) => p.slice(prefix.length, -1))
      .filter(isNamespaceComponent)
      .sort();
  }

  /**
   * Checks that a namespace exists and returns it. A namespace exists when some object
   * lies under it (S3 has no empty folders); the root always does.
   */
  resolveNamespace(namespace: string): Promise<string> {
    return resolveStoreNamespace(this.#tree, namespace);
  }

  /** `scope.namespace` and the namespaces below it (default all levels), sorted. */
  listNamespaces(scope: NamespaceScope = {}): Promise<string[]> {
    return listStoreNamespaces(this.#tree, scope);
  }

  /** The complete snapshots of a namespace and of those `maxDepth` levels below, sorted as on disk. */
  listSnapshotRefs(scope: NamespaceScope = {}): Promise<SnapshotRef[]> {
    return listStoreSnapshotRefs(this.#tree, scope);
  }

  /** The bucket's key prefixes as the listings shared with the local store read them. */
  get #tree(): StoreTree {
    return {
      where: this.name,
      hasNamespace: async (namespace) => {
        const page = await this.client.listPages(this.namespacePrefix(namespace), { maxKeys: 1 }).next();
        return page.done !== true && page.value.keys.length > 0;
      },
      childNamespaces: (namespace) => this.#childNamespaces(namespace),
      snapshotEntries: (namespace, type) => this.#snapshotEntries(namespace, type),
    };
  }

  /**
   * Resolves `vm/100` to its latest snapshot, and checks a full reference, in the spec's
   * namespace: one listing of the group; only when that misses, one of the namespace, for
   * the error's hint of the snapshots there are (as a local store and an HTTP source say).
   */
  async resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    const namespace = parseNamespace(namespaceOf(spec));
    const where = `of ${this.name}`;
    const group = isBackupId(spec.id) ? await this.#snapshotEntries(namespace, spec.type, spec.id) : [];
    const refs = group.map(({ time }) => inNamespace({ type: spec.type, id: spec.id, time }, namespace));
    try {
      return pickSnapshot(spec, refs, namespace, where);
    } catch (err) {
      if (!(err instanceof DatastoreError) || err.code !== 'ERR_LR_SNAPSHOT_NOT_FOUND') throw err;
      return pickSnapshot(spec, await this.listSnapshotRefs({ namespace, maxDepth: 0 }), namespace, where);
    }
  }

  /** Reads and checks a snapshot's manifest (its signature too when a key is given). */
  readManifest(ref: SnapshotRef, crypt?: CryptConfig): Promise<Manifest> {
    return readSnapshotManifest(this, ref, crypt);
  }

  /** A snapshot's archives as its manifest lists them, with the group's owner, `.protected` and group notes. */
  async snapshotInfo(ref: SnapshotRef): Promise<SnapshotInfo> {
    const info = await readSnapshotInfo(this, ref);
    const group = this.groupPrefix(ref.type, ref.id, namespaceOf(ref));
    const extras = await readS3SnapshotExtras(this.client, group, `${group}${formatBackupTime(ref.time)}/`);
    return withSnapshotExtras(info, extras);
  }

  /** Reads an archive's index, checked against the manifest. */
  async readArchiveIndex(ref: SnapshotRef, archive: string, manifest?: Manifest): Promise<ChunkIndex> {
    return readSnapshotArchiveIndex(this, ref, archive, manifest ?? (await this.readManifest(ref)));
  }

  /** Closes the client's connections. */
  close(): Promise<void> {
    return this.client.close();
  }
}

import { mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type ChunkIndex, type CryptConfig, isHexDigest, type Manifest, toHex } from '@liverestore/format';
import type { BodyMemory } from '@liverestore/format/internal';
import { isSnapshotFileName } from './archive-name.js';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-write.js';
import { type BackupStore, type BackupTarget, LocalBackupTarget } from './backup-target.js';
import { DatastoreError } from './errors.js';
import {
  isNamespaceComponent,
  NAMESPACE_DIR,
  type NamespaceScope,
  namespacePathSegments,
  parseNamespace,
  ROOT_NAMESPACE,
} from './namespace.js';
import { MAX_CHUNK_FILE_BYTES, readRegularFile } from './regular-file.js';
import { readLocalSnapshotExtras } from './snapshot-extras.js';
import {
  readSnapshotArchiveIndex,
  readSnapshotInfo,
  readSnapshotManifest,
  type SnapshotInfo,
  withSnapshotExtras,
} from './snapshot-files.js';
import {
  listStoreNamespaces,
  listStoreSnapshotRefs,
  resolveStoreNamespace,
  type SnapshotEntry,
  type StoreTree,
} from './snapshot-listing.js';
import { pickSnapshot } from './snapshot-pick.js';
import {
  formatBackupTime,
  formatSnapshot,
  isBackupId,
  namespaceOf,
  parseBackupTime,
  type SnapshotRef,
  type SnapshotSpec,
} from './snapshot-ref.js';

/** Folder of the chunk store inside a datastore. */
export const CHUNKS_DIR = '.chunks';

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Names of the directories in `dir` (none when `dir` is missing or not a directory). */
async function subdirectories(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && !e.name.startsWith(TEMP_PREFIX))
      .map((e) => e.name);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/**
 * A PBS-layout datastore on a local file system:
 * `.chunks/<4 hex>/<64 hex>` for chunk blobs, `[ns/<name>/…]<type>/<id>/<time>/` for
 * snapshots. Every write is atomic (temp + fsync + rename), so a crash leaves no torn file.
 * What else PBS keeps there (group `owner` and `notes`, `.protected`, `.lock`, `.gc-status`)
 * is skipped when listing and never removed.
 */
export class Datastore implements BackupStore {
  private constructor(readonly dir: string) {}

  /** A target for one backup run (see `backup`). */
  openBackupTarget(): BackupTarget {
    return new LocalBackupTarget(this);
  }

  /** Opens an existing datastore; fails with `ERR_LR_STORE_NOT_FOUND` if `dir` has no `.chunks`. */
  static async open(dir: string): Promise<Datastore> {
    try {
      const info = await stat(join(dir, CHUNKS_DIR));
      if (!info.isDirectory()) throw new Error('not a directory');
    } catch (cause) {
      throw new DatastoreError('ERR_LR_STORE_NOT_FOUND', `no datastore at ${dir} (missing ${CHUNKS_DIR}/)`, {
        cause,
      });
    }
    return new Datastore(dir);
  }

  /** Opens the datastore at `dir`, creating it (and `.chunks/`) if needed. */
  static async create(dir: string): Promise<Datastore> {
    await mkdir(join(dir, CHUNKS_DIR), { recursive: true });
    return new Datastore(dir);
  }

  /** Path of a chunk file: `.chunks/abcd/abcd…`. */
  chunkPath(digest: Uint8Array | string): string {
    const hex = typeof digest === 'string' ? digest : toHex(digest);
    if (!isHexDigest(hex)) throw new DatastoreError('ERR_LR_DIGEST_INVALID', `invalid chunk digest "${hex}"`);
    return join(this.dir, CHUNKS_DIR, hex.slice(0, 4), hex);
  }

  /** True when the chunk is present (what makes dedup skip compression and writing). */
  async hasChunk(digest: Uint8Array | string): Promise<boolean> {
    try {
      await stat(this.chunkPath(digest));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Stores a chunk blob under its digest unless it is there already. Returns true when
   * it wrote. The caller guarantees `blob` decodes to data with that digest. The chunk
   * file itself is fsynced; the directories whose entries changed are added to `dirty`,
   * for the caller to fsync once (see {@link fsyncDirs}) before anything names the chunk.
   */
  async insertChunk(digest: Uint8Array | string, blob: Uint8Array, dirty?: Set<string>): Promise<boolean> {
    const path = this.chunkPath(digest);
    if (await this.hasChunk(digest)) return false;
    const dir = dirname(path);
    if ((await mkdir(dir, { recursive: true })) !== undefined) dirty?.add(join(this.dir, CHUNKS_DIR));
    await writeFileAtomic(path, blob);
    dirty?.add(dir);
    return true;
  }

  /**
   * The raw blob of a chunk; `ERR_LR_CHUNK_MISSING` when the store does not have it. Read
   * into `memory` when given (an array of exactly the file's size), else a fresh Buffer.
   */
  async readChunk(digest: Uint8Array | string, signal?: AbortSignal, memory?: BodyMemory): Promise<Buffer> {
    const path = this.chunkPath(digest);
    try {
      return await readRegularFile(path, MAX_CHUNK_FILE_BYTES, signal, memory);
    } catch (err) {
      if (isNotFound(err)) {
        throw new DatastoreError(
          'ERR_LR_CHUNK_MISSING',
          `chunk ${typeof digest === 'string' ? digest : toHex(digest)} is missing from the datastore`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }

  /** Directory of a namespace (`<store>/ns/a/ns/b`; the store itself for the root). */
  namespaceDir(namespace: string = ROOT_NAMESPACE): string {
    return join(this.dir, ...namespacePathSegments(parseNamespace(namespace)));
  }

  /** Directory of a snapshot. */
  snapshotDir(ref: SnapshotRef): string {
    return join(this.groupDir(ref.type, ref.id, namespaceOf(ref)), formatBackupTime(ref.time));
  }

  /** Directory of a backup group (`vm/100`, or `ns/a/vm/100` in namespace `a`). */
  groupDir(type: string, id: string, namespace: string = ROOT_NAMESPACE): string {
    return join(this.namespaceDir(namespace), type, id);
  }

  /** Times of the complete snapshots of a group, oldest first (temp dirs of unfinished backups are skipped). */
  async snapshotTimes(type: string, id: string, namespace: string = ROOT_NAMESPACE): Promise<number[]> {
    if (!isBackupId(id)) return [];
    const times: number[] = [];
    for (const name of await subdirectories(this.groupDir(type, id, namespace))) {
      const time = parseBackupTime(name);
      if (time !== undefined) times.push(time);
    }
    return times.sort((a, b) => a - b);
  }

  /**
   * Checks that a namespace exists (the root always does) and returns it:
   * `ERR_LR_NAMESPACE_INVALID` for a bad name, `ERR_LR_NAMESPACE_NOT_FOUND` for a missing one.
   */
  resolveNamespace(namespace: string): Promise<string> {
    return resolveStoreNamespace(this.#tree, namespace);
  }

  /**
   * `namespace` and the namespaces below it, down to `maxDepth` more levels (default all
   * 7), in sorted order: what exists on disk as `ns/<name>` folders, whether or not it holds
   * snapshots. Folders whose names PBS would refuse are skipped.
   */
  listNamespaces(scope: NamespaceScope = {}): Promise<string[]> {
    return listStoreNamespaces(this.#tree, scope);
  }

  /**
   * The complete snapshots of a namespace (default the root), and of the namespaces below it
   * down to `maxDepth` levels (default none), sorted by namespace, type, id and time. Stray
   * files and folders are skipped.
   */
  listSnapshotRefs(scope: NamespaceScope = {}): Promise<SnapshotRef[]> {
    return listStoreSnapshotRefs(this.#tree, scope);
  }

  /** The store's folders as the listings shared with the S3 store read them. */
  get #tree(): StoreTree {
    return {
      where: this.dir,
      hasNamespace: async (namespace) => {
        try {
          return (await stat(this.namespaceDir(namespace))).isDirectory();
        } catch (err) {
          if (!isNotFound(err)) throw err;
          return false;
        }
      },
      childNamespaces: async (namespace) =>
        (await subdirectories(join(this.namespaceDir(namespace), NAMESPACE_DIR)))
          .filter(isNamespaceComponent)
          .sort(),
      snapshotEntries: async (namespace, type) => {
        const entries: SnapshotEntry[] = [];
        for (const id of (await subdirectories(join(this.namespaceDir(namespace), type))).filter(isBackupId))
          for (const time of await this.snapshotTimes(type, id, namespace)) entries.push({ id, time });
        return entries;
      },
    };
  }

  /**
   * Resolves `vm/100` to its latest snapshot, and checks that a full reference exists, in
   * the spec's namespace; the error names the namespace it looked in.
   */
  async resolveSnapshot(spec: SnapshotSpec): Promise<SnapshotRef> {
    const namespace = parseNamespace(namespaceOf(spec));
    return pickSnapshot(spec, await this.listSnapshotRefs({ namespace }), namespace, `of ${this.dir}`);
  }

  /**
   * A raw file of a snapshot directory (index or manifest); `ERR_LR_SNAPSHOT_FILE_NOT_FOUND`
   * when absent. The name must be a plain file name: nothing outside the snapshot is reachable.
   */
  async readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Buffer> {
    if (!isSnapshotFileName(filename)) {
      throw new DatastoreError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `invalid snapshot file name "${filename}"`);
    }
    try {
      return await readRegularFile(join(this.snapshotDir(ref), filename));
    } catch (cause) {
      if (isNotFound(cause)) {
        throw new DatastoreError(
          'ERR_LR_SNAPSHOT_FILE_NOT_FOUND',
          `snapshot ${formatSnapshot(ref)} has no file ${filename}`,
          {
            cause,
          },
        );
      }
      throw cause;
    }
  }

  /** Reads and checks a snapshot's manifest (its signature too when a key is given). */
  readManifest(ref: SnapshotRef, crypt?: CryptConfig): Promise<Manifest> {
    return readSnapshotManifest(this, ref, crypt);
  }

  /**
   * A snapshot's archives as its manifest lists them, with what PBS keeps beside it: the
   * group's owner, `.protected`, whether the group has notes.
   */
  async snapshotInfo(ref: SnapshotRef): Promise<SnapshotInfo> {
    const info = await readSnapshotInfo(this, ref);
    const groupDir = this.groupDir(ref.type, ref.id, namespaceOf(ref));
    return withSnapshotExtras(info, await readLocalSnapshotExtras(groupDir, this.snapshotDir(ref)));
  }

  /** Reads an archive's index, checked against the manifest (size and index_csum). */
  async readArchiveIndex(ref: SnapshotRef, archive: string, manifest?: Manifest): Promise<ChunkIndex> {
    return readSnapshotArchiveIndex(this, ref, archive, manifest ?? (await this.readManifest(ref)));
  }
}

import { type FileHandle, open, realpath } from 'node:fs/promises';
import { sep } from 'node:path';
import { Datastore, type SnapshotRef } from '@liverestore/datastore';
import {
  isSnapshotFileName,
  MAX_CHUNK_FILE_BYTES,
  STORE_FILE_OPEN_FLAGS,
} from '@liverestore/datastore/internal';
import { LocalChunkSource } from '@liverestore/reader';
import { ServerError } from './errors.js';
import type { ServedStore } from './served-store.js';

/** An opened regular file inside the store, with its size. */
export interface ConfinedFile {
  readonly handle: FileHandle;
  readonly sizeBytes: number;
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

/**
 * The datastore as the server sees it: paths are built by {@link Datastore} from validated
 * parts, and every file is opened only after its real path (symlinks resolved) is checked
 * to lie inside the store's real directory, with O_NOFOLLOW on the last component. A
 * symlink pointing out of the store reads as missing.
 */
export class ConfinedStore extends LocalChunkSource implements ServedStore {
  private constructor(
    store: Datastore,
    readonly realDir: string,
  ) {
    super(store);
  }

  /** Image readers fetch from the store itself. */
  get chunkSource(): this {
    return this;
  }

  get listings(): Datastore {
    return this.store;
  }

  /** Nothing to release: every file is opened per request and closed after. */
  async close(): Promise<void> {}

  static override async open(dir: string): Promise<ConfinedStore> {
    const store = await Datastore.open(dir);
    return new ConfinedStore(store, await realpath(dir));
  }

  /** Opens `path` if it is a regular file inside the store; `undefined` otherwise. */
  async #openInside(path: string): Promise<ConfinedFile | undefined> {
    let real: string;
    try {
      real = await realpath(path);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (!real.startsWith(this.realDir + sep)) return undefined;
    let handle: FileHandle;
    try {
      // O_NONBLOCK: a FIFO must not block the open (and with it a libuv thread) forever.
      handle = await open(real, STORE_FILE_OPEN_FLAGS);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        await handle.close();
        return undefined;
      }
      return { handle, sizeBytes: info.size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** A chunk blob file; `ERR_LR_CHUNK_MISSING` when absent. */
  async openChunk(digestHex: string): Promise<ConfinedFile> {
    const file = await this.#openInside(this.store.chunkPath(digestHex));
    if (file === undefined)
      throw new ServerError('ERR_LR_CHUNK_MISSING', `chunk ${digestHex} is missing from the datastore`);
    return file;
  }

  /** A file of a snapshot directory; the snapshot must exist (`ERR_LR_SNAPSHOT_NOT_FOUND`). */
  async openSnapshotFile(ref: SnapshotRef, filename: string): Promise<ConfinedFile> {
    if (!isSnapshotFileName(filename))
      throw new ServerError('ERR_LR_HTTP_BAD_PATH', 'invalid snapshot file name');
    await this.store.resolveSnapshot(ref);
    const file = await this.#openInside(`${this.store.snapshotDir(ref)}${sep}${filename}`);
    if (file === undefined)
      throw new ServerError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', `the snapshot has no file ${filename}`);
    return file;
  }

  override async fetchChunk(digestHex: string, signal?: AbortSignal): Promise<Uint8Array> {
    const { handle, sizeBytes } = await this.openChunk(digestHex);
    try {
      if (sizeBytes > MAX_CHUNK_FILE_BYTES)
        throw new ServerError(
          'ERR_LR_STORE_FILE_TOO_LARGE',
          `chunk ${digestHex} is larger than any blob can be`,
        );
      return await handle.readFile(signal === undefined ? {} : { signal });
    } finally {
      await handle.close();
    }
  }

  override async readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array> {
    const { handle } = await this.openSnapshotFile(ref, filename);
    try {
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  }
}

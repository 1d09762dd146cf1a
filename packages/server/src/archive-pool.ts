import { resolveArchiveName, type SnapshotRef } from '@liverestore/datastore';
import {
  type CachedChunkReader,
  type ChunkCache,
  type ChunkSource,
  openSnapshot,
  type Snapshot,
} from '@liverestore/reader';
import { ServerError } from './errors.js';
import { snapshotKey } from './routes.js';

/** Readers kept open; each holds an index in memory (32 bytes per chunk), so the map stays small. */
export const MAX_OPEN_READERS = 32;

/**
 * Readers of the archives clients ask for, opened on first use and kept in a small map
 * (oldest dropped first), all over the server's one shared cache. A failed open is not
 * kept, so the next request tries again.
 */
export class ArchivePool {
  readonly #snapshots = new Map<string, Promise<Snapshot>>();
  readonly #readers = new Map<string, Promise<CachedChunkReader>>();

  constructor(
    readonly source: ChunkSource,
    readonly cache: ChunkCache,
  ) {}

  /** The reader of a fixed-index archive (`drive-scsi0.img`); `ERR_LR_ARCHIVE_NOT_FOUND` for anything else. */
  reader(ref: SnapshotRef, archive: string): Promise<CachedChunkReader> {
    const name = resolveArchiveName(archive);
    if (name.kind !== 'fixed') {
      return Promise.reject(
        new ServerError('ERR_LR_ARCHIVE_NOT_FOUND', `${name.name} is not a disk image (fixed-index archive)`),
      );
    }
    const key = `${snapshotKey(ref)}/${name.name}`;
    return remember(this.#readers, key, async () => {
      const snapshot = await this.#snapshot(ref);
      return snapshot.openArchive(name.name);
    });
  }

  #snapshot(ref: SnapshotRef): Promise<Snapshot> {
    return remember(this.#snapshots, snapshotKey(ref), () =>
      openSnapshot({ source: this.source, snapshot: ref, cache: this.cache }),
    );
  }

  /** Forgets every reader (the snapshots do not own the source, so nothing else to close). */
  async close(): Promise<void> {
    const snapshots = [...this.#snapshots.values()];
    this.#snapshots.clear();
    this.#readers.clear();
    for (const s of await Promise.allSettled(snapshots)) if (s.status === 'fulfilled') await s.value.close();
  }
}

function remember<T>(map: Map<string, Promise<T>>, key: string, open: () => Promise<T>): Promise<T> {
  const known = map.get(key);
  if (known !== undefined) {
    // Refresh: most recently used goes last.
    map.delete(key);
    map.set(key, known);
    return known;
  }
  const opened = open();
  map.set(key, opened);
  opened.catch(() => {
    if (map.get(key) === opened) map.delete(key);
  });
  while (map.size > MAX_OPEN_READERS) {
    const oldest = map.keys().next().value;
    if (oldest === undefined) break;
    map.delete(oldest);
  }
  return opened;
}

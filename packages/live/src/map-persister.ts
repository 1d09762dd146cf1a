import { encodeMap, type MapIdentity } from './alloc-map.js';
import { targetIoError } from './errors.js';
import type { RegionStates } from './region-state.js';
import type { TargetFile, TargetFiles } from './target-file.js';

/**
 * The durability rule of a drive in one place: a region is recorded local in the map
 * file only if the target was fdatasync'ed after the region became local in memory.
 * A persist snapshots the bitmap, fdatasyncs the target, then replaces the map atomically
 * (the map write is skipped when no region became local since the last one).
 */
export class MapPersister {
  readonly #file: TargetFile;
  readonly #files: TargetFiles;
  readonly #states: RegionStates;
  readonly #identity: MapIdentity;
  readonly #mapPath: string;
  readonly #targetPath: string;
  /** Bumped whenever a region becomes local; compared with what the map file holds. */
  #changes = 0;
  #persistedChanges = 0;
  #generation: number;
  #queued: Promise<void> | undefined;
  #tail: Promise<void> = Promise.resolve();

  constructor(options: {
    file: TargetFile;
    files: TargetFiles;
    states: RegionStates;
    identity: MapIdentity;
    mapPath: string;
    targetPath: string;
    generation: number;
  }) {
    this.#file = options.file;
    this.#files = options.files;
    this.#states = options.states;
    this.#identity = options.identity;
    this.#mapPath = options.mapPath;
    this.#targetPath = options.targetPath;
    this.#generation = options.generation;
  }

  /** Records that a region became local (the next persist writes the map). */
  regionBecameLocal(): void {
    this.#changes++;
  }

  /** True when regions became local since the map was last written. */
  get dirty(): boolean {
    return this.#changes !== this.#persistedChanges;
  }

  /** Times the map was written (as recorded in it). */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Makes every write completed before the call durable and records every region local
   * before the call in the map file. Concurrent calls share one pass that has not started yet.
   */
  persist(): Promise<void> {
    if (this.#queued !== undefined) return this.#queued;
    const run = this.#tail
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#persistNow();
      });
    this.#queued = run;
    this.#tail = run;
    return run;
  }

  async #persistNow(): Promise<void> {
    const changes = this.#changes;
    const bits = this.#states.snapshotBits();
    try {
      await this.#file.datasync();
    } catch (err) {
      throw targetIoError(err, this.#targetPath, 'fdatasync of');
    }
    if (changes === this.#persistedChanges) return;
    const generation = this.#generation + 1;
    try {
      await this.#files.writeMap(this.#mapPath, encodeMap(this.#identity, bits, generation));
    } catch (err) {
      throw targetIoError(err, this.#mapPath, 'writing the allocation map');
    }
    this.#generation = generation;
    this.#persistedChanges = changes;
  }
}

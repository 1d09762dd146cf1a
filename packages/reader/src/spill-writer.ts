import type { EvictionHook, PageArena } from './page-arena.js';
import { kLengthField, type SlotIndex } from './slot-table.js';
import type { SpillStore } from './spill-store.js';

/**
 * The spill writer keeps this share of the cache's least recently used chunks written to
 * the spill file ahead of need, so an eviction finds clean chunks and seldom waits for a
 * write. Kept small: a guest's reads keep moving chunks of the tail back to the front, and
 * a chunk written ahead that is never evicted was written for nothing (with a quarter,
 * `bench qemu` lr-nbd wrote 67 of its 92 chunks for 28 evictions, 0.3–0.6 CPU s of page
 * cache copies on the 2-core host; a sixteenth is a few chunks, what the loads in flight
 * take before the next writes end).
 */
export const SPILL_AHEAD_CACHE_FRACTION = 1 / 16;
/** Spill writes kept in flight ahead of need (evictions that must wait add theirs). */
const SPILL_AHEAD_WRITES = 2;

/**
 * The arena's eviction hook when the cache has a spill file: a ready chunk may leave
 * memory only once the spill file holds it (or refused it), so no chunk is decoded twice.
 * A chunk about to be needed for room is written first, holding a pin of its own; the
 * unpin at the end of the write wakes the allocation that waited for it.
 */
export class SpillWriter implements EvictionHook {
  readonly spill: SpillStore;
  readonly #arena: PageArena;
  /** Ready chunks the spill file refused (full of chunks being read, a full disk): droppable as they are. */
  readonly #refused = new Set<string>();
  #savingPages = 0;
  #closed = false;

  constructor(spill: SpillStore, arena: PageArena) {
    if (spill.pageBytes !== arena.table.pageBytes)
      throw new RangeError(
        `the spill store's pageBytes (${spill.pageBytes}) must equal the cache's (${arena.table.pageBytes})`,
      );
    this.spill = spill;
    this.#arena = arena;
  }

  /** Pages of chunks being written now (ahead of need or for an eviction). */
  get savingPages(): number {
    return this.#savingPages;
  }

  mayEvict(key: string, slot: SlotIndex, save: boolean): boolean {
    if (this.#droppable(key)) return true;
    if (save) this.#write(key, slot);
    return false;
  }

  evicted(key: string): void {
    this.#refused.delete(key);
  }

  /**
   * Keeps the least recently used {@link SPILL_AHEAD_CACHE_FRACTION} of the cache written
   * to the spill file, a few writes at a time. Nothing is written while that much memory
   * is still free: no eviction is near, and the write could be wasted.
   */
  writeAhead(): void {
    if (this.#closed) return;
    const limit = this.#arena.capacityBytes * SPILL_AHEAD_CACHE_FRACTION;
    if (this.#arena.freeBytes >= limit) return;
    let bytes = 0;
    for (const [key, slot] of this.#arena.oldestFirst()) {
      if (this.spill.writesInFlight >= SPILL_AHEAD_WRITES || bytes >= limit) return;
      bytes += this.#arena.pages(slot).length * this.#arena.table.pageBytes;
      if (!this.#droppable(key)) this.#write(key, slot);
    }
  }

  /**
   * Fills a loading slot with a chunk read back from the spill file; false when the file
   * does not hold it (any more), and the chunk must be fetched.
   */
  async readBack(key: string, length: number, slot: SlotIndex): Promise<boolean> {
    if (this.spill.lengthOf(key) !== length) return false;
    const pages = this.#arena.pages(slot);
    const { pageBytes, arena } = this.#arena.table;
    const reads: Promise<boolean>[] = [];
    for (let i = 0; i < pages.length; i++) {
      const count = Math.min(pageBytes, length - i * pageBytes);
      reads.push(this.spill.read(key, i * pageBytes, arena, pages[i]! * pageBytes, count));
    }
    return (await Promise.all(reads)).every(Boolean);
  }

  /** Stops writing ahead and closes the spill file once its reads and writes are done. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.spill.close();
  }

  /** True when dropping the chunk from memory loses no decode work. */
  #droppable(key: string): boolean {
    return this.#refused.has(key) || this.spill.has(key);
  }

  #write(key: string, slot: SlotIndex): void {
    if (this.spill.holdsOrWrites(key)) return;
    const table = this.#arena.table;
    const pages = this.#arena.pages(slot);
    table.pin(slot);
    this.#savingPages += pages.length;
    void this.spill.put(key, table.field(slot, kLengthField), table.arena, pages).then((stored) => {
      this.#savingPages -= pages.length;
      if (!stored) this.#refused.add(key);
      table.unpinSlot(slot);
      this.writeAhead();
    });
  }
}

import { LRUCache } from 'lru-cache';
import {
  type Generation,
  kGenerationField,
  kLengthField,
  kPageCountField,
  kStateField,
  type Lease,
  type SharedCacheMemory,
  type SlotIndex,
  SlotState,
  SlotTable,
} from './slot-table.js';

/** The smallest page the system maps: one write per such page maps all of it. */
const OS_PAGE_BYTES = 4096;

/**
 * Who decides whether a ready chunk may leave memory, and hears when it did. The arena
 * knows only pages, slots, pins and recency; what a chunk is worth (is it saved in the
 * spill file yet?) is the hook's business.
 */
export interface EvictionHook {
  /**
   * May the ready, unpinned chunk `key` in `slot` be dropped now? Returning false keeps it
   * for this allocation; with `save` the hook may start saving it (and unpin-notify when
   * done), without it the arena only asks (enough is being saved for this allocation).
   */
  mayEvict(key: string, slot: SlotIndex, save: boolean): boolean;
  /** Pages of chunks being saved now: droppable once saved, so an allocation counts on them. */
  readonly savingPages: number;
  /** The chunk was dropped; its slot is free again. */
  evicted(key: string): void;
}

/**
 * The cache's memory: a fixed SharedArrayBuffer of pages, the slots that own them, and the
 * recency order of the ready chunks (keyed by digest). A chunk takes ⌈length / page⌉ pages
 * in any order, so any free pages serve any chunk and nothing fragments. Single-threaded:
 * only the coordinator calls it; readers in other threads see the shared slot table.
 */
export class PageArena {
  readonly table: SlotTable;
  readonly memory: SharedCacheMemory;
  readonly #hook: EvictionHook;
  readonly #freePages: number[] = [];
  readonly #freeSlots: SlotIndex[] = [];
  readonly #pageLists: (Int32Array | undefined)[];
  /** Ready chunks, least recently used last in iteration of `rkeys()`. */
  readonly #ready: LRUCache<string, SlotIndex>;
  /** Ready chunks dropped to make room. */
  evictions = 0;

  constructor(pageCount: number, pageBytes: number, hook: EvictionHook) {
    this.memory = SlotTable.allocate(pageCount, pageBytes);
    this.table = new SlotTable(this.memory);
    this.#hook = hook;
    for (let page = pageCount - 1; page >= 0; page--) this.#freePages.push(page);
    for (let slot = this.table.slotCount - 1; slot >= 0; slot--) this.#freeSlots.push(slot as SlotIndex);
    this.#pageLists = new Array(this.table.slotCount);
    this.#ready = new LRUCache<string, SlotIndex>({ max: this.table.slotCount });
  }

  /**
   * Writes one byte of every 4 KiB of a new arena, so that the system maps all of it now
   * rather than inside the first decodes: a fresh page's first write faults, and on a VM
   * whose balloon reports free pages to the host that costs ≈ 2.5 ms per 4 MiB
   * (benchmarks.md, "Where the NBD server's CPU goes"). Only while every page is free (the
   * bytes written are those of free pages); throws otherwise.
   */
  mapAllPages(): void {
    if (this.#freePages.length !== this.table.pageCount)
      throw new Error('mapAllPages: only a new arena, with every page free, may be written');
    const bytes = new Uint8Array(this.memory.arena);
    for (let at = 0; at < bytes.byteLength; at += OS_PAGE_BYTES) bytes[at] = 0;
  }

  /** Budget in bytes (a whole number of pages). */
  get capacityBytes(): number {
    return this.table.pageCount * this.table.pageBytes;
  }

  get freeBytes(): number {
    return this.#freePages.length * this.table.pageBytes;
  }

  get readyCount(): number {
    return this.#ready.size;
  }

  pagesFor(length: number): number {
    return Math.max(1, Math.ceil(length / this.table.pageBytes));
  }

  /** The pages of a slot that is loading or ready. */
  pages(slot: SlotIndex): Int32Array {
    return this.#pageLists[slot]!;
  }

  /** The ready slot of `key`, made most recently used. */
  get(key: string): SlotIndex | undefined {
    return this.#ready.get(key);
  }

  /** The ready slot of `key`, recency unchanged. */
  peek(key: string): SlotIndex | undefined {
    return this.#ready.peek(key);
  }

  has(key: string): boolean {
    return this.#ready.has(key);
  }

  /** Ready chunks from the least recently used on. */
  *oldestFirst(): IterableIterator<[string, SlotIndex]> {
    for (const key of this.#ready.rkeys()) yield [key, this.#ready.peek(key)!];
  }

  /**
   * A slot of `pageCount` pages in state loading, evicting least recently used unpinned
   * chunks the hook lets go; undefined when that would not free enough (then nothing is
   * evicted: data is never dropped for an allocation that still fails).
   */
  tryAllocate(pageCount: number): SlotIndex | undefined {
    if (this.#freePages.length < pageCount || this.#freeSlots.length === 0) this.#evict(pageCount);
    if (this.#freePages.length < pageCount || this.#freeSlots.length === 0) return undefined;
    const slot = this.#freeSlots.pop()!;
    // Reversed: the free list is a stack, so a chunk's pages come out in ascending order
    // when they are adjacent, and a read of several pages is one view (see viewsOf).
    const pages = Int32Array.from(
      this.#freePages.splice(this.#freePages.length - pageCount, pageCount),
    ).reverse();
    this.#pageLists[slot] = pages;
    this.table.setField(slot, kGenerationField, (this.table.field(slot, kGenerationField) + 1) | 0);
    this.table.setField(slot, kPageCountField, pageCount);
    this.table.setField(slot, kLengthField, 0);
    this.table.setField(slot, kStateField, SlotState.loading);
    return slot;
  }

  /** A loading slot now holds chunk `key` of `length` bytes: ready, most recently used. */
  markReady(key: string, slot: SlotIndex): void {
    this.table.setField(slot, kStateField, SlotState.ready);
    this.#ready.set(key, slot);
  }

  /** Returns a loading slot (a failed load) to the free lists. */
  free(slot: SlotIndex): void {
    const pages = this.#pageLists[slot]!;
    this.#pageLists[slot] = undefined;
    for (let i = pages.length - 1; i >= 0; i--) this.#freePages.push(pages[i]!);
    this.table.setField(slot, kStateField, SlotState.free);
    this.table.setField(slot, kLengthField, 0);
    this.table.setField(slot, kPageCountField, 0);
    this.#freeSlots.push(slot);
  }

  leaseOf(slot: SlotIndex): Lease {
    return {
      slot,
      generation: this.table.field(slot, kGenerationField) as Generation,
      length: this.table.field(slot, kLengthField),
      pages: this.#pageLists[slot]!,
    };
  }

  /**
   * Starts the saves that allocations of `pageCount` pages in all will need, evicting
   * nothing: what the allocation queue asks for everything waiting, so that the saves of
   * all waiting allocations run at once, not one allocation's after another's (a guest's
   * burst of misses on a full cache waited ≈ 100 ms for saves done in turn).
   */
  startSavesFor(pageCount: number): void {
    let freePages = this.#freePages.length;
    let comingPages = this.#hook.savingPages;
    for (const [key, slot] of this.oldestFirst()) {
      if (freePages + comingPages >= pageCount) return;
      if (this.table.pins(slot) !== 0) continue;
      const pages = this.#pageLists[slot]!.length;
      if (this.#hook.mayEvict(key, slot, true)) freePages += pages;
      else comingPages += pages;
    }
  }

  /**
   * Drops least recently used chunks the hook lets go until `pageCount` pages and a slot
   * are free. Chunks the hook must save first are asked to be saved only until the pages
   * being saved cover the need: past that, the scan only looks for chunks droppable now
   * (otherwise one allocation would start a save of every chunk in the cache).
   */
  #evict(pageCount: number): void {
    let freePages = this.#freePages.length;
    let freeSlots = this.#freeSlots.length;
    let comingPages = this.#hook.savingPages;
    const victims: string[] = [];
    for (const [key, slot] of this.oldestFirst()) {
      if (freePages >= pageCount && freeSlots > 0) break;
      if (this.table.pins(slot) !== 0) continue;
      const save = freePages + comingPages < pageCount;
      if (!this.#hook.mayEvict(key, slot, save)) {
        if (save) comingPages += this.#pageLists[slot]!.length;
        continue;
      }
      victims.push(key);
      freePages += this.#pageLists[slot]!.length;
      freeSlots++;
    }
    if (freePages < pageCount || freeSlots === 0) return; // evicting would not be enough: keep the data
    for (const key of victims) {
      const slot = this.#ready.peek(key)!;
      this.#ready.delete(key);
      this.free(slot);
      this.evictions++;
      this.#hook.evicted(key);
    }
  }

  /**
   * Throws if an invariant does not hold: each slot is free, loading or ready exactly
   * once; every page belongs to exactly one used slot or the free list; shared fields
   * agree with the bookkeeping; pins are never negative. `loads` is how many loads the
   * coordinator has in flight (each holds at most one loading slot).
   */
  checkInvariants(loads: number): void {
    const fail = (what: string): never => {
      throw new Error(`cache invariant violated: ${what}`);
    };
    const slotOwner = new Map<number, string>();
    for (const slot of this.#freeSlots) {
      if (slotOwner.has(slot)) fail(`slot ${slot} twice on the free list`);
      slotOwner.set(slot, 'free');
      if (this.table.field(slot, kStateField) !== SlotState.free) fail(`free slot ${slot} not in state free`);
      if (this.table.pins(slot) !== 0) fail(`free slot ${slot} is pinned`);
    }
    for (const [key, slot] of this.#ready.entries()) {
      if (slotOwner.has(slot)) fail(`slot ${slot} is ready (${key}) and ${slotOwner.get(slot)}`);
      slotOwner.set(slot, key);
      if (this.table.field(slot, kStateField) !== SlotState.ready)
        fail(`cached slot ${slot} not in state ready`);
    }
    let loadingSlots = 0;
    for (let slot = 0; slot < this.table.slotCount; slot++) {
      if (this.table.pins(slot as SlotIndex) < 0) fail(`slot ${slot} has negative pins`);
      if (this.table.field(slot as SlotIndex, kStateField) === SlotState.loading) {
        if (slotOwner.has(slot)) fail(`loading slot ${slot} is also ${slotOwner.get(slot)}`);
        loadingSlots++;
        slotOwner.set(slot, 'loading');
      }
    }
    if (slotOwner.size !== this.table.slotCount)
      fail(`${this.table.slotCount - slotOwner.size} slots are lost`);
    if (loadingSlots > loads) fail(`${loadingSlots} loading slots for ${loads} loads`);
    const pageOwner = new Int32Array(this.table.pageCount).fill(-1);
    for (const page of this.#freePages) {
      if (pageOwner[page] !== -1) fail(`page ${page} twice on the free list`);
      pageOwner[page] = this.table.slotCount;
    }
    for (let slot = 0; slot < this.table.slotCount; slot++) {
      const pages = this.#pageLists[slot];
      const state = this.table.field(slot as SlotIndex, kStateField);
      if ((pages === undefined) !== (state === SlotState.free))
        fail(`slot ${slot} page list does not match its state`);
      if (pages === undefined) continue;
      if (pages.length !== this.table.field(slot as SlotIndex, kPageCountField))
        fail(`slot ${slot} page count`);
      if (pages.length * this.table.pageBytes < this.table.field(slot as SlotIndex, kLengthField))
        fail(`slot ${slot} too small`);
      for (const page of pages) {
        if (pageOwner[page] !== -1) fail(`page ${page} owned twice`);
        pageOwner[page] = slot;
      }
    }
    if (pageOwner.includes(-1)) fail('a page is neither free nor owned');
  }
}

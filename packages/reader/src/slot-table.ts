/*
 * Shared memory of the chunk cache: a page arena and a slot table, both SharedArrayBuffers,
 * so that decode workers write plaintext in place and readers in any thread copy it out.
 *
 *   arena (cacheBytes = pageCount × pageBytes)
 *   ┌────────┬────────┬────────┬────────┬─────┬────────┐
 *   │ page 0 │ page 1 │ page 2 │ page 3 │ ... │ page P │   a chunk occupies ⌈length/pageBytes⌉
 *   └────────┴────────┴────────┴────────┴─────┴────────┘   pages, in any order (its page list)
 *
 *   slot table (Int32Array, SLOT_FIELDS per slot; slotCount = pageCount)
 *   ┌───────┬──────┬────────────┬────────┬───────┐
 *   │ state │ pins │ generation │ length │ pages │ … one row per slot (a cached or loading chunk)
 *   └───────┴──────┴────────────┴────────┴───────┘
 *
 *   header (Int32Array): [ releaseSeq ]  bumped and notified on every unpin, so the
 *   coordinator can Atomics.waitAsync for memory when every slot is pinned.
 *
 * Only the coordinator changes state, generation, length and page lists, and it pins a
 * slot before handing it to a reader. Readers only copy and unpin (Atomics.sub), from any
 * thread. A pinned slot is never evicted, so its pages cannot be reused under a reader.
 */

import { pageAlignedSharedBuffer } from './direct-io.js';

declare const SLOT: unique symbol;
declare const GENERATION: unique symbol;
/** Index of a row in the slot table. */
export type SlotIndex = number & { readonly [SLOT]: 'SlotIndex' };
/** Incremented each time a slot is reused for another chunk; leases carry it to catch misuse. */
export type Generation = number & { readonly [GENERATION]: 'Generation' };

export const kStateField = 0;
export const kPinsField = 1;
export const kGenerationField = 2;
export const kLengthField = 3;
export const kPageCountField = 4;
export const SLOT_FIELDS = 5;

export const kReleaseSeqField = 0;
export const HEADER_FIELDS = 1;

export const SlotState = { free: 0, loading: 1, ready: 2 } as const;
export type SlotState = (typeof SlotState)[keyof typeof SlotState];

/** Default page size: the smallest PBS fixed chunk size, so such chunks waste nothing. */
export const DEFAULT_PAGE_BYTES = 64 * 1024;

/** The SharedArrayBuffers of a cache; sent once to every worker and reader thread. */
export interface SharedCacheMemory {
  readonly arena: SharedArrayBuffer;
  readonly slots: SharedArrayBuffer;
  readonly header: SharedArrayBuffer;
  readonly pageBytes: number;
}

/**
 * A pinned, ready chunk handed to a reader: where its bytes are. The reader must call
 * {@link unpin} exactly once when it has copied what it needs.
 */
export interface Lease {
  readonly slot: SlotIndex;
  readonly generation: Generation;
  readonly length: number;
  /** Arena pages holding the chunk, in order. */
  readonly pages: Int32Array;
}

/** Typed views over the shared memory; cheap to build in any thread. */
export class SlotTable {
  readonly arena: Uint8Array;
  /**
   * The arena as a Buffer, for copies: Buffer#copy is a memmove, about 3× faster here than
   * TypedArray#set, which copies to and from shared memory with relaxed atomics.
   */
  readonly #arenaBytes: Buffer;
  readonly slots: Int32Array;
  readonly header: Int32Array;
  readonly pageBytes: number;
  readonly pageCount: number;
  readonly slotCount: number;

  constructor(readonly memory: SharedCacheMemory) {
    this.arena = new Uint8Array(memory.arena);
    this.#arenaBytes = Buffer.from(memory.arena);
    this.slots = new Int32Array(memory.slots);
    this.header = new Int32Array(memory.header);
    this.pageBytes = memory.pageBytes;
    this.pageCount = memory.arena.byteLength / memory.pageBytes;
    this.slotCount = this.slots.length / SLOT_FIELDS;
  }

  /** Allocates the shared memory of a cache of `pageCount` pages. */
  static allocate(pageCount: number, pageBytes: number): SharedCacheMemory {
    return {
      arena: pageAlignedSharedBuffer(pageCount * pageBytes).buffer,
      slots: new SharedArrayBuffer(pageCount * SLOT_FIELDS * 4),
      header: new SharedArrayBuffer(HEADER_FIELDS * 4),
      pageBytes,
    };
  }

  field(slot: SlotIndex, field: number): number {
    return Atomics.load(this.slots, slot * SLOT_FIELDS + field);
  }

  setField(slot: SlotIndex, field: number, value: number): void {
    Atomics.store(this.slots, slot * SLOT_FIELDS + field, value);
  }

  pins(slot: SlotIndex): number {
    return this.field(slot, kPinsField);
  }

  /** Pins held on all slots now (what tests check is back to 0 once every reader is done). */
  totalPins(): number {
    let pins = 0;
    for (let slot = 0; slot < this.slotCount; slot++) pins += this.pins(slot as SlotIndex);
    return pins;
  }

  pin(slot: SlotIndex): void {
    Atomics.add(this.slots, slot * SLOT_FIELDS + kPinsField, 1);
  }

  /** Drops one pin and wakes a coordinator that may be waiting for memory. */
  unpin(lease: Lease): void {
    this.unpinSlot(lease.slot);
  }

  /** {@link unpin} by slot, for the coordinator cleaning up after a reader that died. */
  unpinSlot(slot: SlotIndex): void {
    const before = Atomics.sub(this.slots, slot * SLOT_FIELDS + kPinsField, 1);
    if (before <= 0) throw new Error(`slot ${slot} unpinned more often than pinned`);
    Atomics.add(this.header, kReleaseSeqField, 1);
    Atomics.notify(this.header, kReleaseSeqField);
  }

  /**
   * Copies `length` bytes starting at `chunkOffset` of a leased chunk into `target`.
   * The lease's generation is checked first: a reader never reads a reused slot.
   */
  copyOut(lease: Lease, chunkOffset: number, target: Uint8Array, targetOffset: number, length: number): void {
    this.#checkRange(lease, chunkOffset, length);
    const pageBytes = this.pageBytes;
    let done = 0;
    while (done < length) {
      const at = chunkOffset + done;
      const page = lease.pages[Math.floor(at / pageBytes)]!;
      const inPage = at % pageBytes;
      const n = Math.min(pageBytes - inPage, length - done);
      const start = page * pageBytes + inPage;
      this.#arenaBytes.copy(target, targetOffset + done, start, start + n);
      done += n;
    }
  }

  /**
   * Views of `length` bytes at `chunkOffset` of a leased chunk, straight on the arena (no
   * copy): one per run of adjacent pages. Valid while the lease's pin is held; read-only.
   */
  viewsOf(lease: Lease, chunkOffset: number, length: number): Buffer[] {
    this.#checkRange(lease, chunkOffset, length);
    const pageBytes = this.pageBytes;
    const views: Buffer[] = [];
    let runStart = -1;
    let runEnd = -1;
    for (let done = 0; done < length; ) {
      const at = chunkOffset + done;
      const inPage = at % pageBytes;
      const n = Math.min(pageBytes - inPage, length - done);
      const start = lease.pages[Math.floor(at / pageBytes)]! * pageBytes + inPage;
      if (start !== runEnd) {
        if (runStart >= 0) views.push(this.#arenaBytes.subarray(runStart, runEnd));
        runStart = start;
      }
      runEnd = start + n;
      done += n;
    }
    if (runStart >= 0) views.push(this.#arenaBytes.subarray(runStart, runEnd));
    return views;
  }

  #checkRange(lease: Lease, chunkOffset: number, length: number): void {
    if (this.field(lease.slot, kGenerationField) !== lease.generation || this.pins(lease.slot) <= 0) {
      throw new Error(`internal: slot ${lease.slot} read without a valid pin`);
    }
    if (chunkOffset < 0 || length < 0 || chunkOffset + length > lease.length) {
      throw new RangeError(`copy of ${length} bytes at ${chunkOffset} is outside a chunk of ${lease.length}`);
    }
  }

  /**
   * The first `length` bytes of a slot being loaded as one view of the arena, when its
   * pages lie one after another (the usual case: the arena hands out a chunk's pages in
   * ascending order, and freed chunks give back whole runs); undefined when they do not.
   * A decoder may write the plaintext there directly (decode workers call this).
   */
  loadingView(pages: Int32Array, length: number): Buffer | undefined {
    const first = pages[0];
    if (first === undefined || length > pages.length * this.pageBytes) return undefined;
    for (let i = 1; i < pages.length; i++) if (pages[i] !== first + i) return undefined;
    const start = first * this.pageBytes;
    return this.#arenaBytes.subarray(start, start + length);
  }

  /** Copies `data` into the pages of a slot being loaded (decode workers call this). */
  copyIn(pages: Int32Array, data: Uint8Array): void {
    const pageBytes = this.pageBytes;
    const source = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    for (let i = 0, at = 0; at < data.byteLength; i++, at += pageBytes) {
      const page = pages[i]!;
      source.copy(this.#arenaBytes, page * pageBytes, at, Math.min(at + pageBytes, data.byteLength));
    }
  }
}

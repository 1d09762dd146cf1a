import type { SlotIndex } from './slot-table.js';

/**
 * The chunks a cache has lent (ChunkCache.lend): pins readers keep after their read returns
 * (an NBD reply written from the pages, a region stored from them), counted per slot, and
 * the bytes of those chunks, each chunk once. Lending stops at `limitBytes`, so replies
 * that clients never read cannot take the memory that loads need.
 */
export class LentChunks {
  readonly #pins = new Map<SlotIndex, number>();
  #bytes = 0;

  /** `chunkBytes(slot)`: the memory a slot's chunk holds (its pages). */
  constructor(
    readonly limitBytes: number,
    private readonly chunkBytes: (slot: SlotIndex) => number,
  ) {}

  /** Bytes of the chunks lent now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** One more lent pin on `slot`; false (nothing recorded) when it would pass the limit. */
  lend(slot: SlotIndex): boolean {
    const pins = this.#pins.get(slot) ?? 0;
    if (pins === 0) {
      const bytes = this.chunkBytes(slot);
      if (this.#bytes + bytes > this.limitBytes) return false;
      this.#bytes += bytes;
    }
    this.#pins.set(slot, pins + 1);
    return true;
  }

  /** One lent pin on `slot` is given back. */
  giveBack(slot: SlotIndex): void {
    const pins = this.#pins.get(slot);
    if (pins === undefined) throw new Error(`internal: slot ${slot} returned but not lent`);
    if (pins === 1) {
      this.#pins.delete(slot);
      this.#bytes -= this.chunkBytes(slot);
    } else this.#pins.set(slot, pins - 1);
  }

  /** Throws when a slot is lent more often than `pinsOf` says it is pinned, or the bytes disagree. */
  checkInvariants(pinsOf: (slot: SlotIndex) => number): void {
    let bytes = 0;
    for (const [slot, pins] of this.#pins) {
      if (pinsOf(slot) < pins)
        throw new Error(`cache invariant violated: slot ${slot} lent more than pinned`);
      bytes += this.chunkBytes(slot);
    }
    if (bytes !== this.#bytes || bytes > this.limitBytes)
      throw new Error(`cache invariant violated: lent bytes ${this.#bytes}, lent chunks hold ${bytes}`);
  }
}

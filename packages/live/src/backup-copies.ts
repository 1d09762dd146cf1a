/**
 * The target as live restore's second tier for chunks that occur more than once in an
 * image (the same 4 MiB in several regions: copies of a file, repeated blocks). Once one
 * of those regions holds the backup's bytes, another region of the same chunk is filled
 * by reading that one back instead of fetching and decoding the chunk again (the memory
 * cache may have evicted it long before: a 2 GiB restore through a 256 MiB cache does).
 *
 * A region is recorded when it was filled with the backup's bytes in this process, and
 * forgotten when the guest writes into it. Bytes read back are checked against the
 * chunk's digest before use (the drive does it): a guest write racing the read, or a
 * damaged target, costs a fetch, never a wrong byte.
 */
export class BackupCopies {
  /** Digest → the region holding that chunk as the backup has it (digests that occur more than once only). */
  readonly #regionOf = new Map<string, number>();
  /** Digests of chunks that occur in more than one region. */
  readonly #repeated: ReadonlySet<string>;

  /** `digestOf(i)`: region `i`'s chunk digest; `zero(i)`: region `i` is the all-zero chunk (never fetched). */
  constructor(
    regionCount: number,
    private readonly digestOf: (i: number) => string,
    zero: (i: number) => boolean,
  ) {
    const seen = new Set<string>();
    const repeated = new Set<string>();
    for (let i = 0; i < regionCount; i++) {
      if (zero(i)) continue;
      const digest = digestOf(i);
      if (seen.has(digest)) repeated.add(digest);
      else seen.add(digest);
    }
    this.#repeated = repeated;
  }

  /** Region `i` now holds its chunk as the backup has it (a fill from the backup). */
  filled(i: number): void {
    const digest = this.digestOf(i);
    if (this.#repeated.has(digest) && !this.#regionOf.has(digest)) this.#regionOf.set(digest, i);
  }

  /** Region `i` may no longer hold the backup's bytes (the guest writes into it, or they did not check out). */
  forget(i: number): void {
    const digest = this.digestOf(i);
    if (this.#regionOf.get(digest) === i) this.#regionOf.delete(digest);
  }

  /** Another region holding region `i`'s chunk as the backup has it, if one does. */
  holding(i: number): number | undefined {
    const j = this.#regionOf.get(this.digestOf(i));
    return j === i ? undefined : j;
  }

  /** Chunks with a region recorded (for tests and diagnostics). */
  get size(): number {
    return this.#regionOf.size;
  }
}

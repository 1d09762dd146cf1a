/**
 * What one chunk load cost, phase by phase: the answer to "where did this miss wait?".
 * A load waits for memory, then for its blob (a fetch, or a read of the spill file), then
 * for a decode thread, then for the decode; {@link ChunkCacheOptions.onLoad} gets one
 * record per load when it ends (`liverestore nbd --trace-loads FILE` writes them as JSON
 * lines, `bench qemu` sums them up).
 */
export interface ChunkLoadRecord {
  readonly digestHex: string;
  /** Plaintext bytes. */
  readonly bytes: number;
  /** A reader outside any sequential stream waited for it when it began; and by its end (one joined). */
  readonly urgentAtStart: boolean;
  readonly urgent: boolean;
  /** Where the bytes came from: the chunk source (fetch and decode) or the spill file. */
  readonly from: 'source' | 'spill';
  /** False when the load failed (every waiter got the error). */
  readonly ok: boolean;
  /** `performance.now()` when the load began (the first miss). */
  readonly startedMs: number;
  /** Milliseconds waiting for cache memory: pages, then bytes of the blob budget. */
  readonly memoryWaitMs: number;
  /** Of {@link memoryWaitMs}, the milliseconds waiting for cache pages (the rest waited for blob-budget bytes). */
  readonly pagesWaitMs: number;
  /** Milliseconds from memory to the blob in hand (or to the chunk read back from the spill file). */
  readonly blobMs: number;
  /** Milliseconds the blob waited for a decode thread (0 from the spill file, or decoded as it arrived). */
  readonly decodeWaitMs: number;
  /**
   * Milliseconds of the decode on its thread, CRC-32 to SHA-256 (0 from the spill file);
   * of a blob decoded as it arrived, from its last byte to the decode's end.
   */
  readonly decodeMs: number;
  /** A decode thread read the blob as it arrived (the rest of its decode is `decodeMs`). */
  readonly decodedArriving: boolean;
  /** Milliseconds from the first miss to the end. */
  readonly totalMs: number;
  /**
   * Milliseconds from the moment the load became urgent (its start, or a waiting reader
   * joining a readahead load) to its end: the longest a guest's read waited for it. 0
   * for a load that stayed background.
   */
  readonly urgentWaitMs: number;
}

/** The moments of one load, marked as it goes; {@link record} turns them into phases. */
export class LoadTimeline {
  readonly startedMs = performance.now();
  #pagesMs: number | undefined;
  #memoryMs: number | undefined;
  #urgentMs: number | undefined;
  #blobMs: number | undefined;
  #decodeStartMs: number | undefined;
  #decodeEndMs: number | undefined;
  #fromSpill = false;

  /** A waiting reader joined the load, which was not urgent before. */
  urgent(): void {
    this.#urgentMs ??= performance.now();
  }

  /** The load got its cache pages (its memory, unless blob-budget bytes follow). */
  pages(): void {
    this.#pagesMs = performance.now();
    this.#memoryMs = this.#pagesMs;
  }

  /** The load got the rest of its memory: its blob's bytes of the budget. */
  memory(): void {
    this.#memoryMs = performance.now();
  }

  /** The blob arrived (or, with `fromSpill`, the chunk was read back from the spill file). */
  blob(fromSpill = false): void {
    this.#blobMs = performance.now();
    this.#fromSpill = fromSpill;
  }

  /** A decode thread took the blob. */
  decodeStarted(): void {
    this.#decodeStartMs = performance.now();
  }

  /** The decode thread answered. */
  decodeEnded(): void {
    this.#decodeEndMs = performance.now();
  }

  /** The phases up to now; a phase the load never reached counts 0. */
  record(
    digestHex: string,
    bytes: number,
    urgentAtStart: boolean,
    urgent: boolean,
    ok: boolean,
  ): ChunkLoadRecord {
    const end = performance.now();
    const span = (from: number | undefined, to: number | undefined): number =>
      from === undefined || to === undefined ? 0 : to - from;
    const arriving =
      this.#decodeStartMs !== undefined && this.#blobMs !== undefined && this.#decodeStartMs < this.#blobMs;
    return {
      digestHex,
      bytes,
      urgentAtStart,
      urgent,
      from: this.#fromSpill ? 'spill' : 'source',
      ok,
      startedMs: this.startedMs,
      memoryWaitMs: span(this.startedMs, this.#memoryMs),
      pagesWaitMs: span(this.startedMs, this.#pagesMs),
      blobMs: span(this.#memoryMs, this.#blobMs),
      decodeWaitMs: arriving ? 0 : span(this.#blobMs, this.#decodeStartMs),
      decodeMs: span(arriving ? this.#blobMs : this.#decodeStartMs, this.#decodeEndMs),
      decodedArriving: arriving,
      totalMs: end - this.startedMs,
      urgentWaitMs: urgent ? span(urgentAtStart ? this.startedMs : this.#urgentMs, end) : 0,
    };
  }
}

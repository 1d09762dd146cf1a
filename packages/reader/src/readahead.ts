/**
 * Sequential-stream detection for readahead. A drive is read by several streams at once
 * (the live-restore copy job is sequential, the guest is random), so we track a few
 * streams by where each should continue, rather than only the last read.
 */

/** How many concurrent sequential streams one reader tracks. */
const TRACKED_STREAMS = 4;

interface Stream {
  /** Offset where the next sequential read of this stream starts. */
  next: number;
  /** Sequential reads seen in a row. */
  streak: number;
  /** Highest chunk already prefetched for this stream. */
  prefetchedThrough: number;
  /** For replacing the least recently used stream. */
  lastUse: number;
}

export class ReadaheadTracker {
  readonly #streams: Stream[] = [];
  #clock = 0;

  /** @param windowChunks chunks to keep loading ahead of a sequential stream (0 = off). */
  constructor(readonly windowChunks: number) {}

  /**
   * Records a read of [start, end) touching chunks up to `lastChunk`; returns the chunk
   * range to prefetch (`from` ≤ `to`), or undefined for a random read.
   */
  observe(start: number, end: number, lastChunk: number): { from: number; to: number } | undefined {
    if (this.windowChunks <= 0) return undefined;
    this.#clock++;
    let stream = this.#streams.find((s) => s.next === start);
    if (stream === undefined) {
      stream = { next: end, streak: 0, prefetchedThrough: lastChunk, lastUse: this.#clock };
      if (this.#streams.length < TRACKED_STREAMS) this.#streams.push(stream);
      else {
        const oldest = this.#streams.reduce((a, b) => (a.lastUse <= b.lastUse ? a : b));
        this.#streams[this.#streams.indexOf(oldest)] = stream;
      }
      return undefined;
    }
    stream.next = end;
    stream.streak++;
    stream.lastUse = this.#clock;
    const from = Math.max(stream.prefetchedThrough + 1, lastChunk + 1);
    const to = lastChunk + this.windowChunks;
    if (from > to) return undefined;
    stream.prefetchedThrough = to;
    return { from, to };
  }
}

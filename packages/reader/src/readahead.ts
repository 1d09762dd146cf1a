/**
 * Sequential-stream detection for readahead. A drive is read by several streams at once
 * (the live-restore copy job is sequential, the guest is random), so we track a few
 * streams by where each should continue, rather than only the last read.
 *
 * The window ramps up with the stream, as the kernel's readahead does: a stream that has
 * crossed k chunk boundaries gets min(k, window) chunks ahead. Two or three adjacent guest
 * reads inside one chunk prefetch nothing (a full window there would fetch 32 MiB for a
 * few KiB), while a copy job reading the disk in order reaches the full window after
 * `window` chunks.
 *
 * Streams are tracked even with readahead off: whether a read continues one tells the
 * cache whether it wants throughput (a sequential stream) or latency (a random read).
 */

/** How many concurrent sequential streams one reader tracks. */
const TRACKED_STREAMS = 4;

interface Stream {
  /** Offset where the next sequential read of this stream starts. */
  next: number;
  /** First chunk the stream read. */
  firstChunk: number;
  /** Highest chunk already prefetched for this stream. */
  prefetchedThrough: number;
  /** For replacing the least recently used stream. */
  lastUse: number;
}

export class ReadaheadTracker {
  readonly #streams: Stream[] = [];
  #clock = 0;
  /** Whether the last observed read continued a tracked stream. */
  sequential = false;

  /** @param windowChunks most chunks to keep loading ahead of a sequential stream (0 = off). */
  constructor(readonly windowChunks: number) {}

  /**
   * Records a read of [start, end) touching chunks `firstChunk` … `lastChunk`; returns the
   * chunk range to prefetch (`from` ≤ `to`), or undefined (a random read, a stream still
   * inside its first chunk, a window already loading, or readahead off). Sets
   * {@link sequential}.
   */
  observe(
    start: number,
    end: number,
    firstChunk: number,
    lastChunk: number,
  ): { from: number; to: number } | undefined {
    this.#clock++;
    let stream = this.#streams.find((s) => s.next === start);
    this.sequential = stream !== undefined;
    if (stream === undefined) {
      stream = { next: end, firstChunk, prefetchedThrough: lastChunk, lastUse: this.#clock };
      if (this.#streams.length < TRACKED_STREAMS) this.#streams.push(stream);
      else {
        const oldest = this.#streams.reduce((a, b) => (a.lastUse <= b.lastUse ? a : b));
        this.#streams[this.#streams.indexOf(oldest)] = stream;
      }
      return undefined;
    }
    stream.next = end;
    stream.lastUse = this.#clock;
    if (this.windowChunks <= 0) return undefined;
    const ahead = Math.min(this.windowChunks, lastChunk - stream.firstChunk);
    const from = Math.max(stream.prefetchedThrough + 1, lastChunk + 1);
    const to = lastChunk + ahead;
    if (from > to) return undefined;
    stream.prefetchedThrough = to;
    return { from, to };
  }
}

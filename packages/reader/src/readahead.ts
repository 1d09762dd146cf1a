/**
 * Sequential-stream detection for readahead. A drive is read by several streams at once
 * (the live-restore copy job or QEMU's block-stream is sequential, the guest is random),
 * so we track a few streams by where each should continue, rather than only the last read.
 *
 * A read that continues no stream is a candidate: it becomes a stream when a later read
 * continues it, and reads from the one after that on are sequential. Candidates and streams are kept apart, so that random reads only ever
 * displace other candidates: a guest's queue of random reads between two reads of a
 * block-stream job on the same NBD connection (16 and more at queue depth 16) does not
 * push the stream out and make its reads look random.
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
/**
 * How many recent reads that continued nothing are remembered as possible stream starts:
 * enough to span a guest's queue of random reads (QEMU's NBD client sends up to 16 at
 * once per connection; a second client doubles it) between two reads of a stream.
 */
const TRACKED_CANDIDATES = 64;

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
  /** Reads that continued nothing, oldest first: where a stream may continue. */
  readonly #candidates: Stream[] = [];
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
    const continued = this.#streams.find((s) => s.next === start);
    // A read continuing a candidate makes it a stream but is not sequential yet: a random
    // read that happens to start where an earlier one ended (1 in 128 for 64 aligned
    // candidates on a 512 MiB disk read in 64 KiB blocks) must not lose its urgency.
    this.sequential = continued !== undefined;
    const stream = continued ?? this.#promoteCandidate(start);
    if (stream === undefined) {
      if (this.#candidates.length === TRACKED_CANDIDATES) this.#candidates.shift();
      this.#candidates.push({ next: end, firstChunk, prefetchedThrough: lastChunk, lastUse: this.#clock });
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

  /** The candidate that a read at `start` continues, made a stream (the least recently used stream makes room). */
  #promoteCandidate(start: number): Stream | undefined {
    const at = this.#candidates.findIndex((c) => c.next === start);
    if (at < 0) return undefined;
    const [stream] = this.#candidates.splice(at, 1) as [Stream];
    if (this.#streams.length < TRACKED_STREAMS) this.#streams.push(stream);
    else {
      const oldest = this.#streams.reduce((a, b) => (a.lastUse <= b.lastUse ? a : b));
      this.#streams[this.#streams.indexOf(oldest)] = stream;
    }
    return stream;
  }
}

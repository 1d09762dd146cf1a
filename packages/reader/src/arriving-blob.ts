/*
 * A chunk decoded while its blob arrives (the cache's side; the thread's is
 * decode-worker.ts's decodeArriving, the codec's format's ArrivingChunk). When a guest's
 * miss gets its answer head and a decode thread is idle with no decode waiting, the blob is
 * read into shared memory and that thread starts on it at once: the fetch reports each
 * arrival (BodyMemory.arrived, from the body's cursor) and wakes it, and the decode ends a
 * moment after the last byte instead of starting then. It costs 6–10 % more CPU per chunk
 * than a decode of the whole blob (bench codecs), so it runs only where a core would
 * otherwise wait: an urgent load, an idle thread, nobody queued behind it.
 */
import type { BodyMemory } from '@liverestore/format/internal';
import { sameView } from './byte-views.js';
import type { FetchHints } from './chunk-source.js';
import { ARRIVED, type DecodeResult, GIVEN_UP } from './decode-worker.js';

/** Blobs smaller than this are decoded whole: too short to overlap anything. */
export const MIN_ARRIVING_BLOB_BYTES = 256 * 1024;

/** Shared memory for arriving blobs, kept for the next one (at most one per decode thread is in use). */
export class SharedBlobMemory {
  readonly #free: SharedArrayBuffer[] = [];

  /** A shared buffer of at least `bytes`. */
  take(bytes: number): SharedArrayBuffer {
    const at = this.#free.findIndex((b) => b.byteLength >= bytes);
    return at >= 0 ? this.#free.splice(at, 1)[0]! : new SharedArrayBuffer(bytes);
  }

  /** A buffer nobody reads or writes any more. */
  give(buffer: SharedArrayBuffer, keep: number): void {
    if (this.#free.length < keep) this.#free.push(buffer);
  }
}

/** How an arriving decode starts: on an idle thread, or not at all (undefined). */
export type StartArriving = (
  blob: Uint8Array,
  progress: Int32Array,
) => Promise<DecodeResult | 'given up'> | undefined;

/**
 * One fetch attempt of an urgent load, offered to decode as it arrives: its
 * {@link hints} hand the source memory that, for the first answer of a size worth it,
 * is shared with a decode thread started there and then.
 */
export class ArrivingBlob {
  readonly progress = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  readonly hints: FetchHints;
  readonly #memory: SharedBlobMemory;
  /** The blob's shared memory while a thread may read it (until {@link release}). */
  #view: Uint8Array | undefined;
  #decode: Promise<DecodeResult | 'given up'> | undefined;
  #memoryCalls = 0;

  constructor(
    /** The load's hints; its blob memory (the blob pool's) is what a blob not decoded as it arrives takes. */
    load: FetchHints & { onUrgent(listener: () => void): () => void },
    /** The largest blob of the chunk (blobChargeBytes). */
    chargeBytes: number,
    memory: SharedBlobMemory,
    start: StartArriving,
  ) {
    this.#memory = memory;
    const blobMemory: BodyMemory = (bytes) => {
      this.#memoryCalls++;
      if (this.#memoryCalls > 1) this.giveUp(); // the source started over with a new answer
      if (this.#memoryCalls === 1 && bytes >= MIN_ARRIVING_BLOB_BYTES && bytes <= chargeBytes) {
        const buffer = memory.take(chargeBytes);
        const view = new Uint8Array(buffer, 0, bytes);
        this.#decode = start(view, this.progress);
        if (this.#decode !== undefined) {
          this.#view = view;
          return view;
        }
        memory.give(buffer, Number.POSITIVE_INFINITY);
      }
      return load.blobMemory?.(bytes) ?? new Uint8Array(bytes);
    };
    blobMemory.arrived = (bytes) => {
      if (this.#view !== undefined && Atomics.load(this.progress, GIVEN_UP) === 0) this.#arrived(bytes);
    };
    this.hints = {
      get urgent() {
        return load.urgent;
      },
      onUrgent: (listener) => load.onUrgent(listener),
      blobMemory,
    };
  }

  /** `bytes` of the blob are in its memory: the thread reads on. */
  #arrived(bytes: number): void {
    Atomics.store(this.progress, ARRIVED, bytes);
    Atomics.notify(this.progress, ARRIVED);
  }

  /** The decode thread stops at its next look (a failed or restarted fetch). */
  giveUp(): void {
    Atomics.store(this.progress, GIVEN_UP, 1);
    Atomics.notify(this.progress, ARRIVED);
  }

  /**
   * The fetch has ended with `blob` (or failed: undefined): the decode's result when `blob`
   * is the one it read as it arrived, else undefined once the thread has stopped (decode
   * the blob as usual then).
   */
  async settle(blob: Uint8Array | undefined): Promise<DecodeResult | undefined> {
    if (this.#decode === undefined) return undefined;
    const view = this.#view!;
    // Every byte is there, whether or not the source reported the last of them.
    if (blob !== undefined && sameView(blob, view)) this.#arrived(view.byteLength);
    else this.giveUp();
    const result = await this.#decode;
    return result === 'given up' ? undefined : result;
  }

  /** Once settled and the blob no longer needed: its shared memory may hold the next one. */
  release(keep: number): void {
    if (this.#view !== undefined) this.#memory.give(this.#view.buffer as SharedArrayBuffer, keep);
    this.#view = undefined;
  }
}

import { dirname } from 'node:path';
import { type CryptConfig, chunkDigest, toHex } from '@liverestore/format';
import { fsyncDirs } from './atomic-write.js';
import type { Datastore } from './datastore.js';
import type { ChunkEncoder } from './encode-pool.js';
import { sweepStaleTemps } from './temp-files.js';

/** Chunks being encoded or written beyond the encoder's parallelism (keeps the disk busy too). */
const EXTRA_IN_FLIGHT = 4;

/** Shared state of one backup run: dedup set, counters, bounded write queue. */
export class ChunkSink {
  readonly #known = new Set<string>();
  /** Chunk directories already swept of stale temps (see #sweepOnce). */
  readonly #swept = new Set<string>();
  readonly #zeroDigests = new Map<number, Buffer>();
  readonly #jobs = new Set<Promise<void>>();
  /** Directories whose entries new chunks changed: fsynced once, before the index names them. */
  readonly #dirtyDirs = new Set<string>();
  #failure: unknown;
  chunksNew = 0;
  chunksReused = 0;
  bytesWritten = 0;

  constructor(
    readonly store: Datastore,
    readonly encoder: ChunkEncoder,
    readonly crypt: CryptConfig | undefined,
  ) {}

  /**
   * Sweeps the temp chunk files of dead processes (an interrupted backup) from a chunk
   * directory, the first time this backup writes into it: one readdir per directory
   * written, none for the chunks that dedup skips.
   */
  async #sweepOnce(dir: string): Promise<void> {
    if (this.#swept.has(dir)) return;
    this.#swept.add(dir);
    await sweepStaleTemps(dir);
  }

  /** Digest of `length` zero bytes, computed once per length: every zero chunk costs one compare. */
  zeroDigest(length: number): Buffer {
    let digest = this.#zeroDigests.get(length);
    if (digest === undefined) {
      digest = chunkDigest(Buffer.alloc(length), this.crypt);
      this.#zeroDigests.set(length, digest);
    }
    return digest;
  }

  /**
   * Stores one chunk unless known; returns its digest and whether it was new. A new
   * chunk's memory is handed to the encoder: the caller must not reuse `data`.
   */
  async add(data: Buffer, isZero: boolean): Promise<{ digest: Buffer; isNew: boolean }> {
    if (this.#failure !== undefined) throw this.#failure;
    const digest = isZero ? this.zeroDigest(data.byteLength) : chunkDigest(data, this.crypt);
    const hex = toHex(digest);
    if (this.#known.has(hex) || (await this.store.hasChunk(hex))) {
      this.#known.add(hex);
      this.chunksReused++;
      return { digest, isNew: false };
    }
    this.#known.add(hex);
    this.chunksNew++;
    const job = this.encoder
      .encode(data)
      .then(async (blob) => {
        this.bytesWritten += blob.byteLength;
        await this.#sweepOnce(dirname(this.store.chunkPath(hex)));
        await this.store.insertChunk(hex, blob, this.#dirtyDirs);
      })
      .catch((err: unknown) => {
        this.#failure ??= err;
      });
    this.#jobs.add(job);
    void job.finally(() => this.#jobs.delete(job));
    if (this.#jobs.size >= this.encoder.parallelism + EXTRA_IN_FLIGHT) await Promise.race(this.#jobs);
    return { digest, isNew: true };
  }

  /** Waits for every chunk write and makes the new chunks durable; throws the first error. */
  async flush(): Promise<void> {
    await Promise.all(this.#jobs);
    if (this.#failure !== undefined) throw this.#failure;
    await fsyncDirs(this.#dirtyDirs);
    this.#dirtyDirs.clear();
  }
}

/** True when `buf` is all zero bytes (`zeros` is at least as long). */
export function isAllZero(buf: Buffer, zeros: Buffer): boolean {
  return buf.equals(zeros.subarray(0, buf.byteLength));
}

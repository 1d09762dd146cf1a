import { type CryptConfig, chunkDigest, toHex } from '@liverestore/format';
import type { BackupTarget } from './backup-target.js';
import type { ChunkEncoder } from './encode-pool.js';

/** Chunks being encoded or written beyond the encoder's parallelism (keeps the disk busy too). */
const EXTRA_IN_FLIGHT = 4;

/** Shared state of one backup run: dedup set, counters, bounded write queue. */
export class ChunkSink {
  readonly #known = new Set<string>();
  readonly #zeroDigests = new Map<number, Buffer>();
  readonly #jobs = new Set<Promise<void>>();
  #failure: unknown;
  chunksNew = 0;
  chunksReused = 0;
  bytesWritten = 0;

  constructor(
    readonly target: BackupTarget,
    readonly encoder: ChunkEncoder,
    readonly crypt: CryptConfig | undefined,
  ) {}

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
    if (this.#known.has(hex) || (await this.target.hasChunk(hex))) {
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
        await this.target.insertChunk(hex, blob);
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
    await this.target.flushChunks();
  }
}

/** True when `buf` is all zero bytes (`zeros` is at least as long). */
export function isAllZero(buf: Buffer, zeros: Buffer): boolean {
  return buf.equals(zeros.subarray(0, buf.byteLength));
}

import type {
  ArrivingDecodeTask,
  DecodeResult,
  DecodeTask,
  FileDecodeResult,
  FileDecodeTask,
} from './decode-worker.js';
import type { ChunkDecoder } from './decoder.js';

/** What the scheduler reads of a load: whether a reader outside any sequential stream waits for it (live). */
export interface DecodePriority {
  readonly urgent: boolean;
  /** Hears when a thread takes the job (a load's timeline). */
  decodeStarted?(): void;
}

interface DecodeJob {
  readonly priority: DecodePriority;
  /** Hands the task to the decoder (into a slot or into a file). */
  start(decoder: ChunkDecoder): Promise<unknown>;
  resolve(result: unknown): void;
  reject(err: unknown): void;
}

/**
 * Hands decodes to the decoder's threads, at most one per thread, urgent first; the rest
 * wait here rather than in the pool's FIFO, so a guest's miss never waits behind every
 * prefetch. Background decodes also wait while an urgent blob is on its way
 * (`urgentFetching`): the guest's miss then finds a thread free and the cores idle when its
 * blob arrives, and the background work waits about one blob's transfer time, during which
 * the source holds background fetches back too.
 */
export class DecodeScheduler {
  readonly #decoder: ChunkDecoder;
  readonly #urgentFetching: () => boolean;
  readonly #queue: DecodeJob[] = [];
  /** Decodes on a thread now. */
  #running = 0;
  readonly #idle: (() => void)[] = [];

  constructor(decoder: ChunkDecoder, urgentFetching: () => boolean) {
    this.#decoder = decoder;
    this.#urgentFetching = urgentFetching;
  }

  /**
   * Queues a decode; it starts when a thread is free and its turn has come. The caller
   * must call {@link pump} once it has handled the result (see #threadFreed).
   */
  decode(priority: DecodePriority, task: DecodeTask, takeBlob: boolean): Promise<DecodeResult> {
    return this.#enqueue(priority, (decoder) => decoder.decode(task, takeBlob));
  }

  /** {@link decode} of a chunk whose plaintext goes straight to a file (a restore). */
  decodeToFile(priority: DecodePriority, task: FileDecodeTask, takeBlob: boolean): Promise<FileDecodeResult> {
    return this.#enqueue(priority, (decoder) => decoder.decodeToFile(task, takeBlob));
  }

  /**
   * Starts decoding a blob while it arrives, but only on a thread that is idle now with no
   * decode waiting for one: such a decode holds its thread until the blob's last byte, so
   * it must never make another wait. Undefined when it may not start (then the blob is
   * decoded as usual once it is all there). The caller must call {@link pump} once it has
   * handled the result, as after {@link decode}.
   */
  decodeArriving(
    priority: DecodePriority,
    task: ArrivingDecodeTask,
  ): Promise<DecodeResult | 'given up'> | undefined {
    const decodeArriving = this.#decoder.decodeArriving;
    if (decodeArriving === undefined || this.#queue.length > 0) return undefined;
    if (this.#running >= Math.max(1, this.#decoder.threads)) return undefined;
    return this.#start(priority, (decoder) => decodeArriving.call(decoder, task));
  }

  /** Runs a decode on a thread now: counted while it runs, the thread freed once it settles. */
  #start<R>(priority: DecodePriority, start: (decoder: ChunkDecoder) => Promise<R>): Promise<R> {
    this.#running++;
    priority.decodeStarted?.();
    const done = start(this.#decoder);
    void done.then(
      () => this.#threadFreed(),
      () => this.#threadFreed(),
    );
    return done;
  }

  #enqueue<R>(priority: DecodePriority, start: (decoder: ChunkDecoder) => Promise<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ priority, start, resolve: resolve as (result: unknown) => void, reject });
      this.pump();
    });
  }

  /** Starts what may start now; call when a job became urgent or an urgent fetch ended. */
  pump(): void {
    const threads = Math.max(1, this.#decoder.threads);
    while (this.#running < threads && this.#queue.length > 0) {
      const urgent = this.#queue.findIndex((job) => job.priority.urgent);
      if (urgent < 0 && this.#urgentFetching()) return;
      // The first urgent job, else the oldest (findIndex gives -1 when none is urgent).
      const job = this.#queue.splice(Math.max(urgent, 0), 1)[0]!;
      this.#start(job.priority, job.start).then(job.resolve, job.reject);
    }
  }

  /**
   * A thread is free again. The next decode is not started here but by the owner's
   * {@link pump} once it has dealt with the result: the load that just ended may hand its
   * memory to an urgent load, which must count as on its way before background decodes
   * are looked at.
   */
  #threadFreed(): void {
    if (--this.#running === 0) for (const done of this.#idle.splice(0)) done();
  }

  /** Decodes waiting for a thread or for their turn (held while an urgent blob is on its way). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Decodes on a thread now. */
  get running(): number {
    return this.#running;
  }

  /** Rejects every decode still waiting for a thread. */
  rejectQueued(reason: unknown): void {
    for (const job of this.#queue.splice(0)) job.reject(reason);
  }

  /** Resolves once no decode is on a thread (decodes take milliseconds). */
  async idle(): Promise<void> {
    if (this.#running > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
  }
}

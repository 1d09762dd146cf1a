import { linkedController, onAbort, Semaphore } from '@liverestore/format/internal';
import type { FetchHints } from './chunk-source.js';
import { abortError } from './errors.js';

/*
 * Who gets the link: urgent fetches (a reader waits) go first. An urgent fetch is one
 * request. A background fetch (readahead, sequential streams) runs in one of a few lanes,
 * so the blobs it holds do not grow with the number of readers, and yields: it starts only
 * while no urgent fetch is in flight, and when one starts, background requests on the wire
 * are cut and later resumed from the first byte not yet received. An urgent fetch thus has
 * the link to itself after about one round trip, instead of sharing it with megabytes of
 * readahead. A background fetch that becomes urgent gets its rest in one urgent request.
 *
 * The scheduler knows nothing of HTTP or of what is fetched: a fetch is a
 * {@link BlobRequest}, a closure over its key that asks for a whole blob or for its rest.
 */

/** A blob fetched in parts and possibly resumed: what has arrived so far. */
export interface BlobPiece {
  /** First byte not received yet: where the next request starts. */
  start: number;
  /** The whole blob, allocated once the first answer names its size. */
  blob: Uint8Array | undefined;
}

/**
 * One request for the blob of one key (a chunk digest, an object key). With `piece`
 * undefined it resolves with the whole blob. With a piece, it asks for the rest from
 * `piece.start` (HTTP: `Range: bytes=START-`), writes it into `piece.blob` (allocating it
 * once the size is known), advances `piece.start` as bytes arrive — so a cut request is
 * resumed, not refetched — and resolves undefined; or, when the server sends the whole
 * blob instead, resolves with it. When `yieldTo` fires it must stop and reject with
 * `yieldTo.reason`. Retries and deadlines are the request's business (see HttpTransport).
 */
export type BlobRequest = (
  piece: BlobPiece | undefined,
  yieldTo: AbortSignal | undefined,
) => Promise<Uint8Array | undefined>;

/** Options of {@link LinkScheduler}. */
export interface LinkSchedulerOptions {
  /** Background fetches in flight at most (lanes). */
  readonly backgroundFetches: number;
  /** Fires when the source closes; background fetches still waiting reject with its reason. */
  readonly closed: AbortSignal;
}

/** A background request stopped to make way for an urgent fetch (never reaches a caller). */
const YIELDED = new Error('the request made way for an urgent fetch');

/**
 * Urgent/background lanes over one link, for any source whose requests can be resumed
 * from a byte offset. To reuse it (an S3 source): create one per source with
 * `{ backgroundFetches, closed: transport.closed }`, and per fetch pass a
 * {@link BlobRequest} that calls your transport with the piece's Range and the
 * `yieldTo` signal, e.g. `(piece, yieldTo) => transport.get(path, kind, { signal, piece,
 * yieldTo })`: `urgent(request)` for a fetch a reader waits for, `background(request,
 * hints, signal)` for readahead (hints is the cache's live view; when it turns urgent the
 * rest comes in one urgent request).
 */
export class LinkScheduler {
  /** Background fetches in flight at most. */
  readonly #lanes: Semaphore;
  readonly #closed: AbortSignal;
  /** Urgent fetches started and not finished: while any is, background fetches wait. */
  #urgentFetches = 0;
  /** Background fetches waiting for the urgent fetches to end. */
  readonly #linkWaiters = new Set<() => void>();
  /** Background requests on the wire: aborted (and resumed later) when an urgent fetch starts. */
  readonly #yielding = new Set<AbortController>();

  constructor(options: LinkSchedulerOptions) {
    this.#lanes = new Semaphore(options.backgroundFetches);
    this.#closed = options.closed;
  }

  /** The whole blob, in one request that background fetches make way for. */
  async urgent(request: BlobRequest): Promise<Uint8Array> {
    return (await this.#urgent(request, undefined))!;
  }

  /**
   * A blob fetched in a lane, only while no urgent fetch is in flight, resumed where it was
   * cut; once `hints.urgent` is true, the rest comes in one urgent request. `signal` is the
   * caller's (the request closure should honour it too): it stops the waits here.
   */
  async background(
    request: BlobRequest,
    hints: FetchHints,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    const stop = linkedController([signal, this.#closed]);
    try {
      const releaseLane = await this.#lanes.acquire(stop.signal).catch(() => {
        throw this.#stopError(signal);
      });
      try {
        const piece: BlobPiece = { start: 0, blob: undefined };
        for (;;) {
          if (piece.blob !== undefined && piece.start === piece.blob.byteLength) return piece.blob;
          if (hints.urgent) return (await this.#urgent(request, piece)) ?? piece.blob!;
          await this.#linkIdle(stop.signal).catch(() => {
            throw this.#stopError(signal);
          });
          const yieldTo = new AbortController();
          this.#yielding.add(yieldTo);
          try {
            return (await request(piece, yieldTo.signal)) ?? piece.blob!;
          } catch (err) {
            if (err !== YIELDED) throw err;
          } finally {
            this.#yielding.delete(yieldTo);
          }
        }
      } finally {
        releaseLane();
      }
    } finally {
      stop.dispose();
    }
  }

  /** One request (of the rest of `piece` when given) that background fetches make way for. */
  async #urgent(request: BlobRequest, piece: BlobPiece | undefined): Promise<Uint8Array | undefined> {
    if (this.#urgentFetches++ === 0) {
      for (const yielding of this.#yielding) yielding.abort(YIELDED);
    }
    try {
      return await request(piece, undefined);
    } finally {
      if (--this.#urgentFetches === 0) {
        for (const wake of [...this.#linkWaiters]) wake();
      }
    }
  }

  /** Resolves once no urgent fetch is in flight. */
  #linkIdle(signal: AbortSignal): Promise<void> {
    if (this.#urgentFetches === 0) return Promise.resolve();
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        this.#linkWaiters.delete(wake);
        unregister();
        resolve();
      };
      const unregister = onAbort(signal, () => {
        this.#linkWaiters.delete(wake);
        reject(signal.reason);
      });
      this.#linkWaiters.add(wake);
    });
  }

  /** Why a wait stopped early: the caller's abort or the source's close. */
  #stopError(signal: AbortSignal | undefined): unknown {
    if (signal?.aborted === true) return abortError(signal);
    return this.#closed.reason;
  }
}

/*
 * The small async pieces every package of this repository needs, in one place: an injectable
 * clock, an abortable sleep, a FIFO semaphore with abortable waits, abort callbacks that
 * share one listener per signal, linked abort controllers, and "wait for all, fail with the
 * first". Exposed only through `@liverestore/format/internal` (not a stable API).
 */

/** Time as schedulers see it (milliseconds); tests drive a fake one instead of sleeping. */
export interface Clock {
  now(): number;
  /** Calls `fn` once after `ms`; returns a function that cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};

/**
 * Abort callbacks by signal, with one real listener per signal: a restore has dozens of
 * fetches in flight on the same caller signal (and every request links to a source's
 * close signal), which would otherwise pile up listeners and trigger Node's leak warning.
 */
const abortCallbacks = new WeakMap<AbortSignal, Set<() => void>>();

/** Calls `fn` once when `signal` aborts; returns the function that unregisters it. */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let callbacks = abortCallbacks.get(signal);
  if (callbacks === undefined) {
    const created = new Set<() => void>();
    callbacks = created;
    abortCallbacks.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        const pending = [...created];
        created.clear();
        for (const callback of pending) callback();
      },
      { once: true },
    );
  }
  const registered = callbacks;
  registered.add(fn);
  return () => registered.delete(fn);
}

/** A timer of `clock` as a promise that an AbortSignal cuts short (rejecting with its reason). */
export function sleep(ms: number, signal?: AbortSignal, clock: Clock = systemClock): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const unregister =
      signal === undefined
        ? undefined
        : onAbort(signal, () => {
            cancel();
            reject(signal.reason);
          });
    const cancel = clock.setTimer(() => {
      unregister?.();
      resolve();
    }, ms);
  });
}

/** An AbortController that also aborts (with the same reason) when any of `parents` does. */
export function linkedController(parents: readonly (AbortSignal | undefined)[]): {
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
  /** Unlinks from the parents: long-lived ones must not collect a listener per child. */
  dispose(): void;
} {
  const controller = new AbortController();
  const unlink: (() => void)[] = [];
  for (const parent of parents) {
    if (parent === undefined) continue;
    if (parent.aborted) {
      controller.abort(parent.reason);
      break;
    }
    unlink.push(onAbort(parent, () => controller.abort(parent.reason)));
  }
  return {
    signal: controller.signal,
    abort: (reason) => controller.abort(reason),
    dispose: () => {
      for (const fn of unlink.splice(0)) fn();
    },
  };
}

/**
 * A counting semaphore, FIFO: bounds requests on the wire, background fetches, region
 * buffers held by guest fills. A wait ends early (rejecting with the reason, holding
 * nothing) when its signal aborts.
 */
export class Semaphore {
  #free: number;
  readonly #waiters: { grant(): void }[] = [];

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError('slots must be a positive integer');
    this.#free = slots;
  }

  /** Resolves with the release function (calling it twice is harmless) once a slot is held. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0 && this.#waiters.length === 0) {
      this.#free--;
      return Promise.resolve(this.#releaser());
    }
    return new Promise<() => void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          unregister?.();
          resolve(this.#releaser());
        },
      };
      const unregister =
        signal === undefined
          ? undefined
          : onAbort(signal, () => {
              const at = this.#waiters.indexOf(waiter);
              if (at >= 0) this.#waiters.splice(at, 1);
              reject(signal.reason);
            });
      this.#waiters.push(waiter);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next === undefined) this.#free++;
      else next.grant();
    };
  }
}

/** Waits for every promise; rejects with the first rejection (in order) once all have settled. */
export async function settleAll(pending: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(pending);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

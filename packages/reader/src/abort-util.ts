/*
 * Abort-signal plumbing of the HTTP source: many fetches share one caller signal and one
 * close signal, so every wait here registers through one listener per signal.
 */

/**
 * Abort callbacks by signal, with one real listener per signal: a restore has dozens of
 * fetches in flight on the same caller signal (and every request links to the source's
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

/** Sleeps `ms`, or rejects as soon as `signal` fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const unregister = onAbort(signal, () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
    const timer = setTimeout(() => {
      unregister();
      resolve();
    }, ms);
  });
}

/** An AbortController that also aborts (with the same reason) when any of `parents` does. */
export function linkedController(parents: readonly (AbortSignal | undefined)[]): {
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
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
    // Long-lived parents (the source's close signal) must not collect a listener per request.
    dispose: () => {
      for (const fn of unlink.splice(0)) fn();
    },
  };
}

/** A FIFO counting semaphore whose waits can be aborted. */
export class Semaphore {
  #free: number;
  readonly #waiters: { resolve(): void }[] = [];

  constructor(permits: number) {
    this.#free = permits;
  }

  acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0 && this.#waiters.length === 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          unregister();
          resolve();
        },
      };
      const unregister = onAbort(signal, () => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(signal.reason);
      });
      this.#waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free++;
    else next.resolve();
  }
}

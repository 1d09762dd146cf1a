/*
 * A clock for tests of code that takes an injected clock (`Clock` of
 * `@liverestore/format/internal`: `now()` and `setTimer(fn, ms)`): time moves only when the
 * test moves it, so a test observes timers being set and fires them instead of sleeping.
 * Two ways to drive it: `advance`/`fireNext` move time and fire what falls due, in order
 * (schedulers); `nextTimer(match)` waits for a timer of a given duration and the test
 * fires that one (deadlines and backoffs of a retrying request).
 */
import { withTimeout } from './qmp.js';

/** A timer set on a {@link FakeClock}. */
export interface FakeTimer {
  /** The duration it was set for. */
  readonly ms: number;
  /** When it falls due on the clock's time. */
  readonly due: number;
  /** Fires it now (once; not if cancelled), without moving the clock. */
  fire(): void;
}

/** Lets every pending promise callback run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A clock that moves only when told (milliseconds, from 0). */
export class FakeClock {
  #now = 0;
  readonly #armed = new Set<FakeTimer & { readonly fn: () => void }>();
  readonly #watchers: { match: (ms: number) => boolean; resolve: (timer: FakeTimer) => void }[] = [];

  now(): number {
    return this.#now;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer = {
      ms,
      due: this.#now + Math.max(0, ms),
      fn,
      fire: () => {
        if (this.#armed.delete(timer)) fn();
      },
    };
    this.#armed.add(timer);
    const at = this.#watchers.findIndex((w) => w.match(ms));
    if (at >= 0) this.#watchers.splice(at, 1)[0]!.resolve(timer);
    return () => {
      this.#armed.delete(timer);
    };
  }

  /** Durations of the timers set and neither fired nor cancelled, in the order they were set. */
  get armed(): number[] {
    return [...this.#armed].map((timer) => timer.ms);
  }

  /** Due times of the timers not fired yet, earliest first. */
  get pending(): number[] {
    return [...this.#armed].map((timer) => timer.due).sort((a, b) => a - b);
  }

  /**
   * The next timer set (from now on, or already armed) whose duration passes `match`; code
   * that stopped using this clock fails the test here (after 20 s) instead of hanging it.
   */
  nextTimer(match: (ms: number) => boolean): Promise<FakeTimer> {
    for (const timer of this.#armed) if (match(timer.ms)) return Promise.resolve(timer);
    const set = new Promise<FakeTimer>((resolve) => this.#watchers.push({ match, resolve }));
    return withTimeout(set, 20_000, 'a timer on the injected clock');
  }

  /** Moves time to the earliest timer and fires it; false when there is none. */
  async fireNext(): Promise<boolean> {
    const next = this.pending[0];
    if (next === undefined) return false;
    await this.advance(next - this.#now);
    return true;
  }

  /** Moves time forward by `ms`, firing due timers in order, and lets their promise callbacks run. */
  async advance(ms: number): Promise<void> {
    const until = Math.max(this.#now + ms, this.#now);
    for (;;) {
      const next = [...this.#armed]
        .filter((x) => x.due <= until || x.due - until < 1e-9)
        .sort((a, b) => a.due - b.due)[0];
      if (next === undefined) break;
      this.#armed.delete(next);
      this.#now = next.due;
      next.fn();
      await settle();
    }
    this.#now = until;
    await settle();
  }
}

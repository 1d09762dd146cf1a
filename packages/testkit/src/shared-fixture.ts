/*
 * One fixture shared by the tests of a file (a store with a snapshot, a server): made
 * before the first test, cleaned up after the last, in ava's `before` and `after.always`
 * hooks. The context key names the fixture (`fixture`, `f`).
 */

/** The part of ava's `test` that {@link shareFixture} uses (its hooks). */
export interface HookedTest<C> {
  before(implementation: (t: { context: C }) => Promise<void>): void;
  after: { always(implementation: (t: { context: C }) => Promise<void>): void };
}

/** Registers the hooks that make `make()` into `t.context[key]` and clean it up; returns `test`. */
export function shareFixture<K extends string, F extends { cleanup(): Promise<void> }, T>(
  test: T & HookedTest<{ [key in K]: F }>,
  key: K,
  make: () => Promise<F>,
): T {
  test.before(async (t) => {
    t.context[key] = await make();
  });
  test.after.always(async (t) => {
    // Undefined when `make` failed: ava reports that failure, not this one.
    await (t.context[key] as F | undefined)?.cleanup();
  });
  return test;
}

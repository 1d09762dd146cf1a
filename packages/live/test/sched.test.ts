/*
 * The schedulers against a fake clock: every wait is observed (a timer due at an exact
 * time, an order of events), never slept for.
 */
import { FakeClock } from '@liverestore/testkit';
import test from 'ava';
import { GuestPriority, MAX_TIMER_MS, RegionLocks, Semaphore, sleep, TokenBucket } from '../src/internal.js';

/** Lets every pending promise callback run (the code under test waits on nothing else). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Tracks whether a promise settled yet. */
function watch<T>(promise: Promise<T>): { readonly done: boolean } {
  const state = { done: false };
  void promise.then(
    () => {
      state.done = true;
    },
    () => {
      state.done = true;
    },
  );
  return state;
}

test('RegionLocks: one holder per region, FIFO, other regions independent; idle() waits for all', async (t) => {
  const locks = new RegionLocks();
  const events: string[] = [];
  const a = await locks.acquire(1);
  const b = locks.acquire(1).then((release) => {
    events.push('b holds');
    return release;
  });
  const c = locks.acquire(1).then((release) => {
    events.push('c holds');
    return release;
  });
  const other = await locks.acquire(2); // region 2 is free although region 1 is held
  events.push('region 2 held');
  other();
  const idle = locks.idle().then(() => events.push('idle'));
  events.push('a releases');
  a();
  const releaseB = await b;
  events.push('b releases');
  releaseB();
  (await c)();
  await idle;
  t.deepEqual(events, ['region 2 held', 'a releases', 'b holds', 'b releases', 'c holds', 'idle']);
  t.is(locks.size, 0);
});

test('Semaphore: at most `slots` holders; a release hands the slot to the first waiter; double release is harmless', async (t) => {
  const sem = new Semaphore(2);
  const events: string[] = [];
  const r1 = await sem.acquire();
  const r2 = await sem.acquire();
  const p3 = sem.acquire().then((r) => {
    events.push('third holds');
    return r;
  });
  events.push('r1 releases twice');
  r1();
  r1();
  const r3 = await p3;
  const p4 = sem.acquire().then((r) => {
    events.push('fourth holds');
    return r;
  });
  await settle();
  events.push('r2 releases');
  r2();
  (await p4)();
  r3();
  // The fourth got its slot only from r2: the double release of r1 freed one slot, not two.
  t.deepEqual(events, ['r1 releases twice', 'third holds', 'r2 releases', 'fourth holds']);
  t.throws(() => new Semaphore(0), { instanceOf: RangeError });
});

test('TokenBucket: takes beyond the burst wait exactly until paid back at the rate (a take larger than the bucket is allowed)', async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(2_000_000, 100_000, clock); // 2 MB/s, 100 kB burst
  await bucket.take(100_000); // the burst: at once
  await bucket.take(400_000); // a balance of 0 allows any take: the bucket goes 400 kB negative
  t.is(clock.now(), 0);
  const next = watch(bucket.take(1));
  await settle();
  t.deepEqual(clock.pending, [200], 'the next take waits 400 kB / 2 MB/s = 200 ms');
  await clock.advance(199);
  t.false(next.done);
  await clock.advance(1);
  t.true(next.done);
  // A long run averages the rate: 1 MB more in 1,000 takes takes 500 ms of clock time.
  const started = clock.now();
  const run = watch(
    (async () => {
      for (let i = 0; i < 1000; i++) await bucket.take(1000);
    })(),
  );
  while (!run.done) if (!(await clock.fireNext())) await settle();
  t.true(Math.abs(clock.now() - started - 500) <= 1, `took ${clock.now() - started} ms of clock time`);
});

test('TokenBucket: an aborted take rejects with the reason and leaves the queue to the next', async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(1_000_000, 1000, clock);
  await bucket.take(10_000_000); // 9,999 kB in debt after the 1 kB burst: 9.999 s
  const aborted = new AbortController();
  const blocked = bucket.take(1, aborted.signal);
  await settle();
  t.deepEqual(clock.pending, [9999]);
  aborted.abort(new Error('stop'));
  await t.throwsAsync(blocked, { message: 'stop' });
  t.deepEqual(clock.pending, [], 'its timer was cancelled');
  const after = watch(bucket.take(1));
  await clock.advance(9998);
  t.false(after.done);
  await clock.advance(1);
  t.true(after.done);
  t.throws(() => new TokenBucket(0), { instanceOf: RangeError });
});

test('GuestPriority: idle() resolves at once without guest work, on the last leave, or after maxWaitMs', async (t) => {
  const clock = new FakeClock();
  const priority = new GuestPriority(50, clock);
  await priority.idle(); // nothing in flight
  t.deepEqual(clock.pending, []);
  priority.enter();
  const bounded = watch(priority.idle());
  t.deepEqual(clock.pending, [50]);
  await clock.advance(49);
  t.false(bounded.done);
  await clock.advance(1);
  t.true(bounded.done, 'the copy is never starved: released after maxWaitMs');
  priority.enter(); // two guest fills in flight
  const woken = watch(priority.idle());
  priority.leave();
  await settle();
  t.false(woken.done, 'one fill still in flight');
  priority.leave();
  await settle();
  t.true(woken.done, 'woken by the last leave');
  t.is(clock.now(), 50, 'without any clock time passing');
  t.deepEqual(clock.pending, [], 'and its timer was cancelled');
  t.is(priority.busy, 0);
});

test('sleep: resolves after the clock moved; an abort rejects with the reason', async (t) => {
  const clock = new FakeClock();
  const slept = watch(sleep(30, undefined, clock));
  await clock.advance(30);
  t.true(slept.done);
  const aborted = new AbortController();
  aborted.abort(new Error('early'));
  await t.throwsAsync(sleep(30, aborted.signal, clock), { message: 'early' });
});

test('TokenBucket: a debt longer than a Node timer can hold waits in timers of at most 2^31 - 1 ms', async (t) => {
  const clock = new FakeClock();
  const bucket = new TokenBucket(1, 1, clock); // 1 byte per second
  await bucket.take(4 * 1024 * 1024); // a 4 MiB region: 4,194,304 s of debt
  const next = watch(bucket.take(1));
  await settle();
  t.deepEqual(clock.pending, [MAX_TIMER_MS], 'one timer due at the limit, not one Node would fire at once');
  await clock.advance(MAX_TIMER_MS);
  await settle();
  t.false(next.done, 'the debt is not paid yet: it waits again');
  t.is(clock.pending.length, 1);
  t.true(clock.pending[0]! - clock.now() <= MAX_TIMER_MS, 'and again in a timer Node can hold');
});

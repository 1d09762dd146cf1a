import test from 'ava';
import { GuestPriority, RegionLocks, Semaphore, TokenBucket } from '../src/index.js';

test('RegionLocks: one holder per region, FIFO, other regions independent; idle() waits for all', async (t) => {
  const locks = new RegionLocks();
  const order: string[] = [];
  const a = await locks.acquire(1);
  const b = locks.acquire(1).then((release) => {
    order.push('b');
    return release;
  });
  const c = locks.acquire(1).then((release) => {
    order.push('c');
    return release;
  });
  const other = await locks.acquire(2); // not blocked by region 1
  other();
  await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(order, []);
  let idle = false;
  const idlePromise = locks.idle().then(() => {
    idle = true;
  });
  a();
  (await b)();
  (await c)();
  await idlePromise;
  t.deepEqual(order, ['b', 'c']);
  t.true(idle);
  t.is(locks.size, 0);
});

test('Semaphore: at most `slots` holders; a release hands the slot to the first waiter; double release is harmless', async (t) => {
  const sem = new Semaphore(2);
  const r1 = await sem.acquire();
  const r2 = await sem.acquire();
  let third = false;
  const p3 = sem.acquire().then((r) => {
    third = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 10));
  t.false(third);
  r1();
  r1();
  const r3 = await p3;
  t.true(third);
  let fourth = false;
  const p4 = sem.acquire().then((r) => {
    fourth = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 10));
  t.false(fourth, 'the double release did not free a second slot');
  r2();
  (await p4)();
  r3();
  t.throws(() => new Semaphore(0), { instanceOf: RangeError });
});

test('TokenBucket: a long run of takes averages the rate (a take larger than the bucket is paid back)', async (t) => {
  const bucket = new TokenBucket(2_000_000, 100_000); // 2 MB/s, 100 kB burst
  const started = performance.now();
  for (let i = 0; i < 6; i++) await bucket.take(100_000); // 600 kB: ≈ 250 ms after the burst
  await bucket.take(400_000); // larger than the bucket: allowed, then paid back
  await bucket.take(1);
  const seconds = (performance.now() - started) / 1000;
  t.true(seconds >= 0.4, `took ${seconds} s`);
  t.true(seconds < 2, `took ${seconds} s`);
  const aborted = new AbortController();
  const wait = bucket.take(10_000_000);
  const blocked = bucket.take(1, aborted.signal);
  aborted.abort(new Error('stop'));
  await wait;
  await t.throwsAsync(blocked, { message: 'stop' });
});

test('GuestPriority: idle() waits while guest fills are in flight, at most maxWaitMs', async (t) => {
  const priority = new GuestPriority(50);
  await priority.idle(); // nothing in flight: at once
  priority.enter();
  let started = performance.now();
  await priority.idle();
  t.true(performance.now() - started >= 45, 'bounded wait');
  priority.leave();
  const patient = new GuestPriority(5000);
  patient.enter();
  started = performance.now();
  const waiting = patient.idle();
  setTimeout(() => patient.leave(), 10);
  await waiting;
  t.true(performance.now() - started < 2500, 'woken by the last leave, not by the 5 s bound');
  t.is(patient.busy, 0);
});

/** The shared async utilities of `@liverestore/format/internal`. */
import { getEventListeners } from 'node:events';
import { FakeClock, promiseState } from '@liverestore/testkit';
import test from 'ava';
import { linkedController, onAbort, Semaphore, settleAll, sleep } from '../src/internal.js';

test('Semaphore: a wait aborted while queued holds nothing; the slot goes to the next waiter in order', async (t) => {
  const sem = new Semaphore(1);
  const releaseFirst = await sem.acquire();
  const quit = new AbortController();
  const aborted = sem.acquire(quit.signal);
  const second = sem.acquire();
  quit.abort(new Error('gave up'));
  await t.throwsAsync(aborted, { message: 'gave up' });
  t.is(await promiseState(second), 'pending');
  releaseFirst();
  const releaseSecond = await second;
  // Had the aborted waiter kept a place, this third acquire would get a slot the second holds.
  const third = sem.acquire();
  t.is(await promiseState(third), 'pending');
  releaseSecond();
  releaseSecond(); // a second release is harmless: it does not free a slot twice
  const releaseThird = await third;
  const fourth = sem.acquire();
  t.is(await promiseState(fourth), 'pending');
  releaseThird();
  (await fourth)();
});

test('Semaphore: an already aborted signal rejects at once and takes no slot', async (t) => {
  const sem = new Semaphore(1);
  await t.throwsAsync(sem.acquire(AbortSignal.abort(new Error('late'))), { message: 'late' });
  const release = await sem.acquire();
  release();
  t.throws(() => new Semaphore(0), { instanceOf: RangeError, message: 'slots must be a positive integer' });
});

test('onAbort: many callbacks on one signal share one listener; an unregistered callback is not called', (t) => {
  const controller = new AbortController();
  const calls: number[] = [];
  const unregister = [1, 2, 3].map((n) => onAbort(controller.signal, () => calls.push(n)));
  t.is(getEventListeners(controller.signal, 'abort').length, 1);
  unregister[1]!();
  controller.abort();
  t.deepEqual(calls, [1, 3]);
});

test('linkedController: aborts with the reason of the parent that fired; after dispose it no longer follows', (t) => {
  const caller = new AbortController();
  const closing = new AbortController();
  const linked = linkedController([caller.signal, undefined, closing.signal]);
  const reason = new Error('closed');
  closing.abort(reason);
  t.is(linked.signal.reason, reason);

  const parent = new AbortController();
  const disposed = linkedController([parent.signal]);
  disposed.dispose();
  parent.abort();
  t.false(disposed.signal.aborted);

  t.is(linkedController([AbortSignal.abort('early')]).signal.reason, 'early');
});

test('sleep: resolves when its timer fires; an abort cancels the timer and rejects with the reason', async (t) => {
  const clock = new FakeClock();
  const slept = sleep(1000, undefined, clock);
  t.deepEqual(clock.armed, [1000]);
  await clock.advance(999);
  t.is(await promiseState(slept), 'pending');
  await clock.advance(1);
  t.is(await promiseState(slept), 'fulfilled');

  const controller = new AbortController();
  const cut = sleep(1000, controller.signal, clock);
  t.deepEqual(clock.armed, [1000]);
  controller.abort(new Error('stop'));
  await t.throwsAsync(cut, { message: 'stop' });
  t.deepEqual(clock.armed, []);
});

test('settleAll: waits for every promise, then rejects with the first rejection in order', async (t) => {
  const order: string[] = [];
  let finishSlow!: () => void;
  const slow = new Promise<void>((resolve) => {
    finishSlow = resolve;
  }).then(() => order.push('slow'));
  const all = settleAll([
    slow,
    Promise.reject(new Error('first')),
    Promise.reject(new Error('second')),
  ]).catch((err: Error) => {
    order.push(err.message);
  });
  t.is(await promiseState(all), 'pending');
  finishSlow();
  await all;
  t.deepEqual(order, ['slow', 'first']);
  await t.notThrowsAsync(settleAll([Promise.resolve(1)]));
});

import test from 'ava';
import { Piscina } from 'piscina';
import { esmWorkerPool } from '../src/internal.js';

test("esmWorkerPool runs a named handler of an ES module with top-level await, with the pool's workerData", async (t) => {
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./fixtures/tla-worker.js', import.meta.url), 'addOffset', { offset: 40 }),
    minThreads: 1,
    maxThreads: 1,
  });
  t.teardown(() => pool.destroy());
  const options = esmWorkerPool(new URL('./fixtures/tla-worker.js', import.meta.url), 'addOffset');
  t.true(
    options.filename.endsWith('/esm-worker.cjs'),
    'piscina requires the CommonJS entry, not the ES module',
  );
  t.deepEqual(await Promise.all([pool.run(1), pool.run(2)]), [41, 42]);
});

test('esmWorkerPool: a module without the named handler fails its tasks with a clear error', async (t) => {
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./fixtures/tla-worker.js', import.meta.url), 'missing', { offset: 0 }),
    minThreads: 1,
    maxThreads: 1,
  });
  t.teardown(() => pool.destroy());
  await t.throwsAsync(pool.run(1), { message: /exports no function missing/ });
});

// piscina parks an idle worker in a blocking Atomics.wait loop once it reports ready: a
// worker module still loading then (an import() begun by the CommonJS entry) stalled until
// the first task, so each process paid the load on its first decodes (a live restore's
// first guest reads). The pool now reports a worker ready only once its module has loaded.
test('esmWorkerPool: the worker module loads as the pool starts, before any task is posted', async (t) => {
  const loaded = new Int32Array(new SharedArrayBuffer(4));
  const pool = new Piscina({
    ...esmWorkerPool(new URL('./fixtures/loaded-flag-worker.js', import.meta.url), 'echo', { loaded }),
    minThreads: 1,
    maxThreads: 1,
  });
  t.teardown(() => pool.destroy());
  // Looks every 10 ms, 20 s at most: without the fix the flag is never set while no task
  // is posted (the deadline only bounds a failure).
  const deadline = Date.now() + 20_000;
  while (Atomics.load(loaded, 0) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.is(Atomics.load(loaded, 0), 1, 'the worker module was evaluated without a task');
  t.is(await pool.run(7), 7);
});

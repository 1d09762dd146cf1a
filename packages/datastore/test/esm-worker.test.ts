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

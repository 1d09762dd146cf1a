/*
 * The CommonJS entry of every piscina pool whose worker is an ES module of this project.
 *
 * piscina loads a worker file with require() first and falls back to import(). Node.js
 * 20.19+ lets require() load ES modules, but not a module graph with top-level await
 * (@liverestore/format had one for its zstd codec): it should throw, and Node 20 sometimes
 * aborts the whole process instead ("v8::Module::IsGraphAsync must be used on an
 * instantiated module", seen in the test suite). This file is what piscina requires: a
 * plain CommonJS module that exports the handler piscina looks up by name, and loads the
 * real worker with import() as the worker starts.
 */
import workerThreads = require('node:worker_threads');

/** What {@link esmWorkerPool} (esm-worker-pool.ts) puts in the pool's workerData. */
interface EsmWorkerData {
  /** file: URL of the ES module that holds the handler. */
  readonly esmWorker: string;
  /** Name of its exported handler. */
  readonly esmExport: string;
}

type Handler = (task: unknown) => unknown;

const { esmWorker, esmExport } = workerThreads.workerData as EsmWorkerData;
// The handler, once the real worker module has loaded; a failure becomes a handler that
// throws it, so it is reported to every task (not as an unhandled rejection, nor as a
// worker crash before the first one).
const loaded: Promise<Handler> = import(esmWorker)
  .then((module: Record<string, Handler>) => {
    const handler = module[esmExport];
    if (typeof handler !== 'function') throw new TypeError(`${esmWorker} exports no function ${esmExport}`);
    return handler;
  })
  .catch(
    (error: unknown): Handler =>
      () => {
        throw error;
      },
  );

// An ES-module-shaped exports object, so that piscina's interop hands it over as it is and
// finds the handler under the pool's `name`. The handler is exported as the promise of it:
// piscina awaits the named export before it reports the worker ready, so the worker module
// (the decoders' codec setup, WebAssembly compile included) loads as the pool starts. A
// function that awaited the import itself made piscina report ready at once and park the
// worker in its blocking Atomics.wait loop, which stalls the pending import() until the
// first task arrives: every process paid the load on its first decodes, a guest's first
// reads of a live restore (bench live-restore B p99 ≈ 130 → ≈ 190 ms, bisected to e7c03a9).
export = { __esModule: true, [esmExport]: loaded };

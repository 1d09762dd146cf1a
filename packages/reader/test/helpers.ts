/*
 * Test helpers for @liverestore/reader: in-memory and instrumented chunk sources, small
 * datastores built with the real backup writer, and timeouts that turn a hang into a
 * failure with a message.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { backup, Datastore, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkIndex, type CryptConfig, encodeChunk, toHex } from '@liverestore/format';
import { onAbort } from '@liverestore/format/internal';
import { type ImageSpec, tempDir, writeImageFile } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import {
  type CachedChunkReader,
  type ChunkSource,
  exportArchive,
  type FetchHints,
  type Snapshot,
} from '../src/index.js';
import type { RemoteReaderData, RemoteReaderReport } from './fixtures/remote-reader.js';

// A plain timer and testkit's hang guard (a hang becomes a failure), not copies of their own.
export { setTimeout as sleep } from 'node:timers/promises';
export { promiseState, withTimeout } from '@liverestore/testkit';

export { between, prng } from './fixtures/random.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** A fresh temp dir removed when the test ends. */
export async function testDir(t: ExecutionContext, prefix = 'lr-reader-'): Promise<string> {
  const dir = await tempDir(prefix);
  t.teardown(() => dir.cleanup());
  return dir.path;
}

function noSnapshots(): Promise<never> {
  return Promise.reject(new Error('this test source has no snapshots'));
}

/**
 * A fetch the test holds: `complete()` resolves it with the blob (or rejects it with
 * `error` when the fetch was marked to fail), `fail(err)` rejects it with `err`.
 */
export interface PendingFetch {
  readonly digestHex: string;
  /** 'auto' fetches are completed by the test harness in order; 'held' ones on command. */
  readonly mode: 'auto' | 'held';
  /** The error this fetch rejects with on `complete()`, when it was marked to fail. */
  readonly error: Error | undefined;
  complete(): void;
  fail(err: Error): void;
}

/** An error a test source fails a fetch with; tests compare waiters' errors by identity. */
export class FetchFailure extends Error {
  readonly code = 'ERR_TEST_FETCH_FAILED';
}

/**
 * An in-memory {@link ChunkSource} with hooks for the moments a test wants to control:
 * every fetch can be held pending (`holdAll`), the next fetch of a digest can be made to
 * fail (`failNext`) or to wait for the test (`delayNext`). Each fetch returns a fresh
 * copy of the blob (the pool decoder may transfer it away).
 */
export class MemorySource implements ChunkSource {
  readonly name = 'memory';
  readonly blobs = new Map<string, Uint8Array>();
  readonly fetches = new Map<string, number>();
  /** The hints of the last fetch of each digest (a live view the cache may raise). */
  readonly hints = new Map<string, FetchHints | undefined>();
  readonly pending: PendingFetch[] = [];
  /** Hold every fetch until the test completes it (a model test serialises loads this way). */
  holdAll = false;
  readonly #failNext = new Set<string>();
  readonly #delayNext = new Set<string>();

  /** Stores a chunk; returns its digest. */
  add(data: Uint8Array, crypt?: CryptConfig, compress?: 'none' | 'deflate'): string {
    const { digest, blob } = encodeChunk(data, { crypt, ...(compress === undefined ? {} : { compress }) });
    const hex = toHex(digest);
    this.blobs.set(hex, new Uint8Array(blob));
    return hex;
  }

  get fetchCount(): number {
    let n = 0;
    for (const count of this.fetches.values()) n += count;
    return n;
  }

  failNext(hex: string): void {
    this.#failNext.add(hex);
  }

  delayNext(hex: string): void {
    this.#delayNext.add(hex);
  }

  fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    this.fetches.set(digestHex, (this.fetches.get(digestHex) ?? 0) + 1);
    this.hints.set(digestHex, hints);
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    const blob = this.blobs.get(digestHex);
    const error = this.#failNext.delete(digestHex)
      ? new FetchFailure(`test failure of chunk ${digestHex}`)
      : blob === undefined
        ? new FetchFailure(`test source has no chunk ${digestHex}`)
        : undefined;
    const held = this.#delayNext.delete(digestHex);
    if (!held && !this.holdAll) {
      return error === undefined ? Promise.resolve(new Uint8Array(blob!)) : Promise.reject(error);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const remove = (): boolean => {
        const at = this.pending.indexOf(entry);
        if (at < 0) return false;
        this.pending.splice(at, 1);
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (remove()) reject(signal!.reason);
      };
      const entry: PendingFetch = {
        digestHex,
        mode: held ? 'held' : 'auto',
        error,
        complete: () => {
          if (!remove()) return;
          if (error === undefined) resolve(new Uint8Array(blob!));
          else reject(error);
        },
        fail: (err) => {
          if (remove()) reject(err);
        },
      };
      this.pending.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  listSnapshots = noSnapshots;
  resolveSnapshot = noSnapshots;
  readSnapshotFile = noSnapshots;
}

/**
 * Wraps a source to count fetches (in total and per digest) and, optionally, to hold
 * every fetch until `release()` is called (a slow network); snapshot files pass through.
 */
export class CountingSource implements ChunkSource {
  readonly fetches = new Map<string, number>();
  /** Each fetch in order, with whether it was urgent when it started. */
  readonly log: { readonly digestHex: string; readonly urgent: boolean }[] = [];
  fetchCount = 0;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  /** Fetches waiting at the gate now. */
  waiting = 0;

  constructor(readonly inner: ChunkSource) {}

  get name(): string {
    return `counting(${this.inner.name})`;
  }

  /** From now on, fetches wait until {@link release}. */
  hold(): void {
    if (this.#gate !== undefined) return;
    this.#gate = new Promise((resolve) => {
      this.#open = resolve;
    });
  }

  release(): void {
    this.#open?.();
    this.#gate = undefined;
    this.#open = undefined;
  }

  async fetchChunk(digestHex: string, signal?: AbortSignal, hints?: FetchHints): Promise<Uint8Array> {
    this.fetchCount++;
    this.log.push({ digestHex, urgent: hints?.urgent ?? true });
    this.fetches.set(digestHex, (this.fetches.get(digestHex) ?? 0) + 1);
    const gate = this.#gate;
    if (gate !== undefined) {
      this.waiting++;
      try {
        await new Promise<void>((resolve, reject) => {
          // One listener per signal, however many fetches wait at the gate (as the cache does).
          const unregister = signal === undefined ? undefined : onAbort(signal, () => reject(signal.reason));
          void gate.then(() => {
            unregister?.();
            resolve();
          });
        });
      } finally {
        this.waiting--;
      }
    }
    return this.inner.fetchChunk(digestHex, signal);
  }

  listSnapshots(): Promise<SnapshotRef[]> {
    return this.inner.listSnapshots();
  }

  resolveSnapshot(spec: { type: SnapshotRef['type']; id: string; time?: number }): Promise<SnapshotRef> {
    return this.inner.resolveSnapshot(spec);
  }

  readSnapshotFile(ref: SnapshotRef, filename: string): Promise<Uint8Array> {
    return this.inner.readSnapshotFile(ref, filename);
  }
}

/** One input of {@link makeStore}: a synthetic image or literal bytes (a dynamic archive). */
export type StoreInput =
  | { readonly name: string; readonly spec: ImageSpec }
  | { readonly name: string; readonly data: Uint8Array };

/**
 * Backs up `inputs` into `storeDir` (created when missing) as snapshot `vm/<id>`, with
 * the real backup writer; image files are written next to the store. Returns the store.
 */
export async function backupInputs(
  dir: string,
  id: string,
  inputs: readonly StoreInput[],
  options: {
    chunkSizeBytes?: number;
    dynamicAvgBytes?: number;
    crypt?: CryptConfig;
    backupTime?: number;
    compress?: 'none' | 'deflate';
  } = {},
): Promise<Datastore> {
  const storeDir = join(dir, 'store');
  const store = await Datastore.open(storeDir).catch(() => Datastore.create(storeDir));
  const files: { name: string; path: string }[] = [];
  for (const input of inputs) {
    const path = join(dir, `${id}-${input.name}.src`);
    if ('spec' in input) await writeImageFile(input.spec, path);
    else await writeFile(path, input.data);
    files.push({ name: input.name, path });
  }
  await backup(store, {
    type: 'vm',
    id,
    inputs: files,
    encodeThreads: 2,
    ...(options.chunkSizeBytes === undefined ? {} : { chunkSizeBytes: options.chunkSizeBytes }),
    ...(options.dynamicAvgBytes === undefined ? {} : { dynamicAvgBytes: options.dynamicAvgBytes }),
    ...(options.crypt === undefined ? {} : { crypt: options.crypt }),
    ...(options.backupTime === undefined ? {} : { backupTime: options.backupTime }),
    ...(options.compress === undefined ? {} : { compress: options.compress }),
  });
  return store;
}

/** A datastore of one drive, shared by the tests of one file (see {@link fileSharedStore}). */
export interface SharedStore {
  readonly store: Datastore;
  readonly spec: ImageSpec;
  readonly ref: SnapshotRef;
}

/**
 * One read-only datastore for a whole test file: `drive-scsi0` of `spec` backed up once as
 * vm/100 in `chunkSizeBytes` chunks, on first use, removed after the file's last test
 * (through `test.after.always`: call this at the top level of the test file).
 */
export function fileSharedStore(
  test: { after: { always(fn: () => Promise<void>): void } },
  prefix: string,
  spec: ImageSpec,
  chunkSizeBytes: number,
): () => Promise<SharedStore> {
  let shared: Promise<SharedStore> | undefined;
  let removeShared: (() => Promise<void>) | undefined;
  test.after.always(async () => {
    await removeShared?.();
  });
  return () => {
    shared ??= (async () => {
      const dir = await tempDir(prefix);
      removeShared = () => dir.cleanup();
      const store = await backupInputs(dir.path, '100', [{ name: 'drive-scsi0', spec }], { chunkSizeBytes });
      const [ref] = await store.listSnapshotRefs();
      return { store, spec, ref: ref! };
    })();
    return shared;
  };
}

/** Path of a chunk file in a datastore. */
export function chunkPath(storeDir: string, hex: string): string {
  return join(storeDir, '.chunks', hex.slice(0, 4), hex);
}

/** Reads a whole Readable into one Buffer. */
export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * Reads `archive` of `snapshot` from a worker thread (fixtures/remote-reader.ts) through
 * the snapshot's shared cache; resolves with the worker's report of every read.
 */
export async function runRemoteReader(
  snapshot: Snapshot,
  archive: string,
  data: RemoteReaderData,
): Promise<RemoteReaderReport> {
  const handle = await exportArchive(snapshot, archive);
  const worker = new Worker(new URL('./fixtures/remote-reader.js', import.meta.url), { workerData: data });
  worker.postMessage({ handle }, [handle.port]);
  return new Promise<RemoteReaderReport>((resolve, reject) => {
    let report: RemoteReaderReport | undefined;
    worker.once('message', (message: RemoteReaderReport) => {
      report = message;
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (report !== undefined) resolve(report);
      else reject(new Error(`remote reader exited with code ${code} without a report`));
    });
  });
}

/** A chunk whose digest occurs once in the index and is not the zero chunk. */
export function uniqueDataChunk(index: ChunkIndex, reader: CachedChunkReader): { i: number; hex: string } {
  const counts = new Map<string, number>();
  for (let i = 0; i < index.chunkCount; i++) {
    const hex = toHex(index.digestAt(i));
    counts.set(hex, (counts.get(hex) ?? 0) + 1);
  }
  for (let i = 1; i < index.chunkCount - 1; i++) {
    const hex = toHex(index.digestAt(i));
    if (counts.get(hex) === 1 && !reader.isZeroChunk(i)) return { i, hex };
  }
  throw new Error('the test image has no unique data chunk');
}

/*
 * A small backed-up drive and a chunk source that counts its fetches, for the tests of
 * the PBS read paths A and C (live-parts.test.ts, pbs-today-reader.test.ts).
 */

import { join } from 'node:path';
import { backup, Datastore, type SnapshotRef } from '@liverestore/datastore';
import { type ChunkSource, LocalChunkSource } from '@liverestore/reader';
import { type ImageSpec, tempDir, vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';

/** 1 MiB chunks, so a few MiB of drive span several chunks. */
export const TEST_CHUNK_BYTES = 1024 * 1024;

/** A chunk source over a local datastore that records what it fetched. */
export interface CountingSource extends ChunkSource {
  /** Fetches running now, and the most that ever ran at once. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Every fetch, in the order they started. */
  readonly fetched: readonly string[];
}

/**
 * The source's fetches each take at least `delayMs` longer than the store needs, so that
 * fetches started together are seen in flight together.
 */
function countingSource(local: LocalChunkSource, delayMs: number): CountingSource {
  let inFlight = 0;
  let maxInFlight = 0;
  const fetched: string[] = [];
  return {
    name: local.name,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    fetched,
    listSnapshots: () => local.listSnapshots(),
    resolveSnapshot: (spec) => local.resolveSnapshot(spec),
    readSnapshotFile: (ref, f) => local.readSnapshotFile(ref, f),
    async fetchChunk(hex: string) {
      fetched.push(hex);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await new Promise((r) => setTimeout(r, delayMs));
        return await local.fetchChunk(hex);
      } finally {
        inFlight--;
      }
    },
  };
}

/** One drive of testkit's VM (`sizeBytes`, seed `seed`) backed up in 1 MiB chunks. */
export async function backedUpDrive(
  t: ExecutionContext,
  seed: number,
  sizeBytes: number,
  delayMs = 2,
): Promise<{ spec: ImageSpec; ref: SnapshotRef; source: CountingSource }> {
  const work = await tempDir('lr-bench-pbs-');
  t.teardown(() => work.cleanup());
  const store = await Datastore.create(join(work.path, 'store'));
  const [drive] = vmImageSet(seed, { drives: 1, sizeBytes });
  const path = join(work.path, 'd.raw');
  await writeImageFile(drive!.spec, path);
  const result = await backup(store, {
    type: 'vm',
    id: '1',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: TEST_CHUNK_BYTES,
    encodeThreads: 0,
  });
  const source = countingSource(await LocalChunkSource.open(store.dir), delayMs);
  return { spec: drive!.spec, ref: result.ref, source };
}

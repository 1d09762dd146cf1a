/*
 * Test helpers for @liverestore/live: a small datastore made by the real backup writer
 * from testkit images (1 MiB chunks, sizes not multiples of the chunk size, zero chunks
 * included), and a byte model of what each drive must read as (source + guest writes).
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache, openSnapshot, type Snapshot } from '@liverestore/reader';
import {
  type ImageSpec,
  imageBytes,
  shareFixture,
  tempDir,
  type VmImageFile,
  writeVmImageFiles,
} from '@liverestore/testkit';

export { prng } from '@liverestore/testkit';

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { type LiveRestore, type LiveRestoreOptions, liveRestore } from '../src/index.js';
import { GuestPriority, LiveDrive } from '../src/internal.js';

export const MiB = 1024 * 1024;
export const CHUNK_BYTES = MiB;
export const DRIVE_SIZES = [12 * MiB + 512 * 3, 6 * MiB + 512 * 7];

export interface Fixture {
  readonly storeDir: string;
  /** The snapshot backed up (full reference). */
  readonly snapshot: string;
  /** A second snapshot of the same VM with other content. */
  readonly otherSnapshot: string;
  readonly dir: string;
  readonly drives: readonly VmImageFile[];
  cleanup(): Promise<void>;
}

export async function makeFixture(seed = 11, sizes: readonly number[] = DRIVE_SIZES): Promise<Fixture> {
  const work = await tempDir('lr-live-');
  const storeDir = join(work.path, 'store');
  const store = await Datastore.create(storeDir);
  const backupVm = async (images: readonly VmImageFile[], backupTime: number): Promise<string> => {
    const result = await backup(store, {
      type: 'vm',
      id: '100',
      backupTime,
      inputs: images.map((d) => ({ name: d.name, path: d.path })),
      chunkSizeBytes: CHUNK_BYTES,
      encodeThreads: 0,
    });
    return result.snapshot;
  };
  const drives = await writeVmImageFiles(work.path, seed, sizes);
  const snapshot = await backupVm(drives, 1_790_000_000);
  const others = await writeVmImageFiles(work.path, seed + 1, sizes, 'other-');
  const otherSnapshot = await backupVm(others, 1_790_000_600);
  return { storeDir, snapshot, otherSnapshot, dir: work.path, drives, cleanup: () => work.cleanup() };
}

/** ava's `test` for a file whose tests share one fixture: made before them, removed after. */
export function fixtureTest(seed?: number, sizes?: readonly number[]): TestFn<{ f: Fixture }> {
  return shareFixture(anyTest as TestFn<{ f: Fixture }>, 'f', () => makeFixture(seed, sizes));
}

/** The source image of a drive as one buffer (tests use small images). */
export function sourceImage(spec: ImageSpec): Buffer {
  return imageBytes(spec, 0, spec.sizeBytes);
}

/** A cache and an opened snapshot, closed on teardown. */
export async function openFixtureSnapshot(
  t: ExecutionContext,
  f: Fixture,
  snapshot = f.snapshot,
): Promise<{ snapshot: Snapshot; cache: ChunkCache }> {
  const cache = new ChunkCache({ cacheBytes: 8 * MiB, workers: 0 });
  const snap = await openSnapshot({ source: f.storeDir, snapshot, cache });
  t.teardown(async () => {
    await snap.close();
    await cache.close();
  });
  return { snapshot: snap, cache };
}

/** Opens (creates or resumes) the LiveDrive of archive `name` in `targetDir`. */
export async function openDrive(
  snapshot: Snapshot,
  name: string,
  targetDir: string,
  priority = new GuestPriority(),
): Promise<LiveDrive> {
  return LiveDrive.open({
    reader: await snapshot.openArchive(name),
    copyReader: await snapshot.openArchive(name, { readaheadChunks: 2 }),
    targetDir,
    snapshot: snapshot.path,
    priority,
  });
}

export async function readTarget(path: string): Promise<Buffer> {
  return readFile(path);
}

/** Index of the first differing byte, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * A live restore of the fixture's snapshot into `targetDir`, serving NBD on a free loopback
 * port; `options` add to that. The caller closes it (on teardown).
 */
export function restoreFixture(
  f: Fixture,
  targetDir: string,
  options: Omit<LiveRestoreOptions, 'source' | 'snapshot' | 'targetDir'>,
): Promise<LiveRestore> {
  return liveRestore({
    source: f.storeDir,
    snapshot: f.snapshot,
    targetDir,
    listen: { host: '127.0.0.1', port: 0 },
    ...options,
  });
}

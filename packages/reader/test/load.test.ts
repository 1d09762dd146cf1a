/*
 * Correctness under load: 64 concurrent readers over four archives (fixed images with
 * 64 KiB, 1 MiB and 4 MiB chunks, and a dynamic archive) through one cache with a real
 * decode pool, every byte compared with the source, for a cache of one chunk, of three
 * chunks and larger than all the data; then readers in worker threads and on the main
 * thread at once on the same cache.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type ImageSpec, imageBytes, tempDir, vmImageSet } from '@liverestore/testkit';
import test from 'ava';
import { type CachedChunkReader, ChunkCache, openSnapshot, type Snapshot } from '../src/index.js';
import { chunkCacheInternals } from '../src/internal.js';
import { expectedCount, randomRead } from './fixtures/random.js';
import { backupInputs, KiB, MiB, prng, runRemoteReader, withTimeout } from './helpers.js';

interface ArchiveFixture {
  readonly snapshot: string;
  readonly archive: string;
  readonly size: number;
  readonly expected: Buffer;
  readonly spec?: ImageSpec;
  readonly filePath?: string;
}

interface LoadFixture {
  readonly storeDir: string;
  readonly archives: readonly ArchiveFixture[];
}

let fixturePromise: Promise<LoadFixture> | undefined;
let cleanup: (() => Promise<void>) | undefined;

/** Built once for the whole file: three snapshots (one chunk size each), four archives. */
function loadFixture(): Promise<LoadFixture> {
  fixturePromise ??= (async () => {
    const dir = await tempDir('lr-reader-load-');
    cleanup = dir.cleanup;
    const drives = vmImageSet(4242, {
      drives: 3,
      sizeBytes: [24 * MiB + 12_345, 40 * MiB + 3 * 4096 + 5, 48 * MiB - 3 * 4096],
    });
    const dynamicData = imageBytes(
      { sizeBytes: 12 * MiB + 777, seed: 77, mix: { text: 0.5, random: 0.4, zero: 0.1 } },
      0,
      12 * MiB + 777,
    );
    const chunkSizes = [64 * KiB, MiB, 4 * MiB];
    const archives: ArchiveFixture[] = [];
    for (let i = 0; i < 3; i++) {
      const drive = drives[i]!;
      const id = String(101 + i);
      await backupInputs(
        dir.path,
        id,
        i === 2
          ? [
              { name: drive.name, spec: drive.spec },
              { name: 'data.bin', data: dynamicData },
            ]
          : [{ name: drive.name, spec: drive.spec }],
        { chunkSizeBytes: chunkSizes[i]!, dynamicAvgBytes: 256 * KiB },
      );
      archives.push({
        snapshot: `vm/${id}`,
        archive: `${drive.name}.img`,
        size: drive.spec.sizeBytes,
        expected: imageBytes(drive.spec, 0, drive.spec.sizeBytes),
        spec: drive.spec,
      });
    }
    archives.push({
      snapshot: 'vm/103',
      archive: 'data.bin',
      size: dynamicData.byteLength,
      expected: dynamicData,
      filePath: join(dir.path, '103-data.bin.src'),
    });
    // The image files are not needed any more (the dynamic archive's source stays for workers).
    for (let i = 0; i < 3; i++) await rm(join(dir.path, `${101 + i}-${drives[i]!.name}.src`));
    return { storeDir: join(dir.path, 'store'), archives };
  })();
  return fixturePromise;
}

test.after.always(async () => {
  await cleanup?.();
});

interface OpenedArchive {
  readonly fixture: ArchiveFixture;
  readonly shared: CachedChunkReader;
  readonly snapshot: Snapshot;
}

async function openAll(fixture: LoadFixture, cache: ChunkCache): Promise<OpenedArchive[]> {
  const snapshots = new Map<string, Snapshot>();
  const out: OpenedArchive[] = [];
  for (const archive of fixture.archives) {
    let snapshot = snapshots.get(archive.snapshot);
    if (snapshot === undefined) {
      snapshot = await openSnapshot({ source: fixture.storeDir, snapshot: archive.snapshot, cache });
      snapshots.set(archive.snapshot, snapshot);
    }
    out.push({ fixture: archive, shared: await snapshot.openArchive(archive.archive), snapshot });
  }
  return out;
}

interface LoadReport {
  reads: number;
  bytes: number;
  failures: string[];
  maxUsedBytes: number;
  hugeReads: number;
}

/**
 * `lanes` concurrent readers, each doing `readsPerLane` random reads; half the lanes share
 * one reader per archive (concurrent reads of one reader), half open their own.
 */
async function runLanes(
  opened: readonly OpenedArchive[],
  cache: ChunkCache,
  options: { lanes: number; readsPerLane: number; seed: number; maxReadBytes: number },
): Promise<LoadReport> {
  const report: LoadReport = { reads: 0, bytes: 0, failures: [], maxUsedBytes: 0, hugeReads: 0 };
  const sample = (): void => {
    report.maxUsedBytes = Math.max(report.maxUsedBytes, cache.stats().usedBytes);
  };
  const sampler = setInterval(sample, 1);
  try {
    await Promise.all(
      Array.from({ length: options.lanes }, async (_, lane) => {
        const rand = prng(options.seed * 1000 + lane);
        const target = opened[lane % opened.length]!;
        const reader =
          lane % 2 === 0 ? target.shared : await target.snapshot.openArchive(target.fixture.archive);
        for (let i = 0; i < options.readsPerLane; i++) {
          const { offset, length } = randomRead(rand, target.fixture.size, options.maxReadBytes);
          const buffer = Buffer.alloc(length);
          const want = expectedCount(target.fixture.size, offset, length);
          const what = `${target.fixture.archive} read of ${length} at ${offset}`;
          try {
            const n = await reader.readAt(buffer, offset);
            sample();
            report.reads++;
            report.bytes += n;
            if (length >= 16 * MiB) report.hugeReads++;
            if (n !== want) report.failures.push(`${what}: returned ${n}, expected ${want}`);
            else if (!buffer.subarray(0, n).equals(target.fixture.expected.subarray(offset, offset + n))) {
              report.failures.push(`${what}: wrong bytes`);
            }
          } catch (err) {
            report.failures.push(`${what}: ${(err as Error).stack ?? String(err)}`);
          }
        }
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  sample();
  return report;
}

const loadMacro = test.macro({
  async exec(t, cacheBytes: number, seed: number) {
    const fixture = await loadFixture();
    const cache = new ChunkCache({ cacheBytes, workers: 2 });
    t.teardown(() => cache.close());
    const opened = await openAll(fixture, cache);
    const started = performance.now();
    const report = await withTimeout(
      runLanes(opened, cache, { lanes: 64, readsPerLane: 5, seed, maxReadBytes: 16 * MiB }),
      45_000,
      `64 readers on a ${cacheBytes / MiB} MiB cache (seed ${seed}): deadlock?`,
    );
    const stats = cache.stats();
    t.log(
      `${report.reads} reads, ${(report.bytes / MiB).toFixed(0)} MiB in ${(performance.now() - started).toFixed(0)} ms;`,
      JSON.stringify(stats),
    );
    t.deepEqual(report.failures.slice(0, 10), [], `seed ${seed}`);
    t.is(report.reads, 64 * 5);
    t.true(report.hugeReads > 0, '16 MiB reads were made');
    t.true(
      report.maxUsedBytes <= cache.capacityBytes,
      `used ${report.maxUsedBytes} > ${cache.capacityBytes}`,
    );
    t.true(stats.usedBytes <= stats.capacityBytes);
    t.is(stats.inFlight, 0);
    cache.checkInvariants();
    // Nothing stays pinned once every read returned.
    for (let slot = 0; slot < chunkCacheInternals(cache).table.slotCount; slot++) {
      if (chunkCacheInternals(cache).table.pins(slot as never) !== 0) t.fail(`slot ${slot} still pinned`);
    }
    if (cacheBytes < 64 * MiB) t.true(stats.evictions > 0, 'a small cache evicts');
    t.true(stats.dedupJoins + stats.hits > 0);
  },
  title: (_, cacheBytes: number) =>
    `64 concurrent readers on a ${cacheBytes / MiB} MiB cache read the right bytes`,
});

test.serial(loadMacro, 4 * MiB, 1);
test.serial(loadMacro, 12 * MiB, 2);
test.serial(loadMacro, 256 * MiB, 3);

const remoteMacro = test.macro({
  async exec(t, cacheBytes: number) {
    const fixture = await loadFixture();
    const cache = new ChunkCache({ cacheBytes, workers: 2 });
    t.teardown(() => cache.close());
    const opened = await openAll(fixture, cache);
    const remote = Promise.all(
      opened.map((o, i) =>
        runRemoteReader(o.snapshot, o.fixture.archive, {
          ...(o.fixture.spec === undefined ? {} : { spec: o.fixture.spec }),
          ...(o.fixture.filePath === undefined ? {} : { filePath: o.fixture.filePath }),
          seed: 500 + i,
          concurrency: 4,
          reads: 4,
          maxReadBytes: 8 * MiB,
        }),
      ),
    );
    const local = runLanes(opened, cache, { lanes: 16, readsPerLane: 3, seed: 9, maxReadBytes: 8 * MiB });
    const [reports, localReport] = await withTimeout(
      Promise.all([remote, local]),
      45_000,
      'worker-thread and main-thread readers: deadlock?',
    );
    t.deepEqual(localReport.failures, []);
    t.true(localReport.maxUsedBytes <= cache.capacityBytes);
    for (const [i, report] of reports.entries()) {
      const archive = opened[i]!.fixture;
      t.is(report.size, archive.size);
      t.is(report.results.length, 16, archive.archive);
      const bad = report.results.filter((r) => r.bytesOk !== true);
      t.deepEqual(bad, [], archive.archive);
    }
    t.is(cache.stats().inFlight, 0);
    cache.checkInvariants();
    for (let slot = 0; slot < chunkCacheInternals(cache).table.slotCount; slot++) {
      if (chunkCacheInternals(cache).table.pins(slot as never) !== 0)
        t.fail(`slot ${slot} still pinned after the workers ended`);
    }
  },
  title: (_, cacheBytes: number) =>
    `readers in worker threads and on the main thread share one ${cacheBytes / MiB} MiB cache`,
});

test.serial(remoteMacro, 4 * MiB);
test.serial(remoteMacro, 12 * MiB);

test.serial('the dynamic archive source file matches what the fixture compares with', async (t) => {
  // Guards the load tests themselves: the expected bytes of the dynamic archive are the file backed up.
  const fixture = await loadFixture();
  const dynamic = fixture.archives.find((a) => a.filePath !== undefined)!;
  t.true((await readFile(dynamic.filePath!)).equals(dynamic.expected));
});

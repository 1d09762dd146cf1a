/*
 * Memory stays within the cache budget plus a constant, however many archives are open:
 * a child process reads 256 MiB either as one archive or as sixteen archives of one
 * snapshot, through a 64 MiB cache, and reports its peak RSS.
 */
import { execFile } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { backup, Datastore } from '@liverestore/datastore';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import test from 'ava';
import type { ChunkCacheStats } from '../src/index.js';
import { MiB, testDir } from './helpers.js';

const run = promisify(execFile);
const CACHE_BYTES = 64 * MiB;
const DRIVES = 16;
const DRIVE_BYTES = 16 * MiB;
/**
 * What the process needs besides the cache: Node and two decode workers (about 85 MiB at
 * rest here), blobs in flight and garbage not yet collected (peaks measured: 225–245 MiB
 * in all for one reader, with the 64 MiB cache).
 */
const CONSTANT_BYTES = 256 * MiB;

interface ChildReport {
  readonly baselineRss: number;
  readonly peakRss: number;
  readonly bytes: number;
  readonly stats: ChunkCacheStats;
}

async function measure(
  storeDir: string,
  snapshot: string,
  archives: string[],
  lanes: number,
): Promise<ChildReport> {
  const child = fileURLToPath(new URL('./fixtures/memory-child.js', import.meta.url));
  const { stdout } = await run(
    process.execPath,
    [child, storeDir, snapshot, archives.join(','), String(CACHE_BYTES), String(lanes)],
    { timeout: 60_000, maxBuffer: 1024 * 1024 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildReport;
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;

test('peak RSS stays within the cache budget plus a constant for 1 and for 16 open archives', async (t) => {
  const dir = await testDir(t, 'lr-reader-memory-');
  const drives = vmImageSet(616, { drives: DRIVES, sizeBytes: DRIVE_BYTES });
  const inputs: { name: string; path: string }[] = [];
  for (const drive of drives) {
    const path = join(dir, `${drive.name}.raw`);
    await writeImageFile(drive.spec, path);
    inputs.push({ name: drive.name, path });
  }
  // The single archive is the sixteen drives end to end: the same chunks (4 MiB-aligned),
  // so its backup costs only digests, and both runs read the same 256 MiB.
  const bigPath = join(dir, 'all.raw');
  const big = await open(bigPath, 'w');
  for (const [i, input] of inputs.entries())
    await big.write(await readFile(input.path), 0, DRIVE_BYTES, i * DRIVE_BYTES);
  await big.close();
  const store = await Datastore.create(join(dir, 'store'));
  await backup(store, { type: 'vm', id: '216', inputs, compress: 'none', encodeThreads: 2 });
  await backup(store, {
    type: 'vm',
    id: '201',
    inputs: [{ name: 'drive-scsi0', path: bigPath }],
    compress: 'none',
    encodeThreads: 2,
  });

  // Peak RSS is noisy (garbage collection runs when it likes): the lower of two runs.
  const lower = (a: ChildReport, b: ChildReport): ChildReport => (a.peakRss <= b.peakRss ? a : b);
  const one = lower(
    await measure(store.dir, 'vm/201', ['drive-scsi0.img'], 1),
    await measure(store.dir, 'vm/201', ['drive-scsi0.img'], 1),
  );
  const names = drives.map((d) => `${d.name}.img`);
  const sixteen = lower(
    await measure(store.dir, 'vm/216', names, 1),
    await measure(store.dir, 'vm/216', names, 1),
  );
  const sixteenAtOnce = await measure(store.dir, 'vm/216', names, DRIVES);
  for (const [what, report] of [
    ['1 archive', one],
    ['16 archives', sixteen],
    ['16 archives at once', sixteenAtOnce],
  ] as const) {
    t.log(
      `${what}: baseline ${mib(report.baselineRss)}, peak ${mib(report.peakRss)}, read ${mib(report.bytes)},`,
      `decoded ${mib(report.stats.bytesDecoded)}, evictions ${report.stats.evictions}`,
    );
    t.is(report.bytes, DRIVES * DRIVE_BYTES, what);
    t.true(report.stats.usedBytes <= CACHE_BYTES);
    t.true(report.stats.evictions > 0, `${what}: the data did not fit the cache`);
  }
  for (const [what, report] of [
    ['1 archive', one],
    ['16 archives', sixteen],
  ] as const) {
    t.true(
      report.peakRss < CACHE_BYTES + CONSTANT_BYTES,
      `${what}: peak RSS ${mib(report.peakRss)} is more than the 64 MiB cache + ${mib(CONSTANT_BYTES)}`,
    );
  }
  // Sixteen streams at once also hold their stream buffers (about 2 MiB each) and up to a
  // cache's worth of fetched blobs waiting for a decode worker (one per allocated slot);
  // beyond that, nothing may grow with the number of readers.
  t.true(
    sixteenAtOnce.peakRss < 2 * CACHE_BYTES + DRIVES * 4 * MiB + CONSTANT_BYTES,
    `16 concurrent streams: peak RSS ${mib(sixteenAtOnce.peakRss)}`,
  );
  t.true(
    sixteen.peakRss - one.peakRss < 48 * MiB,
    `16 open archives peak at ${mib(sixteen.peakRss)}, one at ${mib(one.peakRss)}`,
  );
});

/*
 * Fills written past the page cache: a region's runs of data (between all-zero 64 KiB
 * blocks, across the cache's page views) staged in page-aligned memory and written with
 * O_DIRECT where the file system allows it, the unaligned rest and everything on a file
 * system that refuses it through the page cache, the bytes the same either way.
 */
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DirectDescriptor, pageAlignedSharedBuffer } from '@liverestore/reader/internal';
import { allowsDirectIo, randomBytes, tempDir } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  copyOfViews,
  diskTargetFiles,
  FileTarget,
  fillRuns,
  LiveDrive,
  runCopyJob,
  StagedDirectWrites,
} from '../src/internal.js';
import { fixtureTest, MiB, openFixtureSnapshot, sourceImage } from './helpers.js';

const KiB = 1024;

async function scratch(t: ExecutionContext): Promise<string> {
  const dir = await tempDir('lr-live-direct-');
  t.teardown(() => dir.cleanup());
  return dir.path;
}

test('fillRuns: one run of every view, or runs of data between all-zero 64 KiB blocks across view borders', (t) => {
  const page = (fill: number) => Buffer.alloc(64 * KiB, fill);
  const views = [page(1), page(0), page(2), page(3), page(0)];
  t.deepEqual(
    fillRuns(views, 1000, false).map((r) => [r.position, r.views.length]),
    [[1000, 5]],
  );
  const runs = fillRuns(views, 4 * MiB, true);
  t.deepEqual(
    runs.map((r) => [r.position, r.views.map((v) => v.byteLength)]),
    [
      [4 * MiB, [64 * KiB]],
      [4 * MiB + 128 * KiB, [64 * KiB, 64 * KiB]],
    ],
  );
  t.is(runs[1]!.views[1]![0], 3);
});

test('copyOfViews copies a range of views taken back to back, and refuses one past their end', (t) => {
  const views = [Buffer.from([1, 2, 3]), Buffer.from([4]), Buffer.from([5, 6])];
  const out = new Uint8Array(4);
  copyOfViews(views, 2, out);
  t.deepEqual([...out], [3, 4, 5, 6]);
  t.throws(() => copyOfViews(views, 3, new Uint8Array(4)), { instanceOf: RangeError });
});

test('pwritev writes the aligned part of a run with O_DIRECT where allowed, the tail through the page cache; directWrites: false never', async (t) => {
  const dir = await scratch(t);
  const direct = await allowsDirectIo(dir);
  const data = randomBytes(7, 9 * MiB + 123);
  // Views of odd sizes, as a copy or a lease may be: the run is cut into 4 MiB requests.
  const views = [data.subarray(0, 100_000), data.subarray(100_000, 5 * MiB), data.subarray(5 * MiB)];
  for (const directWrites of [true, false]) {
    const path = join(dir, `target-${directWrites}`);
    await writeFile(path, Buffer.alloc(0));
    const file = await FileTarget.open(path, { directWrites });
    await file.pwritev(views, 8 * KiB);
    t.is(
      file.directBytes,
      directWrites && direct ? 9 * MiB : 0,
      `directWrites ${directWrites}, O_DIRECT allowed ${direct}`,
    );
    await file.datasync();
    await file.close();
    const written = await readFile(path);
    t.is(written.byteLength, 8 * KiB + data.byteLength);
    t.true(written.subarray(8 * KiB).equals(data));
  }
});

test('a fill whose O_DIRECT write the kernel refuses after the open goes through the page cache, whole', async (t) => {
  const dir = await scratch(t);
  const path = join(dir, 'target');
  await writeFile(path, Buffer.alloc(0));
  let descriptor: DirectDescriptor | undefined;
  const staged = StagedDirectWrites.open(path, (p) => {
    descriptor = DirectDescriptor.open(p);
    return descriptor;
  });
  if (staged === undefined) {
    t.is(descriptor, undefined, 'open answers undefined only where O_DIRECT is refused');
    return;
  }
  // Memory 16 bytes past a page boundary: EINVAL, and the descriptor is off for good.
  t.is(
    await descriptor!.write([new Uint8Array(pageAlignedSharedBuffer(128 * KiB).buffer, 16, 4 * KiB)], 0),
    0,
  );
  const handle = await open(path, 'r+');
  const file = new FileTarget(handle, staged);
  const data = randomBytes(8, 4 * MiB);
  await file.pwritev([data.subarray(0, MiB), data.subarray(MiB)], 4 * MiB);
  t.is(file.directBytes, 0);
  await file.close();
  t.true((await readFile(path)).subarray(4 * MiB).equals(data));
});

test('runs in page-aligned memory (the pages of the cache) are written from where they lie; other memory through a staging slot', async (t) => {
  const dir = await scratch(t);
  const path = join(dir, 'target');
  await writeFile(path, Buffer.alloc(0));
  const staged = StagedDirectWrites.open(path);
  if (staged === undefined) {
    t.false(await allowsDirectIo(dir));
    return;
  }
  t.teardown(() => staged.close());
  const arena = new Uint8Array(pageAlignedSharedBuffer(8 * 64 * KiB).buffer);
  arena.set(randomBytes(9, arena.byteLength));
  // Pages of the arena out of order, as a chunk's pages are: no copy.
  const pages = [3, 0, 5].map((p) => arena.subarray(p * 64 * KiB, (p + 1) * 64 * KiB));
  t.is(await staged.write(pages, 3 * 64 * KiB, 0), 3 * 64 * KiB);
  t.is(staged.stagedBytes, 0);
  const heap = Buffer.from(randomBytes(10, 128 * KiB));
  t.is(await staged.write([heap], heap.byteLength, 3 * 64 * KiB), heap.byteLength);
  t.is(staged.stagedBytes, heap.byteLength);
  t.is(staged.bytes, 5 * 64 * KiB);
  const written = await readFile(path);
  t.true(written.equals(Buffer.concat([...pages, heap])));
});

const fixture = fixtureTest();

fixture(
  'a drive copied with O_DIRECT fills reads back the source, as sparse as one copied through the page cache',
  async (t) => {
    const { f } = t.context;
    const { snapshot } = await openFixtureSnapshot(t, f);
    const d = f.drives[0]!;
    const copies = [];
    for (const directWrites of [true, false]) {
      const drive = await LiveDrive.open({
        reader: await snapshot.openArchive(d.name),
        targetDir: join(f.dir, `target-direct-${directWrites}`),
        snapshot: snapshot.path,
        files: diskTargetFiles({ directWrites }),
      });
      await runCopyJob(drive, { concurrency: 2 });
      const { bytesWrittenDirect } = drive.stats();
      await drive.close();
      t.true((await readFile(drive.targetPath)).equals(sourceImage(d.spec)), `directWrites ${directWrites}`);
      copies.push({ bytesWrittenDirect, blocks: (await stat(drive.targetPath)).blocks });
    }
    const allowed = await allowsDirectIo(f.dir);
    t.is(copies[0]!.bytesWrittenDirect > 0, allowed, 'fills went past the page cache where allowed');
    t.is(copies[1]!.bytesWrittenDirect, 0);
    t.is(copies[0]!.blocks, copies[1]!.blocks, 'the same holes');
    t.true(copies[0]!.blocks * 512 < d.spec.sizeBytes, 'zero chunks and blocks are holes');
  },
);

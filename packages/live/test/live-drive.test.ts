import { cp, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { heapScratch } from '@liverestore/reader/internal';
import type { ExecutionContext } from 'ava';

import {
  encodeMap,
  GuestPriority,
  LiveDrive,
  readMapFile,
  runCopyJob,
  Semaphore,
  writeMapFile,
} from '../src/internal.js';
import {
  CHUNK_BYTES,
  type Fixture,
  firstDifference,
  fixtureTest,
  MiB,
  openDrive,
  openFixtureSnapshot,
  prng,
  readTarget,
  sourceImage,
} from './helpers.js';

const test = fixtureTest();

let dirs = 0;
function targetDir(f: Fixture): string {
  return join(f.dir, `target-${dirs++}`);
}

/** Drive `index` of the fixture's snapshot opened in a fresh target directory, with its source image. */
async function freshDrive(t: ExecutionContext<{ f: Fixture }>, index = 0, priority?: GuestPriority) {
  const { f } = t.context;
  const { snapshot } = await openFixtureSnapshot(t, f);
  const dir = targetDir(f);
  const d = f.drives[index]!;
  const drive = await openDrive(snapshot, d.name, dir, priority);
  return { f, snapshot, dir, d, drive, src: sourceImage(d.spec) };
}

/**
 * Drive 0 of the fixture opened with a single fill slot (a test that takes it holds every
 * fill and store back), and the first of its regions that is not local.
 */
async function driveWithOneFillSlot(t: ExecutionContext<{ f: Fixture }>) {
  const { f } = t.context;
  const { snapshot, cache } = await openFixtureSnapshot(t, f);
  const d = f.drives[0]!;
  const fillSlots = new Semaphore(1);
  const drive = await LiveDrive.open({
    reader: await snapshot.openArchive(d.name),
    targetDir: targetDir(f),
    snapshot: snapshot.path,
    fillSlots,
  });
  const notLocal = [...Array(drive.regionCount).keys()].find((r) => !drive.isLocal(r))!;
  return { snapshot, cache, d, drive, fillSlots, notLocal };
}

const signal = new AbortController().signal;

test('a fresh target is sparse, has the image size, and its zero chunks are local at once', async (t) => {
  const { f } = t.context;
  const { snapshot } = await openFixtureSnapshot(t, f);
  const dir = targetDir(f);
  const name = f.drives[0]!.name;
  const drive = await openDrive(snapshot, name, dir);
  const st = await stat(drive.targetPath);
  t.is(st.size, f.drives[0]!.spec.sizeBytes);
  t.true(st.blocks * 512 < 64 * 1024, 'target starts as a hole');
  const src = sourceImage(f.drives[0]!.spec);
  let zero = 0;
  for (let i = 0; i < drive.regionCount; i++) {
    const chunk = src.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
    const isZero = chunk.every((b) => b === 0);
    if (isZero) zero++;
    t.is(drive.isLocal(i), isZero, `region ${i}`);
  }
  t.true(zero > 0, 'the fixture has zero chunks');
  t.true(zero < drive.regionCount, 'and data chunks');
  const map = await readMapFile(drive.mapPath);
  t.is(map?.identity.snapshot, snapshot.path);
  t.is(map?.identity.archive, drive.name);
  await drive.close();
  t.deepEqual((await readdir(dir)).sort(), [drive.name, `${drive.name}.map`]);
});

test('reads equal the source and copy-on-read makes the regions local with the right bytes', async (t) => {
  const { d, drive, src } = await freshDrive(t);
  const rand = prng(5);
  for (let k = 0; k < 40; k++) {
    const length = 1 + Math.floor(rand() * 3 * MiB);
    const offset = Math.floor(rand() * (d.spec.sizeBytes - length));
    const buf = Buffer.alloc(length);
    await drive.read(buf, offset, signal);
    t.is(firstDifference(buf, src.subarray(offset, offset + length)), -1, `read ${offset}+${length}`);
  }
  await drive.persist(); // waits for nothing in particular: stores run behind the reads
  await drive.close();
  const stats = drive.stats();
  t.true(stats.guestReadsFromBackup > 0);
  t.true(stats.regionsLocal > 0);
  const target = await readTarget(drive.targetPath);
  for (let i = 0; i < drive.regionCount; i++) {
    if (!drive.isLocal(i)) continue;
    const from = i * CHUNK_BYTES;
    const to = Math.min(d.spec.sizeBytes, from + CHUNK_BYTES);
    t.is(firstDifference(target.subarray(from, to), src.subarray(from, to)), -1, `local region ${i}`);
  }
});

/** Applies random guest writes (partial, spanning, whole-region, zeroes, trims) to drive and model. */
async function guestWrites(
  drive: Awaited<ReturnType<typeof openDrive>>,
  model: Buffer,
  seed: number,
  count: number,
): Promise<void> {
  const rand = prng(seed);
  const size = model.length;
  const pending: Promise<void>[] = [];
  for (let k = 0; k < count; k++) {
    const kind = rand();
    let offset: number;
    let length: number;
    if (kind < 0.15) {
      // exactly one whole region
      const i = Math.floor(rand() * Math.floor(size / CHUNK_BYTES));
      offset = i * CHUNK_BYTES;
      length = CHUNK_BYTES;
    } else {
      length = 1 + Math.floor(rand() * (rand() < 0.5 ? 4096 : 2 * MiB));
      offset = Math.floor(rand() * (size - length));
    }
    if (kind < 0.7) {
      const data = Buffer.alloc(length, 0x11 + (k % 200));
      data.writeUInt32LE(k, 0);
      data.copy(model, offset);
      pending.push(drive.writer.write(data, offset, rand() < 0.1));
    } else if (kind < 0.85) {
      model.fill(0, offset, offset + length);
      pending.push(drive.writer.writeZeroes(offset, length, false, false));
    } else {
      model.fill(0, offset, offset + length);
      pending.push(drive.writer.trim(offset, length, false));
    }
    // Overlapping writes in flight at once have no defined order in NBD: keep one at a time
    // for overlapping ranges by awaiting every few writes (the model assumes issue order).
    await Promise.all(pending.splice(0));
  }
}

test('guest writes during the background copy: the final target is the source with exactly those writes', async (t) => {
  const priority = new GuestPriority(20);
  const { d, drive, src: model } = await freshDrive(t, 0, priority);
  const copy = runCopyJob(drive, { concurrency: 2, priority });
  await guestWrites(drive, model, 9, 60);
  await copy;
  t.true(drive.complete);
  // Reads after completion come from the target.
  const buf = Buffer.alloc(d.spec.sizeBytes);
  await drive.read(buf, 0, signal);
  t.is(firstDifference(buf, model), -1);
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), model), -1);
  const stats = drive.stats();
  t.true(stats.bytesWrittenByGuest > 0);
  t.true(stats.bytesCopied > 0);
});

test('a flushed write survives a crash image of the files; the copy never overwrites it on resume', async (t) => {
  const { f, snapshot, dir, d, drive, src: model } = await freshDrive(t, 1);
  // Partial writes into regions that are not local (fills), plus one across a boundary.
  const writes: [number, number][] = [
    [3 * CHUNK_BYTES + 1000, 5000],
    [2 * CHUNK_BYTES - 100, 300],
    [d.spec.sizeBytes - 700, 700],
  ];
  for (const [offset, length] of writes) {
    const data = Buffer.alloc(length, 0xab);
    data.copy(model, offset);
    await drive.writer.write(data, offset, false);
  }
  await drive.writer.flush();
  // What a crash right now leaves on disk (a copy of the files; the process goes on).
  const crashed = targetDir(f);
  await cp(dir, crashed, { recursive: true });
  await writeFile(join(crashed, '.liverestore.lock'), '999999\n'); // a stale lock is fine for LiveDrive
  const resumed = await openDrive(snapshot, d.name, crashed);
  for (const [offset] of writes) t.true(resumed.isLocal(Math.floor(offset / CHUNK_BYTES)));
  await runCopyJob(resumed);
  await resumed.close();
  t.is(firstDifference(await readTarget(resumed.targetPath), model), -1);
  await drive.close();
});

test('resume: nothing copied twice, flushed writes kept, final image right', async (t) => {
  const { snapshot, dir, d, drive: first, src: model } = await freshDrive(t);
  const abort = new AbortController();
  let copied = 0;
  first.onLocal = () => {
    if (++copied === 4) abort.abort(new Error('stop'));
  };
  await t.throwsAsync(runCopyJob(first, { concurrency: 1, signal: abort.signal }));
  const data = Buffer.alloc(10_000, 0x5a);
  data.copy(model, 7 * CHUNK_BYTES + 123);
  await first.writer.write(data, 7 * CHUNK_BYTES + 123, true); // FUA
  await first.close();
  const localBefore = first.stats().regionsLocal;
  const copiedBefore = first.stats().bytesCopied;
  const second = await openDrive(snapshot, d.name, dir);
  t.is(second.regionsLocal, localBefore);
  await runCopyJob(second);
  await second.close();
  // Every data region was fetched once in total (guest fill + first copy + second copy).
  const src = sourceImage(d.spec);
  let dataBytes = 0;
  for (let i = 0; i < second.regionCount; i++) {
    const chunk = src.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
    if (!chunk.every((b) => b === 0)) dataBytes += chunk.length;
  }
  t.is(
    copiedBefore + first.stats().bytesFilledForGuest + second.stats().bytesCopied,
    dataBytes,
    'each data region fetched exactly once',
  );
  t.is(firstDifference(await readTarget(second.targetPath), model), -1);
});

test('bad targets: other snapshot, wrong size, corrupt map, target without map, map without target', async (t) => {
  const { f } = t.context;
  const { snapshot } = await openFixtureSnapshot(t, f);
  const { snapshot: other } = await openFixtureSnapshot(t, f, f.otherSnapshot);
  const name = f.drives[0]!.name;
  const dir = targetDir(f);
  const made = await openDrive(snapshot, name, dir);
  await made.close();
  const file = made.name;

  let err = await t.throwsAsync(openDrive(other, name, dir));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_SNAPSHOT_MISMATCH');
  t.true(err!.message.includes(snapshot.path) && err!.message.includes(other.path), err!.message);

  const wrongSize = targetDir(f);
  await cp(dir, wrongSize, { recursive: true });
  await truncate(join(wrongSize, file), f.drives[0]!.spec.sizeBytes - 512);
  err = await t.throwsAsync(openDrive(snapshot, name, wrongSize));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_TARGET_SIZE');

  const corrupt = targetDir(f);
  await cp(dir, corrupt, { recursive: true });
  const mapPath = join(corrupt, `${file}.map`);
  const { readFile } = await import('node:fs/promises');
  const bytes = await readFile(mapPath);
  bytes[bytes.length - 40]! ^= 1; // a bit of the bitmap
  await writeFile(mapPath, bytes);
  err = await t.throwsAsync(openDrive(snapshot, name, corrupt));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_MAP_CORRUPT');

  const noMap = targetDir(f);
  await cp(dir, noMap, { recursive: true });
  const { rm } = await import('node:fs/promises');
  await rm(join(noMap, `${file}.map`));
  err = await t.throwsAsync(openDrive(snapshot, name, noMap));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_TARGET_EXISTS');

  // A crash while the target was being created: a map with nothing local and a target
  // without its size yet. That is repaired (nothing flushed can be lost), not refused.
  const halfCreated = targetDir(f);
  await cp(dir, halfCreated, { recursive: true });
  await writeMapFile(
    join(halfCreated, `${file}.map`),
    encodeMap(made.identity, new Uint8Array(Math.ceil(made.regionCount / 8)), 1),
  );
  await truncate(join(halfCreated, file), 0);
  const repaired = await openDrive(snapshot, name, halfCreated);
  t.is(repaired.regionsLocal, 0);
  await runCopyJob(repaired);
  await repaired.close();
  t.is(firstDifference(await readTarget(repaired.targetPath), sourceImage(f.drives[0]!.spec)), -1);

  const noTarget = targetDir(f);
  await cp(dir, noTarget, { recursive: true });
  await rm(join(noTarget, file));
  err = await t.throwsAsync(openDrive(snapshot, name, noTarget));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_TARGET_MISSING');
});

test('blockStatus: holes for zero regions, data elsewhere; zeroing a whole pristine region keeps it a hole', async (t) => {
  const { d, drive, src } = await freshDrive(t);
  const extents = drive.blockStatus(0, d.spec.sizeBytes, 1000);
  t.is(
    extents.reduce((s, e) => s + e.length, 0),
    d.spec.sizeBytes,
  );
  let at = 0;
  for (const e of extents) {
    if (e.zero)
      t.true(
        src.subarray(at, at + e.length).every((b) => b === 0),
        `extent at ${at}`,
      );
    at += e.length;
  }
  // Zero a whole data region: no fetch, reads as zeroes, reported as a hole, target stays sparse there.
  let dataRegion = 0;
  while (src.subarray(dataRegion * CHUNK_BYTES, (dataRegion + 1) * CHUNK_BYTES).every((b) => b === 0))
    dataRegion++;
  await drive.writer.writeZeroes(dataRegion * CHUNK_BYTES, CHUNK_BYTES, false, false);
  t.true(drive.isLocal(dataRegion));
  t.is(drive.stats().bytesFilledForGuest, 0);
  const [ext] = drive.blockStatus(dataRegion * CHUNK_BYTES, CHUNK_BYTES, 10);
  t.deepEqual(ext, { length: CHUNK_BYTES, hole: true, zero: true });
  const buf = Buffer.alloc(CHUNK_BYTES, 1);
  await drive.read(buf, dataRegion * CHUNK_BYTES, signal);
  t.true(buf.every((b) => b === 0));
  await drive.writer.write(Buffer.alloc(10, 7), dataRegion * CHUNK_BYTES + 5, false);
  const [after] = drive.blockStatus(dataRegion * CHUNK_BYTES, CHUNK_BYTES, 10);
  t.false(after!.zero);
  await drive.close();
});

test('after a restart, a zero region not recorded local is checked and zeroed (it may hold an interrupted write)', async (t) => {
  const { snapshot, dir, d, drive: first, src } = await freshDrive(t);
  let zeroRegion = 0;
  while (!src.subarray(zeroRegion * CHUNK_BYTES, (zeroRegion + 1) * CHUNK_BYTES).every((b) => b === 0))
    zeroRegion++;
  t.true(first.isLocal(zeroRegion));
  await first.close();
  // What a crash leaves after a write that was never flushed: bytes in the region, and a
  // map that does not record the region.
  const { open: openFile } = await import('node:fs/promises');
  const handle = await openFile(first.targetPath, 'r+');
  await handle.write(Buffer.alloc(70_000, 0xee), 0, 70_000, zeroRegion * CHUNK_BYTES + 12_345);
  await handle.close();
  const map = (await readMapFile(first.mapPath))!;
  const bits = Uint8Array.from(map.bits);
  bits[zeroRegion >> 3]! &= ~(1 << (zeroRegion & 7));
  await writeMapFile(first.mapPath, encodeMap(map.identity, bits, map.generation + 1));
  const resumed = await openDrive(snapshot, d.name, dir);
  t.true(resumed.resumed);
  t.false(resumed.isLocal(zeroRegion));
  await runCopyJob(resumed);
  await resumed.close();
  t.is(firstDifference(await readTarget(resumed.targetPath), src), -1, 'the stale bytes were zeroed');
});

test('a copy queued behind a guest write on the same region never overwrites the guest data', async (t) => {
  const { f } = t.context;
  const { snapshot } = await openFixtureSnapshot(t, f);
  const d = f.drives[0]!;
  const src = sourceImage(d.spec);
  const drive = await openDrive(snapshot, d.name, targetDir(f));
  const model = Buffer.from(src);
  let races = 0;
  for (let i = 0; i < drive.regionCount; i++) {
    if (drive.isLocal(i)) continue;
    // The write takes the region's lock first (it must fill the region), the copy queues
    // behind it and finds the region local when its turn comes.
    const offset = i * CHUNK_BYTES + 4096 * (1 + (i % 7));
    const data = Buffer.alloc(8192, 0xa0 + (i % 16));
    data.copy(model, offset);
    const write = drive.writer.write(data, offset, false);
    const copy = drive.copyRegion(i);
    const [, fetched] = await Promise.all([write, copy]);
    t.is(fetched, 0, `region ${i}: the copy found it local`);
    races++;
  }
  t.true(races > 3);
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), model), -1);
});

test('many concurrent reads and writes of regions not local, with one fill slot: all correct, no deadlock', async (t) => {
  const { d, drive } = await driveWithOneFillSlot(t);
  const model = sourceImage(d.spec);
  const ops: Promise<void>[] = [];
  const reads: { buf: Buffer; offset: number }[] = [];
  for (let i = 0; i < drive.regionCount; i++) {
    const offset = i * CHUNK_BYTES + 1000;
    if (i % 3 === 0) {
      const data = Buffer.alloc(3000, 0x99);
      data.copy(model, offset);
      ops.push(drive.writer.write(data, offset, false));
    } else {
      const buf = Buffer.alloc(5000);
      reads.push({ buf, offset });
      ops.push(drive.read(buf, offset, signal));
    }
  }
  await Promise.all(ops);
  for (const { buf, offset } of reads) {
    // A region written above is not read here (each region gets one operation).
    t.is(firstDifference(buf, model.subarray(offset, offset + buf.length)), -1, `read at ${offset}`);
  }
  await runCopyJob(drive);
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), model), -1);
});

test('a guest read of a region not local never waits for the region lock (a fill in flight holds it)', async (t) => {
  const { d, drive, fillSlots, notLocal: i } = await driveWithOneFillSlot(t);
  const model = Buffer.from(sourceImage(d.spec));
  // The test takes the only fill slot: a partial write to region i takes the region's lock,
  // then waits for a slot, and holds the lock until the test lets it go.
  const releaseSlot = await fillSlots.acquire();
  const data = Buffer.alloc(512, 0x5a);
  const writeAt = i * CHUNK_BYTES + 4096;
  data.copy(model, writeAt);
  let written = false;
  const write = drive.writer.write(data, writeAt, false).then(() => {
    written = true;
  });
  const readAt = i * CHUNK_BYTES + 65536;
  const buf = Buffer.alloc(65536);
  await drive.read(buf, readAt, signal);
  t.false(written, 'the read came back while the write still held the region');
  t.is(firstDifference(buf, model.subarray(readAt, readAt + buf.length)), -1);
  releaseSlot();
  await write;
  t.true(drive.isLocal(i));
  await drive.close();
  const region = (await readTarget(drive.targetPath)).subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
  t.is(
    firstDifference(region, model.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)),
    -1,
    'the write landed on the filled region',
  );
});

test('write-behind: the guest is answered, then its region is stored from the pinned chunk, never fetched again however the cache turns over', async (t) => {
  const { snapshot, cache, d, drive, fillSlots, notLocal: i } = await driveWithOneFillSlot(t);
  const model = sourceImage(d.spec);
  // The test holds the only fill slot: the store of the region waits behind the reply.
  const releaseSlot = await fillSlots.acquire();
  const at = i * CHUNK_BYTES + 8192;
  const lease = await drive.lease(at, 65536, new AbortController().signal, heapScratch);
  t.is(firstDifference(Buffer.concat(lease.views), model.subarray(at, at + 65536)), -1);
  lease.release();
  t.false(drive.isLocal(i), 'answered before the region is stored');
  // Every other chunk of the image passes through the 8 MiB cache (13 MiB of them).
  const other = await snapshot.openArchive(d.name, { readaheadChunks: 0 });
  const scratch = Buffer.alloc(CHUNK_BYTES);
  for (let k = 0; k < drive.regionCount; k++) if (k !== i) await other.readAt(scratch, k * CHUNK_BYTES);
  t.true(cache.stats().evictions > 0, 'the cache turned over');
  const loads = cache.stats().misses;
  releaseSlot();
  await drive.storesSettled();
  t.true(drive.isLocal(i));
  t.is(cache.stats().misses, loads, 'the store did not fetch the chunk again');
  t.is(cache.stats().lentBytes, 0, 'the held chunk was returned');
  await drive.close();
  const region = (await readTarget(drive.targetPath)).subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
  t.is(firstDifference(region, model.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)), -1);
});

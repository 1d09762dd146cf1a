/*
 * A chunk that occurs in several regions of a drive is fetched and decoded once per live
 * restore: its other regions are filled from a region of the target that holds it
 * (checked against the digest), however long ago the memory cache evicted it; readahead
 * leaves regions alone that need no fetch. A cache of four chunks makes every repeat
 * come back after its eviction.
 */
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache, type ChunkLoadRecord, openSnapshot } from '@liverestore/reader';
import { prng, randomBytes, tempDir } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { BackupCopies, LiveDrive } from '../src/internal.js';
import { CHUNK_BYTES, firstDifference, readTarget } from './helpers.js';

/** Regions by chunk: A at 0, 6 and 13, B at 1 and 9, Z (zeros) at 12, the rest once. */
const LAYOUT = 'ABCDEFAGHBIJZAKL';

function layoutImage(): Buffer {
  const chunks = new Map<string, Buffer>();
  let seed = 40;
  return Buffer.concat(
    [...LAYOUT].map((name) => {
      let chunk = chunks.get(name);
      if (chunk === undefined) {
        chunk = name === 'Z' ? Buffer.alloc(CHUNK_BYTES) : Buffer.from(randomBytes(seed++, CHUNK_BYTES));
        chunks.set(name, chunk);
      }
      return chunk;
    }),
  );
}

const regionsOf = (name: string): number[] => [...LAYOUT].flatMap((n, i) => (n === name ? [i] : []));

/** The layout backed up, a live drive on it through a cache of four chunks, and each load from the source. */
async function layoutDrive(t: ExecutionContext) {
  const work = await tempDir('lr-live-copies-');
  t.teardown(() => work.cleanup());
  const image = layoutImage();
  const imagePath = join(work.path, 'drive-scsi0.img');
  await writeFile(imagePath, image);
  const store = await Datastore.create(join(work.path, 'store'));
  const { snapshot: path } = await backup(store, {
    type: 'vm',
    id: '100',
    backupTime: 1_790_000_000,
    inputs: [{ name: 'drive-scsi0.img', path: imagePath }],
    chunkSizeBytes: CHUNK_BYTES,
    encodeThreads: 0,
  });
  const loads: ChunkLoadRecord[] = [];
  const cache = new ChunkCache({
    cacheBytes: 4 * CHUNK_BYTES,
    workers: 0,
    onLoad: (record) => {
      if (record.from === 'source') loads.push(record);
    },
  });
  const snapshot = await openSnapshot({ source: join(work.path, 'store'), snapshot: path, cache });
  const reader = await snapshot.openArchive('drive-scsi0.img');
  const drive = await LiveDrive.open({
    reader,
    copyReader: await snapshot.openArchive('drive-scsi0.img', { readaheadChunks: 2 }),
    targetDir: join(work.path, 'target'),
    snapshot: snapshot.path,
  });
  t.teardown(async () => {
    await drive.close();
    await snapshot.close();
    await cache.close();
  });
  /** Loads from the source of chunk `name`'s digest. */
  const loadsOf = (name: string): number => {
    const digest = reader.digestHexAt(regionsOf(name)[0]!);
    return loads.filter((l) => l.digestHex === digest).length;
  };
  const copyAll = async (): Promise<void> => {
    for (let i = 0; i < drive.regionCount; i++) await drive.copyRegion(i);
  };
  return { image, drive, loads, loadsOf, copyAll };
}

const signal = new AbortController().signal;
const region = (image: Buffer, i: number): Buffer => image.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);

test('the copy fetches a repeated chunk once: its other regions are read back from the target', async (t) => {
  const { image, drive, loads, loadsOf, copyAll } = await layoutDrive(t);
  await copyAll();
  t.is(loadsOf('A'), 1, 'A: three regions, one fetch');
  t.is(loadsOf('B'), 1);
  t.is(loads.length, new Set(LAYOUT.replace('Z', '')).size, 'each distinct chunk loaded once');
  t.is(drive.stats().bytesFromTargetCopies, 3 * CHUNK_BYTES);
  t.true(drive.complete);
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), image), -1);
});

test('a guest read of a repeated chunk evicted from memory is answered from its copy in the target and stored', async (t) => {
  const { image, drive, loadsOf, copyAll } = await layoutDrive(t);
  for (let i = 0; i < 6; i++) await drive.copyRegion(i); // A B C D E F: A long evicted
  const buffer = Buffer.alloc(64 * 1024);
  const at = 6 * CHUNK_BYTES + 100_000;
  await drive.read(buffer, at, signal);
  t.true(buffer.equals(image.subarray(at, at + buffer.length)));
  await drive.storesSettled();
  t.true(drive.isLocal(6), 'stored behind the read');
  t.is(loadsOf('A'), 1);
  t.is(drive.stats().bytesFromTargetCopies, CHUNK_BYTES);
  await copyAll();
  t.is(loadsOf('A'), 1);
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), image), -1);
});

test('a region the guest wrote into is no copy of the backup any more, nor are bytes that fail the digest', async (t) => {
  const { image, drive, loadsOf } = await layoutDrive(t);
  const expected = Buffer.from(image);
  for (let i = 0; i < 6; i++) await drive.copyRegion(i);
  // The guest writes into region 0 (A): region 6 (A) must not be filled from it.
  const guest = Buffer.alloc(4096, 0xee);
  await drive.writer.write(guest, 8192, false);
  guest.copy(expected, 8192);
  await drive.copyRegion(6);
  t.is(loadsOf('A'), 2, 'fetched again');
  t.is(drive.stats().bytesFromTargetCopies, 0);
  // Region 6 is the copy of A now, and A leaves memory. Damage region 6 behind the
  // drive's back: region 13 (A) is fetched, not filled with what fails the digest.
  for (let i = 7; i < 12; i++) await drive.copyRegion(i);
  const fromCopies = drive.stats().bytesFromTargetCopies; // region 9: B, from region 1
  const file = await open(drive.targetPath, 'r+');
  await file.write(Buffer.alloc(512, 0x55), 0, 512, 6 * CHUNK_BYTES + 4096);
  await file.close();
  await drive.copyRegion(13);
  t.is(loadsOf('A'), 3);
  t.is(drive.stats().bytesFromTargetCopies, fromCopies);
  await drive.close();
  const target = await readTarget(drive.targetPath);
  t.true(region(target, 0).equals(region(expected, 0)), 'the guest write stays');
  t.true(region(target, 13).equals(region(image, 13)));
});

test('readahead does not fetch regions already local: a chunk the guest read is loaded once', async (t) => {
  const { drive, loadsOf, copyAll } = await layoutDrive(t);
  const buffer = Buffer.alloc(4096);
  await drive.read(buffer, 4 * CHUNK_BYTES, signal); // E
  await drive.storesSettled();
  t.true(drive.isLocal(4));
  // Loads of other chunks evict E before the copy's readahead passes region 4.
  for (const i of [7, 8, 10, 11]) await drive.read(buffer, i * CHUNK_BYTES, signal);
  await copyAll();
  t.is(loadsOf('E'), 1);
});

test('random guest reads, writes and region copies, some at once, over repeated chunks through a small cache: every read and the final target are the model', async (t) => {
  const { image, drive, loads } = await layoutDrive(t);
  const model = Buffer.from(image);
  const random = prng(Number(process.env.LIVE_COPIES_SEED ?? 4242));
  t.log(`seed ${process.env.LIVE_COPIES_SEED ?? 4242} (LIVE_COPIES_SEED replays another)`);
  const size = model.byteLength;
  const pick = (n: number): number => Math.floor(random() * n);
  /** One step: a read (checked), a write (applied to the model), or the copy of a region. */
  const step = async (kind: number): Promise<void> => {
    if (kind < 4) {
      const length = 1 + pick(2 * CHUNK_BYTES);
      const offset = pick(size - length);
      const buffer = Buffer.alloc(length);
      // Reads run beside writes of other steps: only a read no write of its batch touches is checked.
      const expected = Buffer.from(model.subarray(offset, offset + length));
      await drive.read(buffer, offset, signal);
      if (!untouched.some(([from, to]) => from < offset + length && offset < to))
        t.true(buffer.equals(expected), `read ${offset}+${length}`);
    } else if (kind < 5) {
      // Writes land in regions of repeated chunks now and then.
      const target = random() < 0.25 ? [0, 1, 6, 9, 13][pick(5)]! : pick(drive.regionCount);
      const length = 512 * (1 + pick(64));
      const offset = target * CHUNK_BYTES + 512 * pick((CHUNK_BYTES - length) / 512);
      const data = Buffer.from(randomBytes(pick(1e9), length));
      untouched.push([offset, offset + length]);
      data.copy(model, offset);
      await drive.writer.write(data, offset, false);
    } else {
      // Copies of the repeats' later regions half of the time: those may come from a holder.
      await drive.copyRegion(random() < 0.5 ? [6, 9, 13][pick(3)]! : pick(drive.regionCount));
    }
  };
  let untouched: [number, number][] = [];
  for (let batch = 0; batch < 80; batch++) {
    untouched = [];
    const kinds = Array.from({ length: 1 + pick(3) }, () => pick(10));
    // Writes first in the model (they are applied to it when they start), reads checked against the rest.
    await Promise.all(kinds.sort((a, b) => b - a).map((kind) => step(kind)));
    await drive.storesSettled();
  }
  for (let i = 0; i < drive.regionCount; i++) await drive.copyRegion(i);
  await drive.storesSettled();
  t.true(drive.complete);
  const fromCopies = drive.stats().bytesFromTargetCopies;
  await drive.close();
  t.is(firstDifference(await readTarget(drive.targetPath), model), -1, 'the target is the model');
  t.log(
    `${loads.length} loads from the source for ${new Set(loads.map((l) => l.digestHex)).size} chunks, ${fromCopies / CHUNK_BYTES} regions from copies in the target`,
  );
});

test('BackupCopies: only repeated non-zero chunks are recorded, the first holder kept, forgotten by its region only', (t) => {
  const digests = ['a', 'b', 'a', 'z', 'z', 'a'];
  const copies = new BackupCopies(
    digests.length,
    (i) => digests[i]!,
    (i) => digests[i] === 'z',
  );
  copies.filled(1); // b occurs once
  copies.filled(3); // a zero chunk
  t.is(copies.size, 0);
  copies.filled(0);
  copies.filled(2);
  t.is(copies.holding(5), 0);
  t.is(copies.holding(0), undefined, 'a region is no copy for itself');
  copies.forget(2);
  t.is(copies.holding(5), 0, 'forgetting another region of the chunk changes nothing');
  copies.forget(0);
  t.is(copies.holding(5), undefined);
  copies.filled(2);
  t.is(copies.holding(0), 2);
});

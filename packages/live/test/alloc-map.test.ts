import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '@liverestore/testkit';
import test from 'ava';
import {
  bitmapBytes,
  checkMapIdentity,
  decodeMap,
  encodeMap,
  type MapIdentity,
  RegionBitmap,
  readMapFile,
  writeMapFile,
} from '../src/internal.js';

const identity: MapIdentity = {
  snapshot: 'vm/100/2026-11-26T10:00:00Z',
  archive: 'drive-scsi0.img',
  indexCsum: 'ab'.repeat(32),
  imageBytes: 32 * 1024 ** 3 + 512,
  regionBytes: 4 * 1024 * 1024,
  regionCount: 8193,
};

function someBits(): Uint8Array {
  const map = new RegionBitmap(identity.regionCount);
  for (let i = 0; i < identity.regionCount; i += 3) map.set(i);
  map.set(identity.regionCount - 1);
  return map.bits;
}

test('a map round-trips: identity, generation, every bit', (t) => {
  const bits = someBits();
  const encoded = encodeMap(identity, bits, 42);
  t.is(encoded.length, 74 + `${identity.snapshot} ${identity.archive}`.length + bitmapBytes(8193) + 32);
  const decoded = decodeMap(encoded, 'x.map');
  t.deepEqual(decoded.identity, identity);
  t.is(decoded.generation, 42);
  t.deepEqual([...decoded.bits], [...bits]);
  const map = new RegionBitmap(identity.regionCount, decoded.bits);
  t.is(map.count, Math.ceil(8193 / 3) + 1);
  t.true(map.has(0) && map.has(3) && !map.has(1) && map.has(8192));
});

test('any flipped byte or truncation of a map is ERR_LR_LIVE_MAP_CORRUPT', (t) => {
  const encoded = encodeMap(identity, someBits(), 1);
  for (const at of [0, 8, 12, 16, 24, 28, 33, 40, 72, 80, 200, encoded.length - 40, encoded.length - 1]) {
    const bad = Buffer.from(encoded);
    bad[at]! ^= 0x10;
    const err = t.throws(() => decodeMap(bad, 'x.map'));
    t.is((err as { code?: string }).code, 'ERR_LR_LIVE_MAP_CORRUPT', `byte ${at}`);
  }
  for (const length of [0, 10, 100, encoded.length - 1]) {
    const err = t.throws(() => decodeMap(encoded.subarray(0, length), 'x.map'));
    t.is((err as { code?: string }).code, 'ERR_LR_LIVE_MAP_CORRUPT', `length ${length}`);
  }
});

test('a map of another snapshot, archive or index is ERR_LR_LIVE_SNAPSHOT_MISMATCH; other sizes are corrupt', (t) => {
  for (const other of [
    { ...identity, snapshot: 'vm/100/2026-11-27T10:00:00Z' },
    { ...identity, archive: 'drive-scsi1.img' },
    { ...identity, indexCsum: 'cd'.repeat(32) },
  ]) {
    const err = t.throws(() => checkMapIdentity(other, identity, 'x.map'));
    t.is((err as { code?: string }).code, 'ERR_LR_LIVE_SNAPSHOT_MISMATCH');
    t.regex((err as Error).message, /vm\/100/);
  }
  const err = t.throws(() =>
    checkMapIdentity({ ...identity, regionBytes: 1024 * 1024, regionCount: 32769 }, identity, 'x.map'),
  );
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_MAP_CORRUPT');
  t.notThrows(() => checkMapIdentity({ ...identity }, identity, 'x.map'));
});

test('writeMapFile replaces atomically and leaves no temporary file; a missing map reads as undefined', async (t) => {
  const dir = await tempDir('lr-map-');
  t.teardown(() => dir.cleanup());
  const path = join(dir.path, 'drive-scsi0.img.map');
  t.is(await readMapFile(path), undefined);
  await writeMapFile(path, encodeMap(identity, new Uint8Array(bitmapBytes(identity.regionCount)), 1));
  await writeMapFile(path, encodeMap(identity, someBits(), 2));
  const read = await readMapFile(path);
  t.is(read?.generation, 2);
  t.deepEqual([...(read?.bits ?? [])], [...someBits()]);
  t.deepEqual(await readdir(dir.path), ['drive-scsi0.img.map']);
  // A torn write of the final name (it cannot happen through writeMapFile) is detected.
  const bytes = await readFile(path);
  await writeFile(path, bytes.subarray(0, bytes.length - 7));
  const err = await t.throwsAsync(readMapFile(path));
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_MAP_CORRUPT');
});

test('RegionBitmap refuses bits past the last region and counts sets once', (t) => {
  const bits = new Uint8Array(2);
  bits[1] = 0x80; // region 15 of a 10-region map
  t.throws(() => new RegionBitmap(10, bits), { instanceOf: RangeError });
  const map = new RegionBitmap(10);
  t.true(map.set(3));
  t.false(map.set(3));
  t.is(map.count, 1);
  t.false(map.complete);
});

import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import {
  BLOCK_BYTES,
  type ImageSpec,
  imageBytes,
  imageRegions,
  mutate,
  tempDir,
  writeImageFile,
} from '../src/index.js';

const MiB = 1024 * 1024;

/** Whether the file system under `dir` stores holes (tmpfs and ext4 do; some overlays do not). */
async function supportsHoles(dir: string): Promise<boolean> {
  const probe = join(dir, 'probe');
  await writeFile(probe, '');
  await truncate(probe, 16 * MiB);
  return (await stat(probe)).blocks * 512 < MiB;
}

test('a sparse image file has the image bytes and holes where they are zero', async (t) => {
  const dir = await tempDir('testkit-sparse-');
  t.teardown(dir.cleanup);
  const spec: ImageSpec = {
    sizeBytes: 96 * MiB + 4321,
    seed: 17,
    mix: { zero: 0.4, text: 0.3, random: 0.3 },
  };
  const path = join(dir.path, 'drive.img');
  const result = await writeImageFile(spec, path);
  const zeroBytes = imageRegions(spec)
    .filter((r) => r.kind === 'zero')
    .reduce((sum, r) => sum + r.lengthBytes, 0);
  t.is(result.sizeBytes, spec.sizeBytes);
  // Only whole zero blocks are skipped; the zero tail of a partial last block is written.
  t.true(result.writtenBytes <= spec.sizeBytes - zeroBytes + BLOCK_BYTES);
  t.true(result.writtenBytes >= spec.sizeBytes - zeroBytes - BLOCK_BYTES);
  const info = await stat(path);
  t.is(info.size, spec.sizeBytes);
  if (await supportsHoles(dir.path)) {
    const allocated = info.blocks * 512;
    t.log(`allocated ${(allocated / MiB).toFixed(1)} MiB of ${(spec.sizeBytes / MiB).toFixed(1)} MiB`);
    t.true(allocated <= result.writtenBytes + 2 * MiB);
  } else {
    t.log('file system does not keep holes; allocation not checked');
  }
  t.true((await readFile(path)).equals(imageBytes(spec, 0, spec.sizeBytes)));
});

test('a non-sparse file is fully written; a mutated zero region is written as data', async (t) => {
  const dir = await tempDir('testkit-sparse-');
  t.teardown(dir.cleanup);
  const spec = mutate(
    { sizeBytes: 8 * MiB, seed: 1, mix: { zero: 1 } },
    { seed: 1, changes: 3, changeBytes: 100 },
  );
  const dense = await writeImageFile(spec, join(dir.path, 'dense.img'), { sparse: false });
  t.is(dense.writtenBytes, spec.sizeBytes);
  const sparse = await writeImageFile(spec, join(dir.path, 'sparse.img'));
  t.true(sparse.writtenBytes > 0 && sparse.writtenBytes <= 6 * BLOCK_BYTES);
  const expected = imageBytes(spec, 0, spec.sizeBytes);
  t.true((await readFile(join(dir.path, 'dense.img'))).equals(expected));
  t.true((await readFile(join(dir.path, 'sparse.img'))).equals(expected));
});

test('an empty image gives an empty file', async (t) => {
  const dir = await tempDir('testkit-sparse-');
  t.teardown(dir.cleanup);
  const path = join(dir.path, 'empty.img');
  t.deepEqual(await writeImageFile({ sizeBytes: 0, seed: 1 }, path), { sizeBytes: 0, writtenBytes: 0 });
  t.is((await stat(path)).size, 0);
});

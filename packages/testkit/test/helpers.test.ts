import { createHash } from 'node:crypto';
import { access, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import {
  createImageStream,
  DATA_DISK_MIX,
  imageBytes,
  SYSTEM_DISK_MIX,
  sha256OfImage,
  tempDir,
  vmImageSet,
  writeVmImageFiles,
} from '../src/index.js';

const MiB = 1024 * 1024;

test('sha256OfImage equals the digest of the streamed bytes', async (t) => {
  const spec = { sizeBytes: 9 * MiB + 3, seed: 4 };
  const hash = createHash('sha256');
  for await (const piece of createImageStream(spec)) hash.update(piece as Buffer);
  t.is(await sha256OfImage(spec), hash.digest('hex'));
  t.is(await sha256OfImage({ sizeBytes: 0, seed: 1 }), createHash('sha256').digest('hex'));
});

test('tempDir gives a fresh directory under the OS temp dir, and cleanup removes it', async (t) => {
  const a = await tempDir('testkit-');
  const b = await tempDir('testkit-');
  t.not(a.path, b.path);
  t.true(a.path.startsWith(join(tmpdir(), 'testkit-')));
  await writeFile(join(a.path, 'x'), 'x');
  await a.cleanup();
  await a.cleanup();
  await b.cleanup();
  await t.throwsAsync(access(a.path));
  await t.throwsAsync(() => tempDir('a/b'), { instanceOf: RangeError });
});

test('vmImageSet describes a system disk and data disks of one family', (t) => {
  const drives = vmImageSet(7, { drives: 3, sizeBytes: [8 * MiB, 16 * MiB, 4 * MiB] });
  t.deepEqual(
    drives.map((d) => d.name),
    ['drive-scsi0', 'drive-scsi1', 'drive-scsi2'],
  );
  t.deepEqual(
    drives.map((d) => d.spec.sizeBytes),
    [8 * MiB, 16 * MiB, 4 * MiB],
  );
  t.true(drives.every((d) => d.spec.family === 7));
  t.is(new Set(drives.map((d) => d.spec.seed)).size, 3);
  t.deepEqual(drives[0]?.spec.mix, SYSTEM_DISK_MIX);
  t.deepEqual(drives[1]?.spec.mix, DATA_DISK_MIX);
  t.deepEqual(vmImageSet(7, { drives: 3, sizeBytes: [8 * MiB, 16 * MiB, 4 * MiB] }), drives);
  t.true(drives.every((d) => Number.isSafeInteger(d.spec.seed)));
  const [first] = vmImageSet(7, { sizeBytes: MiB });
  t.true(first !== undefined && imageBytes(first.spec, 0, MiB).length === MiB);
  t.throws(() => vmImageSet(7, { drives: 2, sizeBytes: [MiB] }), { instanceOf: RangeError });
});

test('writeVmImageFiles writes each drive of the set to DIR/<prefix><drive>.raw, byte for byte', async (t) => {
  const dir = await tempDir('lr-testkit-');
  t.teardown(() => dir.cleanup());
  const sizes = [MiB + 3, 2 * MiB + 512];
  const files = await writeVmImageFiles(dir.path, 5, sizes, 'other-');
  t.deepEqual(
    files.map((f) => [f.name, f.path]),
    vmImageSet(5, { drives: 2, sizeBytes: sizes }).map((d) => [
      d.name,
      join(dir.path, `other-${d.name}.raw`),
    ]),
  );
  for (const f of files) t.true((await readFile(f.path)).equals(imageBytes(f.spec, 0, f.spec.sizeBytes)));
});

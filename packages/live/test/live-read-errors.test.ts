/*
 * A guest read the backup cannot answer (a corrupt chunk) fails with EIO for that request
 * only; the client learns nothing more, so the restore reports it as a warning naming the
 * drive, the offset, the code and the chunk's digest, once per distinct failure (issue 15,
 * defect 12: live-restore logged nothing).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Datastore, parseSnapshotSpec } from '@liverestore/datastore';
import { readIndex, toHex } from '@liverestore/format';
import { liveRestore } from '../src/index.js';
import { CHUNK_BYTES, fixtureTest, MiB, sourceImage } from './helpers.js';

const test = fixtureTest(47);

test('a failed guest read is one warning with the drive, offset, code and digest; a repeat is not', async (t) => {
  const { f } = t.context;
  const store = await Datastore.open(f.storeDir);
  const ref = parseSnapshotSpec(f.snapshot);
  const drive0 = f.drives[0]!;
  const index = readIndex(
    await readFile(join(store.snapshotDir({ ...ref, time: ref.time! }), `${drive0.name}.img.fidx`)),
  );
  const image = sourceImage(drive0.spec);
  // The first chunk with data in it (an all-zero chunk is never read from the store).
  let bad = 0;
  while (image.subarray(bad * CHUNK_BYTES, (bad + 1) * CHUNK_BYTES).every((b) => b === 0)) bad++;
  const digest = toHex(index.digestAt(bad));
  const chunk = await readFile(store.chunkPath(digest));
  chunk[20] = chunk[20]! ^ 0xff;
  await writeFile(store.chunkPath(digest), chunk);

  const restore = await liveRestore({
    source: f.storeDir,
    snapshot: f.snapshot,
    targetDir: join(f.dir, 'target'),
    listen: false,
    cacheBytes: 8 * MiB,
    workers: 0,
    startCopy: false,
  });
  t.teardown(() => restore.close().catch(() => undefined));
  const warnings: Error[] = [];
  restore.on('warning', (w) => warnings.push(w));
  const drive = restore.drives[0]!;
  const signal = new AbortController().signal;
  const at = bad * CHUNK_BYTES + 4096;

  await t.throwsAsync(drive.read(Buffer.alloc(4096), at, signal));
  t.is(warnings.length, 1);
  const warning = warnings[0] as Error & { code?: string };
  t.regex(warning.code ?? '', /^ERR_LR_(BLOB_CRC_MISMATCH|DIGEST_MISMATCH|DECOMPRESS_FAILED)$/);
  t.true(
    warning.message.includes(`read of ${drive.name} at ${at} failed (the client got EIO)`),
    warning.message,
  );
  t.true(warning.message.includes(digest), 'the warning names the chunk');

  await t.throwsAsync(drive.read(Buffer.alloc(4096), at, signal));
  t.is(warnings.length, 1, 'the same failure is reported once');

  const good = bad === 0 ? 1 : 0;
  const bytes = Buffer.alloc(4096);
  await drive.read(bytes, good * CHUNK_BYTES, signal);
  t.true(bytes.equals(image.subarray(good * CHUNK_BYTES, good * CHUNK_BYTES + 4096)));
  t.is(warnings.length, 1);
});

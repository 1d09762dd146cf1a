/*
 * A full target file system (a small tmpfs: the tests run as root; a mount that fails
 * fails the test, it never passes by skipping): guest
 * writes that need space get NBD_ENOSPC, the copy stalls (it does not end the restore),
 * regions already local are still served, and once space is freed the copy completes.
 * The same paths through the TargetFile seam are in live-faults.test.ts.
 */

import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '@liverestore/nbd';
import { mountSmallTmpfs } from '@liverestore/testkit';
import { RegionBitmap, readMapFile } from '../src/internal.js';
import { CHUNK_BYTES, firstDifference, fixtureTest, MiB, restoreFixture, sourceImage } from './helpers.js';

const test = fixtureTest(31);

test('full target file system: NBD_ENOSPC for writes that need space, the copy stalls, local regions stay served; freed space lets the copy complete', async (t) => {
  const { f } = t.context;
  const targetDir = join(f.dir, 'small-fs');
  await mountSmallTmpfs(t, targetDir, 24 * MiB);
  // Ballast leaves about 4 MiB for the targets (their data is ≈ 14 MiB).
  const ballast = join(targetDir, 'ballast');
  await writeFile(ballast, Buffer.alloc(20 * MiB, 1));
  const restore = await restoreFixture(f, targetDir, {
    cacheBytes: 8 * MiB,
    workers: 0,
    startCopy: false,
    copyRetryMs: 3_600_000, // retried by the test, not by the clock
  });
  t.teardown(() => restore.close().catch(() => undefined));
  const warnings: Error[] = [];
  restore.on('warning', (w) => warnings.push(w));
  const drive = restore.drives[0]!;
  const [host, port] = restore.address!.split(':') as [string, string];
  const client = await NbdClient.connect({ host, port: Number(port), exportName: drive.name });
  t.teardown(() => client.close().catch(() => undefined));
  const model = sourceImage(f.drives[0]!.spec);
  // Whole-region writes (no fetch) until the file system is full.
  let refused: { errnoName?: string; code?: string } | undefined;
  let region = 0;
  for (; region < drive.regionCount - 1 && refused === undefined; region++) {
    const data = Buffer.alloc(CHUNK_BYTES, 0x30 + region);
    try {
      await client.write(data, region * CHUNK_BYTES);
      data.copy(model, region * CHUNK_BYTES);
    } catch (err) {
      refused = err as { errnoName?: string; code?: string };
    }
  }
  t.is(refused?.code, 'ERR_LR_NBD_REQUEST_FAILED', 'a write was refused');
  t.is(refused?.errnoName, 'ENOSPC', 'the client sees NBD_ENOSPC');
  const full = region - 1;
  t.false(drive.isLocal(full), 'the region of the refused write is not recorded local');
  t.true(full > 0, 'some whole-region writes fitted');

  // The copy meets the full disk: it stalls; the restore goes on serving.
  const stalled = new Promise<Error>((resolve) => restore.once('stalled', resolve));
  restore.startCopy();
  const outcome = await Promise.race([
    stalled.then((e) => ({ stalled: e })),
    restore.done.then(
      () => ({ ended: 'completed' }),
      (e: unknown) => ({ ended: e }),
    ),
  ]);
  if (!('stalled' in outcome)) {
    t.fail(`the restore ended instead of stalling: ${String(outcome.ended)}`);
    return;
  }
  const err = outcome.stalled;
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_NO_SPACE');
  t.regex(err.message, /no space left/);
  t.is(restore.stalled, err);
  const back = Buffer.alloc(CHUNK_BYTES);
  await client.read(back, 0);
  t.is(firstDifference(back, model.subarray(0, CHUNK_BYTES)), -1, 'a local region reads back');
  const overwrite = Buffer.alloc(4096, 0xee);
  await client.write(overwrite, 4096); // its blocks are allocated: no new space needed
  overwrite.copy(model, 4096);
  const remote = Buffer.alloc(512);
  const remoteAt = (drive.regionCount - 1) * CHUNK_BYTES;
  await client.read(remote, remoteAt); // from the backup; its store may fail (a warning)
  t.is(
    firstDifference(remote, model.subarray(remoteAt, remoteAt + 512)),
    -1,
    'a region not local reads from the backup',
  );
  await client.flush().catch(() => undefined); // the map may not fit: the old one stays valid

  // Space comes back: the copy resumes and completes.
  await rm(ballast);
  restore.startCopy();
  await restore.done;
  await client.close();
  await restore.close();
  t.is(
    firstDifference(await readFile(drive.targetPath), model),
    -1,
    'the target = source + the acknowledged writes',
  );
  const map = await readMapFile(drive.mapPath);
  t.true(new RegionBitmap(drive.regionCount, map!.bits).complete);
  t.log(`${warnings.length} warnings while full`);
});

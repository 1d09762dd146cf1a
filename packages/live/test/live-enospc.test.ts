/*
 * A full target file system (a small tmpfs, when the test may mount one): guest writes
 * get NBD_ENOSPC, the copy job stops with ERR_LR_LIVE_NO_SPACE, and every region the
 * map records as local holds exactly what it must (no silent corruption).
 */

import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NbdClient } from '@liverestore/nbd';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { liveRestore, RegionBitmap, readMapFile } from '../src/index.js';
import { CHUNK_BYTES, type Fixture, firstDifference, MiB, makeFixture, sourceImage } from './helpers.js';

const run = promisify(execFile);
const test = anyTest as TestFn<{ f: Fixture }>;

test.before(async (t) => {
  t.context.f = await makeFixture(31);
});
test.after.always(async (t) => {
  await t.context.f?.cleanup();
});

/** Mounts a tmpfs of `bytes` at `dir`; false (with a log) where mounting is not permitted. */
async function smallFileSystem(t: ExecutionContext, dir: string, bytes: number): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  if (process.getuid?.() !== 0) {
    t.log('SKIPPED: mounting a small tmpfs needs root; the ENOSPC path is not exercised here');
    return false;
  }
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
  } catch (err) {
    t.log(
      `SKIPPED: cannot mount a tmpfs (${(err as Error).message.split('\n')[0]}); the ENOSPC path is not exercised here`,
    );
    return false;
  }
  t.teardown(() => run('umount', ['-l', dir]).then(() => undefined));
  return true;
}

test('full target file system: NBD_ENOSPC to the client, ERR_LR_LIVE_NO_SPACE for the copy, no silent corruption', async (t) => {
  const { f } = t.context;
  const targetDir = join(f.dir, 'small-fs');
  if (!(await smallFileSystem(t, targetDir, 3 * MiB))) {
    t.pass();
    return;
  }
  const restore = await liveRestore({
    source: f.storeDir,
    snapshot: f.snapshot,
    targetDir,
    listen: { host: '127.0.0.1', port: 0 },
    cacheBytes: 8 * MiB,
    workers: 0,
    startCopy: false,
  });
  const warnings: Error[] = [];
  restore.on('warning', (w) => warnings.push(w));
  const drive = restore.drives[0]!;
  const [host, port] = restore.address!.split(':') as [string, string];
  const client = await NbdClient.connect({ host, port: Number(port), exportName: drive.name });
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
  t.truthy(refused, 'a write was refused');
  t.is(refused?.code, 'ERR_LR_NBD_REQUEST_FAILED');
  t.is(refused?.errnoName, 'ENOSPC', 'the client sees NBD_ENOSPC');
  const full = region - 1;
  t.false(drive.isLocal(full), 'the region of the refused write is not recorded local');
  // Reads still work; data the guest wrote before reads back.
  const back = Buffer.alloc(CHUNK_BYTES);
  await client.read(back, 0);
  t.is(firstDifference(back, model.subarray(0, CHUNK_BYTES)), -1);
  await client.close();

  restore.startCopy();
  const err = await t.throwsAsync(restore.done);
  t.is((err as { code?: string }).code, 'ERR_LR_LIVE_NO_SPACE');
  t.regex(err!.message, /no space left/);
  await restore.close().catch((closeErr: unknown) => {
    // The final map may not fit either; the previous map stays valid (atomic replace).
    t.is((closeErr as { code?: string }).code, 'ERR_LR_LIVE_NO_SPACE');
  });

  // Whatever the map on disk records as local is exactly right.
  const map = await readMapFile(drive.mapPath);
  t.truthy(map);
  const bits = new RegionBitmap(drive.regionCount, map!.bits);
  const target = await readFile(drive.targetPath);
  let checked = 0;
  for (let i = 0; i < drive.regionCount; i++) {
    if (!bits.has(i)) continue;
    const from = i * CHUNK_BYTES;
    const to = Math.min(model.length, from + CHUNK_BYTES);
    t.is(firstDifference(target.subarray(from, to), model.subarray(from, to)), -1, `local region ${i}`);
    checked++;
  }
  t.true(checked > 0);
  t.log(`${checked} local regions verified; ${warnings.length} copy-on-read stores refused`);
});

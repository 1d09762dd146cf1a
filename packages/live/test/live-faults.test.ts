/*
 * Faults injected through the TargetFile seam (they run everywhere, no root needed):
 * EIO and ENOSPC on target writes, ENOSPC on the map write, and a full disk under a
 * running liveRestore (the copy stalls, the exports keep serving).
 */
import { join } from 'node:path';
import { NbdClient } from '@liverestore/nbd';
import type { ExecutionContext } from 'ava';
import { LiveDrive, readMapFile, stateName } from '../src/internal.js';
import { FaultFiles } from './fault-files.js';
import {
  CHUNK_BYTES,
  type Fixture,
  firstDifference,
  fixtureTest,
  MiB,
  openFixtureSnapshot,
  restoreFixture,
  sourceImage,
} from './helpers.js';

const test = fixtureTest(41);

let dirs = 0;
const signal = new AbortController().signal;

/** A drive over fault-injecting files, and its first two data regions (not local). */
async function faultyDrive(t: ExecutionContext<{ f: Fixture }>) {
  const { f } = t.context;
  const { snapshot } = await openFixtureSnapshot(t, f);
  const files = new FaultFiles();
  const d = f.drives[0]!;
  const drive = await LiveDrive.open({
    reader: await snapshot.openArchive(d.name),
    targetDir: join(f.dir, `faults-${dirs++}`),
    snapshot: snapshot.path,
    files,
  });
  t.teardown(() => drive.close().catch(() => undefined));
  const remote = [...Array(drive.regionCount).keys()].filter((i) => !drive.isLocal(i));
  return { drive, files, model: Buffer.from(sourceImage(d.spec)), remote };
}

for (const [fault, code, errno] of [
  ['EIO', 'ERR_LR_LIVE_TARGET_IO', 'EIO'],
  ['ENOSPC', 'ERR_LR_LIVE_NO_SPACE', 'ENOSPC'],
] as const) {
  test(`${fault} on target writes: the guest write fails with ${errno} (${code}), the region stays not local, reads and a later write work`, async (t) => {
    const { drive, files, model, remote } = await faultyDrive(t);
    const [a, b] = remote as [number, number];
    await drive.copyRegion(a); // local before the fault
    files.failWrites = fault;
    const data = Buffer.alloc(4096, 0x77);
    const at = b * CHUNK_BYTES + 8192;
    const err = await t.throwsAsync(drive.writer.write(data, at, false));
    t.is((err as { code?: string }).code, errno, 'what NBD reports');
    t.is((err?.cause as { code?: string } | undefined)?.code, code);
    t.false(drive.isLocal(b));
    t.is(stateName(drive.regionState(b)), 'REMOTE_DIRTY', 'it may hold part of the failed fill');
    await t.throwsAsync(drive.copyRegion(b), { code });
    // Local regions and the backup still serve reads.
    const back = Buffer.alloc(CHUNK_BYTES);
    await drive.read(back, a * CHUNK_BYTES, signal);
    t.is(firstDifference(back, model.subarray(a * CHUNK_BYTES, (a + 1) * CHUNK_BYTES)), -1);
    const storeErrors: string[] = [];
    drive.onStoreError = (e) => storeErrors.push(e.code);
    await drive.read(back, b * CHUNK_BYTES, signal); // its copy-on-read store fails
    t.is(firstDifference(back, model.subarray(b * CHUNK_BYTES, (b + 1) * CHUNK_BYTES)), -1);
    await drive.storesSettled();
    t.deepEqual(storeErrors, [code]);
    t.is(drive.stats().storeFailures, 1);
    files.failWrites = undefined;
    await drive.writer.write(data, at, true);
    data.copy(model, at);
    t.true(drive.isLocal(b));
    await drive.read(back, b * CHUNK_BYTES, signal);
    t.is(firstDifference(back, model.subarray(b * CHUNK_BYTES, (b + 1) * CHUNK_BYTES)), -1);
  });
}

test('ENOSPC on the map write: the flush fails with ENOSPC, the old map stays in place, the next flush records the regions', async (t) => {
  const { drive, files, remote } = await faultyDrive(t);
  const before = (await readMapFile(drive.mapPath))!;
  await drive.copyRegion(remote[0]!);
  files.nextMapWrite = 'ENOSPC';
  const err = await t.throwsAsync(drive.writer.flush());
  t.is((err as { code?: string }).code, 'ENOSPC');
  t.is((err?.cause as { code?: string } | undefined)?.code, 'ERR_LR_LIVE_NO_SPACE');
  t.true(drive.dirty);
  t.is((await readMapFile(drive.mapPath))!.generation, before.generation);
  await drive.writer.flush();
  const after = (await readMapFile(drive.mapPath))!;
  t.is(after.generation, before.generation + 1);
  t.false(drive.dirty);
});

test('a full disk under liveRestore (through the seam): the copy stalls, the export keeps serving reads; when space is back a retry completes the copy', async (t) => {
  const { f } = t.context;
  const files = new FaultFiles();
  const restore = await restoreFixture(f, join(f.dir, `faults-${dirs++}`), {
    cacheBytes: 8 * MiB,
    workers: 0,
    startCopy: false,
    copyRetryMs: 20, // the stalled copy retries on its own
    files,
  });
  t.teardown(() => restore.close().catch(() => undefined));
  const drive = restore.drives[0]!;
  const model = sourceImage(f.drives[0]!.spec);
  const [host, port] = restore.address!.split(':') as [string, string];
  const client = await NbdClient.connect({ host, port: Number(port), exportName: drive.name });
  t.teardown(() => client.close().catch(() => undefined));
  files.failWrites = 'ENOSPC';
  const stalled = new Promise<Error>((resolve) => restore.once('stalled', resolve));
  restore.startCopy();
  const outcome = await Promise.race([
    stalled.then((e) => ({ stalled: e })),
    restore.done.then(
      () => ({ ended: 'completed' as unknown }),
      (e: unknown) => ({ ended: e }),
    ),
  ]);
  if (!('stalled' in outcome)) {
    t.fail(`the restore ended instead of stalling: ${String(outcome.ended)}`);
    return;
  }
  t.is((outcome.stalled as { code?: string }).code, 'ERR_LR_LIVE_NO_SPACE');
  const refused = await t.throwsAsync(client.write(Buffer.alloc(4096, 1), 0));
  t.is((refused as { errnoName?: string }).errnoName, 'ENOSPC');
  const whole = Buffer.alloc(model.length);
  await client.read(whole, 0);
  t.is(firstDifference(whole, model), -1, 'every byte still reads right');
  files.failWrites = undefined; // space is back: the next retry completes the copy
  await restore.done;
  t.is(restore.stalled, undefined);
  await client.close();
  await restore.close();
  t.true(drive.complete);
});

/*
 * The writable live restore with real NBD clients: qemu-io writes and reads, nbdcopy and
 * qemu-img convert read the writable exports while the background copy runs; after it
 * the target files equal the source images with exactly those writes applied.
 */

import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from '@liverestore/testkit';
import type { LiveRestoreProgress } from '../src/index.js';
import { firstDifference, fixtureTest, MiB, restoreFixture, sourceImage } from './helpers.js';

const run = promisify(execFile);
const test = fixtureTest(23, [24 * MiB + 512 * 5, 10 * MiB + 512]);

const STEP = { timeout: 30_000 };

test('qemu-io writes and reads, nbdcopy and qemu-img convert during the copy; final targets = source + writes', async (t) => {
  for (const tool of ['qemu-io', 'qemu-img', 'nbdcopy']) if (!requireTool(t, tool)) return;
  const { f } = t.context;
  const targetDir = join(f.dir, 'target-nbd');
  const restore = await restoreFixture(f, targetDir, {
    cacheBytes: 16 * MiB,
    workers: 1,
    rateLimitBytesPerSecond: 6_000_000, // ≈ 4 s of copy for the data chunks: clients run during it
    persistIntervalMs: 300,
    progressIntervalMs: 100,
  });
  t.teardown(() => restore.close());
  const progress: LiveRestoreProgress[] = [];
  restore.on('progress', (p) => progress.push(p));
  const url = (name: string) => `nbd://${restore.address}/${name}`;
  t.deepEqual(
    restore.server?.exports,
    restore.drives.map((d) => d.name),
  );
  const models = f.drives.map((d) => sourceImage(d.spec));
  const [d0, d1] = restore.drives;
  t.false(restore.progress().complete);

  // qemu-io writes (with its own flush at exit) in regions not local yet, across a region boundary, at the end.
  const writes: [number, number, number, number][] = [
    [0, 5 * MiB + 4096, 64 * 1024, 0xab],
    [0, 9 * MiB - 512, 1024, 0xcd],
    [0, d0!.size - 4096, 4096, 0xef],
    [1, 3 * MiB + 512, 3 * MiB, 0x5a],
  ];
  for (const [drive, offset, length, pattern] of writes) {
    await run(
      'qemu-io',
      [
        '-f',
        'raw',
        '-c',
        `write -P 0x${pattern.toString(16)} ${offset} ${length}`,
        url(restore.drives[drive]!.name),
      ],
      STEP,
    );
    models[drive]!.fill(pattern, offset, offset + length);
  }
  // Read back through qemu-io: the pattern is there.
  const check = await run(
    'qemu-io',
    ['-f', 'raw', '-c', `read -P 0xcd ${9 * MiB - 512} 1024`, url(d0!.name)],
    STEP,
  );
  t.notRegex(check.stdout + check.stderr, /Pattern verification failed/);
  t.false(restore.progress().complete, 'the clients ran during the copy');

  // Whole-image reads while the copy runs.
  const viaNbdcopy = join(f.dir, 'nbdcopy-d0.raw');
  await run('nbdcopy', [url(d0!.name), viaNbdcopy], STEP);
  t.is(firstDifference(await readFile(viaNbdcopy), models[0]!), -1, 'nbdcopy image = source + writes');
  const viaQemuImg = join(f.dir, 'qemu-img-d1.raw');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url(d1!.name), viaQemuImg], STEP);
  t.is(
    firstDifference(await readFile(viaQemuImg), models[1]!),
    -1,
    'qemu-img convert image = source + writes',
  );

  const summary = await restore.done;
  t.true(restore.complete);
  t.is(summary.drives.length, 2);
  for (const [i, drive] of restore.drives.entries()) {
    t.is(firstDifference(await readFile(drive.targetPath), models[i]!), -1, `${drive.name} target`);
  }
  t.true(
    progress.some((p) => !p.complete && p.bytesLocal < p.bytesTotal),
    'progress during the copy',
  );
  const last = restore.progress();
  t.true(last.complete);
  t.is(last.bytesLocal, last.bytesTotal);
  t.true(last.cacheHitRate >= 0 && last.cacheHitRate <= 1);

  // After completion (backup closed) the exports are still served, from the targets, writable.
  await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 8192 4096', url(d1!.name)], STEP);
  models[1]!.fill(0x77, 8192, 8192 + 4096);
  await run('nbdcopy', [url(d1!.name), viaQemuImg], STEP);
  t.is(
    firstDifference(await readFile(viaQemuImg), models[1]!),
    -1,
    'served from the target after completion',
  );
  await restore.close();
  t.is(firstDifference(await readFile(d1!.targetPath), models[1]!), -1);
});

test('qemu-storage-daemon uses a writable export directly (no overlay): its writes land in the target', async (t) => {
  for (const tool of ['qemu-storage-daemon', 'qemu-io', 'nbdcopy']) if (!requireTool(t, tool)) return;
  const { f } = t.context;
  const targetDir = join(f.dir, 'target-qsd');
  const restore = await restoreFixture(f, targetDir, {
    cacheBytes: 16 * MiB,
    workers: 1,
    rateLimitBytesPerSecond: 6_000_000,
  });
  t.teardown(() => restore.close());
  const [host, port] = restore.address!.split(':') as [string, string];
  const drive = restore.drives[0]!;
  const socket = join(f.dir, 'qsd.sock');
  const qsd = spawn(
    'qemu-storage-daemon',
    [
      '--blockdev',
      `driver=nbd,node-name=d0,server.type=inet,server.host=${host},server.port=${port},export=${drive.name}`,
      '--nbd-server',
      `addr.type=unix,addr.path=${socket}`,
      '--export',
      'type=nbd,id=e0,node-name=d0,name=disk,writable=on',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let qsdErr = '';
  qsd.stderr.setEncoding('utf8').on('data', (s: string) => {
    qsdErr += s;
  });
  const qsdExited = new Promise<void>((resolve) => qsd.once('exit', () => resolve()));
  t.teardown(async () => {
    qsd.kill('SIGTERM');
    await qsdExited;
  });
  const url = `nbd+unix:///disk?socket=${socket}`;
  for (let i = 0; i < 100; i++) {
    if (
      await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read 0 512', url], STEP).then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const model = sourceImage(f.drives[0]!.spec);
  await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x66 ${3 * MiB + 4096} ${2 * MiB}`, url], STEP);
  model.fill(0x66, 3 * MiB + 4096, 5 * MiB + 4096);
  t.false(restore.complete, 'written during the copy');
  const copy = join(f.dir, 'qsd.raw');
  await run('nbdcopy', [url, copy], STEP);
  t.is(firstDifference(await readFile(copy), model), -1, `through qemu-storage-daemon (${qsdErr})`);
  qsd.kill('SIGTERM');
  await qsdExited;
  await restore.done;
  t.is(firstDifference(await readFile(drive.targetPath), model), -1, 'target = source + the daemon’s writes');
});

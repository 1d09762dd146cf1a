/*
 * Interrupted runs leave no temp files (issue 15): a restore stopped by SIGINT/SIGTERM
 * removes its `.tmp-OUT-PID-…`, a backup its temp snapshot dir and chunk files, and the next restore or backup sweeps the temps of
 * processes that no longer exist (what a SIGKILL leaves).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readdir, watch, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startChunkServer } from '@liverestore/server';
import { writeImageFile } from '@liverestore/testkit';
import test from 'ava';
import { removeTempsOnSignal } from '../src/signal-cleanup.js';
import { BIN, KiB, MiB, runIn, snapshotDirs, tempLeftovers, vmArgs, writeVm } from './helpers.js';
import { storeWithSnapshot } from './store-fixture.js';

/** A pid that no process has now: a child's, after it ended. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`restore stopped by ${signal} removes its temp image`, async (t) => {
    const { dir, store } = await storeWithSnapshot(t);
    // A server whose chunk requests never end: the restore waits with its temp file open.
    const real = await startChunkServer({
      store,
      listen: { host: '127.0.0.1', port: 0 },
      logLevel: 'silent',
    });
    t.teardown(() => real.close());
    const held: { destroy(): void }[] = [];
    const proxy = createServer((req, res) => {
      if (req.url?.startsWith('/chunks/')) {
        held.push(res);
        return;
      }
      void fetch(`${real.url}${req.url}`).then(async (answer) => {
        res.writeHead(answer.status, Object.fromEntries(answer.headers));
        res.end(Buffer.from(await answer.arrayBuffer()));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      for (const res of held) res.destroy();
      proxy.close();
    });
    const outDir = join(dir, 'out');
    await mkdir(outDir);
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const child = spawn(
      process.execPath,
      [BIN, 'restore', '--from', url, 'vm/100', 'drive-scsi0', '--out', join(outDir, 'disk.img')],
      {
        stdio: 'ignore',
      },
    );
    t.teardown(() => child.kill('SIGKILL'));
    const exited = new Promise<string>((resolve) =>
      child.once('exit', (code, sig) => resolve(`${code}/${sig}`)),
    );
    // Wait for the temp image to appear (the restore is under way), then interrupt it.
    for (let i = 0; i < 300 && (await readdir(outDir)).length === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    t.is(
      (await readdir(outDir)).filter((n) => n.startsWith('.tmp-disk.img-')).length,
      1,
      'the restore made its temp file',
    );
    child.kill(signal);
    t.is(await exited, `null/${signal}`, 'the process ends by the signal');
    t.deepEqual(await readdir(outDir), [], 'nothing left behind');
  });
}

/*
 * A backup is interrupted as the temp it is about (`.tmp-owner-…`: the group's owner file,
 * written beside and linked into place; `.tmp-<time>-…`: the snapshot dir) appears. Which
 * temps exist when the signal lands varies; none may be left.
 */
for (const [signal, temp] of [
  ['SIGINT', 'owner'],
  ['SIGTERM', 'snapshot'],
] as const) {
  test(`backup stopped by ${signal} while writing its ${temp} temp removes every temp`, async (t) => {
    const { dir, store } = await storeWithSnapshot(t);
    const before = await snapshotDirs(store);
    // 128 MiB that do not compress: the backup runs for about a second after its temp
    // snapshot dir appears.
    const image = join(dir, 'big.raw');
    await writeImageFile({ sizeBytes: 128 * MiB, seed: 21, mix: { random: 1 } }, image);
    const isAwaited = (name: string): boolean =>
      name.startsWith('.tmp-') && name.startsWith('.tmp-owner-') === (temp === 'owner');
    const watching = new AbortController();
    t.teardown(() => watching.abort());
    const appeared = (async () => {
      try {
        for await (const change of watch(join(store, 'vm', '100'), { signal: watching.signal }))
          if (change.filename !== null && isAwaited(change.filename)) return true;
      } catch (err) {
        if (!watching.signal.aborted) throw err;
      }
      return false;
    })();
    const child = spawn(
      process.execPath,
      [BIN, 'backup', '--store', store, '--snapshot', 'vm/100', `drive-scsi0=${image}`],
      { stdio: 'ignore' },
    );
    t.teardown(() => child.kill('SIGKILL'));
    const exited = new Promise<string>((resolve) =>
      child.once('exit', (code, sig) => {
        watching.abort();
        resolve(`${code}/${sig}`);
      }),
    );
    t.true(await appeared, `the backup made its ${temp} temp`);
    child.kill(signal);
    t.is(await exited, `null/${signal}`, 'the backup was still running and ends by the signal');
    t.deepEqual(await snapshotDirs(store), before, 'no new snapshot');
    t.deepEqual(await tempLeftovers(store), [], 'no temp left');
  });
}

test('the next restore removes the temp image a killed restore left; a live process keeps its own', async (t) => {
  const { dir, store } = await storeWithSnapshot(t);
  const outDir = join(dir, 'out');
  await mkdir(outDir);
  const stale = `.tmp-disk.img-${deadPid()}-0badf00d`;
  const alive = `.tmp-disk.img-${process.pid}-0badf00d`;
  const other = `.tmp-other.img-${deadPid()}-0badf00d`;
  for (const name of [stale, alive, other]) await writeFile(join(outDir, name), Buffer.alloc(64 * KiB));
  const out = await runIn([
    'restore',
    '--from',
    store,
    'vm/100',
    'drive-scsi0',
    '--out',
    join(outDir, 'disk.img'),
  ]);
  t.is(out.code, 0, out.stderr);
  t.deepEqual((await readdir(outDir)).sort(), [alive, other, 'disk.img'].sort());
});

test('the next backup removes the temp snapshot dir and chunk files a killed backup left', async (t) => {
  const { dir, store } = await storeWithSnapshot(t);
  const pid = deadPid();
  const staleSnapshot = join(store, 'vm', '100', `.tmp-2026-01-01T00:00:00Z-${pid}-0badf00d`);
  await mkdir(staleSnapshot);
  await writeFile(join(staleSnapshot, 'index.json.blob'), 'partial');
  const vm = await writeVm(dir, { seed: 16, sizes: [MiB + 3, 64 * KiB + 1] });
  // The chunk folders the next backup writes into: those a backup of the same input into a
  // scratch store uses. A killed backup's temp chunk waits in each.
  const backupArgs = ['--snapshot', 'vm/100', '--chunk-size', '64KiB', ...vmArgs(vm)];
  const dry = await runIn(['backup', '--store', join(dir, 'scratch'), ...backupArgs]);
  t.is(dry.code, 0, dry.stderr);
  const chunkDirs = await readdir(join(dir, 'scratch', '.chunks'));
  t.true(chunkDirs.length > 0);
  for (const d of chunkDirs) {
    await mkdir(join(store, '.chunks', d), { recursive: true });
    await writeFile(join(store, '.chunks', d, `.tmp-${d}${'0'.repeat(60)}-${pid}-0badf00d`), 'x');
  }
  const out = await runIn(['backup', '--store', store, ...backupArgs]);
  t.is(out.code, 0, out.stderr);
  t.deepEqual(await tempLeftovers(store), [], 'every temp of the killed backup is gone');
});

test.serial(
  'overlapping in-process runs share one SIGINT and one SIGTERM handler; the last release removes them',
  (t) => {
    const before = { int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') };
    // Serial: the other tests of this file run the CLI in-process too. A dozen overlapping
    // runs (ava runs a file's tests concurrently) each used to add their own handlers.
    const releases = Array.from({ length: 12 }, () => removeTempsOnSignal());
    t.is(process.listenerCount('SIGINT'), before.int + 1);
    t.is(process.listenerCount('SIGTERM'), before.term + 1);
    releases[0]!();
    releases[0]!();
    t.is(process.listenerCount('SIGINT'), before.int + 1, 'a second release of one run changes nothing');
    for (const release of releases.slice(1)) release();
    t.is(process.listenerCount('SIGINT'), before.int);
    t.is(process.listenerCount('SIGTERM'), before.term);
  },
);

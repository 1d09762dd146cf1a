/*
 * Bad input on the command line: each gives one line `liverestore: ERR_LR_<CODE>: …`, exit
 * status 1 (2 for usage and refused option values), no stack trace, and leaves the store
 * as it was (no new snapshot, no `.tmp-*` left behind).
 */
import { existsSync } from 'node:fs';
import { access, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  assertCliError,
  backupArgv,
  chunkFiles,
  cli,
  flipByte,
  KiB,
  lines,
  MiB,
  type Outcome,
  runIn,
  snapshotDirs,
  tempLeftovers,
  testDir,
} from './helpers.js';
import { type StoreFixture, storeWithSnapshot as withSnapshot } from './store-fixture.js';

/** A store with one good snapshot of a small VM. */
function storeWithSnapshot(t: ExecutionContext): Promise<StoreFixture> {
  return withSnapshot(t, { seed: 2216, sizes: [MiB + 123, 512 * KiB + 5] });
}

interface StoreState {
  readonly snapshots: string[];
  readonly chunks: string[];
}

async function storeState(store: string): Promise<StoreState> {
  return { snapshots: await snapshotDirs(store), chunks: await chunkFiles(store) };
}

/** The store has exactly the snapshots and chunks it had, and no temp files. */
async function assertUnchanged(t: ExecutionContext, store: string, before: StoreState): Promise<void> {
  const after = await storeState(store);
  t.deepEqual(after.snapshots, before.snapshots, 'no new snapshot');
  t.deepEqual(after.chunks, before.chunks, 'no chunk added or removed');
  t.deepEqual(await tempLeftovers(store), [], 'no .tmp-* left');
}

test('backup of a path that does not exist: ERR_LR_SOURCE_UNREADABLE naming it, store unchanged', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  const missing = join(f.dir, 'no-such-disk.raw');
  // A good input first: nothing of it may be written when a later input is bad.
  const out = await cli(
    backupArgv(f.store, [`drive-scsi0=${f.vm.drives[0]!.path}`, `drive-scsi1=${missing}`], { json: false }),
  );
  const line = assertCliError(t, out, 'ERR_LR_SOURCE_UNREADABLE');
  t.true(line.includes(missing), line);
  t.regex(line, /ENOENT/);
  await assertUnchanged(t, f.store, before);
});

test('backup of a directory: ERR_LR_SOURCE_UNREADABLE, store unchanged', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  const out = await runIn(['backup', '--store', f.store, '--snapshot', 'vm/100', `drive-scsi0=${f.dir}`]);
  const line = assertCliError(t, out, 'ERR_LR_SOURCE_UNREADABLE');
  t.regex(line, /directory/);
  await assertUnchanged(t, f.store, before);
});

test('backup of an input that grows while read: ERR_LR_SOURCE_CHANGED, no snapshot, no temp dir', async (t) => {
  // /proc files report size 0 and then deliver bytes: the dynamic reader notices the
  // difference after it has started writing, so this exercises the cleanup path.
  if (!existsSync('/proc/self/status')) {
    t.log('SKIPPED: no /proc on this system');
    t.pass();
    return;
  }
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  const out = await runIn(backupArgv(f.store, ['status.txt=/proc/self/status'], { json: false }));
  assertCliError(t, out, 'ERR_LR_SOURCE_CHANGED');
  t.deepEqual(await snapshotDirs(f.store), before.snapshots, 'no new snapshot');
  t.deepEqual(await tempLeftovers(f.store), [], 'no .tmp-* left');
});

test('snapshots and verify on a missing store: ERR_LR_STORE_NOT_FOUND, and no store is created', async (t) => {
  const dir = await testDir(t);
  const store = join(dir, 'nothing-here');
  for (const argv of [
    ['snapshots', '--store', store],
    ['verify', '--store', store],
    ['verify', '--store', store, 'vm/100'],
  ]) {
    const line = assertCliError(t, await cli(argv), 'ERR_LR_STORE_NOT_FOUND');
    t.true(line.includes(store), line);
  }
  // A directory that is not a datastore (no .chunks/) is not one either.
  await mkdir(join(dir, 'plain'));
  assertCliError(t, await runIn(['verify', '--store', join(dir, 'plain')]), 'ERR_LR_STORE_NOT_FOUND');
  t.deepEqual((await readdir(dir)).sort(), ['plain']);
  t.deepEqual(await readdir(join(dir, 'plain')), []);
});

test('verify of an unknown snapshot: ERR_LR_SNAPSHOT_NOT_FOUND for a group and for a time', async (t) => {
  const f = await storeWithSnapshot(t);
  for (const spec of ['vm/999', 'ct/100', 'vm/100/2001-02-03T04:05:06Z']) {
    const line = assertCliError(
      t,
      await runIn(['verify', '--store', f.store, spec]),
      'ERR_LR_SNAPSHOT_NOT_FOUND',
    );
    t.true(line.includes(spec), line);
  }
  assertCliError(t, await cli(['verify', '--store', f.store, 'vm/999']), 'ERR_LR_SNAPSHOT_NOT_FOUND');
});

test('verify with two SNAPSHOT arguments: ERR_LR_USAGE, exit 2', async (t) => {
  const f = await storeWithSnapshot(t);
  const line = assertCliError(
    t,
    await runIn(['verify', '--store', f.store, 'vm/100', f.snapshot]),
    'ERR_LR_USAGE',
    2,
  );
  t.regex(line, /at most one/);
});

test('in-process backup and verify write their progress to io.stderr (not process.stderr)', async (t) => {
  const f = await storeWithSnapshot(t);
  const backup = await runIn(backupArgv(f.store, [`notes.txt=${f.vm.notesPath}`], { json: false }));
  t.is(backup.code, 0);
  const verify = await runIn(['verify', '--store', f.store]);
  t.is(verify.code, 0);
  // Progress.finish() always draws a final line unless quiet; run(argv, io) must send it to io.stderr.
  t.regex(backup.stderr, /^backup .*\(100%\)/m, 'backup progress on io.stderr');
  t.regex(verify.stderr, /^verify \d+\/\d+ \(100%\)/m, 'verify progress on io.stderr');
});

test('invalid snapshot specs: ERR_LR_SNAPSHOT_INVALID (verify and backup), exit 1', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  for (const spec of [
    'bogus',
    'vm',
    'qemu/100',
    'vm/1 00',
    'vm/100/yesterday',
    'vm/100/2026-13-45T99:00:00Z',
    'vm/100/a/b',
  ]) {
    assertCliError(t, await runIn(['verify', '--store', f.store, spec]), 'ERR_LR_SNAPSHOT_INVALID');
    assertCliError(
      t,
      await runIn(['backup', '--store', f.store, '--snapshot', spec, `x=${f.vm.notesPath}`]),
      'ERR_LR_SNAPSHOT_INVALID',
    );
  }
  assertCliError(t, await cli(['verify', '--store', f.store, 'vm/100/yesterday']), 'ERR_LR_SNAPSHOT_INVALID');
  await assertUnchanged(t, f.store, before);
});

test('chunk sizes that are not a power of two from 64 KiB to 4 MiB: ERR_LR_USAGE, exit 2, store unchanged', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  for (const size of ['100000', '96KiB', '1k', '8MiB', '0']) {
    const out = await runIn(
      backupArgv(f.store, [`x=${f.vm.drives[1]!.path}`], { chunkSize: size, json: false }),
    );
    const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
    t.regex(line, /--chunk-size must be a power of two/, size);
  }
  await assertUnchanged(t, f.store, before);
  assertCliError(
    t,
    await cli(backupArgv(f.store, [`x=${f.vm.drives[1]!.path}`], { chunkSize: '3000', json: false })),
    'ERR_LR_USAGE',
    2,
  );
});

test('a refused option value creates no store', async (t) => {
  const dir = await testDir(t);
  const input = join(dir, 'disk.raw');
  await writeFile(input, Buffer.alloc(70_000, 1));
  const store = join(dir, 'new-store');
  const out = await runIn(backupArgv(store, [`x=${input}`], { chunkSize: '100000', json: false }));
  t.is(out.code, 2);
  t.false(existsSync(store), 'a backup that never started left a new, empty datastore behind');
});

test('the --chunk-size error names the option the user typed, not the library parameter', async (t) => {
  const f = await storeWithSnapshot(t);
  const out = await runIn(backupArgv(f.store, [`x=${f.vm.notesPath}`], { chunkSize: '3000', json: false }));
  t.regex(lines(out.stderr)[0] ?? '', /--chunk-size/);
});

test('bad --compress: ERR_LR_USAGE listing the algorithms, store unchanged', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  for (const algo of ['lz4', 'DEFLATE', '']) {
    const out = await runIn(
      backupArgv(f.store, [`x=${f.vm.notesPath}`], { json: false, extra: ['--compress', algo] }),
    );
    const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
    t.regex(line, /zstd, deflate, none/);
  }
  await assertUnchanged(t, f.store, before);
});

test('invalid archive names: ERR_LR_ARCHIVE_NAME_INVALID, store unchanged', async (t) => {
  const f = await storeWithSnapshot(t);
  const before = await storeState(f.store);
  const input = f.vm.notesPath;
  for (const archives of [
    [`bad/name=${input}`],
    [`x.blob=${input}`],
    [`index.json=${input}`],
    [`a=${input}`, `a.img=${input}`],
  ]) {
    assertCliError(
      t,
      await runIn(['backup', '--store', f.store, '--snapshot', 'vm/100', ...archives]),
      'ERR_LR_ARCHIVE_NAME_INVALID',
    );
  }
  await assertUnchanged(t, f.store, before);
});

test('a store path that is a file: one ERR_LR_SYSTEM line with the errno, no stack trace', async (t) => {
  const dir = await testDir(t);
  const file = join(dir, 'not-a-dir');
  await writeFile(file, 'x');
  const input = join(dir, 'in.txt');
  await writeFile(input, 'hello');
  const line = assertCliError(
    t,
    await cli(['backup', '--store', file, '--snapshot', 'vm/100', `notes.txt=${input}`]),
    'ERR_LR_SYSTEM',
  );
  t.regex(line, /ENOTDIR|EEXIST/);
});

function assertVerifyFailed(t: ExecutionContext, out: Outcome): void {
  t.is(out.code, 1, out.stderr);
  t.false(/^\s+at /m.test(out.stdout + out.stderr), 'no stack trace');
  t.regex(out.stdout, /^FAILED: /m);
}

test('verify of a truncated .fidx reports the file (text and --json) and still checks the other archives', async (t) => {
  const f = await storeWithSnapshot(t);
  const index = join(f.store, f.snapshot, 'drive-scsi0.img.fidx');
  const full = (await readFile(index)).byteLength;
  await truncate(index, full - 32); // one digest short
  const out = await cli(['verify', '--store', f.store, 'vm/100']);
  assertVerifyFailed(t, out);
  t.regex(
    out.stdout,
    new RegExp(`^BAD FILE ${f.snapshot}/drive-scsi0\\.img\\.fidx: ERR_LR_INDEX_LENGTH_MISMATCH: `, 'm'),
  );
  t.regex(out.stdout, /3 archive\(s\)/);
  t.regex(out.stdout, /1 bad file\(s\)/);
  const json = await runIn(['verify', '--store', f.store, '--json']);
  t.is(json.code, 1);
  const report = JSON.parse(json.stdout) as {
    ok: boolean;
    chunks: number;
    badFiles: { snapshot: string; filename: string; code: string }[];
  };
  t.false(report.ok);
  t.deepEqual(
    report.badFiles.map((b) => [b.snapshot, b.filename, b.code]),
    [[f.snapshot, 'drive-scsi0.img.fidx', 'ERR_LR_INDEX_LENGTH_MISMATCH']],
  );
  t.true(report.chunks > 0, 'the chunks of the other archives were still verified');

  // Shorter than its header: a different, equally clear code.
  await truncate(index, 100);
  const short = await runIn(['verify', '--store', f.store]);
  assertVerifyFailed(t, short);
  t.regex(short.stdout, /BAD FILE .*drive-scsi0\.img\.fidx: ERR_LR_INDEX_TRUNCATED: /);
});

test('verify of a snapshot whose manifest is corrupted reports index.json.blob; snapshots fails with one line', async (t) => {
  const f = await storeWithSnapshot(t);
  await flipByte(join(f.store, f.snapshot, 'index.json.blob'), 40);
  const out = await cli(['verify', '--store', f.store]);
  assertVerifyFailed(t, out);
  t.regex(
    out.stdout,
    new RegExp(`^BAD FILE ${f.snapshot}/index\\.json\\.blob: ERR_LR_BLOB_CRC_MISMATCH: `, 'm'),
  );
  const json = JSON.parse((await runIn(['verify', '--store', f.store, '--json', 'vm/100'])).stdout) as {
    ok: boolean;
    badFiles: { filename: string; code: string }[];
  };
  t.false(json.ok);
  t.deepEqual(
    json.badFiles.map((b) => b.filename),
    ['index.json.blob'],
  );
  assertCliError(t, await cli(['snapshots', '--store', f.store]), 'ERR_LR_BLOB_CRC_MISMATCH');
});

test('snapshots with one corrupt manifest names the snapshot and still lists the others', async (t) => {
  const f = await storeWithSnapshot(t);
  const second = await runIn(backupArgv(f.store, [`notes.txt=${f.vm.notesPath}`], { snapshot: 'vm/101' }));
  t.is(second.code, 0);
  await flipByte(join(f.store, f.snapshot, 'index.json.blob'), 40);
  const out = await runIn(['snapshots', '--store', f.store]);
  t.true(out.stdout.includes('vm/101/'), 'the good snapshot is still listed');
  t.true((out.stdout + out.stderr).includes(f.snapshot), 'the bad snapshot is named');
});

test('verify of a chunk that is missing names it and the archives using it', async (t) => {
  const f = await storeWithSnapshot(t);
  const chunks = await chunkFiles(f.store);
  const victim = chunks[Math.floor(chunks.length / 2)]!;
  const digest = victim.split('/')[1]!;
  await access(join(f.store, '.chunks', victim));
  await rm(join(f.store, '.chunks', victim));
  const out = await runIn(['verify', '--store', f.store]);
  assertVerifyFailed(t, out);
  t.regex(out.stdout, new RegExp(`^BAD CHUNK ${digest}: ERR_LR_CHUNK_MISSING: `, 'm'));
  t.regex(out.stdout, new RegExp(`used by: ${f.snapshot.replaceAll('/', '\\/')}/`));
});

import { truncateSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackupType } from '@liverestore/format';
import { randomBytes } from '@liverestore/testkit';
import test from 'ava';
import fc from 'fast-check';
import {
  type BackupOptions,
  backup,
  Datastore,
  formatBackupTime,
  formatSnapshot,
  parseBackupTime,
  parseSnapshotSpec,
} from '../src/index.js';
import { TEMP_PREFIX, tempPathFor, writeFileAtomic } from '../src/internal.js';
import { indexDigests, KiB, MiB, readIndexFile, testDir, writeInput } from './helpers.js';

const CHUNK = 64 * KiB;

/** Everything below `dir` (relative paths, directories end in `/`), sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .map((e) => {
      const rel = join(e.parentPath, e.name).slice(dir.length + 1);
      return e.isDirectory() ? `${rel}/` : rel;
    })
    .sort();
}

async function smallBackup(store: Datastore, dir: string, type: BackupType, id: string, backupTime: number) {
  const path = await writeInput(
    dir,
    `${type}-${id}-${backupTime}.raw`,
    randomBytes(backupTime % 1000, 70 * KiB),
  );
  return backup(store, {
    type,
    id,
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: CHUNK,
    backupTime,
    encodeThreads: 0,
  });
}

test('Datastore.open: ERR_LR_STORE_NOT_FOUND unless the directory has .chunks/', async (t) => {
  const dir = await testDir(t);
  await t.throwsAsync(Datastore.open(join(dir, 'missing')), { code: 'ERR_LR_STORE_NOT_FOUND' });
  await t.throwsAsync(Datastore.open(dir), { code: 'ERR_LR_STORE_NOT_FOUND', message: /\.chunks/ });
  await writeFile(join(dir, '.chunks'), 'not a directory');
  await t.throwsAsync(Datastore.open(dir), { code: 'ERR_LR_STORE_NOT_FOUND' });
  const created = await Datastore.create(join(dir, 'store'));
  t.deepEqual(await readdir(created.dir), ['.chunks']);
  const opened = await Datastore.open(join(dir, 'store'));
  t.is(opened.dir, join(dir, 'store'));
  // create() on an existing store keeps its contents.
  await smallBackup(opened, dir, 'vm', '1', 1_700_000_000);
  await Datastore.create(join(dir, 'store'));
  t.is((await opened.listSnapshotRefs()).length, 1);
});

test('chunkPath: .chunks/<4 hex>/<64 hex>; malformed digests are refused', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(dir);
  const hex = 'ab'.repeat(32);
  t.is(store.chunkPath(hex), join(dir, '.chunks', 'abab', hex));
  t.is(store.chunkPath(Buffer.from(hex, 'hex')), join(dir, '.chunks', 'abab', hex));
  for (const bad of ['AB'.repeat(32), 'ab'.repeat(31), '../'.repeat(21) + 'x', `${hex}0`]) {
    t.throws(() => store.chunkPath(bad), { code: 'ERR_LR_DIGEST_INVALID' });
  }
  await t.throwsAsync(store.readChunk(hex), { code: 'ERR_LR_CHUNK_MISSING' });
  t.false(await store.hasChunk(hex));
  t.true(await store.insertChunk(hex, Buffer.from('blob')));
  t.false(await store.insertChunk(hex, Buffer.from('other')), 'an existing chunk is never overwritten');
  t.deepEqual(await store.readChunk(hex), Buffer.from('blob'));
  t.deepEqual(await readdir(join(dir, '.chunks', 'abab')), [hex]);
});

test('listSnapshotRefs: sorted by type, id, time; temp dirs and junk names skipped', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  // Made out of order on purpose.
  await smallBackup(store, dir, 'host', 'web', 1_700_000_500);
  await smallBackup(store, dir, 'vm', '101', 1_700_000_300);
  await smallBackup(store, dir, 'vm', '100', 1_700_000_200);
  await smallBackup(store, dir, 'ct', '100', 1_700_000_100);
  await smallBackup(store, dir, 'vm', '100', 1_700_000_400);
  for (const junk of [
    'vm/100/.tmp-2030-01-01T00:00:00Z-1234-abcd',
    'vm/100/not-a-time',
    'vm/100/2026-13-01T00:00:00Z',
    'vm/100/2026-02-30T00:00:00Z',
    'vm/100/2026-01-01T00:00:00.123Z',
    'vm/100/2026-01-01 00:00:00Z',
    'vm/100/2026-01-01T00:00:00+01:00',
    'lxc/100/2030-01-01T00:00:00Z',
  ]) {
    await mkdir(join(store.dir, junk), { recursive: true });
  }
  const refs = await store.listSnapshotRefs();
  t.deepEqual(refs.map(formatSnapshot), [
    'vm/100/2023-11-14T22:16:40Z',
    'vm/100/2023-11-14T22:20:00Z',
    'vm/101/2023-11-14T22:18:20Z',
    'ct/100/2023-11-14T22:15:00Z',
    'host/web/2023-11-14T22:21:40Z',
  ]);
  t.deepEqual(await store.snapshotTimes('vm', '100'), [1_700_000_200, 1_700_000_400]);
  t.deepEqual(await store.snapshotTimes('vm', 'nope'), []);
});

// A regular file where a group or snapshot directory is expected once made the listing
// throw ENOTDIR (vm/README), or was listed as a snapshot (a file named like a time); group
// directories whose name is not a backup id (`.tmp-x`, `lost+found`) were listed too.
test('listSnapshotRefs: stray files are skipped, not listed and not fatal', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const ok = await smallBackup(store, dir, 'vm', '100', 1_700_000_000);
  await writeFile(join(store.dir, 'vm', '100', '2030-01-01T00:00:00Z'), 'a file, not a snapshot');
  t.deepEqual(await store.listSnapshotRefs(), [ok.ref]);
  t.deepEqual(await store.resolveSnapshot({ type: 'vm', id: '100' }), ok.ref);
  // A group directory whose name is no backup id (a temp dir, lost+found).
  await mkdir(join(store.dir, 'vm', '.tmp-x', '2030-01-01T00:00:00Z'), { recursive: true });
  await mkdir(join(store.dir, 'vm', 'lost+found', '2030-01-01T00:00:00Z'), { recursive: true });
  t.deepEqual(await store.listSnapshotRefs(), [ok.ref]);
  await writeFile(join(store.dir, 'vm', 'README'), 'junk');
  t.deepEqual(await store.listSnapshotRefs(), [ok.ref]);
});

test('resolveSnapshot: a group gives its latest snapshot; unknown ones fail', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const older = await smallBackup(store, dir, 'vm', '100', 1_700_000_000);
  const latest = await smallBackup(store, dir, 'vm', '100', 1_700_000_060);
  // An unfinished newer backup does not count.
  await mkdir(join(store.dir, 'vm', '100', `${TEMP_PREFIX}2030-01-01T00:00:00Z-1-abcd`));
  t.deepEqual(await store.resolveSnapshot(parseSnapshotSpec('vm/100')), latest.ref);
  t.deepEqual(await store.resolveSnapshot(parseSnapshotSpec(older.snapshot)), older.ref);
  t.deepEqual(await store.resolveSnapshot({ type: 'vm', id: '100', time: latest.ref.time }), latest.ref);
  await t.throwsAsync(store.resolveSnapshot(parseSnapshotSpec('vm/100/2023-11-14T22:13:21Z')), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
    message: /vm\/100\/2023-11-14T22:13:21Z/,
  });
  await t.throwsAsync(store.resolveSnapshot(parseSnapshotSpec('vm/999')), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
  await t.throwsAsync(store.resolveSnapshot(parseSnapshotSpec('ct/100')), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
  // A directory with a snapshot name but no manifest is not readable as a snapshot.
  await mkdir(join(store.dir, 'vm', '100', '2030-01-01T00:00:00Z'));
  await t.throwsAsync(store.readManifest({ type: 'vm', id: '100', time: 1_893_456_000 }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
});

test('parseSnapshotSpec: groups and snapshots', (t) => {
  t.deepEqual(parseSnapshotSpec('vm/100'), { type: 'vm', id: '100' });
  t.deepEqual(parseSnapshotSpec('vm/100/'), { type: 'vm', id: '100' });
  t.deepEqual(parseSnapshotSpec('host/web_1.example-x'), { type: 'host', id: 'web_1.example-x' });
  t.deepEqual(parseSnapshotSpec('ct/100/2026-11-26T10:00:00Z'), {
    type: 'ct',
    id: '100',
    time: 1_795_687_200,
  });
  t.deepEqual(parseSnapshotSpec(`vm/${'a'.repeat(128)}`), { type: 'vm', id: 'a'.repeat(128) });
});

const invalidSpec = test.macro({
  exec(t, text: string) {
    t.throws(() => parseSnapshotSpec(text), {
      code: 'ERR_LR_SNAPSHOT_INVALID',
      message: /expected TYPE\/ID/,
    });
  },
  title: (_provided, text) => `parseSnapshotSpec refuses ${JSON.stringify(text)}`,
});

for (const bad of [
  '',
  'vm',
  '/vm/100',
  'vm/100/2026-11-26T10:00:00Z/drive-scsi0',
  // bad type
  'VM/100',
  'lxc/100',
  'qemu/100/2026-11-26T10:00:00Z',
  // bad id
  'vm/',
  'vm//2026-11-26T10:00:00Z',
  'vm/-100',
  'vm/.hidden',
  'vm/a b',
  'vm/ä',
  `vm/${'a'.repeat(129)}`,
  // bad time
  'vm/100/2026-11-26T10:00:00',
  'vm/100/2026-11-26T10:00:00.000Z',
  'vm/100/2026-11-26 10:00:00Z',
  'vm/100/2026-11-26T10:00:00+00:00',
  'vm/100/2026-02-30T00:00:00Z',
  'vm/100/2026-11-26T24:00:00Z',
  'vm/100/2026-11-26T10:60:00Z',
  'vm/100/1795687200',
  'vm/100/latest',
]) {
  test(invalidSpec, bad);
}

test('formatBackupTime / parseBackupTime round trip', (t) => {
  t.is(formatBackupTime(0), '1970-01-01T00:00:00Z');
  t.is(formatBackupTime(1_700_000_000), '2023-11-14T22:13:20Z');
  t.is(parseBackupTime('2023-11-14T22:13:20Z'), 1_700_000_000);
  t.is(formatSnapshot({ type: 'vm', id: '100', time: 1_700_000_000 }), 'vm/100/2023-11-14T22:13:20Z');
  for (const junk of ['', 'x', '2023-11-14T22:13:20', '2023-11-14T22:13:20.000Z', '2023-02-29T00:00:00Z']) {
    t.is(parseBackupTime(junk), undefined, junk);
  }
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 253_402_300_799 }), (seconds) => {
      const text = formatBackupTime(seconds);
      return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(text) && parseBackupTime(text) === seconds;
    }),
    { numRuns: 500, seed: 42 },
  );
  // Parsing then formatting any accepted string gives it back (one spelling per time).
  fc.assert(
    fc.property(
      fc.tuple(
        fc.integer({ min: 1970, max: 2100 }),
        fc.integer({ min: 0, max: 13 }),
        fc.integer({ min: 0, max: 32 }),
        fc.integer({ min: 0, max: 25 }),
        fc.integer({ min: 0, max: 61 }),
      ),
      ([y, mo, d, h, mi]) => {
        const p = (n: number) => String(n).padStart(2, '0');
        const text = `${y}-${p(mo)}-${p(d)}T${p(h)}:${p(mi)}:${p(mi)}Z`;
        const seconds = parseBackupTime(text);
        return seconds === undefined || formatBackupTime(seconds) === text;
      },
    ),
    { numRuns: 500, seed: 43 },
  );
  t.pass();
});

test('readArchiveIndex checks the index against the manifest', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const size = 512 * KiB + 17;
  const disk0 = await writeInput(dir, 'd0.raw', randomBytes(1, size));
  const disk1 = await writeInput(dir, 'd1.raw', randomBytes(2, size));
  const notes = await writeInput(dir, 'notes.txt', Buffer.from('hello\n'.repeat(1000)));
  const options: BackupOptions = {
    type: 'vm',
    id: '100',
    inputs: [
      { name: 'drive-scsi0', path: disk0 },
      { name: 'drive-scsi1', path: disk1 },
      { name: 'notes.txt', path: notes },
    ],
    chunkSizeBytes: CHUNK,
    encodeThreads: 0,
  };
  const first = await backup(store, options);
  await writeInput(dir, 'd0.raw', Buffer.concat([randomBytes(1, size - 1000), randomBytes(3, 1000)]));
  const second = await backup(store, options);
  const snapDir = store.snapshotDir(second.ref);

  for (const name of ['drive-scsi0', 'drive-scsi0.img', 'drive-scsi0.img.fidx']) {
    const index = await store.readArchiveIndex(second.ref, name);
    t.deepEqual(indexDigests(index), indexDigests(await readIndexFile(snapDir, 'drive-scsi0.img.fidx')));
  }
  t.is((await store.readArchiveIndex(second.ref, 'notes.txt')).sizeBytes, 6000);
  await t.throwsAsync(store.readArchiveIndex(second.ref, 'drive-scsi7'), {
    code: 'ERR_LR_ARCHIVE_NOT_FOUND',
  });
  await t.throwsAsync(store.readArchiveIndex(second.ref, '../x'), { code: 'ERR_LR_ARCHIVE_NAME_INVALID' });

  const info = await store.snapshotInfo(second.ref);
  t.deepEqual(
    info.archives.map((a) => [a.name, a.filename, a.kind, a.sizeBytes, a.cryptMode]),
    [
      ['drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed', size, 'none'],
      ['drive-scsi1.img', 'drive-scsi1.img.fidx', 'fixed', size, 'none'],
      ['notes.txt', 'notes.txt.didx', 'dynamic', 6000, 'none'],
    ],
  );
  t.is(info.keyFingerprint, undefined);
  t.is(info.path, second.snapshot);

  // Swapped: another archive's index, a stale index of the same archive, a dynamic one.
  const target = join(snapDir, 'drive-scsi0.img.fidx');
  const original = await readFile(target);
  for (const source of [
    join(snapDir, 'drive-scsi1.img.fidx'),
    join(store.snapshotDir(first.ref), 'drive-scsi0.img.fidx'),
    join(snapDir, 'notes.txt.didx'),
  ]) {
    await copyFile(source, target);
    await t.throwsAsync(store.readArchiveIndex(second.ref, 'drive-scsi0'), {
      code: 'ERR_LR_MANIFEST_MISMATCH',
    });
  }
  await writeFile(target, original);
  await t.notThrowsAsync(store.readArchiveIndex(second.ref, 'drive-scsi0'));
  await truncate(target, original.byteLength - 32);
  await t.throwsAsync(store.readArchiveIndex(second.ref, 'drive-scsi0'), {
    code: 'ERR_LR_INDEX_LENGTH_MISMATCH',
  });
});

test('writeFileAtomic: complete file and no temp file, on success and on failure', async (t) => {
  const dir = await testDir(t);
  const path = join(dir, 'file.bin');
  await writeFileAtomic(path, Buffer.from('first'));
  t.deepEqual(await readFile(path, 'utf8'), 'first');
  await writeFileAtomic(path, randomBytes(1, 3 * MiB), { syncDir: true });
  t.deepEqual(await readFile(path), randomBytes(1, 3 * MiB));
  t.deepEqual(await readdir(dir), ['file.bin']);

  // rename onto a non-empty directory fails after the temp file was written.
  await mkdir(join(dir, 'occupied'));
  await writeFile(join(dir, 'occupied', 'x'), 'x');
  const err = await t.throwsAsync(writeFileAtomic(join(dir, 'occupied'), Buffer.from('data')));
  t.truthy((err as NodeJS.ErrnoException).code);
  t.deepEqual((await readdir(dir)).sort(), ['file.bin', 'occupied']);
  // The directory does not exist: nothing to clean up, the error still surfaces.
  await t.throwsAsync(writeFileAtomic(join(dir, 'missing', 'f'), Buffer.from('data')), { code: 'ENOENT' });
  t.deepEqual((await readdir(dir)).sort(), ['file.bin', 'occupied']);

  const temp = tempPathFor(path);
  t.is(join(temp, '..'), dir);
  t.true(temp.slice(dir.length + 1).startsWith(`${TEMP_PREFIX}file.bin-${process.pid}-`));
  t.not(tempPathFor(path), temp);
});

test('unreadable inputs: ERR_LR_SOURCE_UNREADABLE, no snapshot, no temp dir', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const good = await writeInput(dir, 'good.raw', randomBytes(3, 100 * KiB));
  await mkdir(join(dir, 'a-directory'));
  for (const inputs of [
    [{ name: 'drive-scsi0', path: join(dir, 'nonexistent.raw') }],
    [{ name: 'drive-scsi0', path: join(dir, 'a-directory') }],
    [{ name: 'notes.txt', path: join(dir, 'a-directory') }],
    [
      { name: 'drive-scsi0', path: good },
      { name: 'drive-scsi1', path: join(dir, 'nonexistent.raw') },
    ],
  ]) {
    await t.throwsAsync(backup(store, { type: 'vm', id: '100', inputs, chunkSizeBytes: CHUNK }), {
      code: 'ERR_LR_SOURCE_UNREADABLE',
    });
  }
  t.deepEqual(await store.listSnapshotRefs(), []);
  t.deepEqual(await tree(store.dir), ['.chunks/']);
});

test('an input that shrinks during the backup: ERR_LR_SOURCE_CHANGED, temp dir removed', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  for (const name of ['drive-scsi0', 'notes.txt']) {
    const path = await writeInput(dir, name, randomBytes(4, 4 * MiB));
    let shrunk = false;
    await t.throwsAsync(
      backup(store, {
        type: 'vm',
        id: '100',
        inputs: [{ name, path }],
        chunkSizeBytes: CHUNK,
        dynamicAvgBytes: 64 * KiB,
        encodeThreads: 0,
        onProgress: () => {
          if (shrunk) return;
          shrunk = true;
          truncateSync(path, 100 * KiB);
        },
      }),
      { code: 'ERR_LR_SOURCE_CHANGED' },
      name,
    );
    t.deepEqual(await readdir(join(store.dir, 'vm', '100')), ['owner'], name);
  }
  t.deepEqual(await store.listSnapshotRefs(), []);
});

test('bad options are refused before anything is written', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const path = await writeInput(dir, 'disk.raw', randomBytes(5, 100 * KiB));
  const inputs = [{ name: 'drive-scsi0', path }];
  for (const chunkSizeBytes of [100_000, 3 * CHUNK, 32 * KiB, 8 * MiB, 0, -CHUNK, 1.5, Number.NaN]) {
    await t.throwsAsync(backup(store, { type: 'vm', id: '100', inputs, chunkSizeBytes }), {
      instanceOf: RangeError,
      message: /chunkSizeBytes/,
    });
  }
  for (const dynamicAvgBytes of [100_000, 1024]) {
    await t.throwsAsync(
      backup(store, { type: 'vm', id: '100', inputs: [{ name: 'notes.txt', path }], dynamicAvgBytes }),
      { instanceOf: RangeError },
    );
  }
  for (const id of ['', '-x', 'a/b', '..', 'a b']) {
    await t.throwsAsync(backup(store, { type: 'vm', id, inputs }), { code: 'ERR_LR_SNAPSHOT_INVALID' });
  }
  await t.throwsAsync(backup(store, { type: 'vm', id: '100', inputs: [] }), { instanceOf: TypeError });
  const controller = new AbortController();
  controller.abort();
  // The abort reason is a DOMException, which ava does not accept as an error.
  const aborted = await backup(store, {
    type: 'vm',
    id: '100',
    inputs,
    chunkSizeBytes: CHUNK,
    signal: controller.signal,
  }).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.is((aborted as { name?: unknown } | undefined)?.name, 'AbortError');
  t.deepEqual(await store.listSnapshotRefs(), []);
  // The aborted run got as far as its group directory and owner file; no temp dir is left in it.
  t.deepEqual(
    (await tree(store.dir)).filter((p) => p !== 'vm/' && p !== 'vm/100/'),
    ['.chunks/', 'vm/100/owner'],
  );
});

// `type` and `backupTime` were once not validated: a type such as '../x' wrote the snapshot
// outside the store (join(store.dir, type, id)); a fractional backupTime failed only after
// every chunk was read and written (BigInt in writeFixedIndex); NaN left an empty group
// directory.
test('bad type or backupTime is refused before anything is written', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const path = await writeInput(dir, 'disk.raw', randomBytes(5, 100 * KiB));
  const inputs = [{ name: 'drive-scsi0', path }];
  for (const type of ['../escape', 'VM', 'lxc']) {
    await t.throwsAsync(backup(store, { type: type as BackupType, id: '100', inputs, encodeThreads: 0 }), {
      code: 'ERR_LR_SNAPSHOT_INVALID',
    });
  }
  for (const backupTime of [1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.throwsAsync(backup(store, { type: 'vm', id: '100', inputs, backupTime, encodeThreads: 0 }), {
      instanceOf: RangeError,
    });
  }
  t.deepEqual(await tree(store.dir), ['.chunks/']);
  t.deepEqual((await readdir(dir)).sort(), ['disk.raw', 'store']);
});

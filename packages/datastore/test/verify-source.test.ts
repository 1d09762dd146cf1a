/*
 * verifySnapshots over a SnapshotFiles that is not a Datastore: a plain object wrapping
 * one, counting what is read through it, the way the CLI wraps a remote ChunkSource.
 */
import { join } from 'node:path';
import { LiverestoreError, MANIFEST_BLOB_NAME } from '@liverestore/format';
import { imageBytes } from '@liverestore/testkit';
import test from 'ava';
import { backup, Datastore, formatSnapshot, type SnapshotRef, verifySnapshots } from '../src/index.js';
import { readSnapshotInfo, type SnapshotFiles } from '../src/internal.js';
import {
  chunkDigestsOnDisk,
  indexDigests,
  KiB,
  readIndexFile,
  sortedSet,
  testDir,
  writeInput,
} from './helpers.js';

interface Counted extends SnapshotFiles {
  readonly files: string[];
  readonly chunks: string[];
}

/** A SnapshotFiles over `store` that records every read; `tamper` may change or fail a chunk read. */
function counting(
  store: Datastore,
  tamper?: (hex: string, blob: Uint8Array, n: number) => Uint8Array,
): Counted {
  const files: string[] = [];
  const chunks: string[] = [];
  return {
    files,
    chunks,
    readSnapshotFile: async (ref, filename) => {
      files.push(`${formatSnapshot(ref)}/${filename}`);
      return store.readSnapshotFile(ref, filename);
    },
    readChunk: async (hex) => {
      chunks.push(hex);
      const blob = await store.readChunk(hex);
      return tamper === undefined ? blob : tamper(hex, blob, chunks.length);
    },
  };
}

async function twoSnapshots(
  t: Parameters<typeof testDir>[0],
): Promise<{ store: Datastore; refs: SnapshotRef[] }> {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const disk = await writeInput(
    dir,
    'disk.raw',
    imageBytes({ sizeBytes: 700 * KiB + 3, seed: 7 }, 0, 700 * KiB + 3),
  );
  const notes = await writeInput(
    dir,
    'notes.txt',
    imageBytes({ sizeBytes: 200 * KiB, seed: 8, mix: { text: 1 } }, 0, 200 * KiB),
  );
  const refs: SnapshotRef[] = [];
  for (let i = 0; i < 2; i++) {
    const result = await backup(store, {
      type: 'vm',
      id: '300',
      inputs: [
        { name: 'drive-scsi0', path: disk },
        { name: 'notes.txt', path: notes },
      ],
      chunkSizeBytes: 64 * KiB,
      dynamicAvgBytes: 64 * KiB,
      backupTime: 1_700_000_100 + i,
      encodeThreads: 0,
    });
    refs.push(result.ref);
  }
  return { store, refs };
}

test('a Datastore is a SnapshotFiles; verify through a wrapper gives the same report and reads each file and chunk once', async (t) => {
  const { store, refs } = await twoSnapshots(t);
  const asFiles: SnapshotFiles = store;
  const direct = await verifySnapshots(asFiles, refs);
  t.true(direct.ok);

  const files = counting(store);
  const report = await verifySnapshots(files, refs);
  t.deepEqual(report, direct);
  t.is(report.archives, 4);
  t.deepEqual(
    [...files.files].sort(),
    refs
      .flatMap((r) =>
        ['drive-scsi0.img.fidx', MANIFEST_BLOB_NAME, 'notes.txt.didx'].map(
          (f) => `${formatSnapshot(r)}/${f}`,
        ),
      )
      .sort(),
    'the manifest and each index once per snapshot',
  );
  t.is(files.chunks.length, report.chunks, 'each distinct chunk read once, though both snapshots use it');
  t.deepEqual(sortedSet(files.chunks), files.chunks.slice().sort());
  t.deepEqual(sortedSet(files.chunks), await chunkDigestsOnDisk(store.dir));

  // The snapshot listing of the CLI reads the same manifest the same way (the store adds
  // what it keeps beside the manifest).
  const { owner, protected: _protected, groupNotes, ...ofManifest } = await store.snapshotInfo(refs[0]!);
  t.deepEqual(await readSnapshotInfo(files, refs[0]!), ofManifest);
  t.deepEqual([owner, _protected, groupNotes], ['root@pam', false, false]);
});

test('a chunk changed on the way is reported with its digest and archives', async (t) => {
  const { store, refs } = await twoSnapshots(t);
  const index = await readIndexFile(store.snapshotDir(refs[0]!), 'drive-scsi0.img.fidx');
  const victim = indexDigests(index)[1]!;
  const files = counting(store, (hex, blob) => {
    if (hex !== victim) return blob;
    const copy = Uint8Array.from(blob);
    copy[copy.byteLength - 1]! ^= 0x01;
    return copy;
  });
  const report = await verifySnapshots(files, refs);
  t.false(report.ok);
  t.deepEqual(
    report.badChunks.map((b) => [b.digest, b.code, b.archives]),
    [[victim, 'ERR_LR_BLOB_CRC_MISMATCH', refs.map((r) => `${formatSnapshot(r)}/drive-scsi0.img`)]],
  );
});

test('a missing manifest (a source answering ERR_LR_SNAPSHOT_FILE_NOT_FOUND) is ERR_LR_SNAPSHOT_NOT_FOUND', async (t) => {
  const { store, refs } = await twoSnapshots(t);
  const inner = counting(store);
  const files: SnapshotFiles = {
    readSnapshotFile: (ref, filename) =>
      ref === refs[0] && filename === MANIFEST_BLOB_NAME
        ? Promise.reject(new LiverestoreError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', 'gone (HTTP 404)'))
        : inner.readSnapshotFile(ref, filename),
    readChunk: (hex) => inner.readChunk(hex),
  };
  const report = await verifySnapshots(files, refs);
  t.false(report.ok);
  t.deepEqual(
    report.badFiles.map((f) => [f.snapshot, f.filename, f.code]),
    [[formatSnapshot(refs[0]!), MANIFEST_BLOB_NAME, 'ERR_LR_SNAPSHOT_NOT_FOUND']],
  );
  t.is(report.archives, 2, 'the other snapshot is still checked');
  t.deepEqual(report.badChunks, []);
});

test('stopOn: a failure of the source as a whole rejects instead of blaming chunks, and stops reading', async (t) => {
  const { store, refs } = await twoSnapshots(t);
  const down = new LiverestoreError('ERR_LR_SOURCE_UNAVAILABLE', 'server gone');
  const failing = (): Counted =>
    counting(store, (_hex, blob, n) => {
      if (n >= 3) throw down;
      return blob;
    });
  const stopOn = (err: unknown): boolean => (err as { code?: string }).code === 'ERR_LR_SOURCE_UNAVAILABLE';

  const files = failing();
  const err = await t.throwsAsync(verifySnapshots(files, refs, { stopOn, concurrency: 2 }));
  t.is(err, down);
  t.true(files.chunks.length <= 4, `reads stop after the failure (${files.chunks.length})`);

  // Without stopOn every such chunk is reported (the default, unchanged).
  const report = await verifySnapshots(failing(), refs);
  t.false(report.ok);
  t.true(report.badChunks.length > 0);
  t.true(report.badChunks.every((b) => b.code === 'ERR_LR_SOURCE_UNAVAILABLE'));

  // A manifest read failing that way stops it too.
  const noManifest: SnapshotFiles = {
    readSnapshotFile: () => Promise.reject(down),
    readChunk: (hex) => store.readChunk(hex),
  };
  t.is(await t.throwsAsync(verifySnapshots(noManifest, refs, { stopOn })), down);
});

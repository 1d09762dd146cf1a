import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { CryptConfig, decodeChunk, encodeBlob } from '@liverestore/format';
import { imageBytes, randomBytes } from '@liverestore/testkit';
import test from 'ava';
import {
  backup,
  Datastore,
  formatSnapshot,
  type SnapshotRef,
  type VerifyProgress,
  verifySnapshots,
} from '../src/index.js';
import {
  chunkDigestsOnDisk,
  chunkFilePath,
  indexDigests,
  KiB,
  readIndexFile,
  sha256Hex,
  sortedSet,
  testDir,
  writeInput,
} from './helpers.js';

const CHUNK = 64 * KiB;

interface Fixture {
  readonly store: Datastore;
  readonly refs: SnapshotRef[];
  /** Archive (`vm/…/drive-scsi0.img`) → its chunk digests, read from the index files. */
  readonly uses: Map<string, string[]>;
  /** Plaintext length of every distinct chunk. */
  readonly lengths: Map<string, number>;
}

/**
 * Two snapshots of one group, each with the same disk under two names and a text file:
 * every disk chunk is used by four archives.
 */
async function twoSnapshots(dir: string, crypt?: CryptConfig): Promise<Fixture> {
  const store = await Datastore.create(join(dir, 'store'));
  const disk = imageBytes({ sizeBytes: 1024 * KiB + 999, seed: 41 }, 0, 1024 * KiB + 999);
  const diskPath = await writeInput(dir, 'disk.raw', disk);
  const notesPath = await writeInput(
    dir,
    'notes.txt',
    imageBytes({ sizeBytes: 300 * KiB, seed: 42, mix: { text: 1 } }, 0, 300 * KiB),
  );
  const refs: SnapshotRef[] = [];
  for (let i = 0; i < 2; i++) {
    const result = await backup(store, {
      type: 'vm',
      id: '200',
      inputs: [
        { name: 'drive-scsi0', path: diskPath },
        { name: 'drive-scsi1', path: diskPath },
        { name: 'notes.txt', path: notesPath },
      ],
      chunkSizeBytes: CHUNK,
      dynamicAvgBytes: 64 * KiB,
      backupTime: 1_700_000_000 + i,
      encodeThreads: 0,
      ...(crypt === undefined ? {} : { crypt }),
    });
    refs.push(result.ref);
  }
  const uses = new Map<string, string[]>();
  const lengths = new Map<string, number>();
  for (const ref of refs) {
    for (const file of ['drive-scsi0.img.fidx', 'drive-scsi1.img.fidx', 'notes.txt.didx']) {
      const index = await readIndexFile(store.snapshotDir(ref), file);
      uses.set(`${formatSnapshot(ref)}/${file.slice(0, -5)}`, indexDigests(index));
      indexDigests(index).forEach((d, i) => {
        lengths.set(d, index.chunkEnd(i) - index.chunkStart(i));
      });
    }
  }
  return { store, refs, uses, lengths };
}

function archivesUsing(fixture: Fixture, digest: string): string[] {
  return [...fixture.uses]
    .flatMap(([archive, digests]) => (digests.includes(digest) ? [archive] : []))
    .sort();
}

/** A disk chunk that is not all zeros (used by all four disk archives). */
function diskChunk(fixture: Fixture): string {
  const zero = sha256Hex(Buffer.alloc(CHUNK));
  const digests = fixture.uses.get(`${formatSnapshot(fixture.refs[0]!)}/drive-scsi0.img`)!;
  return digests.find((d) => d !== zero)!;
}

test('a clean store verifies ok with correct counts and progress', async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const progress: VerifyProgress[] = [];
  const report = await verifySnapshots(fixture.store, fixture.refs, { onProgress: (p) => progress.push(p) });
  const distinct = await chunkDigestsOnDisk(fixture.store.dir);
  t.deepEqual(sortedSet(fixture.lengths.keys()), distinct);
  t.deepEqual(report, {
    ok: true,
    snapshots: fixture.refs.map(formatSnapshot),
    archives: 6,
    chunks: distinct.length,
    bytes: [...fixture.lengths.values()].reduce((a, b) => a + b, 0),
    badChunks: [],
    badFiles: [],
    crcOnlyChunks: 0,
  });
  t.is(progress.length, distinct.length);
  t.deepEqual(progress.at(-1), { chunksDone: distinct.length, chunksTotal: distinct.length });
  // One snapshot alone, and no snapshot at all.
  const one = await verifySnapshots(fixture.store, fixture.refs.slice(1), { concurrency: 1 });
  t.like(one, { ok: true, archives: 3, chunks: distinct.length });
  t.like(await verifySnapshots(fixture.store, []), { ok: true, archives: 0, chunks: 0, bytes: 0 });
});

test('one flipped byte in a chunk file: that digest, CRC mismatch, every archive using it', async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const digest = diskChunk(fixture);
  const path = chunkFilePath(fixture.store.dir, digest);
  const blob = await readFile(path);
  blob[blob.byteLength - 1]! ^= 0x01;
  await writeFile(path, blob);

  const report = await verifySnapshots(fixture.store, fixture.refs);
  t.false(report.ok);
  t.is(report.badChunks.length, 1);
  const [bad] = report.badChunks;
  t.is(bad!.digest, digest);
  t.is(bad!.code, 'ERR_LR_BLOB_CRC_MISMATCH');
  const expected = archivesUsing(fixture, digest);
  t.is(expected.length, 4);
  t.deepEqual(bad!.archives, expected);
  t.deepEqual(report.badFiles, []);
  t.is(report.chunks, fixture.lengths.size);
});

test('a flipped CRC field of an uncompressed chunk: the read path reads the intact data, verify reports the CRC', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const data = randomBytes(5, CHUNK); // incompressible: stored uncompressed
  const input = await writeInput(dir, 'random.raw', data);
  const { ref } = await backup(store, {
    type: 'vm',
    id: '1',
    inputs: [{ name: 'drive-scsi0', path: input }],
    chunkSizeBytes: CHUNK,
  });
  const [digest] = indexDigests(await readIndexFile(store.snapshotDir(ref), 'drive-scsi0.img.fidx'));
  const path = chunkFilePath(store.dir, digest!);
  const blob = await readFile(path);
  t.true(blob.subarray(0, 8).equals(encodeBlob(Buffer.alloc(0), { compress: 'none' }).subarray(0, 8)));
  blob[8]! ^= 0x01;
  await writeFile(path, blob);

  // The digest covers every payload byte, so a reader serves the chunk (format's crcCoveredByDigest)...
  t.true(decodeChunk(blob, Buffer.from(digest!, 'hex')).equals(data));
  // ...and verify, like PBS's, still names the damaged blob.
  const report = await verifySnapshots(store, [ref]);
  t.false(report.ok);
  t.deepEqual(
    report.badChunks.map((b) => [b.digest, b.code]),
    [[digest, 'ERR_LR_BLOB_CRC_MISMATCH']],
  );
});

test("a valid blob of other data in a chunk's file: ERR_LR_DIGEST_MISMATCH", async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const digest = diskChunk(fixture);
  // Same length, correct CRC, wrong content.
  await writeFile(chunkFilePath(fixture.store.dir, digest), encodeBlob(randomBytes(77, CHUNK)));
  const report = await verifySnapshots(fixture.store, fixture.refs);
  t.false(report.ok);
  t.deepEqual(
    report.badChunks.map((b) => [b.digest, b.code]),
    [[digest, 'ERR_LR_DIGEST_MISMATCH']],
  );
  t.deepEqual(report.badChunks[0]!.archives, archivesUsing(fixture, digest));
});

test('a deleted chunk: ERR_LR_CHUNK_MISSING', async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const notes = fixture.uses.get(`${formatSnapshot(fixture.refs[1]!)}/notes.txt`)!;
  const digest = notes[1]!;
  await rm(chunkFilePath(fixture.store.dir, digest));
  const report = await verifySnapshots(fixture.store, fixture.refs);
  t.false(report.ok);
  t.deepEqual(
    report.badChunks.map((b) => [b.digest, b.code]),
    [[digest, 'ERR_LR_CHUNK_MISSING']],
  );
  t.deepEqual(report.badChunks[0]!.archives, archivesUsing(fixture, digest));
  t.is(report.badChunks[0]!.archives.length, 2);
});

const truncatedIndex = test.macro({
  async exec(t, filename: string, cut: (length: number) => number, code: string) {
    const dir = await testDir(t);
    const fixture = await twoSnapshots(dir);
    const second = fixture.refs[1];
    const path = join(fixture.store.snapshotDir(second!), filename);
    const length = (await readFile(path)).byteLength;
    await truncate(path, cut(length));
    const report = await verifySnapshots(fixture.store, fixture.refs);
    t.false(report.ok);
    t.is(report.badFiles.length, 1);
    t.like(report.badFiles[0], { snapshot: formatSnapshot(second!), filename, code });
    t.deepEqual(report.badChunks, []);
    // The other archives were still checked: all chunks are still in use by the first snapshot.
    t.is(report.archives, 6);
    t.is(report.chunks, fixture.lengths.size);
  },
  title: (detail) => `truncated index: ${detail ?? ''}`,
});

test(
  'fidx one digest short',
  truncatedIndex,
  'drive-scsi1.img.fidx',
  (n: number) => n - 32,
  'ERR_LR_INDEX_LENGTH_MISMATCH',
);
test('fidx inside its header', truncatedIndex, 'drive-scsi0.img.fidx', () => 100, 'ERR_LR_INDEX_TRUNCATED');
test(
  'didx mid-entry',
  truncatedIndex,
  'notes.txt.didx',
  (n: number) => n - 7,
  'ERR_LR_INDEX_LENGTH_MISMATCH',
);
test('didx empty', truncatedIndex, 'notes.txt.didx', () => 0, 'ERR_LR_INDEX_TRUNCATED');

test('an index that claims a shorter image than its chunks hold: ERR_LR_CHUNK_LENGTH_MISMATCH', async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const second = fixture.refs[1]!;
  const snapDir = fixture.store.snapshotDir(second);
  // index_csum covers only the digests, so size can be changed in the index and the
  // manifest consistently: the last chunk then holds more bytes than the index says.
  const fidxPath = join(snapDir, 'drive-scsi0.img.fidx');
  const fidx = await readFile(fidxPath);
  const size = Number(fidx.readBigUInt64LE(64));
  fidx.writeBigUInt64LE(BigInt(size - 100), 64);
  await writeFile(fidxPath, fidx);
  const manifestPath = join(snapDir, 'index.json.blob');
  const json = JSON.parse((await readFile(manifestPath)).subarray(12).toString('utf8')) as {
    files: { filename: string; size: number }[];
  };
  for (const f of json.files) if (f.filename === 'drive-scsi0.img.fidx') f.size = size - 100;
  await writeFile(manifestPath, encodeBlob(Buffer.from(JSON.stringify(json, null, 2)), { compress: 'none' }));

  const report = await verifySnapshots(fixture.store, fixture.refs);
  t.false(report.ok);
  t.deepEqual(report.badFiles, []);
  const digests = fixture.uses.get(`${formatSnapshot(second)}/drive-scsi0.img`)!;
  t.deepEqual(
    report.badChunks.map((b) => [b.digest, b.code]),
    [[digests.at(-1), 'ERR_LR_CHUNK_LENGTH_MISMATCH']],
  );
});

test('a corrupted, unparsable or missing manifest: badFiles, the other snapshot still checked', async (t) => {
  const dir = await testDir(t);
  const fixture = await twoSnapshots(dir);
  const [first, second] = fixture.refs as [SnapshotRef, SnapshotRef];
  const path = join(fixture.store.snapshotDir(first), 'index.json.blob');
  const original = await readFile(path);
  const cases: [Buffer | undefined, string][] = [
    [
      Buffer.concat([original.subarray(0, 40), Buffer.from([original[40]! ^ 0x20]), original.subarray(41)]),
      'ERR_LR_BLOB_CRC_MISMATCH',
    ],
    [
      encodeBlob(Buffer.from('{"backup-type": "vm", "files": ['), { compress: 'none' }),
      'ERR_LR_MANIFEST_INVALID',
    ],
    [
      encodeBlob(Buffer.from('{"backup-type": "vm", "files": [{"filename": 1}]}'), { compress: 'none' }),
      'ERR_LR_MANIFEST_INVALID',
    ],
    [original.subarray(0, 5), 'ERR_LR_BLOB_TRUNCATED'],
    [undefined, 'ERR_LR_SNAPSHOT_NOT_FOUND'],
  ];
  for (const [content, code] of cases) {
    if (content === undefined) await rm(path);
    else await writeFile(path, content);
    const report = await verifySnapshots(fixture.store, fixture.refs);
    t.false(report.ok, code);
    t.deepEqual(
      report.badFiles.map((f) => ({ snapshot: f.snapshot, filename: f.filename, code: f.code })),
      [{ snapshot: formatSnapshot(first), filename: 'index.json.blob', code }],
    );
    t.is(report.archives, 3);
    t.deepEqual(report.badChunks, []);
    t.true(report.chunks > 0);
    t.is(report.snapshots[1], formatSnapshot(second));
  }
});

test('encrypted snapshots: CRC-only without the key (and says so), full check with it', async (t) => {
  const dir = await testDir(t);
  const crypt = CryptConfig.generate();
  const fixture = await twoSnapshots(dir, crypt);
  const distinct = fixture.lengths.size;

  const withoutKey = await verifySnapshots(fixture.store, fixture.refs);
  t.like(withoutKey, { ok: true, chunks: distinct, crcOnlyChunks: distinct, bytes: 0, archives: 6 });
  const withKey = await verifySnapshots(fixture.store, fixture.refs, { crypt });
  t.like(withKey, { ok: true, chunks: distinct, crcOnlyChunks: 0, archives: 6 });
  t.is(
    withKey.bytes,
    [...fixture.lengths.values()].reduce((a, b) => a + b, 0),
  );

  // Tamper with the ciphertext and fix up the CRC: only the key can tell.
  const digest = diskChunk(fixture);
  const path = chunkFilePath(fixture.store.dir, digest);
  const blob = await readFile(path);
  blob[60]! ^= 0x80;
  blob.writeUInt32LE(zlib.crc32(blob.subarray(44)), 8);
  await writeFile(path, blob);
  t.like(await verifySnapshots(fixture.store, fixture.refs), { ok: true, crcOnlyChunks: distinct });
  const tampered = await verifySnapshots(fixture.store, fixture.refs, { crypt });
  t.false(tampered.ok);
  t.deepEqual(
    tampered.badChunks.map((b) => [b.digest, b.code, b.archives.length]),
    [[digest, 'ERR_LR_DECRYPT_FAILED', 4]],
  );
  // A broken CRC is found without the key too.
  blob[61]! ^= 0x01;
  await writeFile(path, blob);
  const crcBroken = await verifySnapshots(fixture.store, fixture.refs);
  t.deepEqual(
    crcBroken.badChunks.map((b) => [b.digest, b.code]),
    [[digest, 'ERR_LR_BLOB_CRC_MISMATCH']],
  );
  t.is(crcBroken.crcOnlyChunks, distinct - 1);

  // The wrong key is refused at the manifest signature.
  const wrong = await verifySnapshots(fixture.store, fixture.refs, { crypt: CryptConfig.generate() });
  t.false(wrong.ok);
  t.deepEqual(
    wrong.badFiles.map((f) => f.code),
    ['ERR_LR_MANIFEST_SIGNATURE', 'ERR_LR_MANIFEST_SIGNATURE'],
  );
});

test('a store with plain and encrypted snapshots verifies without a key', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const path = await writeInput(dir, 'disk.raw', imageBytes({ sizeBytes: 200 * KiB, seed: 5 }, 0, 200 * KiB));
  const inputs = [{ name: 'drive-scsi0', path }];
  await backup(store, { type: 'vm', id: '1', inputs, chunkSizeBytes: CHUNK, encodeThreads: 0 });
  await backup(store, {
    type: 'vm',
    id: '2',
    inputs,
    chunkSizeBytes: CHUNK,
    encodeThreads: 0,
    crypt: CryptConfig.generate(),
  });
  const report = await verifySnapshots(store, await store.listSnapshotRefs());
  t.like(report, { ok: true, archives: 2, chunks: 8, crcOnlyChunks: 4, bytes: 200 * KiB });
});

// With a key, every chunk was once decoded with the key, so the plain SHA-256 digests of
// unencrypted snapshots in the same run were reported as ERR_LR_DIGEST_MISMATCH.
test('a store with plain and encrypted snapshots verifies with the key', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const crypt = CryptConfig.generate();
  const path = await writeInput(dir, 'disk.raw', imageBytes({ sizeBytes: 200 * KiB, seed: 5 }, 0, 200 * KiB));
  const inputs = [{ name: 'drive-scsi0', path }];
  await backup(store, { type: 'vm', id: '1', inputs, chunkSizeBytes: CHUNK, encodeThreads: 0 });
  await backup(store, { type: 'vm', id: '2', inputs, chunkSizeBytes: CHUNK, encodeThreads: 0, crypt });
  const report = await verifySnapshots(store, await store.listSnapshotRefs(), { crypt });
  t.deepEqual(report.badChunks, []);
  t.like(report, { ok: true, archives: 2, chunks: 8, crcOnlyChunks: 0, bytes: 400 * KiB });
});

import { execFile } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CryptConfig, decodeBlob, decodeManifest, encodeBlob, encodeManifest } from '@liverestore/format';
import { fileHashes, randomBytes } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  backup,
  Datastore,
  recordVerifyResults,
  S3Datastore,
  type SnapshotRef,
  verifySnapshots,
  verifyStateOf,
} from '../src/index.js';
import { ownerOfFile, snapshotListingJson, UPID_PATTERN } from '../src/internal.js';
import {
  chunkFilePath,
  indexDigests,
  KiB,
  readIndexFile,
  sha256Hex,
  testDir,
  writeInput,
} from './helpers.js';
import { s3Fixture } from './s3-fixture.js';

const run = promisify(execFile);

const OLD_UPID = 'UPID:pbs:000012AB:0001E240:00000002:65A1B2C3:verify_snapshot:store1\\x3avm-100:root@pam:';

/**
 * Adds what a PBS server keeps beside a snapshot: the group's owner (another user), notes
 * and lock file, `.protected`, a `client.log.blob` listed in the (re-signed) manifest,
 * unknown `unprotected` fields and an earlier verify state; at the store root `.gc-status`
 * and `.lock`.
 */
async function addPbsExtras(store: Datastore, ref: SnapshotRef, crypt: CryptConfig): Promise<void> {
  const group = store.groupDir(ref.type, ref.id, ref.namespace);
  const snapDir = store.snapshotDir(ref);
  await writeFile(join(group, 'owner'), 'backup@pbs!nightly\n');
  await writeFile(join(group, 'notes'), 'database server\nsecond line\n');
  await writeFile(join(group, '.lock'), '');
  await writeFile(join(snapDir, '.protected'), '');
  const log = encodeBlob(Buffer.from('backup log\n'.repeat(50)), { compress: 'none' });
  await writeFile(join(snapDir, 'client.log.blob'), log);
  const manifest = await store.readManifest(ref, crypt);
  const files = [
    ...manifest.files,
    { filename: 'client.log.blob', cryptMode: 'none' as const, size: log.length, csum: sha256Hex(log) },
  ];
  const unprotected = {
    chunk_upload_stats: { count: 4, size: 1234, compressed_size: 600, duplicates: 1 },
    notes: 'before upgrade',
    verify_state: { state: 'failed', upid: OLD_UPID },
  };
  await writeFile(
    join(snapDir, 'index.json.blob'),
    encodeManifest({ ...manifest, files, unprotected }, { crypt, fingerprint: crypt.fingerprint() }),
  );
  await writeFile(join(store.dir, '.gc-status'), '{"upid":null,"index-file-count":0}');
  await writeFile(join(store.dir, '.lock'), '');
}

function manifestJson(raw: Uint8Array): Record<string, unknown> {
  return JSON.parse(decodeBlob(raw).toString('utf8')) as Record<string, unknown>;
}

async function backupPair(t: ExecutionContext) {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const crypt = CryptConfig.generate();
  const a = await writeInput(dir, 'a.raw', randomBytes(1, 300 * KiB));
  const b = await writeInput(dir, 'b.raw', randomBytes(2, 300 * KiB));
  const opts = { namespace: 'prod', type: 'vm', crypt, chunkSizeBytes: 64 * KiB } as const;
  const first = await backup(store, {
    ...opts,
    id: '100',
    inputs: [{ name: 'drive-scsi0', path: a }],
    backupTime: 1000,
  });
  const other = await backup(store, {
    ...opts,
    id: '200',
    inputs: [{ name: 'drive-scsi0', path: b }],
    backupTime: 1000,
  });
  await addPbsExtras(store, first.ref, crypt);
  return { dir, store, crypt, a, first, other };
}

test('PBS extras are tolerated by listing and verify, and kept by an incremental backup', async (t) => {
  const { store, crypt, a, first } = await backupPair(t);
  const before = await fileHashes(store.dir, ['.chunks']);

  t.deepEqual(await store.listSnapshotRefs({ namespace: 'prod' }), [
    first.ref,
    { namespace: 'prod', type: 'vm', id: '200', time: 1000 },
  ]);
  const info = await store.snapshotInfo(first.ref);
  t.deepEqual(
    info.archives.map((x) => x.filename),
    ['drive-scsi0.img.fidx'],
  );
  t.deepEqual(info.verifyState, { state: 'failed', upid: OLD_UPID });
  t.like(await verifySnapshots(store, [first.ref], { crypt }), { ok: true, archives: 1 });

  const next = await backup(store, {
    namespace: 'prod',
    type: 'vm',
    id: '100',
    inputs: [{ name: 'drive-scsi0', path: a }],
    crypt,
    chunkSizeBytes: 64 * KiB,
    backupTime: 2000,
  });
  t.is(next.chunksNew, 0);
  const after = await fileHashes(store.dir, ['.chunks']);
  for (const [path, hash] of before) t.is(after.get(path), hash, `${path} is kept as it was`);

  // The listed blob is checked as PBS's verify checks it: a changed byte is a bad file.
  const log = join(store.snapshotDir(first.ref), 'client.log.blob');
  const bytes = await readFile(log);
  bytes[bytes.length - 1]! ^= 1;
  await writeFile(log, bytes);
  const report = await verifySnapshots(store, [first.ref], { crypt });
  t.false(report.ok);
  t.deepEqual(
    report.badFiles.map((f) => [f.filename, f.code]),
    [['client.log.blob', 'ERR_LR_MANIFEST_MISMATCH']],
  );
  t.is(await readFile(join(store.groupDir('vm', '100', 'prod'), 'owner'), 'utf8'), 'backup@pbs!nightly\n');
});

test('a listing shows the group owner, .protected and whether the group has notes, as PBS lists them', async (t) => {
  const { store, first, other } = await backupPair(t);
  t.like(await store.snapshotInfo(first.ref), {
    owner: 'backup@pbs!nightly',
    protected: true,
    groupNotes: true,
  });
  // The other group has what backup wrote: root@pam, no notes, not protected.
  t.like(await store.snapshotInfo(other.ref), { owner: 'root@pam', protected: false, groupNotes: false });
  t.like(snapshotListingJson(await store.snapshotInfo(first.ref)), {
    snapshot: 'ns/prod/vm/100/1970-01-01T00:16:40Z',
    owner: 'backup@pbs!nightly',
    protected: true,
    groupNotes: true,
  });

  // Empty notes are no notes; an owner file that names no Authid gives no owner, and the
  // snapshot is still listed.
  const group = store.groupDir('vm', '200', 'prod');
  await writeFile(join(group, 'notes'), '');
  await writeFile(join(group, 'owner'), 'not an owner\n');
  const info = await store.snapshotInfo(other.ref);
  t.false('owner' in info);
  t.like(info, { protected: false, groupNotes: false });
  t.false('owner' in snapshotListingJson(info));
});

test('ownerOfFile reads the first line of an owner file as a PBS Authid, or nothing', (t) => {
  const owner = (text: string) => ownerOfFile(Buffer.from(text));
  t.is(owner('root@pam\n'), 'root@pam');
  t.is(owner('backup@pbs!job\nsecond line\n'), 'backup@pbs!job');
  t.is(owner('root@pam'), 'root@pam');
  for (const bad of ['', '\n', 'root', 'root@pam!', 'a b@pam', `${'x'.repeat(130)}@pam`])
    t.is(owner(bad), undefined, JSON.stringify(bad));
});

test('verify records unprotected.verify_state the PBS way: signature valid, other fields kept, failed only where bad', async (t) => {
  const { store, crypt, first, other } = await backupPair(t);
  // Break a chunk only the first snapshot uses.
  const firstDigests = indexDigests(
    await readIndexFile(store.snapshotDir(first.ref), 'drive-scsi0.img.fidx'),
  );
  const otherDigests = new Set(
    indexDigests(await readIndexFile(store.snapshotDir(other.ref), 'drive-scsi0.img.fidx')),
  );
  const victim = firstDigests.find((d) => !otherDigests.has(d))!;
  const chunk = await readFile(chunkFilePath(store.dir, victim));
  chunk[chunk.length - 1]! ^= 1;
  await writeFile(chunkFilePath(store.dir, victim), chunk);

  const refs = [first.ref, other.ref];
  const report = await verifySnapshots(store, refs, { crypt });
  t.false(report.ok);
  const recorded = await recordVerifyResults(store, refs, report, { storeName: 'store1' });
  t.is(recorded.recorded, 2);
  t.is(recorded.readOnly, undefined);
  t.regex(recorded.upid, UPID_PATTERN);
  t.regex(recorded.upid, /:verify:store1:root@pam:$/);

  const firstManifest = decodeManifest(await store.readSnapshotFile(first.ref, 'index.json.blob'), { crypt });
  t.deepEqual(verifyStateOf(firstManifest), { state: 'failed', upid: recorded.upid });
  t.like(firstManifest.unprotected, {
    notes: 'before upgrade',
    chunk_upload_stats: { count: 4, size: 1234, compressed_size: 600, duplicates: 1 },
    'key-fingerprint': crypt.fingerprint(),
  });
  t.deepEqual(
    firstManifest.files.map((f) => f.filename),
    ['drive-scsi0.img.fidx', 'client.log.blob'],
  );
  const otherManifest = decodeManifest(await store.readSnapshotFile(other.ref, 'index.json.blob'), { crypt });
  t.deepEqual(verifyStateOf(otherManifest), { state: 'ok', upid: recorded.upid });

  // One snapshot: PBS's verify_snapshot task type, the snapshot in its worker id (systemd-escaped).
  const single = await recordVerifyResults(
    store,
    [other.ref],
    await verifySnapshots(store, [other.ref], { crypt }),
    {
      storeName: 'store1',
    },
  );
  t.regex(
    single.upid,
    /:verify_snapshot:store1\\x3ans-prod-vm-200-1970\\x2d01\\x2d01T00\\x3a16\\x3a40Z:root@pam:$/,
  );
  t.regex(single.upid, UPID_PATTERN);
});

/** Makes `dir` unwritable even for root (chmod, then the immutable flag when running as root). */
async function makeReadOnly(t: ExecutionContext, dir: string): Promise<void> {
  await chmod(dir, 0o555);
  t.teardown(() => chmod(dir, 0o755));
  if (process.getuid?.() === 0) {
    await run('chattr', ['+i', dir]);
    t.teardown(async () => {
      await run('chattr', ['-i', dir]);
    });
  }
}

test('a read-only store is still verified; recording stops with ERR_LR_STORE_READ_ONLY and changes nothing', async (t) => {
  const { store, crypt, first } = await backupPair(t);
  const dir = store.snapshotDir(first.ref);
  const manifestBefore = await readFile(join(dir, 'index.json.blob'));
  await makeReadOnly(t, dir);
  const report = await verifySnapshots(store, [first.ref], { crypt });
  t.true(report.ok);
  const recorded = await recordVerifyResults(store, [first.ref], report);
  t.is(recorded.recorded, 0);
  t.is(recorded.readOnly?.code, 'ERR_LR_STORE_READ_ONLY');
  t.deepEqual(await readFile(join(dir, 'index.json.blob')), manifestBefore);
  t.deepEqual(
    manifestJson(manifestBefore).unprotected,
    manifestJson(await readFile(join(dir, 'index.json.blob'))).unprotected,
  );
});

test('an S3 store lists the owner, .protected and group notes objects PBS keeps beside a snapshot', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const dir = await testDir(t);
  const store = await S3Datastore.open(s3.url(), { ...s3.options, create: true });
  t.teardown(() => store.close());
  const input = await writeInput(dir, 'a.raw', randomBytes(3, 100 * KiB));
  const opts = { type: 'vm', inputs: [{ name: 'drive-scsi0', path: input }], backupTime: 1000 } as const;
  const first = await backup(store, { ...opts, id: '100', namespace: 'prod' });
  const other = await backup(store, { ...opts, id: '200', namespace: 'prod' });
  t.like(await store.snapshotInfo(other.ref), { owner: 'root@pam', protected: false, groupNotes: false });

  const group = store.groupPrefix('vm', '100', 'prod');
  await s3.client.putObject(`${group}owner`, Buffer.from('backup@pbs!nightly\n'), {});
  await s3.client.putObject(`${group}notes`, Buffer.from('database server\n'), {});
  await s3.client.putObject(`${group}1970-01-01T00:16:40Z/.protected`, Buffer.alloc(0), {});
  t.like(await store.snapshotInfo(first.ref), {
    owner: 'backup@pbs!nightly',
    protected: true,
    groupNotes: true,
  });
  t.like(await store.snapshotInfo(other.ref), { owner: 'root@pam', protected: false, groupNotes: false });
});

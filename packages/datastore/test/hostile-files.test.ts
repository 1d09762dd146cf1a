/*
 * Hostile files in a store (issue 15): a chunk that is a FIFO hung verify and restore
 * forever, a symlink to /dev/zero was read without end, a directory gave an errno without
 * a path. Every one now fails at once with a code naming the file.
 */
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, open, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeManifest } from '@liverestore/format';
import test, { type ExecutionContext } from 'ava';
import { backup, Datastore, type SnapshotRef, verifySnapshots } from '../src/index.js';
import { MAX_CHUNK_FILE_BYTES } from '../src/internal.js';
import { KiB, testDir, textBytes, writeInput } from './helpers.js';

const HEX = 'ab'.repeat(32);

async function storeWithChunkDir(
  t: ExecutionContext,
): Promise<{ dir: string; store: Datastore; path: string }> {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const path = store.chunkPath(HEX);
  await mkdir(join(path, '..'), { recursive: true });
  return { dir, store, path };
}

/** A store with one snapshot vm/1 of a 100 KiB text disk `drive-scsi0`. */
async function backedUpStore(t: ExecutionContext): Promise<{ store: Datastore; ref: SnapshotRef }> {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const input = await writeInput(dir, 'disk.raw', textBytes(100 * KiB));
  const { ref } = await backup(store, {
    type: 'vm',
    id: '1',
    inputs: [{ name: 'drive-scsi0', path: input }],
  });
  return { store, ref };
}

/** Makes `path` a FIFO; the teardown opens its write end once, which frees any open still blocked on it. */
function makeFifo(t: ExecutionContext, path: string): void {
  execFileSync('mkfifo', [path]);
  t.teardown(async () => {
    const writer = await open(path, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await writer?.close();
  });
}

/** The promise's rejection, or a failure naming `what` if it has not settled within 10 s. */
async function rejection(
  promise: Promise<unknown>,
  what: string,
): Promise<{ code?: string; message: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle in 10 s`)), 10_000);
  });
  try {
    await Promise.race([promise, timeout]);
  } catch (err) {
    return err as { code?: string; message: string };
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`${what} resolved`);
}

test('a chunk that is a FIFO: ERR_LR_STORE_FILE_NOT_REGULAR naming the file, at once', async (t) => {
  const { store, path } = await storeWithChunkDir(t);
  makeFifo(t, path);
  const err = await rejection(store.readChunk(HEX), 'reading a FIFO chunk');
  t.is(err.code, 'ERR_LR_STORE_FILE_NOT_REGULAR', err.message);
  t.true(err.message.includes(path) && err.message.includes('FIFO'), err.message);
});

test('a chunk that is a symlink (even to a good file) is refused, not followed', async (t) => {
  const { dir, store, path } = await storeWithChunkDir(t);
  await writeFile(join(dir, 'outside'), 'not a chunk');
  await symlink(join(dir, 'outside'), path);
  const err = await rejection(store.readChunk(HEX), 'reading a symlinked chunk');
  t.is(err.code, 'ERR_LR_STORE_FILE_NOT_REGULAR', err.message);
  t.true(err.message.includes(path) && err.message.includes('symbolic link'), err.message);
});

test('a chunk that is a symlink to /dev/zero is refused without reading it', async (t) => {
  const { store, path } = await storeWithChunkDir(t);
  await symlink('/dev/zero', path);
  const err = await rejection(store.readChunk(HEX), 'reading a chunk linked to /dev/zero');
  t.is(err.code, 'ERR_LR_STORE_FILE_NOT_REGULAR', err.message);
});

test('a chunk that is a directory: ERR_LR_STORE_FILE_NOT_REGULAR naming it (was EISDIR without a path)', async (t) => {
  const { store, path } = await storeWithChunkDir(t);
  await mkdir(path);
  const err = await rejection(store.readChunk(HEX), 'reading a directory chunk');
  t.is(err.code, 'ERR_LR_STORE_FILE_NOT_REGULAR', err.message);
  t.true(err.message.includes(path) && err.message.includes('directory'), err.message);
});

test('a chunk file larger than any blob: ERR_LR_STORE_FILE_TOO_LARGE, nothing read', async (t) => {
  const { store, path } = await storeWithChunkDir(t);
  await writeFile(path, '');
  await truncate(path, MAX_CHUNK_FILE_BYTES + 1); // sparse: costs no disk
  const err = await rejection(store.readChunk(HEX), 'reading an oversized chunk');
  t.is(err.code, 'ERR_LR_STORE_FILE_TOO_LARGE', err.message);
  t.true(err.message.includes(path), err.message);
});

test('a snapshot file (the manifest) that is a FIFO: refused at once, not hung', async (t) => {
  const { store, ref } = await backedUpStore(t);
  const manifest = join(store.snapshotDir(ref), 'index.json.blob');
  await rm(manifest);
  makeFifo(t, manifest);
  const err = await rejection(store.readManifest(ref), 'reading a FIFO manifest');
  t.is(err.code, 'ERR_LR_STORE_FILE_NOT_REGULAR', err.message);
});

test('verify over a store whose chunk is a FIFO reports that chunk with the code and ends', async (t) => {
  const { store, ref } = await backedUpStore(t);
  const index = await store.readArchiveIndex(ref, 'drive-scsi0');
  const hex = Buffer.from(index.digestAt(0)).toString('hex');
  await rm(store.chunkPath(hex));
  makeFifo(t, store.chunkPath(hex));
  let timer: NodeJS.Timeout | undefined;
  const report = await Promise.race([
    verifySnapshots(store, [ref]),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('verify did not end in 10 s')), 10_000);
    }),
  ]).finally(() => clearTimeout(timer));
  t.false(report.ok);
  t.deepEqual(
    report.badChunks.map((c) => [c.digest, c.code]),
    [[hex, 'ERR_LR_STORE_FILE_NOT_REGULAR']],
  );
});

test('verify reports a manifest entry named ../../../../x.img.fidx as ERR_LR_MANIFEST_INVALID (it was dropped silently)', async (t) => {
  const { store, ref } = await backedUpStore(t);
  const manifest = await store.readManifest(ref);
  const hostile = '../../../../x.img.fidx';
  manifest.files.push({ ...manifest.files[0]!, filename: hostile });
  await writeFile(join(store.snapshotDir(ref), 'index.json.blob'), encodeManifest(manifest));
  const report = await verifySnapshots(store, [ref]);
  t.false(report.ok);
  t.deepEqual(
    report.badFiles.map((f) => [f.filename, f.code]),
    [['index.json.blob', 'ERR_LR_MANIFEST_INVALID']],
  );
  t.true(report.badFiles[0]!.message.includes(hostile));
  t.deepEqual(report.badChunks, [], 'the good archive is still checked');
});

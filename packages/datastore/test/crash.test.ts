/*
 * Crash safety: a backup killed with SIGKILL at an arbitrary point must leave no partial
 * snapshot and no torn chunk, only `.tmp-*` leftovers, and the store must take the next
 * backup as if nothing happened. The backup runs in a child process so it can really die.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { decodeChunk } from '@liverestore/format';
import { type ImageSpec, mutate, vmImageSet, writeImageFile } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { backup, Datastore, type SnapshotRef, verifySnapshots } from '../src/index.js';
import {
  fixedChunkDigests,
  indexDigests,
  KiB,
  listChunkFiles,
  MiB,
  readIndexFile,
  sortedSet,
  testDir,
} from './helpers.js';

const CHUNK = 64 * KiB;
const PACKAGE_ENTRY = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** The child: backs up argv[3] into the store at argv[2], says `started` after the first chunk. */
const CHILD_SCRIPT = `
import { backup, Datastore } from ${JSON.stringify(PACKAGE_ENTRY)};
const [storeDir, imagePath] = process.argv.slice(2);
const store = await Datastore.create(storeDir);
let started = false;
await backup(store, {
  type: 'vm',
  id: '100',
  inputs: [{ name: 'drive-scsi0', path: imagePath }],
  chunkSizeBytes: ${CHUNK},
  onProgress() {
    if (!started) {
      started = true;
      process.stderr.write('started\\n');
    }
  },
});
process.stderr.write('done\\n');
`;

interface KillOutcome {
  /** The child was killed before it could finish: no new snapshot at kill time or after. */
  readonly killedMidway: boolean;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
}

/** Complete chunk files in the store (temp files not counted). */
async function countChunks(storeDir: string): Promise<number> {
  const entries = await readdir(join(storeDir, '.chunks'), { recursive: true });
  return entries.filter((e) => /[0-9a-f]{64}$/.test(e) && !e.includes('.tmp-')).length;
}

/** Chunks the child must have written before it is killed: a few percent of the image. */
const KILL_AFTER_CHUNKS = 40;

/**
 * Runs the child backup and SIGKILLs it `delayMs` after it has written
 * {@link KILL_AFTER_CHUNKS} chunks, so it dies with real work on disk and more to do.
 */
async function backupAndKill(
  t: ExecutionContext,
  script: string,
  storeDir: string,
  imagePath: string,
  delayMs: number,
): Promise<KillOutcome> {
  const store = await Datastore.open(storeDir);
  const before = (await store.listSnapshotRefs()).length;
  const child: ChildProcess = spawn(process.execPath, [script, storeDir, imagePath], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  let stderr = '';
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    child.on('exit', (_code, signal) => resolve(signal));
  });
  const started = new Promise<boolean>((resolve) => {
    child.stderr!.on('data', (data: Buffer) => {
      stderr += data.toString('utf8');
      if (stderr.includes('started\n')) resolve(true);
    });
    void exited.then(() => resolve(false));
  });
  if (!(await started)) {
    throw new Error(`the child backup exited before its first chunk:\n${stderr}`);
  }
  while ((await countChunks(storeDir)) < KILL_AFTER_CHUNKS && child.exitCode === null) await sleep(5);
  await sleep(delayMs);
  const atKill = (await store.listSnapshotRefs()).length;
  child.kill('SIGKILL');
  const signal = await exited;
  const after = (await store.listSnapshotRefs()).length;
  return {
    killedMidway: atKill === before && after === before && signal === 'SIGKILL' && !stderr.includes('done\n'),
    signal,
    stderr,
  };
}

/** Kills backups with shorter and shorter delays until one dies mid-way; returns its store. */
async function crashedStore(
  t: ExecutionContext,
  dir: string,
  imagePath: string,
  prepare: (storeDir: string) => Promise<void> = async () => undefined,
): Promise<string> {
  const script = join(dir, 'child-backup.mjs');
  await writeFile(script, CHILD_SCRIPT);
  const delays = [100, 30, 0, 0];
  for (const [attempt, delayMs] of delays.entries()) {
    const storeDir = join(dir, `store-${attempt}`);
    await Datastore.create(storeDir);
    await prepare(storeDir);
    const outcome = await backupAndKill(t, script, storeDir, imagePath, delayMs);
    if (outcome.killedMidway) {
      t.log(`killed ${delayMs} ms after ${KILL_AFTER_CHUNKS} chunks were written (attempt ${attempt + 1})`);
      return storeDir;
    }
    t.log(`attempt ${attempt + 1}: the backup finished within ${delayMs} ms; retrying sooner`);
    // Killed after the rename but before it said so: the snapshot must then be complete.
    t.is(outcome.signal === 'SIGKILL' || outcome.stderr.includes('done\n'), true);
  }
  throw new Error('every backup finished before it could be killed');
}

/**
 * What a crash may leave in `.chunks`: complete chunks under their digest, and `.tmp-*`
 * files. Returns the digests of the complete chunks.
 */
async function checkNoTornChunk(t: ExecutionContext, storeDir: string): Promise<string[]> {
  const files = await listChunkFiles(storeDir);
  const digests: string[] = [];
  for (const f of files) {
    t.regex(f.prefix, /^[0-9a-f]{4}$/);
    if (f.name.startsWith('.tmp-')) continue;
    t.regex(f.name, /^[0-9a-f]{64}$/);
    t.is(f.prefix, f.name.slice(0, 4));
    // decodeChunk checks CRC, decompression and that the plaintext hashes to the name.
    decodeChunk(await readFile(f.path), Buffer.from(f.name, 'hex'));
    digests.push(f.name);
  }
  return digests;
}

async function imageDigests(path: string): Promise<string[]> {
  return fixedChunkDigests(await readFile(path), CHUNK);
}

function driveSpec(seed: number, sizeBytes: number): ImageSpec {
  return vmImageSet(seed, { drives: 1, sizeBytes })[0]!.spec;
}

test('SIGKILL mid-backup: no partial snapshot, no torn chunk, next backup and verify ok', async (t) => {
  const dir = await testDir(t, 'lr-crash-');
  const imagePath = join(dir, 'scsi0.raw');
  await writeImageFile(driveSpec(17, 64 * MiB), imagePath);
  const storeDir = await crashedStore(t, dir, imagePath);
  const store = await Datastore.open(storeDir);

  t.deepEqual(await store.listSnapshotRefs(), []);
  const leftovers = (await readdir(join(storeDir, 'vm', '100'))).filter((name) => name !== 'owner');
  t.true(leftovers.length >= 1, 'the killed backup had started its snapshot');
  for (const name of leftovers) t.true(name.startsWith('.tmp-'), name);
  const complete = await checkNoTornChunk(t, storeDir);
  t.true(complete.length > 0, 'the killed backup had written chunks');
  const distinct = sortedSet(await imageDigests(imagePath));
  t.true(complete.length < distinct.length, 'killed before it wrote every chunk');
  t.deepEqual(
    complete.filter((d) => !distinct.includes(d)),
    [],
  );

  // The next backup reuses the complete chunks, writes the rest, and verifies.
  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: [{ name: 'drive-scsi0', path: imagePath }],
    chunkSizeBytes: CHUNK,
  });
  t.is(result.chunksNew, distinct.length - complete.length);
  t.deepEqual(await store.listSnapshotRefs(), [result.ref]);
  const index = await readIndexFile(store.snapshotDir(result.ref), 'drive-scsi0.img.fidx');
  t.deepEqual(indexDigests(index), await imageDigests(imagePath));
  const report = await verifySnapshots(store, [result.ref]);
  t.like(report, { ok: true, chunks: distinct.length, archives: 1 });
  t.deepEqual(sortedSet(await checkNoTornChunk(t, storeDir)), distinct);
});

test('SIGKILL during a later backup leaves the earlier snapshot intact', async (t) => {
  const dir = await testDir(t, 'lr-crash-');
  const base = driveSpec(18, 24 * MiB);
  const basePath = join(dir, 'base.raw');
  const nextPath = join(dir, 'next.raw');
  await writeImageFile(base, basePath);
  // Many changes: the second backup has plenty of new chunks to be killed in.
  await writeImageFile(mutate(base, { seed: 1, changes: 250 }), nextPath);
  let earlier: SnapshotRef | undefined;
  const storeDir = await crashedStore(t, dir, nextPath, async (storeDir) => {
    const store = await Datastore.open(storeDir);
    const first = await backup(store, {
      type: 'vm',
      id: '100',
      inputs: [{ name: 'drive-scsi0', path: basePath }],
      chunkSizeBytes: CHUNK,
      backupTime: 1_700_000_000,
      encodeThreads: 0,
    });
    earlier = first.ref;
  });
  const store = await Datastore.open(storeDir);
  t.deepEqual(await store.listSnapshotRefs(), [earlier]);
  await checkNoTornChunk(t, storeDir);
  t.like(await verifySnapshots(store, [earlier!]), { ok: true, archives: 1 });
  const again = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: [{ name: 'drive-scsi0', path: nextPath }],
    chunkSizeBytes: CHUNK,
  });
  t.deepEqual(await store.listSnapshotRefs(), [earlier, again.ref]);
  t.like(await verifySnapshots(store, await store.listSnapshotRefs()), { ok: true, archives: 2 });
});

/*
 * Cross-checks against the independent Python PBS implementation in conformance/
 * (written from the format description alone, sharing no code with liverestore):
 * stores written by `liverestore backup` pass the strict `pbs_reader.py` with identical
 * SHA-256s, and stores written by `pbs_writer.py` verify clean with `liverestore verify`,
 * are listed by `liverestore snapshots`, and a flipped chunk byte is named by both.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeChunk, readIndex } from '@liverestore/format';
import test, { type ExecutionContext } from 'ava';
import {
  backupArgv,
  chunkPath,
  cli,
  exec,
  flipByte,
  indexDigests,
  KiB,
  lines,
  MiB,
  type Outcome,
  PBS_READER,
  PBS_WRITER,
  runIn,
  sha256File,
  sha256Hex,
  testDir,
  type VmFiles,
  vmArgs,
  writeVm,
} from './helpers.js';
import { requireTool } from './tools.js';

const ARCHIVES = ['drive-scsi0.img', 'drive-scsi1.img', 'notes.txt'] as const;
const FILENAMES: Record<string, string> = {
  'drive-scsi0.img': 'drive-scsi0.img.fidx',
  'drive-scsi1.img': 'drive-scsi1.img.fidx',
  'notes.txt': 'notes.txt.didx',
};
const PBS_TIME = '2026-01-02T03:04:05Z';
const PBS_SNAPSHOT = `vm/100/${PBS_TIME}`;

interface ReaderJson {
  ok: boolean;
  snapshot: string;
  archives: { name: string; size: number; sha256: string; ok: boolean; blob_kinds: Record<string, number> }[];
  failures: unknown[];
}

function python(args: readonly string[]) {
  return exec('python3', args, { timeoutMs: 120_000 });
}

/**
 * The VM of the conformance tests: drive sizes that end in a partial chunk, all four
 * kinds of content (zero, random, text, repeat), a multi-chunk text file.
 */
async function conformanceVm(t: ExecutionContext, dir: string): Promise<VmFiles> {
  const vm = await writeVm(dir, {
    seed: 218,
    sizes: [8 * MiB + 12_345, 5 * MiB + 4_097],
    notesBytes: 5 * MiB + 333,
  });
  t.deepEqual(
    [...new Set(vm.drives.flatMap((d) => d.kinds))].sort(),
    ['random', 'repeat', 'text', 'zero'],
    'the drives hold every kind of content',
  );
  return vm;
}

async function liverestoreBackup(
  t: ExecutionContext,
  store: string,
  vm: VmFiles,
  extra: string[],
): Promise<string> {
  const out = await cli(backupArgv(store, [...extra, ...vmArgs(vm)], { json: false, chunkSize: '256KiB' }));
  t.is(out.code, 0, out.stderr);
  return lines(out.stdout)[0]!;
}

const liverestoreToPython = test.macro({
  async exec(t, compress: 'deflate' | 'none' | undefined) {
    if (!requireTool(t, 'python3')) return;
    if (compress === undefined && !requireTool(t, 'zstd')) return; // pbs_reader.py decodes zstd with the CLI
    const dir = await testDir(t);
    const vm = await conformanceVm(t, dir);
    const store = join(dir, 'store');
    const snapshot = await liverestoreBackup(
      t,
      store,
      vm,
      compress === undefined ? [] : ['--compress', compress],
    );

    const checked = await python([PBS_READER, store, snapshot, '--json']);
    t.is(checked.code, 0, `pbs_reader.py found problems:\n${checked.stderr}`);
    const report = JSON.parse(checked.stdout) as ReaderJson;
    t.true(report.ok);
    t.deepEqual(report.failures, []);
    t.is(report.snapshot, snapshot);
    t.deepEqual(report.archives.map((a) => a.name).sort(), Object.values(FILENAMES).sort());
    const kinds: Record<string, number> = {};
    for (const archive of report.archives) {
      const name = archive.name.replace(/\.(fidx|didx)$/, '');
      t.true(archive.ok, archive.name);
      t.is(
        archive.sha256,
        String(vm.sha256[name]),
        `SHA-256 of ${archive.name} as pbs_reader.py reassembles it`,
      );
      for (const [kind, n] of Object.entries(archive.blob_kinds)) kinds[kind] = (kinds[kind] ?? 0) + n;
    }
    if (compress === 'none')
      t.deepEqual(Object.keys(kinds), ['uncompressed'], '--compress none writes no compressed blob');
    else if (compress === 'deflate')
      t.true((kinds.deflate ?? 0) > 0, `--compress deflate and text compresses: ${JSON.stringify(kinds)}`);
    else {
      // The default: every blob carries a PBS magic, zstd (text compresses) or uncompressed.
      t.deepEqual(
        Object.keys(kinds).filter((k) => k !== 'zstd' && k !== 'uncompressed'),
        [],
        `default backup writes only PBS blob kinds: ${JSON.stringify(kinds)}`,
      );
      t.true((kinds.zstd ?? 0) > 0, `zstd is the default and text compresses: ${JSON.stringify(kinds)}`);
    }

    // --out writes a byte-identical image of each archive.
    for (const name of ARCHIVES) {
      const outFile = join(dir, `${name}.restored`);
      const restored = await python([PBS_READER, store, snapshot, '--archive', name, '--out', outFile]);
      t.is(restored.code, 0, restored.stderr);
      const source =
        name === 'notes.txt' ? vm.notesPath : vm.drives[name === 'drive-scsi0.img' ? 0 : 1]!.path;
      t.true((await readFile(outFile)).equals(await readFile(source)), `${name} restored byte for byte`);
    }
  },
  title: (_provided, compress) =>
    `liverestore backup --compress ${compress ?? 'zstd (default)'} → pbs_reader.py exit 0, same SHA-256s, --out byte-identical`,
});

test(liverestoreToPython, undefined);
test(liverestoreToPython, 'deflate');
test(liverestoreToPython, 'none');

/** SHA-256 of an archive reassembled through @liverestore/format (what the CLI's verify and restore paths use). */
async function restoreSha256(store: string, snapshot: string, filename: string): Promise<string> {
  const index = readIndex(await readFile(join(store, snapshot, filename)));
  const out = Buffer.alloc(index.sizeBytes);
  for (let i = 0; i < index.chunkCount; i++) {
    const digest = index.digestAt(i);
    const plain = decodeChunk(await readFile(chunkPath(store, digest.toString('hex'))), digest, {});
    plain.copy(out, index.chunkStart(i));
  }
  return sha256Hex(out);
}

/** `pbs_writer.py` of the three archives of `vm` as snapshot {@link PBS_SNAPSHOT}, 64 KiB fixed chunks. */
function pbsWrite(store: string, vm: VmFiles, compress: 'none' | 'zstd') {
  return python([
    PBS_WRITER,
    store,
    '--type',
    'vm',
    '--id',
    '100',
    '--time',
    PBS_TIME,
    ...ARCHIVES.map((name, i) => `${name}=${i < 2 ? vm.drives[i]!.path : vm.notesPath}`),
    '--compress',
    compress,
    '--chunk-size',
    String(64 * KiB),
    '--dynamic-avg',
    String(256 * KiB),
    '--json',
  ]);
}

interface VerifyJson {
  ok: boolean;
  snapshots: { snapshot: string }[];
  archives: number;
  chunks: number;
  bytes: number;
  badChunks: { digest: string; code: string; archives: string[] }[];
  badFiles: unknown[];
}

/**
 * A store written by the reference writer (pbs_writer.py) from the conformance VM, or
 * undefined when python3 (or zstd, for zstd blobs) is missing and the test is over.
 */
async function pbsWrittenStore(
  t: ExecutionContext,
  compress: 'none' | 'zstd',
): Promise<{ dir: string; vm: VmFiles; store: string; written: Outcome } | undefined> {
  if (!requireTool(t, 'python3')) return undefined;
  if (compress === 'zstd' && !requireTool(t, 'zstd')) return undefined;
  const dir = await testDir(t);
  const vm = await conformanceVm(t, dir);
  const store = join(dir, 'store');
  const written = await pbsWrite(store, vm, compress);
  t.is(written.code, 0, written.stderr);
  return { dir, vm, store, written };
}

const pythonToLiverestore = test.macro({
  async exec(t, compress: 'none' | 'zstd') {
    const pbs = await pbsWrittenStore(t, compress);
    if (pbs === undefined) return;
    const { vm, store, written } = pbs;
    const writer = JSON.parse(written.stdout) as { blob_kinds: Record<string, number> };
    if (compress === 'zstd') t.true((writer.blob_kinds.zstd ?? 0) > 0, 'the store has zstd blobs');

    // The digests of each index, parsed here from the format description.
    const digests: Record<string, string[]> = {};
    for (const name of ARCHIVES)
      digests[name] = await indexDigests(join(store, PBS_SNAPSHOT, FILENAMES[name]!));
    t.true(digests['notes.txt']!.length >= 4, 'the dynamic archive has several chunks');
    const distinct = new Set(Object.values(digests).flat());

    // verify: clean, every chunk checked, every byte decoded.
    const clean = await cli(['verify', '--store', store]);
    t.is(clean.code, 0, clean.stdout + clean.stderr);
    t.regex(
      clean.stdout,
      new RegExp(`^OK: 1 snapshot\\(s\\), 3 archive\\(s\\), ${distinct.size} chunk\\(s\\)`, 'm'),
    );
    const cleanJson = JSON.parse(
      (await runIn(['verify', '--store', store, '--json', PBS_SNAPSHOT])).stdout,
    ) as VerifyJson;
    t.true(cleanJson.ok);
    t.deepEqual(
      cleanJson.snapshots.map((s) => s.snapshot),
      [PBS_SNAPSHOT],
    );
    t.is(cleanJson.chunks, distinct.size);

    // snapshots lists it with the right archives and sizes.
    const list = await cli(['snapshots', '--store', store, '--json']);
    t.is(list.code, 0, list.stderr);
    const listed = JSON.parse(list.stdout) as {
      snapshot: string;
      type: string;
      id: string;
      time: number;
      archives: { name: string; filename: string; kind: string; sizeBytes: number; cryptMode: string }[];
    }[];
    t.is(listed.length, 1);
    t.like(listed[0], { snapshot: PBS_SNAPSHOT, type: 'vm', id: '100', time: Date.parse(PBS_TIME) / 1000 });
    const notesBytes = (await readFile(vm.notesPath)).byteLength;
    t.deepEqual(
      listed[0]!.archives.map((a) => [a.name, a.filename, a.kind, a.sizeBytes, a.cryptMode]).sort(),
      [
        ['drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed', vm.drives[0]!.sizeBytes, 'none'],
        ['drive-scsi1.img', 'drive-scsi1.img.fidx', 'fixed', vm.drives[1]!.sizeBytes, 'none'],
        ['notes.txt', 'notes.txt.didx', 'dynamic', notesBytes, 'none'],
      ],
    );

    // liverestore's format layer restores each archive with the source's SHA-256.
    for (const name of ARCHIVES)
      t.is(await restoreSha256(store, PBS_SNAPSHOT, FILENAMES[name]!), String(vm.sha256[name]), name);

    // One flipped byte in one chunk used by exactly one archive: the fixed one for
    // `none`, the dynamic one for `zstd`.
    const victimArchive = compress === 'none' ? 'drive-scsi0.img' : 'notes.txt';
    const others = new Set(ARCHIVES.filter((a) => a !== victimArchive).flatMap((a) => digests[a]!));
    const own = digests[victimArchive]!.filter((d) => !others.has(d));
    const victim = own[Math.floor(own.length / 2)];
    if (victim === undefined) {
      t.fail(`no chunk of ${victimArchive} is unique to it`);
      return;
    }
    await flipByte(chunkPath(store, victim), -3);
    const bad = await cli(['verify', '--store', store]);
    t.is(bad.code, 1, bad.stdout + bad.stderr);
    t.false(/^\s+at /m.test(bad.stdout + bad.stderr), 'no stack trace');
    const badLines = lines(bad.stdout);
    const at = badLines.findIndex((l) => l.startsWith(`BAD CHUNK ${victim}: `));
    t.true(at >= 0, `verify names the chunk ${victim}:\n${bad.stdout}`);
    t.is(badLines[at + 1]?.trim(), `used by: ${PBS_SNAPSHOT}/${victimArchive}`, 'and the archive using it');
    t.is(badLines.filter((l) => l.startsWith('BAD ')).length, 1, 'only that chunk is bad');
    t.regex(bad.stdout, /^FAILED: .*1 bad chunk\(s\)/m);

    const badJsonOut = await cli(['verify', '--store', store, '--json']);
    t.is(badJsonOut.code, 1);
    const badJson = JSON.parse(badJsonOut.stdout) as VerifyJson;
    t.false(badJson.ok);
    t.is(badJson.badChunks.length, 1);
    t.like(badJson.badChunks[0], { digest: victim, archives: [`${PBS_SNAPSHOT}/${victimArchive}`] });
    t.regex(badJson.badChunks[0]!.code, /^ERR_LR_(BLOB_CRC_MISMATCH|DECOMPRESS_FAILED|DIGEST_MISMATCH)$/);
    t.deepEqual(badJson.badFiles, []);

    // The independent reader agrees.
    const reader = await python([PBS_READER, store, PBS_SNAPSHOT]);
    t.is(reader.code, 1);
    t.true((reader.stdout + reader.stderr).includes(victim), 'pbs_reader.py names the same chunk');
  },
  title: (_provided, compress) =>
    `pbs_writer.py --compress ${compress} store: liverestore verify exit 0, snapshots lists it; a flipped chunk byte → exit 1 naming chunk and archive`,
});

test(pythonToLiverestore, 'none');
test(pythonToLiverestore, 'zstd');

const pythonRestore = test.macro({
  async exec(t, compress: 'none' | 'zstd') {
    const pbs = await pbsWrittenStore(t, compress);
    if (pbs === undefined) return;
    const { dir, vm, store } = pbs;
    const outDir = join(dir, 'restored');
    const out = await cli(['restore', '--from', store, 'vm/100', '--all', '--out-dir', outDir]);
    t.is(out.code, 0, out.stdout + out.stderr);
    for (const name of ARCHIVES)
      t.is(await sha256File(join(outDir, name)).catch(String), String(vm.sha256[name]), name);
  },
  title: (provided, compress) =>
    provided ??
    `pbs_writer.py --compress ${compress} store → liverestore restore --all gives every archive with the source's SHA-256`,
});

test(pythonRestore, 'none');
// zstd frames from the zstd CLI declare a 512 KiB window whatever the chunk length: the
// decoder's window bound must accept them (it once refused chunks under 256 KiB).
test(pythonRestore, 'zstd');

test('liverestore backup into a pbs_writer.py store reuses its chunks, and the result passes pbs_reader.py', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir);
  t.true(vm.drives[0]!.kinds.length >= 3, 'drive-scsi0 is not all one kind of content');
  const store = join(dir, 'store');
  const written = await python([
    PBS_WRITER,
    store,
    '--type',
    'vm',
    '--id',
    '100',
    '--time',
    PBS_TIME,
    `drive-scsi0.img=${vm.drives[0]!.path}`,
    `drive-scsi1.img=${vm.drives[1]!.path}`,
    '--compress',
    'none',
    '--chunk-size',
    String(256 * KiB),
  ]);
  t.is(written.code, 0, written.stderr);
  const out = await runIn(backupArgv(store, vmArgs(vm), { chunkSize: '256KiB' }));
  t.is(out.code, 0, out.stderr);
  const result = JSON.parse(out.stdout) as {
    snapshot: string;
    archives: { filename: string; chunksNew: number; chunksReused: number }[];
  };
  t.true(result.snapshot > PBS_SNAPSHOT);
  for (const archive of result.archives.filter((a) => a.filename.endsWith('.fidx'))) {
    t.is(archive.chunksNew, 0, `${archive.filename}: every chunk was already in the store (same digests)`);
  }
  const checked = await python([PBS_READER, store, result.snapshot, '--json']);
  t.is(checked.code, 0, checked.stderr);
  const verify = await runIn(['verify', '--store', store]);
  t.is(verify.code, 0, verify.stdout);
  t.regex(verify.stdout, /^OK: 2 snapshot\(s\)/m);
});

test('an encrypted liverestore backup: pbs_reader.py checks its structure and exits 3 (encrypted content not checked)', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const dir = await testDir(t);
  const keyfile = join(dir, 'k.key');
  t.is((await runIn(['key', 'create', '--keyfile', keyfile])).code, 0);
  const vm = await writeVm(dir, { seed: 2216, sizes: [MiB + 123, 512 * KiB + 5] });
  const store = join(dir, 'store');
  const snapshot = await liverestoreBackup(t, store, vm, ['--keyfile', keyfile]);
  const checked = await python([PBS_READER, store, snapshot, '--json']);
  t.is(checked.code, 3, `exit 3 = no problem found, encrypted content unchecked:\n${checked.stderr}`);
  const report = JSON.parse(checked.stdout) as ReaderJson;
  t.deepEqual(report.failures, []);
  for (const archive of report.archives) {
    // Encrypted with the default compression: PBS's encrypted magics only (zstd or not).
    t.deepEqual(
      Object.keys(archive.blob_kinds).filter((k) => k !== 'encrypted' && k !== 'encrypted+zstd'),
      [],
      archive.name,
    );
  }
});

/*
 * The liverestore command line: help, usage errors, backup output and counts, archive
 * naming, incremental backups and verify's snapshot selection. Bad input and keys are in
 * cli-errors.test.ts and cli-key.test.ts.
 */
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { changedRanges, mutate, vmImageSet, writeImageFile } from '@liverestore/testkit';
import test from 'ava';
import { COMMANDS } from '../src/index.js';
import {
  assertCliError,
  backupArgv,
  cli,
  KiB,
  lines,
  MiB,
  onlySnapshot,
  ROOT,
  runIn,
  snapshotDirs,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';

const SNAPSHOT_LINE = /^vm\/100\/(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)$/;

/** What each command's --help must mention: written out here, not taken from the code under test. */
const HELP_MENTIONS: Record<string, readonly string[]> = {
  demo: ['--size', '--seed', '--rate-limit', '--keep', '--json', '--help', '-h'],
  backup: [
    '--store',
    '--snapshot',
    '--compress',
    '--chunk-size',
    '--keyfile',
    '--ns',
    '--json',
    '--help',
    'ARCHIVE=PATH',
  ],
  snapshots: ['--store', '--ns', '--recursive', '--json', '--help'],
  verify: ['--store', '--keyfile', '--ns', '--no-record', '--json', '--help', 'SNAPSHOT'],
  key: ['create', 'show', '--keyfile', '--json', '--help'],
};

interface BackupJson {
  snapshot: string;
  ns: string;
  type: string;
  id: string;
  time: number;
  chunksNew: number;
  chunksReused: number;
  bytesRead: number;
  bytesWritten: number;
  archives: {
    name: string;
    filename: string;
    sizeBytes: number;
    chunks: number;
    chunksNew: number;
    chunksReused: number;
  }[];
}

test('--help of every command (real binary): exit 0, usage line, every option', async (t) => {
  for (const [name, mentions] of Object.entries(HELP_MENTIONS)) {
    const out = await cli([name, '--help']);
    t.is(out.code, 0, name);
    t.is(out.stderr, '', name);
    t.true(out.stdout.startsWith(`Usage: liverestore ${name}`), `${name} --help starts with its usage line`);
    for (const option of mentions) t.true(out.stdout.includes(option), `${name} --help mentions ${option}`);
  }
});

test('--help of every command the CLI has (restore too): exit 0, every option it parses is documented', async (t) => {
  const names = COMMANDS.map((c) => c.name);
  for (const name of Object.keys(HELP_MENTIONS)) t.true(names.includes(name), `the CLI still has ${name}`);
  for (const command of COMMANDS) {
    const out = await runIn([command.name, '--help']);
    t.is(out.code, 0, command.name);
    t.true(out.stdout.startsWith(`Usage: liverestore ${command.name}`), command.name);
    for (const [option, spec] of Object.entries(command.options)) {
      t.true(out.stdout.includes(`--${option}`), `${command.name} --help documents --${option}`);
      const short = (spec as { short?: string }).short;
      if (short !== undefined)
        t.true(out.stdout.includes(`-${short},`) || out.stdout.includes(`-${short} `), `-${short}`);
    }
  }
});

test('-h and "help COMMAND" print the same help as --help', async (t) => {
  for (const name of Object.keys(HELP_MENTIONS)) {
    const long = await runIn([name, '--help']);
    const short = await runIn([name, '-h']);
    const viaHelp = await runIn(['help', name]);
    t.is(short.code, 0);
    t.is(viaHelp.code, 0);
    t.is(short.stdout, long.stdout, `${name} -h`);
    t.is(viaHelp.stdout, long.stdout, `help ${name}`);
  }
});

test('top-level help lists every command; --version matches package.json', async (t) => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'packages/cli/package.json'), 'utf8')) as {
    version: string;
  };
  for (const argv of [['--help'], ['-h'], ['help'], []]) {
    const out = await runIn(argv);
    t.is(out.code, 0, argv.join(' '));
    t.true(out.stdout.includes('Usage: liverestore COMMAND'), argv.join(' '));
    for (const name of Object.keys(HELP_MENTIONS))
      t.regex(out.stdout, new RegExp(`^ +${name} +\\S`, 'm'), name);
  }
  const binary = await cli(['--help']);
  t.is(binary.code, 0);
  for (const name of Object.keys(HELP_MENTIONS)) t.true(binary.stdout.includes(name));
  const version = await cli(['--version']);
  t.is(version.code, 0);
  const [versionLine, zstdLine] = version.stdout.trim().split('\n');
  t.is(versionLine, pkg.version);
  t.regex(
    zstdLine ?? '',
    /^zstd: encode (zstd-napi|node:zlib|@foxglove\/wasm-zstd) \S+.*, decode (zstd-napi|node:zlib|@foxglove\/wasm-zstd) /,
  );
});

test('usage errors through the real binary: exit 2, one ERR_LR_USAGE line, no stack trace', async (t) => {
  const dir = await testDir(t);
  const store = join(dir, 'store');
  const cases: [string[], RegExp][] = [
    [['frob'], /unknown command "frob"/],
    [['backup', '--bogus'], /--bogus/],
    [['snapshots'], /--store is required/],
    [['backup', '--store', store], /--snapshot is required/],
  ];
  for (const [argv, message] of cases) {
    const out = await cli(argv);
    const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
    t.regex(line, message, argv.join(' '));
  }
  await t.throwsAsync(access(store), undefined, 'a usage error creates no store');
});

const usageCases: [string, (store: string) => string[], RegExp][] = [
  ['unknown option', (s) => ['verify', '--store', s, '--frobnicate'], /frobnicate/],
  ['option without its value', (s) => ['verify', s, '--store'], /--store/],
  ['boolean option with a value', (s) => ['snapshots', '--store', s, '--json=yes'], /json/],
  ['backup without --store', () => ['backup', '--snapshot', 'vm/100', 'x=y'], /--store is required/],
  ['backup without archives', (s) => ['backup', '--store', s, '--snapshot', 'vm/100'], /ARCHIVE=PATH/],
  [
    'backup archive without "="',
    (s) => ['backup', '--store', s, '--snapshot', 'vm/100', 'disk.raw'],
    /ARCHIVE=PATH/,
  ],
  [
    'backup archive without path',
    (s) => ['backup', '--store', s, '--snapshot', 'vm/100', 'drive-scsi0='],
    /ARCHIVE=PATH/,
  ],
  [
    'backup --snapshot with a time',
    (s) => ['backup', '--store', s, '--snapshot', 'vm/100/2026-01-02T03:04:05Z', 'x=y'],
    /TYPE\/ID/,
  ],
  [
    'backup bad --compress',
    (s) => ['backup', '--store', s, '--snapshot', 'vm/100', '--compress', 'lz4', 'x=y'],
    /--compress.*lz4/,
  ],
  [
    'backup --chunk-size not a size',
    (s) => ['backup', '--store', s, '--snapshot', 'vm/100', '--chunk-size', 'big', 'x=y'],
    /--chunk-size.*big/,
  ],
  ['snapshots without --store', () => ['snapshots', '--json'], /--store is required/],
  ['verify without --store', () => ['verify', 'vm/100'], /--store is required/],
  ['key without --keyfile', () => ['key', 'create'], /--keyfile is required/],
  ['key without action', (s) => ['key', '--keyfile', join(s, 'k')], /create.*show/],
  ['key with unknown action', (s) => ['key', 'delete', '--keyfile', join(s, 'k')], /"delete"/],
  ['demo with a bad --size', () => ['demo', '--size', 'huge'], /--size/],
  ['demo with a bad --rate-limit', () => ['demo', '--rate-limit', 'fast'], /--rate-limit/],
];

for (const [title, argv, message] of usageCases) {
  test(`usage error: ${title} → exit 2, ERR_LR_USAGE, nothing created`, async (t) => {
    const dir = await testDir(t);
    const store = join(dir, 'store');
    const line = assertCliError(t, await runIn(argv(store)), 'ERR_LR_USAGE', 2);
    t.regex(line, message);
    t.deepEqual(await readdir(dir), [], 'nothing was written');
  });
}

test('backup (real binary) prints the snapshot vm/100/<RFC 3339 Z>, per-archive counts and a summary', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir);
  const store = join(dir, 'store');
  const before = Date.now();
  const out = await cli(backupArgv(store, vmArgs(vm), { json: false, chunkSize: '256KiB' }));
  t.is(out.code, 0, out.stderr);
  const [first, ...rest] = lines(out.stdout);
  const match = SNAPSHOT_LINE.exec(first ?? '');
  t.truthy(match, `first line is the snapshot: ${first}`);
  const time = Date.parse(match![1]!);
  t.true(
    time >= Math.floor(before / 1000) * 1000 - 1000 && time <= Date.now() + 2000,
    'the snapshot time is now',
  );
  t.deepEqual(await snapshotDirs(store), [first!], 'the printed snapshot is the one on disk');

  // One line per archive with exact chunk counts (sizes end in a partial chunk).
  const chunkCounts: Record<string, number> = {
    'drive-scsi0.img.fidx': Math.ceil(vm.drives[0]!.sizeBytes / (256 * KiB)),
    'drive-scsi1.img.fidx': Math.ceil(vm.drives[1]!.sizeBytes / (256 * KiB)),
  };
  let total = 0;
  for (const filename of ['drive-scsi0.img.fidx', 'drive-scsi1.img.fidx', 'notes.txt.didx']) {
    const line = rest.find((l) => l.trim().startsWith(`${filename}:`));
    t.truthy(line, `a line for ${filename}`);
    const m = /(\d+) chunks \((\d+) new, (\d+) reused, (\d+) zero\)/.exec(line ?? '');
    t.truthy(m, `counts of ${filename}: ${line}`);
    const [chunks, fresh, reused] = [Number(m![1]), Number(m![2]), Number(m![3])];
    if (chunkCounts[filename] !== undefined) t.is(chunks, chunkCounts[filename], filename);
    t.is(fresh + reused, chunks, `${filename}: new + reused = chunks`);
    total += chunks;
  }
  const summary = rest.at(-1) ?? '';
  const s = /^read .+; chunks: (\d+) new, (\d+) reused; wrote .+$/.exec(summary);
  t.truthy(s, `summary line: ${summary}`);
  t.is(Number(s![1]) + Number(s![2]), total);
  t.true(Number(s![1]) > 0);
  // Progress goes to stderr as plain lines (not a TTY), never to stdout.
  t.false(out.stderr.includes('\r'), 'no carriage return on a non-TTY stderr');
  t.false(out.stderr.includes('\x1b'), 'no ANSI escapes on a non-TTY stderr');
  t.regex(out.stderr, /\(100%\)/);
  t.false(out.stdout.includes('%)'), 'no progress on stdout');
});

test('backup --json (real binary): stdout is one JSON document with the counts; stderr stays quiet', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir);
  const store = join(dir, 'store');
  const out = await cli(backupArgv(store, vmArgs(vm), { chunkSize: '64KiB' }));
  t.is(out.code, 0, out.stderr);
  const json = JSON.parse(out.stdout) as BackupJson;
  t.regex(json.snapshot, SNAPSHOT_LINE);
  t.deepEqual([json.ns, json.type, json.id], ['', 'vm', '100'], 'the snapshot fields at the top level');
  t.is(typeof json.time, 'number');
  t.false('ref' in json, 'one shape: no second copy of the snapshot');
  for (const key of ['chunksNew', 'chunksReused', 'bytesRead', 'bytesWritten'] as const) {
    t.is(typeof json[key], 'number', key);
    t.true(Number.isSafeInteger(json[key]) && json[key] >= 0, key);
  }
  const inputBytes =
    vm.drives[0]!.sizeBytes + vm.drives[1]!.sizeBytes + (await readFile(vm.notesPath)).byteLength;
  t.is(json.bytesRead, inputBytes);
  t.is(
    json.chunksNew + json.chunksReused,
    json.archives.reduce((n, a) => n + a.chunks, 0),
  );
  t.true(json.chunksNew > 0);
  t.true(
    json.bytesWritten > 0 && json.bytesWritten < inputBytes,
    'DEFLATE and zero-chunk dedup shrink the data',
  );
  t.deepEqual(await snapshotDirs(store), [json.snapshot]);
  t.is(out.stderr, '', 'with --json and a non-TTY stderr there is no progress output');
});

test('archive names: drive-scsi0= and drive-scsi1.img= become .img.fidx, notes.txt= becomes .didx', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir, { seed: 2216, sizes: [MiB + 1, 512 * KiB + 3] });
  const store = join(dir, 'store');
  const out = await runIn(['backup', '--json', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)]);
  t.is(out.code, 0, out.stderr);
  const snapshot = (JSON.parse(out.stdout) as BackupJson).snapshot;
  t.deepEqual((await readdir(join(store, snapshot))).sort(), [
    'drive-scsi0.img.fidx',
    'drive-scsi1.img.fidx',
    'index.json.blob',
    'notes.txt.didx',
  ]);
  const list = await runIn(['snapshots', '--store', store, '--json']);
  t.is(list.code, 0, list.stderr);
  const listed = JSON.parse(list.stdout) as {
    snapshot: string;
    archives: { name: string; filename: string; kind: string; sizeBytes: number }[];
  }[];
  t.is(listed.length, 1);
  t.is(listed[0]!.snapshot, snapshot);
  t.deepEqual(listed[0]!.archives.map((a) => [a.name, a.filename, a.kind, a.sizeBytes]).sort(), [
    ['drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed', MiB + 1],
    ['drive-scsi1.img', 'drive-scsi1.img.fidx', 'fixed', 512 * KiB + 3],
    ['notes.txt', 'notes.txt.didx', 'dynamic', (await readFile(vm.notesPath)).byteLength],
  ]);
  const text = await runIn(['snapshots', '--store', store]);
  t.is(text.code, 0);
  t.true(text.stdout.startsWith(`${snapshot} owner root@pam\n`), text.stdout);
  for (const name of ['drive-scsi0.img', 'drive-scsi1.img', 'notes.txt'])
    t.regex(text.stdout, new RegExp(`^  ${name} `, 'm'));
});

test('incremental backup after mutate(changes: 2): reused > 0, new ≤ chunks touched, untouched archives all reused', async (t) => {
  const dir = await testDir(t);
  const chunkBytes = 128 * KiB;
  const sizes = [6 * MiB + 4321, 2 * MiB + 99] as const;
  const vm = await writeVm(dir, { seed: 368, sizes });
  t.true(vm.drives[0]!.kinds.length >= 3, `drive-scsi0 has mixed content: ${vm.drives[0]!.kinds}`);
  const store = join(dir, 'store');
  const backup = async (): Promise<BackupJson> => {
    const out = await runIn(backupArgv(store, vmArgs(vm), { chunkSize: '128KiB' }));
    t.is(out.code, 0, out.stderr);
    return JSON.parse(out.stdout) as BackupJson;
  };
  const first = await backup();
  const spec = vmImageSet(368, { drives: 2, sizeBytes: [...sizes] })[0]!.spec;
  const changed = mutate(spec, { seed: 77, changes: 2 });
  await writeImageFile(changed, vm.drives[0]!.path);
  const touched = new Set<number>();
  for (const r of changedRanges(changed)) {
    for (
      let c = Math.floor(r.offsetBytes / chunkBytes);
      c <= Math.floor((r.offsetBytes + r.lengthBytes - 1) / chunkBytes);
      c++
    )
      touched.add(c);
  }
  const second = await backup();
  t.not(second.snapshot, first.snapshot);
  t.true(second.snapshot > first.snapshot, 'the second snapshot is later');
  t.true(second.chunksReused > 0);
  t.true(second.chunksNew >= 1, 'the changed chunks are new');
  t.true(second.chunksNew <= touched.size, `new chunks ${second.chunksNew} ≤ chunks touched ${touched.size}`);
  const byName = new Map(second.archives.map((a) => [a.filename, a]));
  t.is(byName.get('drive-scsi0.img.fidx')!.chunksNew, second.chunksNew, 'only drive-scsi0 has new chunks');
  t.is(byName.get('drive-scsi1.img.fidx')!.chunksNew, 0);
  t.is(byName.get('notes.txt.didx')!.chunksNew, 0);
  t.is(second.bytesRead, first.bytesRead, 'an incremental backup still reads everything');
  t.true(second.bytesWritten < first.bytesWritten / 4, 'and writes only the changed chunks');
  t.deepEqual(await snapshotDirs(store), [first.snapshot, second.snapshot]);
});

test('verify SNAPSHOT: TYPE/ID is the latest, TYPE/ID/TIME that one, none means all', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir, { seed: 2216, sizes: [MiB + 5, 300 * KiB] });
  const store = join(dir, 'store');
  const snaps: string[] = [];
  for (let i = 0; i < 2; i++) {
    const out = await runIn(['backup', '--json', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)]);
    t.is(out.code, 0, out.stderr);
    snaps.push((JSON.parse(out.stdout) as BackupJson).snapshot);
  }
  const verified = async (...spec: string[]): Promise<string[]> => {
    const out = await runIn(['verify', '--store', store, '--json', ...spec]);
    t.is(out.code, 0, out.stderr);
    const report = JSON.parse(out.stdout) as { ok: boolean; snapshots: { snapshot: string; type: string }[] };
    t.true(report.ok);
    for (const s of report.snapshots) t.is(s.type, 'vm', 'each snapshot as an object with its parts');
    return report.snapshots.map((s) => s.snapshot);
  };
  t.deepEqual(await verified('vm/100'), [snaps[1]]);
  t.deepEqual(await verified('vm/100/'), [snaps[1]], 'a trailing slash is accepted');
  t.deepEqual(await verified(snaps[0]!), [snaps[0]]);
  t.deepEqual(await verified(), snaps);
  // The real binary: text report and exit status.
  const text = await cli(['verify', '--store', store, snaps[0]!]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^OK: 1 snapshot\(s\), 3 archive\(s\), \d+ chunk\(s\)/m);
  t.false(text.stdout.includes('BAD'));
});

test('demo --size 1MiB --json: live restore with a guest writing, targets equal backup + writes', async (t) => {
  const out = await runIn(['demo', '--size', '1MiB', '--json']);
  t.is(out.code, 0, out.stderr);
  const json = JSON.parse(out.stdout) as {
    ok: boolean;
    kept: boolean;
    workDir: string;
    backup: BackupJson;
    verify: { ok: boolean; snapshots: { snapshot: string }[] };
    nbd: string;
    guest: { reads: number; readsChecked: number; writes: number; flushes: number };
    targets: { name: string; writes: number; identical: boolean }[];
    liveRestore: { drives: unknown[] };
  };
  t.true(json.ok);
  t.true(json.verify.ok);
  t.false(json.kept);
  t.deepEqual(
    json.verify.snapshots.map((s) => s.snapshot),
    [json.backup.snapshot],
  );
  t.regex(json.nbd, /^127\.0\.0\.1:\d+$/);
  t.true(json.guest.reads > 0);
  t.is(json.guest.readsChecked, json.guest.reads);
  t.true(json.guest.writes > 0 && json.guest.flushes > 0);
  t.deepEqual(
    json.targets.map((d) => [d.name, d.identical]),
    [
      ['drive-scsi0.img', true],
      ['drive-scsi1.img', true],
    ],
  );
  t.is(
    json.targets.reduce((s, d) => s + d.writes, 0),
    json.guest.writes,
  );
  t.is(json.liveRestore.drives.length, 2);
  await t.throwsAsync(access(json.workDir), undefined, 'the temporary datastore is removed');
});

test('backup into a new group of an existing store, and of other types', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [256 * KiB, 100 * KiB] });
  const store = join(dir, 'store');
  for (const group of ['vm/100', 'ct/200', 'host/my-host.example']) {
    const out = await runIn(backupArgv(store, [`root.img=${vm.drives[0]!.path}`], { snapshot: group }));
    t.is(out.code, 0, out.stderr);
    t.true((JSON.parse(out.stdout) as BackupJson).snapshot.startsWith(`${group}/`));
  }
  t.is((await onlySnapshot(t, store, 'ct/200')).split('/').length, 3);
  const list = JSON.parse((await runIn(['snapshots', '--store', store, '--json'])).stdout) as {
    type: string;
  }[];
  t.deepEqual(list.map((s) => s.type).sort(), ['ct', 'host', 'vm']);
});

test('demo --size below 1MiB is a usage error before any work', async (t) => {
  const out = await runIn(['demo', '--size', '32KiB', '--json']);
  const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
  t.regex(line, /--size/);
});

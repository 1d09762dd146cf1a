/*
 * PBS namespaces on the command line: --ns on every command that names a snapshot,
 * PBS's printed form ns/a/ns/b/vm/100 as SNAPSHOT, `snapshots` never looking empty when
 * the snapshots live in namespaces, and verify recording its result in the manifests.
 */
import { execFile } from 'node:child_process';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { decodeBlob } from '@liverestore/format';
import test, { type ExecutionContext } from 'ava';
import {
  assertCliError,
  backupArgv,
  cli,
  KiB,
  lines,
  runIn,
  sha256File,
  testDir,
  writeVm,
} from './helpers.js';

const run = promisify(execFile);

const HINT =
  '2 more snapshot(s) in namespaces below: prod (1), prod/db (1); list them with --ns NAME or --recursive';

async function namespacedStore(t: ExecutionContext) {
  const dir = await testDir(t);
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [300 * KiB + 1, 200 * KiB + 7], notesBytes: 10 * KiB });
  const drive = `drive-scsi0=${vm.drives[0]!.path}`;
  const deep = await runIn(backupArgv(store, [drive], { ns: 'prod/db' }));
  t.is(deep.code, 0, deep.stderr);
  // The namespace may also be written as PBS prints it.
  const mid = await runIn(backupArgv(store, [drive], { snapshot: 'ns/prod/vm/101' }));
  t.is(mid.code, 0, mid.stderr);
  const snapshot = (out: string): string => (JSON.parse(out) as { snapshot: string }).snapshot;
  return { dir, store, vm, deep: snapshot(deep.stdout), mid: snapshot(mid.stdout) };
}

function manifestUnprotected(path: string): Promise<Record<string, unknown>> {
  return readFile(path).then(
    (raw) =>
      (JSON.parse(decodeBlob(raw).toString('utf8')) as { unprotected: Record<string, unknown> }).unprotected,
  );
}

test('snapshots: the root namespace by default, with a count of what lies below; --ns and --recursive list it', async (t) => {
  const { store, deep, mid } = await namespacedStore(t);
  t.regex(deep, /^ns\/prod\/ns\/db\/vm\/100\/\d{4}-/);
  t.regex(mid, /^ns\/prod\/vm\/101\//);

  const root = await runIn(['snapshots', '--from', store]);
  t.is(root.code, 0);
  t.deepEqual(lines(root.stdout), [`no snapshots in the root namespace; ${HINT}`]);

  const rootJson = await runIn(['snapshots', '--from', store, '--json']);
  t.deepEqual(JSON.parse(rootJson.stdout), []);
  t.is(rootJson.stderr, `liverestore: ${HINT}\n`);

  const prod = await runIn(['snapshots', '--from', store, '--ns', 'prod']);
  t.deepEqual(lines(prod.stdout)[0], `${mid} owner root@pam`);
  t.is(
    lines(prod.stdout).at(-1),
    '1 more snapshot(s) in namespaces below: prod/db (1); list them with --ns NAME or --recursive',
  );

  const all = await runIn(['snapshots', '--from', store, '--recursive', '--json']);
  t.is(all.code, 0);
  t.is(all.stderr, '');
  t.deepEqual(
    (JSON.parse(all.stdout) as { snapshot: string; ns: string }[]).map((s) => [s.ns, s.snapshot]),
    [
      ['prod', mid],
      ['prod/db', deep],
    ],
  );
  const text = await runIn(['snapshots', '--from', store, '-r']);
  t.deepEqual(
    lines(text.stdout).filter((l) => !l.startsWith(' ')),
    [`${mid} owner root@pam`, `${deep} owner root@pam`],
  );
});

test('restore and verify find snapshots by --ns or by their ns/ path; misses name the namespace', async (t) => {
  const { dir, store, vm } = await namespacedStore(t);
  const want = vm.sha256['drive-scsi0.img']!;
  const a = join(dir, 'a.img');
  const b = join(dir, 'b.img');
  t.is(
    (await runIn(['restore', '--from', store, '--ns', 'prod/db', 'vm/100', 'drive-scsi0', '--out', a])).code,
    0,
  );
  t.is(
    (await runIn(['restore', '--from', store, 'ns/prod/ns/db/vm/100', 'drive-scsi0.img', '--out', b])).code,
    0,
  );
  t.is(await sha256File(a), want);
  t.is(await sha256File(b), want);

  const line = assertCliError(
    t,
    await runIn(['restore', '--from', store, '--ns', 'prod', 'vm/100', 'drive-scsi0', '--out', a]),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  t.regex(line, /ns\/prod\/vm\/100 in namespace 'prod'/);
  assertCliError(
    t,
    await runIn(['restore', '--from', store, 'vm/100', 'drive-scsi0', '--out', a]),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  assertCliError(
    t,
    await runIn(['restore', '--from', store, '--ns', 'test', 'ns/prod/vm/100', 'drive-scsi0', '--out', a]),
    'ERR_LR_SNAPSHOT_INVALID',
  );
  const verify = await runIn([
    'verify',
    '--from',
    store,
    '--ns',
    'prod/db',
    'vm/100',
    '--json',
    '--no-record',
  ]);
  t.is(verify.code, 0, verify.stderr);
  t.like(JSON.parse(verify.stdout), { ok: true, archives: 1 });
});

test('a bad namespace is ERR_LR_NAMESPACE_INVALID on every command that takes --ns, before any work', async (t) => {
  const { dir, store, vm } = await namespacedStore(t);
  const drive = `drive-scsi0=${vm.drives[0]!.path}`;
  const target = join(dir, 'target');
  for (const ns of ['a//b', 'a/', '-x', 'a b', 'a/b/c/d/e/f/g/h']) {
    for (const argv of [
      ['backup', '--store', store, `--ns=${ns}`, '--snapshot', 'vm/1', drive],
      ['snapshots', '--from', store, `--ns=${ns}`],
      ['verify', '--from', store, `--ns=${ns}`],
      ['verify', '--from', store, `--ns=${ns}`, 'vm/100'],
      ['restore', '--from', store, `--ns=${ns}`, 'vm/100', 'drive-scsi0', '--out', join(dir, 'x.img')],
      ['nbd', '--from', store, `--ns=${ns}`, 'vm/100', '--listen', '127.0.0.1:0'],
      [
        'live-restore',
        '--from',
        store,
        `--ns=${ns}`,
        'vm/100',
        '--target-dir',
        target,
        '--listen',
        '127.0.0.1:0',
      ],
    ]) {
      assertCliError(t, await runIn(argv), 'ERR_LR_NAMESPACE_INVALID');
    }
  }
  assertCliError(
    t,
    await runIn(['snapshots', '--from', store, '--ns', 'test']),
    'ERR_LR_NAMESPACE_NOT_FOUND',
  );
});

test('verify records ok/failed with a PBS UPID in every verified manifest of every namespace; --no-record leaves them', async (t) => {
  const { store, deep, mid } = await namespacedStore(t);
  const manifestOf = (snapshot: string): string => join(store, snapshot, 'index.json.blob');
  const before = await readFile(manifestOf(deep));
  const norecord = await runIn(['verify', '--from', store, '--no-record']);
  t.is(norecord.code, 0);
  t.deepEqual(await readFile(manifestOf(deep)), before);

  const out = await runIn(['verify', '--from', store, '--json']);
  t.is(out.code, 0, out.stderr);
  const report = JSON.parse(out.stdout) as {
    snapshots: { snapshot: string; ns: string }[];
    recorded: { upid: string; snapshots: number };
  };
  t.deepEqual(
    report.snapshots.map((s) => s.snapshot),
    [mid, deep],
  );
  t.is(report.recorded.snapshots, 2);
  t.regex(
    report.recorded.upid,
    /^UPID:[A-Za-z0-9-]+:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8,16}:[0-9A-F]{8}:verify:store:root@pam:$/,
  );
  for (const snapshot of [mid, deep]) {
    t.deepEqual((await manifestUnprotected(manifestOf(snapshot))).verify_state, {
      state: 'ok',
      upid: report.recorded.upid,
    });
  }
  const listed = await runIn(['snapshots', '--from', store, '--ns', 'prod/db']);
  t.is(lines(listed.stdout)[0], `${deep} (verify ok) owner root@pam`);
  const json = await runIn(['snapshots', '--from', store, '--ns', 'prod/db', '--json']);
  t.like((JSON.parse(json.stdout) as unknown[])[0], { ns: 'prod/db', verification: { state: 'ok' } });
});

test('verify on a read-only store still verifies: exit 0, one warning with ERR_LR_STORE_READ_ONLY, manifests unchanged', async (t) => {
  const { store, deep } = await namespacedStore(t);
  const snapDir = join(store, deep);
  const before = await readFile(join(snapDir, 'index.json.blob'));
  await chmod(snapDir, 0o555);
  t.teardown(() => chmod(snapDir, 0o755));
  if (process.getuid?.() === 0) {
    // chmod does not stop root; the immutable flag does.
    await run('chattr', ['+i', snapDir]);
    t.teardown(async () => {
      await run('chattr', ['-i', snapDir]);
    });
  }
  const out = await runIn(['verify', '--from', store, '--ns', 'prod/db']);
  t.is(out.code, 0, out.stderr);
  t.regex(out.stdout, /^OK: 1 snapshot\(s\)/m);
  const warnings = lines(out.stderr).filter((l) => l.startsWith('liverestore: '));
  t.is(warnings.length, 1, out.stderr);
  t.true(warnings[0]!.startsWith('liverestore: warning: ERR_LR_STORE_READ_ONLY: '), out.stderr);
  t.regex(out.stderr, /the result is not recorded/);
  t.deepEqual(await readFile(join(snapDir, 'index.json.blob')), before);
});

test('live-restore --ns copies the namespaced snapshot; its map is not resumed for the same group of another namespace', async (t) => {
  const { dir, store, vm } = await namespacedStore(t);
  const target = join(dir, 'target');
  const live = (args: readonly string[]) =>
    cli(
      [
        'live-restore',
        '--from',
        store,
        ...args,
        '--target-dir',
        target,
        '--listen',
        '127.0.0.1:0',
        '--exit-when-done',
      ],
      {
        timeoutMs: 60_000,
      },
    );
  const done = await live(['--ns', 'prod/db', 'vm/100']);
  t.is(done.code, 0, done.stderr);
  t.is(await sha256File(join(target, 'drive-scsi0.img')), vm.sha256['drive-scsi0.img']!);
  // The same group and image in the root namespace is another snapshot.
  const root = await runIn(backupArgv(store, [`drive-scsi0=${vm.drives[0]!.path}`], { json: false }));
  t.is(root.code, 0, root.stderr);
  const refused = await live(['vm/100']);
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, /ERR_LR_LIVE_SNAPSHOT_MISMATCH/);
});

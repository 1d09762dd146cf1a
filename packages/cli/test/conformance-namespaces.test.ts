import { join } from 'node:path';
import { fileHashes } from '@liverestore/testkit';
import test from 'ava';
import {
  backupArgv,
  exec,
  KiB,
  PBS_READER,
  PBS_WRITER,
  runIn,
  sha256File,
  testDir,
  writeVm,
} from './helpers.js';
import { requireTool } from './tools.js';

interface ReaderJson {
  ok: boolean;
  namespace: string | null;
  owner: string | null;
  verify_state: { state: string; upid: string } | null;
  archives: { name: string; sha256: string; ok: boolean }[];
}

function python(args: readonly string[]) {
  return exec('python3', args, { timeoutMs: 120_000 });
}

async function read(store: string, snapshot: string): Promise<ReaderJson> {
  const out = await python([PBS_READER, store, snapshot, '--json']);
  if (out.code !== 0) throw new Error(`pbs_reader.py ${snapshot}: ${out.code}\n${out.stdout}\n${out.stderr}`);
  return JSON.parse(out.stdout) as ReaderJson;
}

test('liverestore backup --ns passes pbs_reader.py: ns/ layout, owner file, then the verify_state verify records', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [900 * KiB + 3, 300 * KiB + 1], notesBytes: 20 * KiB });
  const store = join(dir, 'store');
  const out = await runIn(
    backupArgv(store, [`drive-scsi0=${vm.drives[0]!.path}`, `notes.txt=${vm.notesPath}`], {
      ns: 'prod/db',
      chunkSize: '64KiB',
    }),
  );
  t.is(out.code, 0, out.stderr);
  const { snapshot } = JSON.parse(out.stdout) as { snapshot: string };
  t.regex(snapshot, /^ns\/prod\/ns\/db\/vm\/100\//);
  const before = await read(store, snapshot);
  t.like(before, { ok: true, namespace: 'prod/db', owner: 'root@pam', verify_state: null });
  t.deepEqual(
    before.archives.map((a) => [a.name, a.sha256]),
    [
      ['drive-scsi0.img.fidx', vm.sha256['drive-scsi0.img']],
      ['notes.txt.didx', vm.sha256['notes.txt']],
    ],
  );
  const verify = await runIn(['verify', '--from', store]);
  t.is(verify.code, 0, verify.stdout + verify.stderr);
  const after = await read(store, snapshot);
  t.true(after.ok);
  t.is(after.verify_state?.state, 'ok');
  t.regex(
    after.verify_state?.upid ?? '',
    /^UPID:.*:verify_snapshot:store\\x3ans-prod-ns-db-vm-100-.*:root@pam:$/,
  );
});

test('a pbs_writer.py store with namespaces and PBS extras: listed, restored, verified and backed up into, nothing lost', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [700 * KiB + 9, 300 * KiB + 1], notesBytes: 20 * KiB });
  const store = join(dir, 'store');
  const written = await python([
    PBS_WRITER,
    store,
    '--ns',
    'prod',
    '--pbs-extras',
    '--type',
    'vm',
    '--id',
    '100',
    '--time',
    '2026-01-02T03:04:05Z',
    `drive-scsi0.img=${vm.drives[0]!.path}`,
    '--compress',
    'none',
    '--chunk-size',
    String(64 * KiB),
  ]);
  t.is(written.code, 0, written.stderr);
  const pbsSnapshot = 'ns/prod/vm/100/2026-01-02T03:04:05Z';
  const extras = await fileHashes(store, ['.chunks']);
  for (const name of [
    '.gc-status',
    '.lock',
    'ns/prod/vm/100/notes',
    `${pbsSnapshot}/.protected`,
    `${pbsSnapshot}/client.log.blob`,
  ])
    t.true(extras.has(name), name);

  const root = await runIn(['snapshots', '--from', store]);
  t.regex(root.stdout, /1 more snapshot\(s\) in namespaces below: prod \(1\)/);
  const listed = await runIn(['snapshots', '--from', store, '--ns', 'prod', '--json']);
  t.is(listed.code, 0, listed.stderr);
  t.like(JSON.parse(listed.stdout), [
    {
      snapshot: pbsSnapshot,
      ns: 'prod',
      archives: [{ name: 'drive-scsi0.img' }],
      verification: { state: 'ok' },
    },
  ]);
  const restored = join(dir, 'restored.img');
  const restore = await runIn(['restore', '--from', store, pbsSnapshot, 'drive-scsi0', '--out', restored]);
  t.is(restore.code, 0, restore.stderr);
  t.is(await sha256File(restored), vm.sha256['drive-scsi0.img']!);

  const backup = await runIn(
    backupArgv(store, [`drive-scsi0=${vm.drives[0]!.path}`], { ns: 'prod', chunkSize: '64KiB' }),
  );
  t.is(backup.code, 0, backup.stderr);
  const ours = (JSON.parse(backup.stdout) as { snapshot: string; chunksNew: number }).snapshot;
  t.is(
    (JSON.parse(backup.stdout) as { chunksNew: number }).chunksNew,
    0,
    'same chunks as pbs_writer.py wrote',
  );
  const afterBackup = await fileHashes(store, ['.chunks']);
  for (const [name, hash] of extras) t.is(afterBackup.get(name), hash, `${name} kept by the backup`);

  const verify = await runIn(['verify', '--from', store, '--ns', 'prod']);
  t.is(verify.code, 0, verify.stdout + verify.stderr);
  t.regex(verify.stdout, /^OK: 2 snapshot\(s\)/m);
  const afterVerify = await fileHashes(store, ['.chunks']);
  for (const [name, hash] of extras) {
    if (name.endsWith('index.json.blob')) continue; // verify rewrites unprotected.verify_state
    t.is(afterVerify.get(name), hash, `${name} kept by verify`);
  }
  for (const snapshot of [pbsSnapshot, ours]) {
    const checked = await read(store, snapshot);
    t.like(checked, { ok: true, namespace: 'prod', owner: 'root@pam' }, snapshot);
    t.regex(checked.verify_state?.upid ?? '', /:verify:store:root@pam:$/, snapshot);
  }
});

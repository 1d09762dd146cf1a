/*
 * The CLI on an S3 datastore in a real Ceph RGW (testkit's testRgw): backup --store
 * s3://BUCKET/STORE, then snapshots, verify and restore --from it, with the objects where
 * PBS 4.x's S3 backend keeps them and the same chunk blobs as a local backup; and URLs a
 * command cannot use are refused instead of becoming directory names.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import {
  assertCliError,
  BIN,
  cli,
  exec,
  KiB,
  MiB,
  sha256File,
  startServing,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';
import { bucket } from './s3-bucket.js';
import { requireTool } from './tools.js';

function lr(args: readonly string[], env: NodeJS.ProcessEnv) {
  return exec(process.execPath, [BIN, ...args], { env });
}

test('backup to s3:// then snapshots, verify and restore from it: byte-identical, PBS 4.x keys, the same chunk blobs as on disk', async (t) => {
  const s3 = await bucket(t);
  if (s3 === undefined) return;
  const dir = await testDir(t, 'lr-cli-s3-');
  const vm = await writeVm(dir, { seed: 77, sizes: [MiB + 4321, 512 * KiB + 3] });
  const common = ['--snapshot', 'vm/100', '--chunk-size', '64KiB', '--json', ...vmArgs(vm)];
  const local = await lr(['backup', '--store', join(dir, 'local'), ...common], s3.env);
  t.is(local.code, 0, local.stderr);
  const out = await lr(['backup', '--store', s3.url, ...common], s3.env);
  t.is(out.code, 0, out.stderr);
  const result = JSON.parse(out.stdout) as { snapshot: string; chunksNew: number };
  t.true(result.chunksNew > 0);

  // Where PBS 4.x looks: chunks under .chunks/<4 hex>/, everything else under .cnt/.
  const { keys } = await s3.client.list('store/');
  const time = result.snapshot.split('/')[2]!;
  for (const file of ['drive-scsi0.img.fidx', 'drive-scsi1.img.fidx', 'notes.txt.didx', 'index.json.blob'])
    t.true(keys.includes(`store/.cnt/vm/100/${time}/${file}`), file);
  t.true(keys.includes('store/.cnt/vm/100/owner'));
  const chunkKeys = keys.filter((k) => k.startsWith('store/.chunks/'));
  const localChunks: string[] = [];
  for (const prefix of await readdir(join(dir, 'local', '.chunks')))
    for (const name of await readdir(join(dir, 'local', '.chunks', prefix)))
      localChunks.push(`store/.chunks/${prefix}/${name}`);
  t.deepEqual(chunkKeys.sort(), localChunks.sort());
  for (const key of chunkKeys.slice(0, 5)) {
    const onDisk = await readFile(join(dir, 'local', key.slice('store/'.length)));
    t.true(Buffer.from(await s3.client.getObject(key, { maxBytes: 32 * MiB })).equals(onDisk), key);
  }

  const listed = await lr(['snapshots', '--from', s3.url, '--json'], s3.env);
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(
    (JSON.parse(listed.stdout) as { snapshot: string }[]).map((s) => s.snapshot),
    [result.snapshot],
  );
  const verified = await lr(['verify', '--from', s3.url, result.snapshot], s3.env);
  t.is(verified.code, 0, verified.stdout + verified.stderr);
  t.regex(verified.stdout, /^OK: 1 snapshot/m);

  for (const archive of ['drive-scsi0', 'notes.txt']) {
    const target = join(dir, `restored-${archive}`);
    const restored = await lr(['restore', '--from', s3.url, 'vm/100', archive, '--out', target], s3.env);
    t.is(restored.code, 0, restored.stderr);
    t.is(await sha256File(target), vm.sha256[archive === 'drive-scsi0' ? 'drive-scsi0.img' : archive]!);
  }

  // A second backup of the same data uploads no chunk.
  const again = await lr(['backup', '--store', s3.url, ...common], s3.env);
  t.is(again.code, 0, again.stderr);
  t.is((JSON.parse(again.stdout) as { chunksNew: number }).chunksNew, 0);
  t.is((await s3.client.list('store/.chunks/')).keys.length, chunkKeys.length);
});

test('s3:// in a PBS namespace: keys under .cnt/ns/<a>/ns/<b>/, listed and restored by --ns', async (t) => {
  const s3 = await bucket(t);
  if (s3 === undefined) return;
  const dir = await testDir(t, 'lr-cli-s3-ns-');
  const vm = await writeVm(dir, { seed: 78, sizes: [256 * KiB + 1, 128 * KiB] });
  const out = await lr(
    [
      'backup',
      '--store',
      s3.url,
      '--ns',
      'prod/db',
      '--snapshot',
      'ct/7',
      '--json',
      `notes.txt=${vm.notesPath}`,
    ],
    s3.env,
  );
  t.is(out.code, 0, out.stderr);
  const time = (JSON.parse(out.stdout) as { snapshot: string }).snapshot.split('/').at(-1);
  t.true(
    (await s3.client.list('store/.cnt/ns/prod/ns/db/ct/7/')).keys.includes(
      `store/.cnt/ns/prod/ns/db/ct/7/${time}/index.json.blob`,
    ),
  );
  const root = await lr(['snapshots', '--from', s3.url, '--json'], s3.env);
  t.deepEqual(JSON.parse(root.stdout), []);
  const listed = await lr(['snapshots', '--from', s3.url, '--ns', 'prod/db', '--json'], s3.env);
  t.is((JSON.parse(listed.stdout) as unknown[]).length, 1, listed.stdout);
  const target = join(dir, 'notes');
  const restored = await lr(
    ['restore', '--from', s3.url, '--ns', 'prod/db', 'ct/7', 'notes.txt', '--out', target],
    s3.env,
  );
  t.is(restored.code, 0, restored.stderr);
  t.is(await sha256File(target), vm.sha256['notes.txt']!);
  const missing = await lr(['snapshots', '--from', s3.url, '--ns', 'nope'], s3.env);
  assertCliError(t, missing, 'ERR_LR_NAMESPACE_NOT_FOUND');
});

test('a URL a command cannot use is refused with a code, and no directory named after it appears', async (t) => {
  const dir = await testDir(t, 'lr-cli-urls-');
  const vm = await writeVm(dir, { seed: 79, sizes: [64 * KiB, 64 * KiB] });
  const before = (await readdir(dir)).sort();
  const cases: [readonly string[], string][] = [
    [
      ['backup', '--store', 'http://127.0.0.1:1/store', '--snapshot', 'vm/1', `notes.txt=${vm.notesPath}`],
      'ERR_LR_SOURCE_UNSUPPORTED',
    ],
    [
      ['backup', '--store', 's3:/bucket/store', '--snapshot', 'vm/1', `notes.txt=${vm.notesPath}`],
      'ERR_LR_SOURCE_UNSUPPORTED',
    ],
    [
      ['backup', '--store', 's3://Not_A_Bucket/store', '--snapshot', 'vm/1', `notes.txt=${vm.notesPath}`],
      'ERR_LR_S3_URL_INVALID',
    ],
    [
      ['backup', '--store', 's3://bucket/a/b', '--snapshot', 'vm/1', `notes.txt=${vm.notesPath}`],
      'ERR_LR_S3_URL_INVALID',
    ],
    [['serve', '--store', 'http://127.0.0.1:1/store'], 'ERR_LR_SOURCE_UNSUPPORTED'],
    [['snapshots', '--store', 'ftp://host/store'], 'ERR_LR_SOURCE_UNSUPPORTED'],
    [
      ['restore', '--from', 'ftp://host/store', 'vm/1', 'notes.txt', '--out', 'x'],
      'ERR_LR_SOURCE_UNSUPPORTED',
    ],
  ];
  for (const [args, code] of cases) {
    const out = await cli(args, { cwd: dir });
    assertCliError(t, out, code);
  }
  t.deepEqual((await readdir(dir)).sort(), before);
});

test('nbd --from s3:// exports the drives; qemu-img reads the backed-up image', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const s3 = await bucket(t);
  if (s3 === undefined) return;
  const dir = await testDir(t, 'lr-cli-s3-nbd-');
  // QEMU's block layer counts 512-byte sectors: sizes it can copy exactly.
  const vm = await writeVm(dir, { seed: 80, sizes: [MiB + 7 * 512, 512 * KiB] });
  const out = await lr(['backup', '--store', s3.url, '--snapshot', 'vm/100', ...vmArgs(vm)], s3.env);
  t.is(out.code, 0, out.stderr);
  const nbd = await startServing(['nbd', '--listen', '127.0.0.1:0', '--from', s3.url, 'vm/100'], {
    env: s3.env,
  });
  t.teardown(() => nbd.stop());
  const address = nbd.address;
  const target = join(dir, 'nbd.raw');
  const convert = await exec('qemu-img', [
    'convert',
    '-f',
    'raw',
    '-O',
    'raw',
    `nbd://${address}/drive-scsi0.img`,
    target,
  ]);
  t.is(convert.code, 0, convert.stderr);
  t.is(await sha256File(target), vm.sha256['drive-scsi0.img']!);
});

/*
 * S3 settings by option (--s3-endpoint, --s3-region, --s3-addressing, --s3-access-key-id,
 * --s3-secret-key-file) on the commands that take s3://, over the AWS_* environment: a
 * real round trip against the test RGW with the environment pointing elsewhere, and the
 * usage errors and error codes of bad settings.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { s3OptionsFromValues } from '../src/s3-options.js';
import { assertCliError, BIN, exec, KiB, sha256File, testDir, vmArgs, writeVm } from './helpers.js';
import { bucket } from './s3-bucket.js';

/** The environment without any AWS_* variable. */
function envWithoutAws(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_')));
}

function lr(args: readonly string[], env: NodeJS.ProcessEnv) {
  return exec(process.execPath, [BIN, ...args], { env });
}

test('--s3-* options reach RGW where the AWS_* environment points elsewhere: backup, snapshots, restore, verify, live-restore, serve', async (t) => {
  const s3 = await bucket(t);
  if (s3 === undefined) return;
  const dir = await testDir(t, 'lr-cli-s3-options-');
  const secretFile = join(dir, 'secret');
  await writeFile(secretFile, `${s3.rgw.secretAccessKey}\n`);
  const options = [
    '--s3-endpoint',
    s3.rgw.endpoint,
    '--s3-region',
    'us-east-1',
    '--s3-addressing',
    'path',
    '--s3-access-key-id',
    s3.rgw.accessKeyId,
    '--s3-secret-key-file',
    secretFile,
  ];
  // Nothing listens on port 1, and these keys do not exist: only the options can work.
  const wrongEnv = {
    ...envWithoutAws(),
    AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:1',
    AWS_ACCESS_KEY_ID: 'NOSUCHKEY',
    AWS_SECRET_ACCESS_KEY: 'nosuchsecret',
  };
  const vm = await writeVm(dir, { seed: 82, sizes: [256 * KiB + 9, 64 * KiB] });
  const backup = await lr(
    ['backup', '--store', s3.url, ...options, '--snapshot', 'vm/100', '--json', ...vmArgs(vm)],
    wrongEnv,
  );
  t.is(backup.code, 0, backup.stderr);
  const snapshot = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;

  const listed = await lr(['snapshots', '--from', s3.url, ...options, '--json'], wrongEnv);
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(
    (JSON.parse(listed.stdout) as { snapshot: string }[]).map((s) => s.snapshot),
    [snapshot],
  );
  const out = join(dir, 'restored.img');
  const restored = await lr(
    ['restore', '--from', s3.url, ...options, snapshot, 'drive-scsi0', '--out', out],
    wrongEnv,
  );
  t.is(restored.code, 0, restored.stderr);
  t.is(await sha256File(out), vm.sha256['drive-scsi0.img']!);

  const verified = await lr(['verify', '--from', s3.url, ...options, snapshot], wrongEnv);
  t.is(verified.code, 0, verified.stdout + verified.stderr);
  const targets = join(dir, 'targets');
  const live = await exec(
    process.execPath,
    [
      BIN,
      'live-restore',
      '--from',
      s3.url,
      ...options,
      snapshot,
      '--target-dir',
      targets,
      '--listen',
      '127.0.0.1:0',
      '--exit-when-done',
    ],
    { env: wrongEnv, timeoutMs: 60_000 },
  );
  t.is(live.code, 0, live.stderr);
  t.is(await sha256File(join(targets, 'drive-scsi0.img')), vm.sha256['drive-scsi0.img']!);

  // Without the options the environment's keys are used (here: refused by RGW).
  assertCliError(
    t,
    await lr(['snapshots', '--from', s3.url], { ...wrongEnv, AWS_ENDPOINT_URL_S3: s3.rgw.endpoint }),
    'ERR_LR_S3_ACCESS_DENIED',
  );

  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--store', s3.url, ...options, '--listen', '127.0.0.1:0'],
    {
      env: envWithoutAws(),
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').once('data', (text: string) => resolve(text.trim()));
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  const served = await (await fetch(`${url}/snapshots`)).json();
  t.deepEqual(
    (served as { snapshot: string }[]).map((s) => s.snapshot),
    [snapshot],
  );
});

test('bad S3 settings: usage errors, ERR_LR_S3_SECRET_KEY_FILE_UNREADABLE, ERR_LR_S3_URL_INVALID, ERR_LR_S3_CREDENTIALS_MISSING', async (t) => {
  const dir = await testDir(t, 'lr-cli-s3-bad-');
  const env = envWithoutAws();
  const secret = join(dir, 'secret');
  await writeFile(secret, 'x\n');
  const empty = join(dir, 'empty');
  await writeFile(empty, '\n');
  const url = 's3://bucket/store';
  const cases: [readonly string[], string, number][] = [
    [['snapshots', '--from', dir, '--s3-endpoint', 'http://127.0.0.1:1'], 'ERR_LR_USAGE', 2],
    [['serve', '--store', dir, '--s3-region', 'eu-1'], 'ERR_LR_USAGE', 2],
    [['snapshots', '--from', url, '--s3-access-key-id', 'AK'], 'ERR_LR_USAGE', 2],
    [['snapshots', '--from', url, '--s3-secret-key-file', secret], 'ERR_LR_USAGE', 2],
    [['snapshots', '--from', url, '--s3-addressing', 'dns'], 'ERR_LR_USAGE', 2],
    [
      [
        'restore',
        '--from',
        url,
        '--s3-access-key-id',
        'AK',
        '--s3-secret-key-file',
        empty,
        'vm/1',
        'x',
        '--out',
        'y',
      ],
      'ERR_LR_USAGE',
      2,
    ],
    [
      ['snapshots', '--from', url, '--s3-access-key-id', 'AK', '--s3-secret-key-file', join(dir, 'none')],
      'ERR_LR_S3_SECRET_KEY_FILE_UNREADABLE',
      1,
    ],
    [
      [
        'snapshots',
        '--from',
        url,
        '--s3-endpoint',
        'ftp://127.0.0.1',
        '--s3-access-key-id',
        'AK',
        '--s3-secret-key-file',
        secret,
      ],
      'ERR_LR_S3_URL_INVALID',
      1,
    ],
    [['snapshots', '--from', url, '--s3-endpoint', 'http://127.0.0.1:1'], 'ERR_LR_S3_CREDENTIALS_MISSING', 1],
  ];
  for (const [args, code, status] of cases) assertCliError(t, await lr(args, env), code, status);
});

test('s3OptionsFromValues: addressing path or virtual, trimmed values, nothing given is nothing set', async (t) => {
  t.deepEqual(await s3OptionsFromValues({}, 's3://b/s', 'x'), {});
  t.deepEqual(await s3OptionsFromValues({ 's3-addressing': 'path' }, 's3://bkt/s', 'x'), { pathStyle: true });
  t.deepEqual(await s3OptionsFromValues({ 's3-addressing': 'virtual' }, 's3://bkt/s', 'x'), {
    pathStyle: false,
  });
  t.deepEqual(await s3OptionsFromValues({ 's3-region': ' eu-west-1 ' }, 's3://bkt/s', 'x'), {
    region: 'eu-west-1',
  });
});

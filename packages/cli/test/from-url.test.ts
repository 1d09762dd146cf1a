/*
 * snapshots and verify --from the URL of a real, in-process `liverestore serve`
 * (startChunkServer): same answers as on the directory, a flipped chunk is caught on
 * this side, a wrong token is refused, and --from/--store are exclusive.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startChunkServer } from '@liverestore/server';
import test, { type ExecutionContext } from 'ava';
import {
  assertCliError,
  backupArgv,
  chunkPath,
  cli,
  flipByte,
  indexDigests,
  KiB,
  MiB,
  onlySnapshot,
  runIn,
  silentServerLogger,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';

interface Served {
  readonly dir: string;
  readonly store: string;
  /** `vm/100/TIME`. */
  readonly snapshot: string;
  readonly url: string;
  readonly tokenFile: string;
}

/** A store with vm/100 (two drives and a text file) and vm/101 (the text file), served with a token. */
async function served(t: ExecutionContext): Promise<Served> {
  const dir = await testDir(t, 'lr-from-url-');
  const vm = await writeVm(dir, { seed: 4242, sizes: [MiB + 321, 512 * KiB + 9] });
  const store = join(dir, 'store');
  for (const [group, args] of [
    ['vm/100', vmArgs(vm)],
    ['vm/101', [`notes.txt=${vm.notesPath}`]],
  ] as const) {
    const out = await runIn(backupArgv(store, args, { snapshot: group, chunkSize: '64KiB' }));
    t.is(out.code, 0, out.stderr);
  }
  const snapshot = await onlySnapshot(t, store);
  const token = 'a-long-enough-test-token';
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${token}\n`);
  const server = await startChunkServer({
    store,
    listen: { host: '127.0.0.1', port: 0 },
    token,
    logger: silentServerLogger,
  });
  t.teardown(() => server.close());
  return { dir, store, snapshot, url: server.url, tokenFile };
}

test('snapshots --from URL --token-file gives what snapshots --store gives (--json and text)', async (t) => {
  const s = await served(t);
  const local = await runIn(['snapshots', '--store', s.store, '--json']);
  t.is(local.code, 0, local.stderr);
  const remote = await runIn(['snapshots', '--from', s.url, '--token-file', s.tokenFile, '--json']);
  t.is(remote.code, 0, remote.stderr);
  t.deepEqual(JSON.parse(remote.stdout), JSON.parse(local.stdout));
  t.is((JSON.parse(remote.stdout) as unknown[]).length, 2);

  const localText = await runIn(['snapshots', '--from', s.store]);
  const remoteText = await cli(['snapshots', '--from', s.url, '--token-file', s.tokenFile]);
  t.is(remoteText.code, 0, remoteText.stderr);
  t.is(remoteText.stdout, localText.stdout);
  t.regex(remoteText.stdout, / owner root@pam\n/, 'the owner the server listed');
  t.regex(remoteText.stdout, /drive-scsi0\.img/);
});

// The server lists a snapshot whose manifest is broken as { snapshot, error } (like
// snapshots --json); the HTTP listing parser once refused the whole list for that entry
// (ERR_LR_SOURCE_BAD_RESPONSE) instead of keeping it.
test('snapshots --from URL: a broken manifest is reported for its snapshot, the other one still listed', async (t) => {
  const s = await served(t);
  await flipByte(join(s.store, s.snapshot, 'index.json.blob'), 40);
  const local = await runIn(['snapshots', '--store', s.store, '--json']);
  const remote = await runIn(['snapshots', '--from', s.url, '--token-file', s.tokenFile, '--json']);
  t.is(local.code, 1);
  t.is(remote.code, 1);
  t.deepEqual(JSON.parse(remote.stdout), JSON.parse(local.stdout));
  const entries = JSON.parse(remote.stdout) as { snapshot: string; error?: { code: string } }[];
  t.deepEqual(
    entries.map((e) => [e.snapshot.split('/').slice(0, 2).join('/'), e.error?.code]),
    [
      ['vm/101', undefined],
      ['vm/100', 'ERR_LR_BLOB_CRC_MISMATCH'],
    ],
  );
  t.true(remote.stderr.includes(`snapshot ${s.snapshot}`), remote.stderr);
});

test('verify --from URL --token-file: exit 0 and the same report as the local verify', async (t) => {
  const s = await served(t);
  // A local verify also records its result (`recorded`); over HTTP nothing is recorded.
  const local = await runIn(['verify', '--store', s.store, '--json', '--no-record']);
  t.is(local.code, 0, local.stderr);
  const remote = await runIn(['verify', '--from', s.url, '--token-file', s.tokenFile, '--json']);
  t.is(remote.code, 0, remote.stderr);
  t.false('recorded' in (JSON.parse(remote.stdout) as object));
  const report = JSON.parse(remote.stdout) as {
    ok: boolean;
    snapshots: string[];
    archives: number;
    chunks: number;
  };
  t.deepEqual(report, JSON.parse(local.stdout));
  t.true(report.ok);
  t.is(report.snapshots.length, 2);
  t.is(report.archives, 4);
  t.true(report.chunks > 10);

  const text = await cli(['verify', '--from', s.url, '--token-file', s.tokenFile, 'vm/100']);
  t.is(text.code, 0, text.stderr);
  t.is(text.stdout, (await runIn(['verify', '--from', s.store, 'vm/100'])).stdout);
  t.regex(text.stdout, /^OK: 1 snapshot\(s\), 3 archive\(s\), /m);

  assertCliError(
    t,
    await runIn(['verify', '--from', s.url, '--token-file', s.tokenFile, 'vm/999']),
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
});

test('verify --from URL: a flipped byte in one chunk file fails with exit 1, naming the chunk and its archive', async (t) => {
  const s = await served(t);
  const digests = await indexDigests(join(s.store, s.snapshot, 'drive-scsi1.img.fidx'));
  const others = [
    ...(await indexDigests(join(s.store, s.snapshot, 'drive-scsi0.img.fidx'))),
    ...(await indexDigests(join(s.store, s.snapshot, 'notes.txt.didx'))),
  ];
  const victim = digests.find((d) => !others.includes(d));
  if (victim === undefined) return t.fail('drive-scsi1 has a chunk of its own');
  await flipByte(chunkPath(s.store, victim), -1);

  const out = await runIn(['verify', '--from', s.url, '--token-file', s.tokenFile]);
  t.is(out.code, 1, out.stderr);
  t.regex(out.stdout, new RegExp(`^BAD CHUNK ${victim}: ERR_LR_BLOB_CRC_MISMATCH: `, 'm'));
  t.regex(out.stdout, new RegExp(`^  used by: ${s.snapshot}/drive-scsi1\\.img$`, 'm'));
  t.regex(out.stdout, /^FAILED: .* 1 bad chunk\(s\), 0 bad file\(s\)$/m);
  t.is(
    out.stdout,
    (await runIn(['verify', '--store', s.store])).stdout,
    'the same report as the local verify',
  );

  const json = JSON.parse(
    (await runIn(['verify', '--from', s.url, '--token-file', s.tokenFile, '--json'])).stdout,
  ) as {
    ok: boolean;
    badChunks: { digest: string; archives: string[] }[];
  };
  t.false(json.ok);
  t.deepEqual(
    json.badChunks.map((b) => [b.digest, b.archives]),
    [[victim, [`${s.snapshot}/drive-scsi1.img`]]],
  );
});

test('a wrong or missing token: ERR_LR_UNAUTHORIZED, exit 1, for snapshots and verify', async (t) => {
  const s = await served(t);
  const wrong = join(s.dir, 'wrong-token');
  await writeFile(wrong, 'not-the-token\n');
  for (const argv of [
    ['snapshots', '--from', s.url, '--token-file', wrong],
    ['snapshots', '--from', s.url, '--json'],
    ['verify', '--from', s.url, '--token-file', wrong],
    ['verify', '--from', s.url, '--token-file', wrong, 'vm/100'],
  ]) {
    const line = assertCliError(t, await runIn(argv), 'ERR_LR_UNAUTHORIZED');
    t.false(line.includes('not-the-token'), 'the token is never printed');
  }
  assertCliError(t, await cli(['verify', '--from', s.url, '--token-file', wrong]), 'ERR_LR_UNAUTHORIZED');
});

test('--from and --store: exclusive, one is needed, --token-file only with a URL (ERR_LR_USAGE, exit 2)', async (t) => {
  const s = await served(t);
  for (const command of ['snapshots', 'verify']) {
    let line = assertCliError(
      t,
      await runIn([command, '--from', s.url, '--store', s.store, '--token-file', s.tokenFile]),
      'ERR_LR_USAGE',
      2,
    );
    t.regex(line, /--from/);
    t.regex(line, /--store/);
    line = assertCliError(t, await runIn([command]), 'ERR_LR_USAGE', 2);
    t.regex(line, /--from/);
    line = assertCliError(
      t,
      await runIn([command, '--store', s.store, '--token-file', s.tokenFile]),
      'ERR_LR_USAGE',
      2,
    );
    t.regex(line, /--token-file/);
    line = assertCliError(
      t,
      await runIn([command, '--from', s.store, '--token-file', s.tokenFile]),
      'ERR_LR_USAGE',
      2,
    );
    t.regex(line, /--token-file/);
  }
  assertCliError(t, await cli(['verify', '--from', s.url, '--store', s.store]), 'ERR_LR_USAGE', 2);
  // --from DIR is the same as --store DIR.
  const viaFrom = await runIn(['verify', '--from', s.store, '--json', '--no-record']);
  t.is(viaFrom.code, 0, viaFrom.stderr);
  t.deepEqual(
    JSON.parse(viaFrom.stdout),
    JSON.parse((await runIn(['verify', '--store', s.store, '--json', '--no-record'])).stdout),
  );
  t.true((await readFile(s.tokenFile, 'utf8')).length > 0);
});

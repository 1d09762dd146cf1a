import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { parseListen } from '../src/commands/serve.js';
import { assertCliError, cli, sha256File, startServing, testDir, vmArgs, writeVm } from './helpers.js';

/** Starts `liverestore serve` on an ephemeral port; resolves with its URL and a stop function. */
async function serve(args: readonly string[]): Promise<{ url: string; stop(): Promise<number | null> }> {
  const server = await startServing(['serve', '--listen', '127.0.0.1:0', ...args], {
    isAddress: (line) => line.startsWith('http'),
  });
  return { url: server.address, stop: server.stop };
}

test('restore --from the URL of liverestore serve gives the source image; serve stops cleanly on SIGTERM', async (t) => {
  const dir = await testDir(t);
  const vm = await writeVm(dir);
  const store = join(dir, 'store');
  const backup = await cli(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)]);
  t.is(backup.code, 0, backup.stderr);
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, 'secret-token\n');
  const snapshot = (await readdir(join(store, 'vm', '100'))).find((name) => name.endsWith('Z'))!;
  await writeFile(join(store, 'vm', '100', snapshot, '.protected'), '');
  const server = await serve(['--store', store, '--token-file', tokenFile]);
  t.teardown(() => server.stop());
  t.regex(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);

  // The listing carries the group's owner and the snapshot's protection, as PBS's does.
  const listing = await fetch(`${server.url}/snapshots`, {
    headers: { authorization: 'Bearer secret-token' },
  });
  t.like(((await listing.json()) as unknown[])[0], {
    type: 'vm',
    id: '100',
    owner: 'root@pam',
    protected: true,
  });

  const out = join(dir, 'restored.img');
  const restored = await cli([
    'restore',
    '--from',
    server.url,
    '--token-file',
    tokenFile,
    'vm/100',
    'drive-scsi0',
    '--out',
    out,
  ]);
  t.is(restored.code, 0, restored.stderr);
  t.is(await sha256File(out), vm.sha256['drive-scsi0.img']!);

  const refused = await cli([
    'restore',
    '--from',
    server.url,
    'vm/100',
    'drive-scsi0',
    '--out',
    join(dir, 'x.img'),
  ]);
  assertCliError(t, refused, 'ERR_LR_UNAUTHORIZED');

  t.is(await server.stop(), 0, 'serve exits 0 on SIGTERM');
});

test('serve: bad options are usage errors', async (t) => {
  assertCliError(t, await cli(['serve']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['serve', '--store', '.', '--listen', 'nowhere']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['serve', '--store', '.', '--tls-cert', 'x.pem']), 'ERR_LR_USAGE', 2);
  assertCliError(
    t,
    await cli(['restore', '--from', '/tmp', '--token-file', 'x', 'vm/1', 'a', '--out', 'o']),
    'ERR_LR_USAGE',
    2,
  );
});

test('parseListen: host:port, [v6]:port, :port', (t) => {
  t.deepEqual(parseListen('127.0.0.1:8007'), { host: '127.0.0.1', port: 8007 });
  t.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  t.deepEqual(parseListen(':9000'), { host: '127.0.0.1', port: 9000 });
  t.throws(() => parseListen('8007'), { code: 'ERR_LR_USAGE' });
  t.throws(() => parseListen('a:70000'), { code: 'ERR_LR_USAGE' });
});

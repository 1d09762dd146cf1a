/*
 * NBD over TLS (`nbd --tls-cert/--tls-key`): real clients only get in with STARTTLS —
 * nbdinfo over nbds:// and qemu-img with tls-creds-x509 read the export, a plain client
 * is refused — and certificate mistakes are clear errors before anything listens.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { caSignedCertificates, requireTool } from '@liverestore/testkit';
import test from 'ava';
import { assertCliError, cli, MiB, nbdArgv, runIn, testDir, vmArgs, writeVm } from './helpers.js';

const run = promisify(execFile);
test('nbd --tls-cert/--tls-key: nbdinfo (nbds://) and qemu-img (tls-creds) read the export, a plain client is refused', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  if (!requireTool(t, 'nbdinfo') || !requireTool(t, 'qemu-img')) return;
  const dir = await testDir(t);
  // The CA and the server certificate under the names QEMU and libnbd look for in a directory.
  const tls = join(dir, 'tls');
  await mkdir(tls);
  const { server } = await caSignedCertificates(tls);
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [3 * MiB + 512, 1 * MiB] });
  t.is((await runIn(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const pidFile = join(dir, 'nbd.pid');
  const started = await cli(
    nbdArgv(store, [
      '--fork',
      '--pid-file',
      pidFile,
      '--tls-cert',
      server.certPath,
      '--tls-key',
      server.keyPath,
    ]),
  );
  t.is(started.code, 0, started.stderr);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  });
  const address = started.stdout.split('\n')[0]!;
  const port = address.split(':')[1]!;

  const info = await run('nbdinfo', [`nbds://${address}/drive-scsi0.img?tls-certificates=${tls}`]);
  t.regex(info.stdout, /newstyle-fixed with TLS/);
  t.regex(info.stdout, new RegExp(`export-size: ${3 * MiB + 512}\\b`));
  const plain = await run('nbdinfo', ['--size', `nbd://${address}/drive-scsi0.img`]).then(
    () => 'connected',
    (err: { stderr?: string }) => err.stderr ?? '',
  );
  t.regex(plain, /requires TLS/, 'a client without TLS is refused');

  const out = join(dir, 'copy.raw');
  await run('qemu-img', [
    'convert',
    '-O',
    'raw',
    '--object',
    `tls-creds-x509,id=tls0,dir=${tls},endpoint=client`,
    '--image-opts',
    `driver=nbd,host=127.0.0.1,port=${port},export=drive-scsi0.img,tls-creds=tls0`,
    out,
  ]);
  t.true(
    (await readFile(out)).equals(await readFile(vm.drives[0]!.path)),
    'qemu-img read every byte over TLS',
  );
});

test('nbd TLS options: both or neither, and a certificate that is not one fails before listening', async (t) => {
  const dir = await testDir(t);
  t.regex(
    assertCliError(t, await cli(['nbd', '--from', dir, 'vm/100', '--tls-cert', 'x.pem']), 'ERR_LR_USAGE', 2),
    /give both --tls-cert and --tls-key/,
  );
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [1 * MiB, 1 * MiB] });
  t.is((await runIn(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  await writeFile(join(dir, 'bad.pem'), 'not a certificate\n');
  const bad = await cli(
    nbdArgv(store, ['--tls-cert', join(dir, 'bad.pem'), '--tls-key', join(dir, 'bad.pem')]),
  );
  t.regex(assertCliError(t, bad, 'ERR_LR_NBD_TLS'), /certificate or key is not usable/);
});

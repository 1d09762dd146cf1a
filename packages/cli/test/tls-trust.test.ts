/*
 * Reaching a `serve` over HTTPS with a self-signed certificate, as PBS users do with
 * PBS_FINGERPRINT: refused with the fingerprint to check, then trusted by that
 * fingerprint (option or environment) or by the certificate as CA; a wrong fingerprint is
 * refused. A server that does not answer is reported while the command retries.
 */
import { execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool, selfSignedCertificate } from '@liverestore/testkit';
import test from 'ava';
import { assertCliError, BIN, cli, MiB, runIn, testDir, vmArgs, writeVm } from './helpers.js';

const run = promisify(execFile);

/** `serve` over HTTPS on a free port; resolves with its URL once it prints it. */
async function startServe(args: readonly string[]): Promise<{ url: string; stop(): void }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
    });
    child.once('exit', (code) => reject(new Error(`serve exited early with ${code}`)));
  });
  return { url, stop: () => child.kill('SIGKILL') };
}

test('https with a self-signed certificate: refused naming its fingerprint, trusted by --fingerprint, PBS_FINGERPRINT or --ca', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const dir = await testDir(t);
  const { certPath: cert, keyPath: key, fingerprint256: fingerprint } = await selfSignedCertificate(dir);
  const tls = { cert, key, fingerprint };
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [1 * MiB, 1 * MiB] });
  t.is((await runIn(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const serve = await startServe(['--store', store, '--tls-cert', tls.cert, '--tls-key', tls.key]);
  t.teardown(() => serve.stop());
  t.regex(serve.url, /^https:\/\/127\.0\.0\.1:\d+$/);

  const untrusted = assertCliError(t, await cli(['snapshots', '--from', serve.url]), 'ERR_LR_TLS_UNTRUSTED');
  t.true(untrusted.includes(`--fingerprint ${tls.fingerprint}`), untrusted);
  t.regex(untrusted, /not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);

  const pinned = await cli(['snapshots', '--from', serve.url, '--fingerprint', tls.fingerprint]);
  t.is(pinned.code, 0, pinned.stderr);
  t.regex(pinned.stdout, /^vm\/100\//m);
  const lowerHex = tls.fingerprint.replace(/:/g, '').toLowerCase();
  const fromEnv = await run(process.execPath, [BIN, 'snapshots', '--from', serve.url], {
    env: { ...process.env, PBS_FINGERPRINT: lowerHex },
  });
  t.regex(fromEnv.stdout, /^vm\/100\//m, 'PBS_FINGERPRINT, plain hex');
  const byCa = await cli([
    'restore',
    '--from',
    serve.url,
    '--ca',
    tls.cert,
    'vm/100',
    'drive-scsi0',
    '--out',
    join(dir, 'd.raw'),
  ]);
  t.is(byCa.code, 0, byCa.stderr);

  const wrong = `${'00:'.repeat(31)}00`;
  const refused = assertCliError(
    t,
    await cli(['snapshots', '--from', serve.url, '--fingerprint', wrong]),
    'ERR_LR_TLS_FINGERPRINT',
  );
  t.true(refused.includes(tls.fingerprint), refused);

  t.regex(
    assertCliError(
      t,
      await cli(['snapshots', '--from', store, '--fingerprint', tls.fingerprint]),
      'ERR_LR_USAGE',
      2,
    ),
    /--fingerprint needs an https:\/\/ --from/,
  );
  t.regex(
    assertCliError(
      t,
      await cli(['snapshots', '--from', serve.url, '--fingerprint', 'AB:CD']),
      'ERR_LR_USAGE',
      2,
    ),
    /--fingerprint must be a SHA-256 fingerprint/,
  );
});

test('a server that does not answer: the command says so while it retries, then fails with a code', async (t) => {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const out = await cli(['snapshots', '--from', `http://127.0.0.1:${port}`], { timeoutMs: 60_000 });
  t.is(out.code, 1);
  t.regex(
    out.stderr,
    new RegExp(
      `^snapshots: http://127\\.0\\.0\\.1:${port} did not answer \\(.*ECONNREFUSED.*\\); attempt 2 of 9 in \\d\\.\\d s$`,
      'm',
    ),
  );
  t.regex(out.stderr, /^liverestore: ERR_LR_SOURCE_UNAVAILABLE: /m);
});

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { imageBytes, requireTool, selfSignedCertificate, tempDir } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import { DRIVE_SIZES, errorOf, fixtureTest, rawRequest, serve } from './helpers.js';

const run = promisify(execFile);
const test = fixtureTest();

/** A throw-away self-signed certificate for 127.0.0.1, as the server takes it. */
async function selfSigned(t: ExecutionContext): Promise<{ cert: Buffer; key: Buffer }> {
  const dir = await tempDir('lr-server-tls-');
  t.teardown(() => dir.cleanup());
  const { certPath, keyPath } = await selfSignedCertificate(dir.path);
  return { cert: await readFile(certPath), key: await readFile(keyPath) };
}

test('TLS: the server speaks HTTPS with the given certificate', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const f = t.context.fixture;
  const server = await serve(t, f, { tls: await selfSigned(t), token: 'tls-token' });
  t.regex(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const path = `/snapshots/${f.snapshot}/drive-scsi0.img`;
  const res = await rawRequest(server.url, path, {
    rejectUnauthorized: false,
    headers: { authorization: 'Bearer tls-token', range: 'bytes=1048000-1049999' },
  });
  t.is(res.status, 206);
  t.true(res.body.equals(imageBytes(f.drives[0]!.spec, 1_048_000, 2000)));
  const denied = await rawRequest(server.url, '/snapshots', { rejectUnauthorized: false });
  t.is(denied.status, 401);
  t.is(errorOf(denied.body).code, 'ERR_LR_HTTP_UNAUTHORIZED');
  await t.throwsAsync(rawRequest(server.url, '/metrics'), undefined, 'an unknown CA is refused by default');
});

test('curl -r A-B gets exactly those bytes', async (t) => {
  if (!requireTool(t, 'curl')) return;
  const f = t.context.fixture;
  const server = await serve(t, f);
  const url = `${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`;
  const size = DRIVE_SIZES[1]!;
  for (const [a, b] of [
    [0, 99],
    [1_048_570, 1_048_600],
    [size - 5000, size - 1],
  ] as const) {
    const { stdout } = await run('curl', ['-s', '-f', '-r', `${a}-${b}`, url], {
      encoding: 'buffer',
      maxBuffer: 64 << 20,
    });
    t.true(stdout.equals(imageBytes(f.drives[1]!.spec, a, b - a + 1)), `${a}-${b}`);
  }
  const { stdout: whole } = await run('curl', ['-s', '-f', url], { encoding: 'buffer', maxBuffer: 64 << 20 });
  t.is(whole.length, size);
  t.true(whole.equals(imageBytes(f.drives[1]!.spec, 0, size)));
});

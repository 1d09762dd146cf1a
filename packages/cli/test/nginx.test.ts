/*
 * docs/scale-out.md, run: nginx with proxy_cache and proxy_cache_lock (the page's own
 * configuration) in front of `liverestore serve`, and 16 `liverestore restore` processes
 * of one snapshot at once through it. Every byte must be right, and serve's own metrics
 * must show at most one chunk GET per distinct chunk.
 */
import { join } from 'node:path';
import { startChunkServer } from '@liverestore/server';
import { hasNginx } from '@liverestore/testkit';
import test from 'ava';
import {
  backupArgv,
  cli,
  indexDigests,
  MiB,
  onlySnapshot,
  runIn,
  sha256File,
  silentServerLogger,
  testDir,
} from './helpers.js';
import { startNginx } from './nginx.js';

const RESTORES = 16;

test('16 restores through nginx cost serve at most one GET per distinct chunk', async (t) => {
  if (!hasNginx()) {
    if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1')
      t.fail('nginx is required (LIVERESTORE_REQUIRE_TOOLS=1): apt-get install nginx');
    else t.pass('SKIPPED: nginx is not installed');
    return;
  }
  const dir = await testDir(t, 'lr-nginx-test-');
  const { writeImageFile } = await import('@liverestore/testkit');
  const spec = { sizeBytes: 12 * MiB + 5, seed: 16, mix: { zero: 0.2, text: 0.4, random: 0.4 } };
  const image = join(dir, 'disk.raw');
  await writeImageFile(spec, image);
  const store = join(dir, 'store');
  const backup = await runIn(
    backupArgv(store, [`drive-scsi0=${image}`], { chunkSize: '128KiB', json: false }),
  );
  t.is(backup.code, 0, backup.stderr);
  const snapshot = await onlySnapshot(t, store);
  const distinct = new Set(await indexDigests(join(store, snapshot, 'drive-scsi0.img.fidx'))).size;

  const serve = await startChunkServer({
    store,
    listen: { host: '127.0.0.1', port: 0 },
    logger: silentServerLogger,
    maxRequestsPerClient: 256,
  });
  t.teardown(() => serve.close());
  const nginx = await startNginx(t, serve.url.replace('http://', ''));

  const outcomes = await Promise.all(
    Array.from({ length: RESTORES }, (_, i) =>
      cli(
        [
          'restore',
          '--from',
          nginx.url,
          snapshot,
          'drive-scsi0.img',
          '--out',
          join(dir, `out-${i}.img`),
          '--workers',
          '1',
          '--cache-size',
          '16MiB',
        ],
        { timeoutMs: 150_000 },
      ),
    ),
  );
  const expected = await sha256File(image);
  for (const [i, out] of outcomes.entries()) {
    t.is(out.code, 0, `restore ${i}: ${out.stderr}`);
    t.is(await sha256File(join(dir, `out-${i}.img`)), expected, `restore ${i}: every byte`);
  }
  const metrics = await (await fetch(`${serve.url}/metrics`)).text();
  const originGets = Number(/^liverestore_http_chunk_fetches_total (\d+)$/m.exec(metrics)![1]);
  t.log(`${distinct} distinct chunks; serve sent ${originGets} chunk blobs for ${RESTORES} restores`);
  t.true(originGets > 0, 'the chunks did come from serve, through nginx');
  t.true(originGets <= distinct, `serve sent ${originGets} chunk blobs for ${distinct} distinct chunks`);
});

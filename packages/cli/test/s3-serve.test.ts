/*
 * `serve --store s3://BUCKET/STORE` as the stateless tier of docs/scale-out.md: two serve
 * processes in front of one bucket in a real Ceph RGW, a restore through each, and one
 * through nginx (the page's configuration) in front of both.
 */
import { join } from 'node:path';
import { readIndex, toHex } from '@liverestore/format';
import { hasNginx } from '@liverestore/testkit';
import test from 'ava';
import { BIN, exec, MiB, sha256File, startServing, testDir, vmArgs, writeVm } from './helpers.js';
import { startNginx } from './nginx.js';
import { bucket } from './s3-bucket.js';

function lr(args: readonly string[], env: NodeJS.ProcessEnv) {
  return exec(process.execPath, [BIN, ...args], { env });
}

/** `liverestore serve` on an ephemeral port with `env`; stopped when the test ends. */
async function serveProcess(
  t: import('ava').ExecutionContext,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const server = await startServing(['serve', '--listen', '127.0.0.1:0', ...args], {
    env,
    isAddress: (line) => line.startsWith('http'),
  });
  t.teardown(() => server.stop());
  return server.address;
}

/** `liverestore_http_chunk_fetches_total` of a serve: chunk blobs it sent whole. */
async function chunkFetches(url: string): Promise<number> {
  const metrics = await (await fetch(`${url}/metrics`)).text();
  return Number(/^liverestore_http_chunk_fetches_total (\d+)$/m.exec(metrics)![1]);
}

test('two serve --store s3:// on one bucket: restores through each, and through nginx in front of both, are byte-correct', async (t) => {
  const s3 = await bucket(t);
  if (s3 === undefined) return;
  const dir = await testDir(t, 'lr-cli-s3-serve-');
  const vm = await writeVm(dir, { seed: 81, sizes: [2 * MiB + 17, MiB + 5] });
  const backup = await lr(
    ['backup', '--store', s3.url, '--snapshot', 'vm/100', '--chunk-size', '128KiB', '--json', ...vmArgs(vm)],
    s3.env,
  );
  t.is(backup.code, 0, backup.stderr);
  const snapshot = (JSON.parse(backup.stdout) as { snapshot: string }).snapshot;
  const servers = await Promise.all([
    serveProcess(t, ['--store', s3.url, '--max-per-client', '256'], s3.env),
    serveProcess(t, ['--store', s3.url, '--max-per-client', '256'], s3.env),
  ]);
  for (const [i, archive] of ['drive-scsi0', 'drive-scsi1'].entries()) {
    const out = join(dir, `${archive}-direct.img`);
    const restored = await lr(['restore', '--from', servers[i]!, snapshot, archive, '--out', out], s3.env);
    t.is(restored.code, 0, restored.stderr);
    t.is(await sha256File(out), vm.sha256[`${archive}.img`]!, `${archive} through serve ${i}`);
  }
  if (!hasNginx()) {
    if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1')
      t.fail('nginx is required (LIVERESTORE_REQUIRE_TOOLS=1): apt-get install nginx');
    else t.log('nginx is not installed: the restore through it is skipped');
    return;
  }
  const before = await Promise.all(servers.map(chunkFetches));
  const nginx = await startNginx(
    t,
    servers.map((url) => url.replace('http://', '')),
  );
  const out = join(dir, 'drive-scsi0-nginx.img');
  const restored = await lr(['restore', '--from', nginx.url, snapshot, 'drive-scsi0', '--out', out], s3.env);
  t.is(restored.code, 0, restored.stderr);
  t.is(await sha256File(out), vm.sha256['drive-scsi0.img']!, 'drive-scsi0 through nginx → 2× serve → RGW');
  const index = readIndex(
    await s3.client.getObject(`store/.cnt/${snapshot}/drive-scsi0.img.fidx`, { maxBytes: MiB }),
  );
  const distinct = new Set(Array.from({ length: index.chunkCount }, (_, i) => toHex(index.digestAt(i)))).size;
  const sent = (await Promise.all(servers.map(chunkFetches))).map((n, i) => n - before[i]!);
  t.log(`${distinct} distinct chunks; the two serve processes sent ${sent.join(' + ')} chunk blobs`);
  t.true(
    sent.every((n) => n > 0),
    'nginx spread the chunk GETs over both serve processes',
  );
  t.true(sent[0]! + sent[1]! <= distinct, 'nginx fetched each chunk once');
});

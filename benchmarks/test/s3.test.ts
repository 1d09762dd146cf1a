/*
 * Smoke test of `bench s3`: one tiny round against the test RGW (--endpoint), then the
 * result is checked for shape. No timing assertions: the numbers only have to be there.
 */

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tempDir, testRgw } from '@liverestore/testkit';
import test from 'ava';
import { runNode } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

test('bench s3 --endpoint: one round restores from the local store, from RGW and from RGW behind a warm chunk cache, and reports them', async (t) => {
  const rgw = testRgw(t);
  if (rgw === undefined) return;
  const dir = await tempDir('lr-bench-s3-');
  t.teardown(() => dir.cleanup());
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
  };
  const args = [
    's3',
    '--size',
    '16MiB',
    '--samples',
    '1',
    '--cache-size',
    '16MiB',
    '--endpoint',
    rgw.endpoint,
  ];
  const { code, stdout, stderr } = await runNode(
    [MAIN, ...args, '--json', '--out', dir.path, '--dir', dir.path],
    env,
  );
  t.is(code, 0, stderr);
  const json = JSON.parse(await readFile(`${dir.path}/s3.json`, 'utf8'));
  t.deepEqual(JSON.parse(stdout), json);
  const [section] = json.sections;
  t.deepEqual(
    section.cases.map((c: { name: string }) => c.name.replace(/lr-bench-[0-9a-f]+/, 'BUCKET')),
    [
      'local datastore (blobs in the page cache)',
      'S3 datastore in RGW (s3://BUCKET/store), 4 background lanes',
      'S3 datastore in RGW (s3://BUCKET/store) behind a warm chunk cache (--chunk-cache)',
    ],
  );
  for (const c of section.cases) t.is(c.secondsPerOp.length, 1);
  t.regex(section.cases[1].details.vsLocal, /^\d+\.\d\d$/);
  t.regex(section.cases[2].details.vsLocal, /^\d+\.\d\d$/);
  // The warm cache answered every blob: its restore fetched none from RGW.
  t.true(
    section.notes.some((note: string) =>
      /Warm chunk cache: .* took [1-9]\d* blobs from the cache directory and 0 from RGW/.test(note),
    ),
    section.notes.join('\n'),
  );
});

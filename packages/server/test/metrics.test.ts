import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readIndex, toHex } from '@liverestore/format';
import { ChunkCache } from '@liverestore/reader';
import { fixtureTest, get, MiB, serve } from './helpers.js';

const test = fixtureTest();

function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('/metrics counts requests, bytes, latency and errors, and reads the cache stats at scrape time', async (t) => {
  const f = t.context.fixture;
  const cache = new ChunkCache({ cacheBytes: 32 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const server = await serve(t, f, { cache });
  await get(`${server.url}/snapshots`);
  const image = await get(`${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`, {
    range: 'bytes=0-2097151',
  });
  t.is(image.status, 206);
  await get(`${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`, { range: 'bytes=0-1048575' });
  await get(`${server.url}/chunks/${'0'.repeat(64)}`);
  await get(`${server.url}/chunks/BAD`);
  const res = await get(`${server.url}/metrics`);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = res.body.toString();
  t.is(sample(text, 'liverestore_http_requests_total', '{route="snapshots",status="200"}'), 1);
  t.is(sample(text, 'liverestore_http_requests_total', '{route="image",status="206"}'), 2);
  t.is(sample(text, 'liverestore_http_requests_total', '{route="chunk",status="404"}'), 1);
  t.is(sample(text, 'liverestore_http_requests_total', '{route="unknown",status="400"}'), 1);
  t.is(sample(text, 'liverestore_http_sent_bytes_total', '{route="image"}'), 3 * MiB);
  t.is(sample(text, 'liverestore_http_request_duration_seconds_count', '{route="image"}'), 2);
  t.is(sample(text, 'liverestore_http_errors_total', '{code="ERR_LR_CHUNK_MISSING"}'), 1);
  t.is(sample(text, 'liverestore_http_errors_total', '{code="ERR_LR_DIGEST_INVALID"}'), 1);
  // A 404 is no fetch of a blob; the chunk counter below counts blobs, not ranged pieces.
  t.is(sample(text, 'liverestore_http_chunk_fetches_total'), 0);
  const stats = cache.stats();
  t.true(stats.misses > 0);
  t.true(stats.hits > 0, 'the second range hit the cache');
  for (const [name, key] of [
    ['liverestore_cache_hits', 'hits'],
    ['liverestore_cache_misses', 'misses'],
    ['liverestore_cache_dedup_joins', 'dedupJoins'],
    ['liverestore_cache_bytes_decoded', 'bytesDecoded'],
    ['liverestore_cache_evictions', 'evictions'],
    ['liverestore_cache_in_flight', 'inFlight'],
    ['liverestore_cache_used_bytes', 'usedBytes'],
    ['liverestore_cache_capacity_bytes', 'capacityBytes'],
  ] as const) {
    t.is(sample(text, name), stats[key], name);
  }
});

test('two servers in one process keep separate registries', async (t) => {
  const f = t.context.fixture;
  const a = await serve(t, f);
  const b = await serve(t, f);
  await get(`${a.url}/snapshots`);
  const text = (await get(`${b.url}/metrics`)).body.toString();
  t.is(sample(text, 'liverestore_http_requests_total', '{route="snapshots",status="200"}'), undefined);
});

test('liverestore_http_chunk_fetches_total counts blobs asked for, not the pieces of a resumed fetch', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const index = readIndex(await readFile(join(f.storeDir, f.snapshot, 'drive-scsi0.img.fidx')));
  const url = `${server.url}/chunks/${toHex(index.digestAt(0))}`;
  const blobBytes = (await get(url)).body.byteLength;
  t.true(blobBytes > 1, 'the blob has a second half to resume');
  await get(url, { range: 'bytes=0-' });
  // The rest of a cut fetch (halfway: a zstd blob of a zero chunk is only tens of bytes).
  await get(url, { range: `bytes=${blobBytes >> 1}-` });
  await get(url, {}, 'HEAD');
  const text = (await get(`${server.url}/metrics`)).body.toString();
  t.is(sample(text, 'liverestore_http_chunk_fetches_total'), 2);
  t.is(sample(text, 'liverestore_http_requests_total', '{route="chunk",status="206"}'), 2);
});

import { FakeClock, FaultProxy } from '@liverestore/testkit';
import test from 'ava';
import { parseS3Url, resolveS3Settings, S3Client, S3Error } from '../src/internal.js';
import { s3Fixture } from './s3-fixture.js';

const KEYS = { AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: 'SK' };

test('settings: endpoint from options, then AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; region from AWS_REGION', (t) => {
  const env = {
    ...KEYS,
    AWS_ENDPOINT_URL: 'http://general:1',
    AWS_ENDPOINT_URL_S3: 'http://s3only:2',
    AWS_REGION: 'eu-1',
  };
  t.is(resolveS3Settings({}, env).endpoint.host, 's3only:2');
  t.is(resolveS3Settings({}, { ...env, AWS_ENDPOINT_URL_S3: '' }).endpoint.host, 'general:1');
  t.is(resolveS3Settings({ endpoint: 'http://given:3' }, env).endpoint.host, 'given:3');
  t.is(resolveS3Settings({}, env).region, 'eu-1');
  t.is(resolveS3Settings({}, KEYS).endpoint.href, 'https://s3.us-east-1.amazonaws.com/');
  t.deepEqual(resolveS3Settings({ accessKeyId: 'x', secretAccessKey: 'y' }, KEYS).credentials, {
    accessKeyId: 'x',
    secretAccessKey: 'y',
  });
});

test('settings: path style for an IP address or localhost, virtual-hosted otherwise, or as told', (t) => {
  const style = (endpoint: string, pathStyle?: boolean): boolean =>
    resolveS3Settings({ endpoint, pathStyle }, KEYS).pathStyle;
  t.true(style('http://127.0.0.1:7480'));
  t.true(style('http://[::1]:7480'));
  t.true(style('http://localhost:9000'));
  t.false(style('https://s3.example.com'));
  t.true(style('https://s3.example.com', true));
  t.false(style('http://127.0.0.1:7480', false));
});

test('settings: no credentials, a bad endpoint and bad s3:// URLs are refused with codes', (t) => {
  t.throws(() => resolveS3Settings({}, {}), { code: 'ERR_LR_S3_CREDENTIALS_MISSING' });
  t.throws(() => resolveS3Settings({ endpoint: 'ftp://x' }, KEYS), { code: 'ERR_LR_S3_URL_INVALID' });
  t.throws(() => resolveS3Settings({ endpoint: 'http://u:p@x' }, KEYS), { code: 'ERR_LR_S3_URL_INVALID' });
  t.deepEqual(parseS3Url('s3://my-bucket/store1'), { bucket: 'my-bucket', store: 'store1' });
  t.deepEqual(parseS3Url('s3://my-bucket/store1/'), { bucket: 'my-bucket', store: 'store1' });
  for (const bad of [
    's3://bucket',
    's3://bucket/',
    's3://bucket/a/b',
    's3://Bad_Bucket/s',
    's3://b/s',
    's3://bucket/..',
  ])
    t.throws(() => parseS3Url(bad), { code: 'ERR_LR_S3_URL_INVALID' }, bad);
});

test('RGW: PUT with If-None-Match keeps the first object; GET with ranges, suffix ranges; HEAD', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const { client } = s3;
  t.is(
    await client.putObject('a/2026-01-01T00:00:00Z/x y', Buffer.from('first object'), { ifAbsent: true }),
    'created',
  );
  t.is(
    await client.putObject('a/2026-01-01T00:00:00Z/x y', Buffer.from('second'), { ifAbsent: true }),
    'exists',
  );
  const key = 'a/2026-01-01T00:00:00Z/x y';
  t.is(Buffer.from(await client.getObject(key, { maxBytes: 100 })).toString(), 'first object');
  t.is(
    Buffer.from(await client.getObject(key, { maxBytes: 100, range: { suffixBytes: 6 } })).toString(),
    'object',
  );
  t.is(
    Buffer.from(await client.getObject(key, { maxBytes: 100, range: { start: 6, end: 8 } })).toString(),
    'obj',
  );
  t.deepEqual(await client.headObject(key), { sizeBytes: 12 });
  t.is(await client.headObject('a/none'), undefined);
  await t.throwsAsync(client.getObject('a/none', { maxBytes: 100 }), { code: 'ERR_LR_S3_NOT_FOUND' });
  await t.throwsAsync(client.getObject(key, { maxBytes: 5 }), { code: 'ERR_LR_S3_RESPONSE_TOO_LARGE' });
});

test('RGW: listing follows continuation tokens; delimiters give prefixes; DeleteObjects deletes', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const { client } = s3;
  const keys = Array.from({ length: 7 }, (_, i) => `p/k${i}`);
  for (const key of keys) await client.putObject(key, Buffer.from(key));
  await client.putObject('q/one', Buffer.from('q'));
  const before = client.stats.attempts;
  t.deepEqual((await client.list('p/', { maxKeys: 2 })).keys, keys);
  t.is(client.stats.attempts - before, 4, 'four pages of at most two keys');
  t.deepEqual(await client.list('', { delimiter: '/' }), { keys: [], commonPrefixes: ['p/', 'q/'] });
  await client.deleteObjects([...keys.slice(0, 5), 'p/never-there']);
  t.deepEqual((await client.list('p/')).keys, keys.slice(5));
});

test('RGW: keys with XML and URL special characters list, read and delete as written', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const { client } = s3;
  const keys = ['x/a&b<c>\'d"e', 'x/sp ace+plus%25', 'x/ünï/cödé'];
  for (const key of keys) await client.putObject(key, Buffer.from(key));
  t.deepEqual((await client.list('x/')).keys.sort(), [...keys].sort());
  for (const key of keys) t.is(Buffer.from(await client.getObject(key, { maxBytes: 100 })).toString(), key);
  await client.deleteObjects(keys);
  t.deepEqual((await client.list('x/')).keys, []);
});

test('RGW: a missing bucket and a wrong secret fail with their codes, without retries', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const missing = new S3Client(`${s3.bucket}-none`, resolveS3Settings(s3.options));
  t.teardown(() => missing.close());
  await t.throwsAsync(missing.checkBucket(), { code: 'ERR_LR_S3_BUCKET_NOT_FOUND' });
  await t.throwsAsync(missing.getObject('k', { maxBytes: 10 }), { code: 'ERR_LR_S3_BUCKET_NOT_FOUND' });
  const wrong = new S3Client(s3.bucket, resolveS3Settings({ ...s3.options, secretAccessKey: 'wrong' }));
  t.teardown(() => wrong.close());
  const err = await t.throwsAsync(wrong.getObject('k', { maxBytes: 10 }), {
    code: 'ERR_LR_S3_ACCESS_DENIED',
  });
  t.true(err instanceof S3Error && err.status === 403);
  t.is(wrong.stats.retries, 0);
});

test('RGW behind a fault proxy, on a fake clock: a stalled answer ends at its deadline, a 503 SlowDown waits its backoff, then the request succeeds', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const proxy = await FaultProxy.start(s3.rgw.endpoint);
  t.teardown(() => proxy.close());
  const clock = new FakeClock();
  const timeoutMs = 600_000;
  const client = new S3Client(
    s3.bucket,
    resolveS3Settings({
      ...s3.options,
      endpoint: proxy.url,
      timeoutMs,
      backoffBaseMs: 100,
      backoffCapMs: 150,
    }),
    { clock },
  );
  t.teardown(() => client.close());
  await s3.client.putObject('obj', Buffer.from('payload'));
  // The first answer is held (longer than the test runs); the second is 503 SlowDown.
  proxy.inject({ kind: 'delay', ms: 60_000 });
  proxy.inject({ kind: 'status', status: 503, body: '<Error><Code>SlowDown</Code></Error>' });
  const got = client.getObject('obj', { maxBytes: 100 });
  const isDeadline = (ms: number): boolean => ms === timeoutMs;
  const isBackoff = (ms: number): boolean => ms < timeoutMs;
  t.timeout(60_000, 'a request never reached the proxy');
  const reached = async (requests: number): Promise<void> => {
    while (proxy.counts.requests < requests) await new Promise((resolve) => setTimeout(resolve, 5));
  };
  // Attempt 1 waits for the held answer until its deadline fires on the clock.
  await reached(1);
  (await clock.nextTimer(isDeadline)).fire();
  // Equal jitter: half the ceiling plus up to half again (ceilings 100, then 150 = the cap).
  const first = await clock.nextTimer(isBackoff);
  t.true(first.ms >= 50 && first.ms <= 100, `first backoff ${first.ms} ms`);
  t.is(client.stats.attempts, 1, 'the retry waits for its backoff');
  first.fire();
  const second = await clock.nextTimer(isBackoff);
  t.true(second.ms >= 75 && second.ms <= 150, `second backoff ${second.ms} ms`);
  t.is(client.stats.attempts, 2);
  t.is(proxy.counts.faulted, 2);
  second.fire();
  t.is(Buffer.from(await got).toString(), 'payload');
  t.like(client.stats, { attempts: 3, retries: 2 });
  t.deepEqual(clock.armed, [], 'no deadline or backoff timer left');
});

test('RGW behind a fault proxy: when the retries run out the error is ERR_LR_SOURCE_UNAVAILABLE with the last cause', async (t) => {
  const s3 = await s3Fixture(t);
  if (s3 === undefined) return;
  const proxy = await FaultProxy.start(s3.rgw.endpoint);
  t.teardown(() => proxy.close());
  const client = new S3Client(
    s3.bucket,
    resolveS3Settings({ ...s3.options, endpoint: proxy.url, retries: 2, backoffBaseMs: 1, backoffCapMs: 5 }),
  );
  t.teardown(() => client.close());
  proxy.inject({ kind: 'status', status: 503, body: '<Error><Code>SlowDown</Code></Error>' }, 3);
  const err = await t.throwsAsync(client.putObject('obj', Buffer.from('x')), {
    code: 'ERR_LR_SOURCE_UNAVAILABLE',
  });
  t.regex(err.message, /3 attempt/);
  t.is((err.cause as S3Error).code, 'ERR_LR_SOURCE_HTTP_5XX');
  t.is((err.cause as S3Error).s3Code, 'SlowDown');
  t.is(await s3.client.headObject('obj'), undefined);
});

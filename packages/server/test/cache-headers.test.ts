/*
 * What caches in front of the server are told (cache-headers.ts), seen by a real HTTP
 * client: curl. Chunk blobs are immutable with a strong ETag, Content-Length and never
 * chunked encoding, and an If-None-Match naming the digest gets a 304; errors are no-store.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { IMMUTABLE } from '../src/cache-headers.js';
import { type Fixture, fixtureTest, serve, toolMissing } from './helpers.js';

const run = promisify(execFile);
const test = fixtureTest();

interface CurlResponse {
  readonly status: number;
  /** Lower-case names; each header once. */
  readonly headers: Map<string, string>;
  readonly body: Buffer;
}

/** `curl` with `args`; the status line, headers and body as it saw them. */
async function curl(url: string, args: readonly string[] = []): Promise<CurlResponse | undefined> {
  let out: { stdout: Buffer };
  try {
    out = await run('curl', ['-sS', '-i', ...args, url], { encoding: 'buffer', maxBuffer: 64 << 20 });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
    throw err;
  }
  const end = out.stdout.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = out.stdout.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: out.stdout.subarray(end + 4) };
}

/** A chunk of the fixture's store: its digest and blob as stored. */
async function someChunk(f: Fixture): Promise<{ hex: string; blob: Buffer }> {
  const chunks = join(f.storeDir, '.chunks');
  for (const prefix of await readdir(chunks)) {
    const [hex] = await readdir(join(chunks, prefix));
    if (hex !== undefined) return { hex, blob: await readFile(join(chunks, prefix, hex)) };
  }
  throw new Error('the fixture store has no chunk');
}

/** The chunk fetches the server counted (its metrics). */
async function chunkFetches(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^liverestore_http_chunk_fetches_total (\d+)$/m.exec(text)![1]);
}

test('a chunk is cacheable for good: immutable, strong ETag, Content-Length, never chunked', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const { hex, blob } = await someChunk(f);
  const got = await curl(`${server.url}/chunks/${hex}`);
  if (got === undefined) {
    toolMissing(t, 'curl');
    return;
  }
  t.is(got.status, 200);
  t.true(got.body.equals(blob));
  t.is(got.headers.get('cache-control'), IMMUTABLE);
  t.is(got.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  t.is(got.headers.get('etag'), `"${hex}"`, 'the digest, quoted: a strong ETag');
  t.is(got.headers.get('content-length'), String(blob.length));
  t.false(got.headers.has('transfer-encoding'));

  const head = (await curl(`${server.url}/chunks/${hex}`, ['-I']))!;
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(blob.length));
  t.false(head.headers.has('transfer-encoding'));
  t.is(head.headers.get('cache-control'), IMMUTABLE);

  const ranged = (await curl(`${server.url}/chunks/${hex}`, ['-r', '10-19']))!;
  t.is(ranged.status, 206);
  t.is(ranged.headers.get('content-length'), '10');
  t.is(ranged.headers.get('cache-control'), IMMUTABLE);
  t.true(ranged.body.equals(blob.subarray(10, 20)));
});

test('If-None-Match naming the digest gets a 304 without a body; another ETag gets the blob', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const { hex, blob } = await someChunk(f);
  const before = await chunkFetches(server.url);
  const notModified = await curl(`${server.url}/chunks/${hex}`, ['-H', `If-None-Match: "${hex}"`]);
  if (notModified === undefined) {
    toolMissing(t, 'curl');
    return;
  }
  t.is(notModified.status, 304);
  t.is(notModified.body.length, 0);
  t.is(notModified.headers.get('etag'), `"${hex}"`);
  t.is(notModified.headers.get('cache-control'), IMMUTABLE);
  const weak = (await curl(`${server.url}/chunks/${hex}`, ['-H', `If-None-Match: "x", W/"${hex}"`]))!;
  t.is(weak.status, 304, 'If-None-Match compares weakly (RFC 9110)');
  t.is(await chunkFetches(server.url), before, 'a 304 sends no blob and counts no fetch');

  const other = (await curl(`${server.url}/chunks/${hex}`, ['-H', `If-None-Match: "${'0'.repeat(64)}"`]))!;
  t.is(other.status, 200);
  t.true(other.body.equals(blob));
  t.is(await chunkFetches(server.url), before + 1);
});

test('errors are never stored; listings and snapshot files are revalidated', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  const missing = await curl(`${server.url}/chunks/${'0'.repeat(64)}`, [
    '-H',
    `If-None-Match: "${'0'.repeat(64)}"`,
  ]);
  if (missing === undefined) {
    toolMissing(t, 'curl');
    return;
  }
  t.is(missing.status, 404, 'a chunk the store lacks is a 404 even to If-None-Match');
  t.is(missing.headers.get('cache-control'), 'no-store');
  t.true(missing.headers.has('content-length'));
  const bad = (await curl(`${server.url}/chunks/xyz`))!;
  t.is(bad.status, 400);
  t.is(bad.headers.get('cache-control'), 'no-store');
  const listing = (await curl(`${server.url}/snapshots`))!;
  t.is(listing.status, 200);
  t.is(listing.headers.get('cache-control'), 'no-cache');
  const manifest = (await curl(`${server.url}/snapshots/${f.snapshot}/index.json.blob`))!;
  t.is(manifest.status, 200);
  t.is(manifest.headers.get('cache-control'), 'no-cache');
  const metrics = (await curl(`${server.url}/metrics`))!;
  t.is(metrics.headers.get('cache-control'), 'no-store');
});

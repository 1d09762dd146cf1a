/*
 * HttpChunkSource against a small test server (fixtures/http-test-server.ts: node:http on
 * 127.0.0.1) that serves a real datastore under the public paths (/snapshots,
 * /snapshots/{type}/{id}/{time}/{file}, /chunks/{hex}) and can be told to misbehave: 503s,
 * reset connections, stall, corrupt a chunk, lie about a body's length, require a token,
 * or go away and come back.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Datastore, SnapshotRef } from '@liverestore/datastore';
import { chunkDigest, toHex } from '@liverestore/format';
import { type ImageSpec, imageBytes, vmImageSet } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  ChunkCache,
  HttpChunkSource,
  type HttpChunkSourceOptions,
  isSourceUrl,
  openSnapshot,
  restoreArchive,
} from '../src/index.js';
import { TestServer } from './fixtures/http-test-server.js';
import { fileSharedStore, MiB, sleep, testDir, uniqueDataChunk, withTimeout } from './helpers.js';

const CHUNK = MiB;

interface Fixture {
  readonly dir: string;
  readonly store: Datastore;
  readonly spec: ImageSpec;
  readonly server: TestServer;
  readonly cache: ChunkCache;
  readonly ref: SnapshotRef;
  /** Opens a source against the server, closed at the end of the test. */
  open(options?: HttpChunkSourceOptions): Promise<HttpChunkSource>;
}

/**
 * One datastore for the whole file (servers only read it; corruption happens on the
 * wire): one 8 MiB (+ a tail) drive in 1 MiB chunks.
 */
const sharedStore = fileSharedStore(
  test,
  'lr-http-store-',
  vmImageSet(7, { drives: 1, sizeBytes: 8 * MiB + 12_345 })[0]!.spec,
  CHUNK,
);

/** The shared datastore behind a fresh test server, a fresh cache and a scratch directory. */
async function setup(t: ExecutionContext): Promise<Fixture> {
  const { store, spec, ref } = await sharedStore();
  const dir = await testDir(t, 'lr-http-');
  const server = await TestServer.start(store);
  t.teardown(() => server.stop());
  const cache = new ChunkCache({ cacheBytes: 16 * MiB, workers: 1 });
  t.teardown(() => cache.close());
  return {
    dir,
    store,
    spec,
    server,
    cache,
    ref,
    async open(options = {}) {
      const source = await HttpChunkSource.open(server.url, options);
      t.teardown(() => source.close());
      return source;
    },
  };
}

function codeOf(err: unknown): string | undefined {
  return (err as { code?: string } | undefined)?.code;
}

/** Digests of the chunks of the image that are not all zero, in index order. */
async function dataChunks(f: Fixture): Promise<string[]> {
  const index = await f.store.readArchiveIndex(f.ref, 'drive-scsi0');
  const zero = toHex(chunkDigest(new Uint8Array(CHUNK)));
  const out: string[] = [];
  for (let i = 0; i < index.chunkCount; i++) {
    const hex = toHex(index.digestAt(i));
    if (hex !== zero) out.push(hex);
  }
  if (out.length === 0) throw new Error('the test image has no data chunk');
  return out;
}

async function restoreAndCompare(
  t: ExecutionContext,
  f: Fixture,
  source: HttpChunkSource,
  onChunk?: () => void,
) {
  const snap = await openSnapshot({ source, snapshot: 'vm/100', cache: f.cache });
  const reader = await snap.openArchive('drive-scsi0');
  const target = join(f.dir, `restored-${Math.random().toString(36).slice(2)}.img`);
  const result = await restoreArchive(reader, target, {
    concurrency: 6,
    ...(onChunk === undefined ? {} : { onProgress: onChunk }),
  });
  t.is(result.sizeBytes, reader.size);
  const restored = await readFile(target);
  t.true(restored.equals(imageBytes(f.spec, 0, reader.size)), 'restored image equals the source image');
  return reader;
}

test('isSourceUrl and option checks', async (t) => {
  t.true(isSourceUrl('http://host:8007'));
  t.true(isSourceUrl('HTTPS://host/prefix/'));
  t.false(isSourceUrl('/srv/store'));
  t.false(isSourceUrl('ftp://host'));
  await t.throwsAsync(HttpChunkSource.open('/srv/store'), { instanceOf: TypeError });
  await t.throwsAsync(HttpChunkSource.open('http://u:p@host'), { instanceOf: TypeError });
  await t.throwsAsync(HttpChunkSource.open('http://host', { retries: -1 }), { instanceOf: RangeError });
  await t.throwsAsync(HttpChunkSource.open('http://host', { timeoutMs: 0 }), { instanceOf: RangeError });
  await t.throwsAsync(HttpChunkSource.open('http://host', { connections: 1.5 }), { instanceOf: RangeError });
  const source = await HttpChunkSource.open('http://127.0.0.1:9/base/');
  t.is(source.name, 'http://127.0.0.1:9/base');
  await source.close();
});

test('a restore over HTTP gives the exact image, with many fetches in flight, and close leaves no socket', async (t) => {
  const f = await setup(t);
  f.server.behaviour.chunkDelayMs = 20;
  const source = await f.open();
  t.deepEqual(await source.listSnapshots(), [f.ref]);
  const reader = await restoreAndCompare(t, f, source);
  t.true(
    f.server.counters.maxActive > 1,
    `concurrent requests on the server: ${f.server.counters.maxActive}`,
  );
  // Several connections, kept alive for more requests (counted, not looked at now:
  // an idle keep-alive connection may already have been closed on a loaded machine).
  const { connections, requests } = f.server.counters;
  t.true(connections > 1 && connections < requests, `${connections} connections for ${requests} requests`);

  // readAt over a chunk boundary, and a fetched blob is a fresh array of its own.
  const buffer = Buffer.alloc(CHUNK);
  t.is(await reader.readAt(buffer, CHUNK / 2), CHUNK);
  t.true(buffer.equals(imageBytes(f.spec, CHUNK / 2, CHUNK)));
  const [hex] = await dataChunks(f);
  const blob = await source.fetchChunk(hex!);
  t.true(blob instanceof Uint8Array);
  t.is(blob.byteOffset, 0);
  t.is(blob.buffer.byteLength, blob.byteLength);
  t.true(Buffer.from(blob).equals(await f.store.readChunk(hex!)));

  await source.close();
  t.true(await f.server.drained(), `sockets left after close: ${f.server.sockets.size}`);
  await t.throwsAsync(source.fetchChunk(hex!), { code: 'ERR_LR_SOURCE_CLOSED' });
});

test('chunks read one after another are fetched into blob memory the cache uses again', async (t) => {
  const f = await setup(t);
  const source = await f.open();
  const snap = await openSnapshot({ source, snapshot: 'vm/100', cache: f.cache });
  const reader = await snap.openArchive('drive-scsi0');
  const buffer = Buffer.alloc(4096);
  for (let at = 0; at < reader.size; at += CHUNK) {
    await reader.readAt(buffer, at);
    t.true(buffer.equals(imageBytes(f.spec, at, 4096)));
  }
  // Each fetch after the first of its size class found the memory of a decoded blob free.
  t.true(
    f.cache.stats().blobMemoryReused > 0,
    `blob memory reused ${f.cache.stats().blobMemoryReused} times`,
  );
});

test('resolveSnapshot, missing snapshots, files and chunks map to stable codes without retries', async (t) => {
  const f = await setup(t);
  const source = await f.open({ retries: 3 });
  t.deepEqual(await source.resolveSnapshot({ type: 'vm', id: '100' }), f.ref);
  t.deepEqual(await source.resolveSnapshot({ type: 'vm', id: '100', time: f.ref.time }), f.ref);
  await t.throwsAsync(source.resolveSnapshot({ type: 'vm', id: '101' }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
  await t.throwsAsync(source.resolveSnapshot({ type: 'vm', id: '100', time: f.ref.time + 1 }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
  await t.throwsAsync(source.readSnapshotFile(f.ref, 'nope.fidx'), {
    code: 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND',
  });
  await t.throwsAsync(source.readSnapshotFile(f.ref, '../x'), { code: 'ERR_LR_SNAPSHOT_FILE_NOT_FOUND' });
  const missing = 'ab'.repeat(32);
  const err = await t.throwsAsync(source.fetchChunk(missing), { code: 'ERR_LR_CHUNK_MISSING' });
  t.true(err.message.includes(missing), err.message);
  t.is(f.server.requestsFor(`/chunks/${missing}`), 1, 'a 404 is not retried');
  await t.throwsAsync(source.fetchChunk('XYZ'), { code: 'ERR_LR_DIGEST_INVALID' });
  await t.throwsAsync(openSnapshot({ source, snapshot: 'vm/999', cache: f.cache }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
  });
});

test('503 twice then OK succeeds after three attempts; always 503 fails naming the attempts', async (t) => {
  const f = await setup(t);
  const [hex] = await dataChunks(f);
  const source = await f.open({ retries: 2 });
  f.server.behaviour.fail503 = 2;
  const blob = await source.fetchChunk(hex!);
  t.true(Buffer.from(blob).equals(await f.store.readChunk(hex!)));
  t.is(f.server.requestsFor(`/chunks/${hex}`), 3, '2 × 503, then OK');

  f.server.behaviour.always503 = true;
  const err = await t.throwsAsync(source.fetchChunk(hex!), { code: 'ERR_LR_SOURCE_UNAVAILABLE' });
  t.regex(err.message, /3 attempts/);
  t.regex(err.message, /503/);
  // The source's `retries` reached the transport: three more requests, not the default
  // budget's. How long each backoff waits is the transport's, tested on a fake clock in
  // http-transport.test.ts (a wall-clock bound here failed a loaded machine at 9.9 s).
  t.is(f.server.requestsFor(`/chunks/${hex}`), 6);
});

test('reset connections are retried', async (t) => {
  const f = await setup(t);
  const [hex] = await dataChunks(f);
  const source = await f.open({ retries: 3 });
  f.server.behaviour.resetNext = 2;
  const blob = await source.fetchChunk(hex!);
  t.true(Buffer.from(blob).equals(await f.store.readChunk(hex!)));
  t.is(f.server.requestsFor(`/chunks/${hex}`), 3);
});

test.serial(
  'a stalled server times out, is retried, then fails with ERR_LR_SOURCE_UNAVAILABLE',
  async (t) => {
    const f = await setup(t);
    const [hex] = await dataChunks(f);
    const source = await f.open({ timeoutMs: 200, retries: 2 });
    f.server.behaviour.stall = true;
    // The schedule of deadlines and backoff sleeps is checked on a fake clock in
    // http-transport.test.ts; here the real timers end a real stall.
    const err = await t.throwsAsync(withTimeout(source.fetchChunk(hex!), 20_000, 'stalled fetch'), {
      code: 'ERR_LR_SOURCE_UNAVAILABLE',
    });
    t.regex(err.message, /3 attempts/);
    t.regex(err.message, /ERR_LR_SOURCE_TIMEOUT|200 ms/);
    t.is(f.server.requestsFor(`/chunks/${hex}`), 3);
  },
);

test('an abort during a stall rejects with the signal reason; an aborted signal rejects at once', async (t) => {
  const f = await setup(t);
  const [hex] = await dataChunks(f);
  // Ten minutes per attempt: only the abort can end the fetch (aborts in a backoff sleep are
  // checked on a fake clock in http-transport.test.ts).
  const source = await f.open({ timeoutMs: 600_000, retries: 20 });
  f.server.behaviour.stall = true;
  const stalled = new AbortController();
  const reason = new Error('user gave up');
  const fetch = source.fetchChunk(hex!, stalled.signal);
  await until(() => f.server.requestsFor(`/chunks/${hex}`) === 1);
  stalled.abort(reason);
  t.is(
    await withTimeout(
      fetch.catch((err: unknown) => err),
      20_000,
      'abort in stall',
    ),
    reason,
  );
  await t.throwsAsync(source.fetchChunk(hex!, AbortSignal.abort(reason)), { is: reason });
  await source.close();
});

test('a server restarted mid-restore: the restore completes with the correct image', async (t) => {
  const f = await setup(t);
  f.server.behaviour.chunkDelayMs = 30;
  // Backoff has full jitter: enough retries that the sleeps outlast a 300 ms outage.
  const source = await f.open({ retries: 8 });
  const port = f.server.port;
  let restarted: Promise<TestServer> | undefined;
  let requestsBeforeRestart = 0;
  await restoreAndCompare(t, f, source, () => {
    restarted ??= (async () => {
      requestsBeforeRestart = f.server.counters.requests;
      await f.server.stop();
      await sleep(300);
      const again = await TestServer.start(f.store, port, f.server.behaviour, f.server.counters);
      t.teardown(() => again.stop());
      return again;
    })();
  });
  t.not(restarted, undefined);
  const again = await restarted!;
  t.true(again.counters.requests > requestsBeforeRestart, 'the new server served the rest of the restore');
  await source.close();
  t.true(await again.drained());
});

test('a corrupted chunk fails only the reads that touch it, naming the digest', async (t) => {
  const f = await setup(t);
  const source = await f.open();
  const snap = await openSnapshot({ source, snapshot: 'vm/100', cache: f.cache });
  const reader = await snap.openArchive('drive-scsi0', { readaheadChunks: 0 });
  const { i, hex } = uniqueDataChunk(reader.index, reader);
  f.server.behaviour.corrupt.add(hex);
  for (const [offset, length] of [
    [i * CHUNK - 100, 200],
    [i * CHUNK + 10, 20],
  ] as const) {
    const err = await t.throwsAsync(reader.readAt(Buffer.alloc(length), offset));
    t.true(['ERR_LR_BLOB_CRC_MISMATCH', 'ERR_LR_DIGEST_MISMATCH'].includes(codeOf(err) ?? ''), codeOf(err));
    t.true(err!.message.includes(hex), err!.message);
  }
  for (const offset of [0, (i - 1) * CHUNK, (i + 1) * CHUNK]) {
    const buffer = Buffer.alloc(CHUNK);
    await reader.readAt(buffer, offset);
    t.true(buffer.equals(imageBytes(f.spec, offset, CHUNK)));
  }
  f.server.behaviour.corrupt.clear();
  const buffer = Buffer.alloc(CHUNK);
  await reader.readAt(buffer, i * CHUNK);
  t.true(buffer.equals(imageBytes(f.spec, i * CHUNK, CHUNK)));
});

test('a body over the limit is refused without buffering or retrying', async (t) => {
  const f = await setup(t);
  const [hex] = await dataChunks(f);
  const source = await f.open();
  f.server.behaviour.huge.add(hex!);
  const err = await t.throwsAsync(source.fetchChunk(hex!), { code: 'ERR_LR_SOURCE_RESPONSE_TOO_LARGE' });
  t.regex(err.message, /limit/);
  t.is(f.server.requestsFor(`/chunks/${hex}`), 1);
});

test('a wrong or missing token fails with ERR_LR_UNAUTHORIZED, the right one works', async (t) => {
  const f = await setup(t);
  f.server.behaviour.token = 'right-token';
  for (const options of [{}, { token: 'wrong-token' }]) {
    const source = await f.open({ ...options, retries: 3 });
    await t.throwsAsync(openSnapshot({ source, snapshot: 'vm/100', cache: f.cache }), {
      code: 'ERR_LR_UNAUTHORIZED',
    });
  }
  t.is(f.server.requestsFor('/snapshots'), 2, 'a 401 is not retried');
  const source = await f.open({ token: 'right-token' });
  const snap = await openSnapshot({ source, snapshot: 'vm/100', cache: f.cache });
  const reader = await snap.openArchive('drive-scsi0');
  const buffer = Buffer.alloc(1000);
  await reader.readAt(buffer, 5000);
  t.true(buffer.equals(imageBytes(f.spec, 5000, 1000)));
});

test('https: the server certificate is checked against tls.ca or tls.fingerprint, or not when rejectUnauthorized is false', async (t) => {
  const { store, ref } = await sharedStore();
  const fixture = (name: string): Promise<Buffer> =>
    readFile(new URL(`../../test/fixtures/${name}`, import.meta.url));
  const cert = await fixture('http-tls-cert.pem');
  const server = await TestServer.start(store, 0, undefined, undefined, {
    key: await fixture('http-tls-key.pem'),
    cert,
  });
  t.teardown(() => server.stop());
  t.true(server.url.startsWith('https://'));
  const open = async (options: HttpChunkSourceOptions): Promise<HttpChunkSource> => {
    const source = await HttpChunkSource.open(server.url, { retries: 2, ...options });
    t.teardown(() => source.close());
    return source;
  };
  const fingerprint = new X509Certificate(cert).fingerprint256;
  const untrusted = await open({});
  const err = await t.throwsAsync(untrusted.listSnapshots(), { code: 'ERR_LR_TLS_UNTRUSTED' });
  t.true(err.message.includes(`--fingerprint ${fingerprint}`), err.message);
  t.is(server.counters.requests, 0, 'not retried, nothing reached the server');
  t.deepEqual(await (await open({ tls: { ca: cert } })).listSnapshots(), [ref]);
  t.deepEqual(await (await open({ tls: { fingerprint } })).listSnapshots(), [ref]);
  await t.throwsAsync((await open({ tls: { fingerprint: 'ab'.repeat(32) } })).listSnapshots(), {
    code: 'ERR_LR_TLS_FINGERPRINT',
  });
  t.deepEqual(await (await open({ tls: { rejectUnauthorized: false } })).listSnapshots(), [ref]);
});

// Serial (ava runs these first, alone): the timing must not suffer from other tests' CPU work.
test.serial(
  'fetches beyond the pool size queue without eating into their timeout; the server never sees more',
  async (t) => {
    const f = await setup(t);
    const chunks = await dataChunks(f);
    f.server.behaviour.chunkDelayMs = 100;
    const source = await f.open({ connections: 2, timeoutMs: 1000, retries: 0 });
    const wanted = Array.from({ length: 30 }, (_, i) => chunks[i % chunks.length]!);
    const started = Date.now();
    const blobs = await Promise.all(wanted.map((hex) => source.fetchChunk(hex)));
    t.true(Date.now() - started >= 1500, 'the fetches were queued (30 × 100 ms over 2 connections)');
    for (const [i, blob] of blobs.entries()) {
      t.true(Buffer.from(blob).equals(await f.store.readChunk(wanted[i]!)));
    }
    t.is(f.server.counters.maxActive, 2);
    t.true(f.server.sockets.size <= 2);
  },
);

test('close() stops fetches in flight and waiting ones with ERR_LR_SOURCE_CLOSED', async (t) => {
  const f = await setup(t);
  const [hex] = await dataChunks(f);
  const source = await f.open({ connections: 1 });
  f.server.behaviour.stall = true;
  const fetches = [source.fetchChunk(hex!), source.fetchChunk(hex!)];
  // One request on the wire (one connection), the other waiting for it.
  await until(() => f.server.requestsFor(`/chunks/${hex}`) === 1);
  await source.close();
  for (const fetch of fetches)
    await t.throwsAsync(withTimeout(fetch, 20_000, 'fetch after close'), { code: 'ERR_LR_SOURCE_CLOSED' });
  t.true(await f.server.drained());
});

test('a malformed or oversized snapshot list is an error, not a partial answer', async (t) => {
  const f = await setup(t);
  const source = await f.open();
  for (const body of [
    'not json',
    '{"snapshots": []}',
    '[{"type":"vm","id":"../../etc","time":1}]',
    '[{"type":"vm","id":"100","time":"yesterday"}]',
    '[{"type":"disk","id":"100","time":1}]',
  ]) {
    f.server.behaviour.listingBody = body;
    await t.throwsAsync(source.listSnapshots(), { code: 'ERR_LR_SOURCE_BAD_RESPONSE' }, body);
  }
  f.server.behaviour.listingBody = JSON.stringify([
    { type: 'vm', id: '100', time: 20 },
    { type: 'ct', id: '7', time: 5 },
    { type: 'vm', id: '100', time: 10, extra: true },
  ]);
  t.deepEqual(await source.listSnapshots(), [
    { type: 'vm', id: '100', time: 10 },
    { type: 'vm', id: '100', time: 20 },
    { type: 'ct', id: '7', time: 5 },
  ]);
  t.deepEqual(await source.resolveSnapshot({ type: 'vm', id: '100' }), { type: 'vm', id: '100', time: 20 });
  // 64 MiB and one more byte, streamed without a Content-Length.
  f.server.behaviour.listingBody = `[${' '.repeat(64 * MiB)}]`;
  await t.throwsAsync(source.listSnapshots(), { code: 'ERR_LR_SOURCE_RESPONSE_TOO_LARGE' });
});

/** Polls `condition` every 5 ms for up to 5 s. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await sleep(5);
  if (!condition()) throw new Error('condition not reached within 5 s');
}

test('a background fetch makes way for an urgent one and resumes with Range where it was cut', async (t) => {
  const f = await setup(t);
  f.server.behaviour.ranges = true;
  f.server.behaviour.bodyPieceDelayMs = 20;
  const source = await f.open();
  // The largest blob goes in the background: it takes many 64 KiB pieces to arrive.
  const sizes = new Map<string, number>();
  for (const hex of await dataChunks(f)) sizes.set(hex, (await f.store.readChunk(hex)).byteLength);
  const [slow, urgent] = [...sizes.keys()].sort((a, b) => sizes.get(b)! - sizes.get(a)!);
  t.true(sizes.get(slow!)! > 6 * 64 * 1024, 'the test image has a blob of several pieces');
  const events = f.server.counters.events;
  const background = source.fetchChunk(slow!, undefined, { urgent: false });
  // Part of the background blob has arrived: now a reader waits for another chunk.
  await until(() => events.includes(`sent /chunks/${slow} ${2 * 64 * 1024}`));
  const first = await source.fetchChunk(urgent!);
  // Nothing of the background blob was asked for again while the urgent fetch ran.
  const startsOfSlow = (): string[] => events.filter((e) => e.startsWith(`start /chunks/${slow}`));
  t.is(startsOfSlow().length, 1, events.join('\n'));
  const blob = await background;
  t.deepEqual(Buffer.from(first), Buffer.from(await f.store.readChunk(urgent!)));
  t.deepEqual(
    Buffer.from(blob),
    Buffer.from(await f.store.readChunk(slow!)),
    'the resumed blob is whole and exact',
  );
  const slowStarts = startsOfSlow();
  t.is(slowStarts.length, 2, `one cut and one resumed request: ${slowStarts.join(', ')}`);
  const resumedAt = Number(/bytes=(\d+)-$/.exec(slowStarts[1]!)?.[1]);
  t.true(resumedAt > 0, 'the second request starts after the bytes already received');
  // The background request was cut before the urgent answer was complete.
  const at = (e: string): number => events.indexOf(e);
  t.true(at(`end /chunks/${slow}`) < at(`end /chunks/${urgent}`));
});

test('background fetches use at most backgroundFetches requests; a server without Range support still works', async (t) => {
  const f = await setup(t);
  f.server.behaviour.bodyPieceDelayMs = 2;
  const source = await f.open({ backgroundFetches: 2 });
  const chunks = await dataChunks(f);
  const blobs = await Promise.all(chunks.map((hex) => source.fetchChunk(hex, undefined, { urgent: false })));
  for (const [i, hex] of chunks.entries())
    t.deepEqual(Buffer.from(blobs[i]!), Buffer.from(await f.store.readChunk(hex)));
  t.is(f.server.counters.maxActive, Math.min(2, chunks.length));
  t.true(f.server.counters.events.every((e) => !e.startsWith('start') || e.endsWith('bytes=0-')));
  await t.throwsAsync(HttpChunkSource.open(f.server.url, { backgroundFetches: 0 }), {
    instanceOf: RangeError,
  });
});

test('a 206 whose Content-Range does not match the request is ERR_LR_SOURCE_BAD_RESPONSE, not retried', async (t) => {
  const f = await setup(t);
  f.server.behaviour.ranges = true;
  f.server.behaviour.badContentRange = true;
  const source = await f.open();
  const [hex] = await dataChunks(f);
  await t.throwsAsync(source.fetchChunk(hex!, undefined, { urgent: false }), {
    code: 'ERR_LR_SOURCE_BAD_RESPONSE',
    message: /Content-Range/,
  });
  t.is(f.server.requestsFor(`/chunks/${hex}`), 1);
});

/*
 * Real clients and faults against the chunk server: qemu-img's curl block driver, a restore
 * that survives a server restart, slow readers next to fast ones, and hostile request lines
 * sent over a raw socket (no client normalises the path first). Everything talks to
 * 127.0.0.1 with port-0 servers; tests are serial so timings and RSS are not mixed up.
 */

import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import { imageBytes, requireTool, tempDir } from '@liverestore/testkit';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { pino } from 'pino';
import type { ChunkServer } from '../src/index.js';
import {
  errorOf,
  type Fixture,
  KiB,
  MiB,
  makeFixture,
  prng,
  rawRequest,
  serve,
  toolMissing,
} from './helpers.js';

const run = promisify(execFile);
const test = anyTest as TestFn<{ fixture: Fixture }>;

/** drive-scsi0: a multiple of 512 (qemu's block layer counts sectors) but not of the 1 MiB chunk. */
const SIZE0 = 24 * MiB + 3 * 512;
/** drive-scsi1: neither a multiple of the chunk size nor of 512. */
const SIZE1 = 48 * MiB + 12_345;

test.before(async (t) => {
  t.context.fixture = await makeFixture([SIZE0, SIZE1]);
});
test.after.always(async (t) => {
  await t.context.fixture?.cleanup();
});

interface RawAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: Buffer;
}

/** Writes `requestText` on a fresh TCP connection and reads until the server closes it (send `Connection: close`). */
function rawExchange(base: string, requestText: string | Buffer, timeoutMs = 5000): Promise<RawAnswer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    // write, not end: Node's HTTP server aborts a response in progress when the client half-closes.
    socket.on('connect', () => socket.write(requestText));
    socket.on('data', (p: Buffer) => parts.push(p));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(parts);
      const split = all.indexOf('\r\n\r\n');
      const head = (split === -1 ? all : all.subarray(0, split)).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, body: split === -1 ? Buffer.alloc(0) : all.subarray(split + 4) });
    });
  });
}

/** A GET request line and headers, exactly as written, with `Connection: close`. */
function rawGet(path: string, headers: Record<string, string> = {}): string {
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The value of `name` in a Prometheus text exposition line with these labels (0 when absent). */
function metricValue(text: string, name: string, labels: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(labels)) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// 1. qemu-img through the curl block driver
// ---------------------------------------------------------------------------------------------

test.serial('qemu-img convert reads the image over http:// byte for byte', async (t) => {
  t.timeout(60_000);
  if (!requireTool(t, 'qemu-img')) return;
  const f = t.context.fixture;
  const server = await serve(t, f);
  const dir = await tempDir('lr-qemu-');
  t.teardown(() => dir.cleanup());
  const out = join(dir.path, 'out.raw');
  const url = `${server.url}/snapshots/${f.snapshot}/drive-scsi0.img`;
  const started = performance.now();
  try {
    // -m 1: one coroutine. With its default 8, QEMU's curl driver stalled in about 1 of 12
    // conversions on a loaded 2-core machine: every request answered and acknowledged
    // (ss showed empty queues on both ends), qemu-img waiting on nothing; 60 of 60 with -m 1.
    await run('qemu-img', ['convert', '-m', '1', '-f', 'raw', '-O', 'raw', url, out], { timeout: 45_000 });
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '');
    // qemu-utils without qemu-block-extra has no curl driver: the tool is effectively missing.
    if (/Unknown protocol|unknown protocol|curl/i.test(stderr) && /protocol|driver|module/i.test(stderr)) {
      if (toolMissing(t, 'qemu-img http:// driver (qemu-block-extra)')) return;
    }
    const { signal, killed, code } = err as { signal?: unknown; killed?: unknown; code?: unknown };
    throw new Error(
      `qemu-img convert failed (code ${String(code)}, signal ${String(signal)}, killed ${String(killed)}): ${stderr}`,
    );
  }
  t.log(`qemu-img convert of ${SIZE0} bytes took ${Math.round(performance.now() - started)} ms`);
  t.is((await stat(out)).size, SIZE0);
  const got = await readFile(out);
  t.true(got.equals(imageBytes(f.drives[0]!.spec, 0, SIZE0)), 'out.raw equals the source image');

  // `qemu-img info` sees the right virtual size through HEAD.
  const { stdout } = await run('qemu-img', ['info', '--output=json', '-f', 'raw', url], { timeout: 15_000 });
  t.is((JSON.parse(stdout) as { 'virtual-size': number })['virtual-size'], SIZE0);

  // Documented limits of qemu's curl driver (not server bugs):
  // - its block layer counts 512-byte sectors: an image of another size is seen rounded up
  //   (convert then writes zeros past the end, which works because the server clamps the range);
  const odd = `${server.url}/snapshots/${f.snapshot}/drive-scsi1.img`;
  const { stdout: oddInfo } = await run('qemu-img', ['info', '--output=json', '-f', 'raw', odd], {
    timeout: 15_000,
  });
  t.is((JSON.parse(oddInfo) as { 'virtual-size': number })['virtual-size'], Math.ceil(SIZE1 / 512) * 512);
  // - it needs `Accept-Ranges: bytes` on HEAD, which raw snapshot files (.fidx) send too;
  const fidx = `${server.url}/snapshots/${f.snapshot}/drive-scsi0.img.fidx`;
  const fidxBytes = Number((await fetch(fidx, { method: 'HEAD' })).headers.get('content-length'));
  const { stdout: fidxInfo } = await run('qemu-img', ['info', '--output=json', '-f', 'raw', fidx], {
    timeout: 15_000,
  });
  t.is(
    (JSON.parse(fidxInfo) as { 'virtual-size': number })['virtual-size'],
    Math.ceil(fidxBytes / 512) * 512,
  );
  // - it cannot send `Authorization: Bearer` (only Basic auth and cookies): with a plain URL a token server is 401…
  const guarded = await serve(t, f, { token: 'qemu-token' });
  const denied = await run(
    'qemu-img',
    ['info', '-f', 'raw', `${guarded.url}/snapshots/${f.snapshot}/drive-scsi0.img`],
    {
      timeout: 15_000,
    },
  ).catch((err: unknown) => err);
  t.regex(String((denied as { stderr?: unknown }).stderr), /401/);
  // …so the server also takes the token as a Basic-auth password, which qemu can send.
  const spec = JSON.stringify({
    'file.driver': 'http',
    'file.url': `${guarded.url}/snapshots/${f.snapshot}/drive-scsi0.img`,
    'file.username': 'qemu',
    'file.password-secret': 'sec0',
  });
  const { stdout: allowed } = await run(
    'qemu-img',
    ['info', '--output=json', '--object', 'secret,id=sec0,data=qemu-token', `json:${spec}`],
    { timeout: 15_000 },
  );
  t.is((JSON.parse(allowed) as { 'virtual-size': number })['virtual-size'], SIZE0);
});

// ---------------------------------------------------------------------------------------------
// 2. A restore over HTTP survives the server going away and coming back on the same port
// ---------------------------------------------------------------------------------------------

test.serial('a restore over HTTP completes across a server restart on the same port', async (t) => {
  t.timeout(40_000);
  const f = t.context.fixture;
  const first = await serve(t, f);
  const port = first.port;
  const cache = new ChunkCache({ cacheBytes: 8 * MiB, workers: 0 });
  t.teardown(() => cache.close());
  const snapshot = await openSnapshot({
    source: first.url,
    snapshot: 'vm/100',
    cache,
    http: { retries: 8, timeoutMs: 2000 },
  });
  t.teardown(() => snapshot.close());
  const reader = await snapshot.openArchive('drive-scsi1.img');
  t.is(reader.size, SIZE1);
  const dir = await tempDir('lr-restart-');
  t.teardown(() => dir.cleanup());
  const out = join(dir.path, 'restored.raw');

  let second: ChunkServer | undefined;
  let restart: Promise<void> | undefined;
  let downAt = -1;
  let closedMs = 0;
  const started = performance.now();
  const result = await restoreArchive(reader, out, {
    concurrency: 4,
    onProgress: ({ bytesDone, bytesTotal }) => {
      if (restart !== undefined || bytesDone < bytesTotal * 0.3) return;
      downAt = bytesDone;
      restart = (async () => {
        const t0 = performance.now();
        await first.close();
        closedMs = performance.now() - t0;
        await sleep(300);
        second = await serve(t, f, { listen: { host: '127.0.0.1', port } });
      })();
    },
  });
  await restart;
  const seconds = (performance.now() - started) / 1000;
  t.log(
    `restore of ${SIZE1} bytes took ${seconds.toFixed(2)} s; server closed at ${downAt} bytes ` +
      `(close() took ${Math.round(closedMs)} ms), restarted on port ${port}`,
  );
  t.true(downAt > 0 && downAt < SIZE1, 'the server went down mid-restore');
  t.not(second, undefined);
  t.is(second!.port, port);
  t.is(result.sizeBytes, SIZE1);
  const got = await readFile(out);
  t.is(got.length, SIZE1);
  t.true(got.equals(imageBytes(f.drives[1]!.spec, 0, SIZE1)), 'the restored image equals the source');
  // The restarted server really did serve part of the restore.
  const metrics = (await rawRequest(second!.url, '/metrics')).body.toString('utf8');
  const chunksServed = metricValue(metrics, 'liverestore_http_requests_total', 'route="chunk"');
  t.log(`the restarted server served ${chunksServed} chunk requests`);
  t.true(chunksServed > 0);
});

/** Milliseconds the server stays down in the CLI restart test (see the test's comment). */
const CLI_DOWN_MS = Number(process.env.LR_CLI_DOWN_MS ?? 50);

test.serial('the real CLI restores over HTTP across a server restart', async (t) => {
  t.timeout(40_000);
  const f = t.context.fixture;
  const cli = join(import.meta.dirname, '..', '..', '..', 'cli', 'bin', 'liverestore.js');
  const dir = await tempDir('lr-restart-cli-');
  t.teardown(() => dir.cleanup());
  const out = join(dir.path, 'restored.raw');
  // Count the chunk answers (whole blobs or pieces) of the first server through its access log: the CLI's progress.
  let chunksServed = 0;
  let onChunk: (() => void) | undefined;
  const log = {
    write(line: string): void {
      if (line.includes('"path":"/chunks/') && /"status":20[06]/.test(line)) {
        chunksServed++;
        onChunk?.();
      }
    },
  };
  const first = await serve(t, f, { logger: pino({ level: 'info' }, log) });
  const port = first.port;
  // ~30 % of drive-scsi1's 49 chunks (some are all-zero and never fetched).
  const restarted = new Promise<ChunkServer>((resolve, reject) => {
    onChunk = () => {
      if (chunksServed !== 12) return;
      onChunk = undefined;
      (async () => {
        await first.close();
        await sleep(CLI_DOWN_MS);
        return serve(t, f, { listen: { host: '127.0.0.1', port } });
      })().then(resolve, reject);
    };
  });
  const started = performance.now();
  const child = run(
    process.execPath,
    [
      cli,
      'restore',
      '--from',
      first.url,
      'vm/100',
      'drive-scsi1.img',
      '--out',
      out,
      '--workers',
      '1',
      '--cache-size',
      '8MiB',
      '--json',
    ],
    { timeout: 30_000 },
  );
  const { stdout } = await child;
  const summaryJson = JSON.parse(stdout) as { archives: { sizeBytes: number }[] };
  t.is(summaryJson.archives[0]?.sizeBytes, SIZE1);
  const seconds = (performance.now() - started) / 1000;
  const second = await Promise.race([restarted, sleep(5000).then(() => undefined)]);
  t.not(second, undefined, 'the server was restarted mid-restore');
  t.log(
    `CLI restore took ${seconds.toFixed(2)} s with the server down ${CLI_DOWN_MS} ms after ${chunksServed} chunks`,
  );
  const got = await readFile(out);
  t.is(got.length, SIZE1);
  t.true(got.equals(imageBytes(f.drives[1]!.spec, 0, SIZE1)), 'the restored image equals the source');
});

// ---------------------------------------------------------------------------------------------
// 3. 100 slow readers next to 100 fast range clients
// ---------------------------------------------------------------------------------------------

interface SlowReader {
  readonly socket: Socket;
  /** Resolves with the status code once the status line arrived. */
  readonly status: Promise<number>;
  bytes(): number;
  stop(): void;
}

/** Requests the whole image on a raw socket, then reads ~4 KiB every 100 ms (the rest stays in the kernel). */
function slowReader(base: string, path: string): SlowReader {
  const url = new URL(base);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  let got = 0;
  let timer: NodeJS.Timeout | undefined;
  const status = new Promise<number>((resolve, reject) => {
    let seen = false;
    socket.once('connect', () => socket.write(rawGet(path)));
    socket.on('error', reject);
    socket.on('close', () => resolve(0));
    const readSome = (): void => {
      const n = Math.min(4 * KiB, socket.readableLength);
      const chunk = n > 0 ? (socket.read(n) as Buffer | null) : null;
      if (chunk === null) return;
      got += chunk.length;
      if (!seen) {
        seen = true;
        resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(chunk.toString('latin1'))?.[1] ?? 0));
      }
    };
    // Paused mode: nothing is read unless read() is called, so the socket's buffers fill up.
    socket.once('readable', () => {
      readSome();
      timer = setInterval(readSome, 100);
    });
  });
  status.catch(() => undefined);
  return {
    socket,
    status,
    bytes: () => got,
    stop() {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

interface FastResult {
  readonly status: number;
  readonly ms: number;
  readonly retryAfter: string | undefined;
  readonly ok: boolean;
}

/** 100 concurrent GETs of random 64 KiB ranges on their own agent; each with its latency. */
async function fastClients(
  server: ChunkServer,
  f: Fixture,
  seed: number,
  count = 100,
): Promise<FastResult[]> {
  const agent = new Agent({ keepAlive: false, maxSockets: 200 });
  const random = prng(seed);
  const url = new URL(server.url);
  const path = `/snapshots/${f.snapshot}/drive-scsi0.img`;
  try {
    return await Promise.all(
      Array.from({ length: count }, () => {
        const start = Math.floor(random() * (SIZE0 - 64 * KiB));
        const end = start + 64 * KiB - 1;
        const t0 = performance.now();
        return new Promise<FastResult>((resolve, reject) => {
          const req = httpRequest(
            {
              host: url.hostname,
              port: url.port,
              path,
              agent,
              // Another client address than the slow readers' (each address has its own share).
              localAddress: '127.0.0.2',
              headers: { range: `bytes=${start}-${end}` },
            },
            (res) => {
              const parts: Buffer[] = [];
              res.on('data', (p: Buffer) => parts.push(p));
              res.on('error', reject);
              res.on('end', () => {
                const body = Buffer.concat(parts);
                const status = res.statusCode ?? 0;
                const ok =
                  status === 206
                    ? body.equals(imageBytes(f.drives[0]!.spec, start, end - start + 1))
                    : status === 503 && errorOf(body).code === 'ERR_LR_HTTP_BUSY';
                const retryAfter = res.headers['retry-after'];
                resolve({ status, ms: performance.now() - t0, retryAfter, ok });
              });
            },
          );
          req.setTimeout(10_000, () => req.destroy(new Error('fast client timed out')));
          req.on('error', reject);
          req.end();
        });
      }),
    );
  } finally {
    agent.destroy();
  }
}

function summary(results: readonly FastResult[]): string {
  const by = new Map<number, number>();
  for (const r of results) by.set(r.status, (by.get(r.status) ?? 0) + 1);
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  const statuses = [...by].map(([s, n]) => `${n}×${s}`).join(' ');
  return `${statuses}; latency p50 ${Math.round(ms[ms.length >> 1] ?? 0)} ms, max ${Math.round(ms.at(-1) ?? 0)} ms`;
}

async function slowAndFast(
  t: ExecutionContext<{ fixture: Fixture }>,
  maxConcurrentRequests: number | undefined,
): Promise<{ slowStatuses: number[]; fast: FastResult[]; rssGrowth: number }> {
  const f = t.context.fixture;
  // One address may hold half of the slots by default; these slow readers are meant to fill them all.
  const server = await serve(
    t,
    f,
    maxConcurrentRequests === undefined
      ? {}
      : { maxConcurrentRequests, maxRequestsPerClient: maxConcurrentRequests },
  );
  const path = `/snapshots/${f.snapshot}/drive-scsi0.img`;
  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const slow = Array.from({ length: 100 }, () => slowReader(server.url, path));
  t.teardown(() => {
    for (const s of slow) s.stop();
  });
  const slowStatuses = await Promise.all(slow.map((s) => s.status));
  // Let the slow responses fill every buffer between server and client.
  await sleep(1000);
  const fast = await fastClients(server, f, 7);
  const rssPeak = process.memoryUsage().rss;
  const slowBytes = slow.reduce((n, s) => n + s.bytes(), 0);
  for (const s of slow) s.stop();
  t.log(
    `max ${maxConcurrentRequests ?? 'default (256)'}: slow readers got ${countOf(slowStatuses)}, read ${slowBytes} bytes ` +
      `in all; fast clients: ${summary(fast)}; RSS +${((rssPeak - rssBefore) / MiB).toFixed(1)} MiB`,
  );
  // Afterwards the server serves normally again.
  await sleep(200);
  const after = await fastClients(server, f, 8, 20);
  t.log(`after the slow readers left: ${summary(after)}`);
  t.true(
    after.every((r) => r.status === 206 && r.ok),
    'every request after the slow readers left is a correct 206',
  );
  return { slowStatuses, fast, rssGrowth: rssPeak - rssBefore };
}

function countOf(statuses: readonly number[]): string {
  const by = new Map<number, number>();
  for (const s of statuses) by.set(s, (by.get(s) ?? 0) + 1);
  return [...by].map(([s, n]) => `${n}×${s}`).join(' ');
}

test.serial(
  '100 slow readers with a limit of 64: fast clients get 206 or 503 + Retry-After at once, never hang',
  async (t) => {
    t.timeout(30_000);
    const { slowStatuses, fast, rssGrowth } = await slowAndFast(t, 64);
    // The first 64 hold every slot (200), the other 36 are turned away.
    t.is(slowStatuses.filter((s) => s === 200).length, 64);
    t.is(slowStatuses.filter((s) => s === 503).length, 36);
    for (const r of fast) {
      t.true(r.ok, `status ${r.status} with a correct body`);
      if (r.status === 503) t.is(r.retryAfter, '1');
      t.true(r.ms < 5000, `answered in ${Math.round(r.ms)} ms`);
    }
    t.true(rssGrowth < 256 * MiB, `RSS grew by ${rssGrowth} bytes`);
  },
);

test.serial('100 slow readers under the default limit do not slow 100 fast range clients down', async (t) => {
  t.timeout(30_000);
  const { slowStatuses, fast, rssGrowth } = await slowAndFast(t, undefined);
  t.true(
    slowStatuses.every((s) => s === 200),
    'every slow reader is served',
  );
  for (const r of fast) {
    t.is(r.status, 206);
    t.true(r.ok, 'exactly the requested bytes');
    t.true(r.ms < 5000, `answered in ${Math.round(r.ms)} ms`);
  }
  t.true(rssGrowth < 256 * MiB, `RSS grew by ${rssGrowth} bytes`);
});

// ---------------------------------------------------------------------------------------------
// 4. Security over the wire
// ---------------------------------------------------------------------------------------------

test.serial(
  'over a raw socket: every data path needs the token, hostile paths are 4xx, the server keeps serving',
  async (t) => {
    t.timeout(20_000);
    const f = t.context.fixture;
    const token = 'wire-token';
    const server = await serve(t, f, { token });
    const auth = { authorization: `Bearer ${token}` };
    const snap = `/snapshots/${f.snapshot}`;
    const digest = (await readFile(join(f.storeDir, f.snapshot, 'drive-scsi0.img.fidx'))).subarray(
      4096,
      4096 + 32,
    );
    const chunk = `/chunks/${digest.toString('hex')}`;

    // The chunk digest read from the index exists: with the token it is served.
    const chunkOk = await rawExchange(server.url, rawGet(chunk, auth));
    t.is(chunkOk.status, 200, chunk);

    for (const path of [
      '/snapshots',
      `${snap}/index.json.blob`,
      `${snap}/drive-scsi0.img.fidx`,
      chunk,
      `${snap}/drive-scsi0.img`,
    ]) {
      for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: token }]) {
        const res = await rawExchange(server.url, rawGet(path, headers));
        t.is(res.status, 401, `${path} ${JSON.stringify(headers)}`);
        t.regex(res.head, /\r\nwww-authenticate: Bearer/i);
        t.is(errorOf(res.body).code, 'ERR_LR_HTTP_UNAUTHORIZED');
      }
      const ok = await rawExchange(server.url, rawGet(path, { ...auth, range: 'bytes=0-99' }));
      t.true(ok.status === 200 || ok.status === 206, `${path} with the token: ${ok.status}`);
    }
    t.is((await rawExchange(server.url, rawGet('/metrics'))).status, 200, '/metrics is open');

    const hostile: Array<[string, number[]]> = [
      ['/chunks/../../etc/passwd', [400, 404]],
      ['/chunks/%2e%2e%2f%2e%2e%2fetc%2fpasswd', [400]],
      ['/chunks/%2E%2E/%2E%2E/etc/passwd', [400]],
      ['/snapshots/vm/100/..%2f..%2f..%2fetc/passwd', [400]],
      ['/snapshots/vm/100/../../../../etc/passwd', [400]],
      [`${snap}/..%5c..%5cindex.json.blob`, [400]],
      [`${snap}/index.json.blob%00.img`, [400]],
      [`${snap}/%c0%ae%c0%ae`, [400]],
      ['/chunks/%', [400]],
      ['//etc/passwd', [400]],
      ['/chunks/', [400, 404]],
      [`/chunks/${'A'.repeat(64)}`, [400]],
      [`/chunks/${'0'.repeat(63)}`, [400]],
      [`/chunks/${'0'.repeat(65)}`, [400]],
      [`/chunks/${'g'.repeat(64)}`, [400]],
      [`/chunks/${'0'.repeat(64)}`, [404]],
      [`/chunks/${'0'.repeat(62)}%30%30`, [200, 400, 404]],
      [`/${'a'.repeat(2000)}`, [400]],
      [`/chunks/${'a'.repeat(64 * KiB)}`, [400, 414, 431]],
      ['http://evil.example/etc/passwd', [400, 404]],
      ['*', [400, 404]],
    ];
    const seen: string[] = [];
    for (const [path, allowed] of hostile) {
      const res = await rawExchange(server.url, rawGet(path, auth));
      seen.push(`${path.length > 40 ? `${path.slice(0, 30)}…(${path.length})` : path} → ${res.status}`);
      t.true(allowed.includes(res.status), `${path.slice(0, 80)}: ${res.status} (want ${allowed.join('|')})`);
      const text = res.body.toString('latin1');
      t.false(text.includes('root:'), 'never the contents of /etc/passwd');
      t.false(text.includes(f.storeDir), 'never the store path');
      t.false(/\bat .*\.js:\d+/.test(text), 'never a stack trace');
      if (res.status < 500 && res.status >= 400 && res.body.length > 0 && res.status !== 431) {
        t.regex(errorOf(res.body).code, /^ERR_LR_/);
      }
      // After every hostile request the next normal one succeeds.
      const next = await rawExchange(
        server.url,
        rawGet(`${snap}/drive-scsi0.img`, { ...auth, range: 'bytes=5-9' }),
      );
      t.is(next.status, 206);
      t.true(next.body.equals(imageBytes(f.drives[0]!.spec, 5, 5)));
    }

    t.log(seen.join('\n'));
    // A request line that is not HTTP at all, and a header block far beyond Node's limit.
    for (const junk of ['GARBAGE\r\n\r\n', `GET / HTTP/1.1\r\nX: ${'x'.repeat(64 * KiB)}\r\n\r\n`]) {
      const res = await rawExchange(server.url, junk);
      t.true(res.status >= 400 && res.status < 500, `junk: ${res.status}`);
    }
    t.is((await rawExchange(server.url, rawGet('/snapshots', auth))).status, 200);
  },
);

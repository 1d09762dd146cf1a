/*
 * Slow readers cannot lock the server (issue 15: 260 connections trickling a download at
 * 512 bytes per 3 s made every other client get 503 for 45 s). Each client address holds
 * at most its share of the request slots, and a response that moves slower than the
 * minimum rate is cut. Real sockets on loopback, small limits, bounded in count and time.
 */
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Datastore } from '@liverestore/datastore';
import anyTest, { type TestFn } from 'ava';
import {
  bytesTakenByKernel,
  enforceMinTransferRate,
  type IntervalTimers,
  rateWindowMs,
} from '../src/client-limits.js';
import { type Fixture, get, MiB, makeFixture, serve } from './helpers.js';

const test = anyTest as TestFn<{ fixture: Fixture; bigPath: string; fifoPath: string }>;

/** A "chunk" file far larger than the socket buffers between server and client (sparse: no disk). */
const BIG_BYTES = 32 * MiB;
const BIG_HEX = 'b1'.repeat(32);
const FIFO_HEX = 'f1'.repeat(32);

test.before(async (t) => {
  t.context.fixture = await makeFixture([2 * MiB, MiB]);
  const store = await Datastore.open(t.context.fixture.storeDir);
  for (const hex of [BIG_HEX, FIFO_HEX]) await mkdir(join(store.chunkPath(hex), '..'), { recursive: true });
  t.context.bigPath = `/chunks/${BIG_HEX}`;
  await writeFile(store.chunkPath(BIG_HEX), '');
  execFileSync('truncate', ['-s', String(BIG_BYTES), store.chunkPath(BIG_HEX)]);
  execFileSync('mkfifo', [store.chunkPath(FIFO_HEX)]);
  t.context.fifoPath = `/chunks/${FIFO_HEX}`;
});
test.after.always(async (t) => {
  await t.context.fixture?.cleanup();
});

/** GET from `localAddress` on its own connection; resolves at the status line, the body left unread (paused). */
function stalledGet(url: string, localAddress: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, localAddress }, resolve);
    req.on('error', reject);
  });
}

test('one client address holds at most its share of the slots; another address is still served', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f, {
    maxConcurrentRequests: 4,
    maxRequestsPerClient: 2,
    minBytesPerSecond: 0,
  });
  const greedy = await Promise.all(
    Array.from({ length: 4 }, () => stalledGet(`${server.url}${t.context.bigPath}`, '127.0.0.1')),
  );
  t.teardown(() => {
    for (const res of greedy) res.destroy();
  });
  t.deepEqual(greedy.map((r) => r.statusCode).sort(), [200, 200, 503, 503]);
  const other = await new Promise<IncomingMessage>((resolve, reject) =>
    httpGet(`${server.url}/snapshots`, { agent: false, localAddress: '127.0.0.2' }, resolve).on(
      'error',
      reject,
    ),
  );
  other.resume();
  t.is(other.statusCode, 200, 'a second client is not locked out by the first');
});

test('a download trickled slower than the minimum rate is cut, and its slot is free again', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f, {
    maxConcurrentRequests: 1,
    minBytesPerSecond: 256 * 1024,
    minRateWindowMs: 300,
  });
  const url = new URL(server.url);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  t.teardown(() => socket.destroy());
  const closed = new Promise<string>((resolve) => {
    let how = 'end of stream';
    socket.once('error', (err) => {
      how = (err as { code?: string }).code ?? String(err);
    });
    socket.once('close', () => resolve(how));
  });
  socket.write(`GET ${t.context.bigPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  let received = 0;
  let head = '';
  // Paused mode: 512 bytes every 50 ms (≈ 10 KB/s), the rest stays in the kernel.
  const trickle = setInterval(() => {
    const piece = socket.read(Math.min(512, socket.readableLength)) as Buffer | null;
    if (piece === null) return;
    if (received === 0) head = piece.toString('latin1', 0, 12);
    received += piece.length;
  }, 50);
  t.teardown(() => clearInterval(trickle));
  // The server side of the cut, observed through its metrics (polled, at most 20 s).
  const tooSlow = /liverestore_http_errors_total\{code="ERR_LR_HTTP_TOO_SLOW"\} 1/;
  let metrics = '';
  for (const started = performance.now(); !tooSlow.test(metrics) && performance.now() - started < 20_000; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    metrics = (await get(`${server.url}/metrics`)).body.toString();
  }
  t.regex(metrics, tooSlow, 'the server cut the trickling download');
  t.is((await get(`${server.url}/snapshots`)).status, 200, 'its one slot is free again');
  // The client, reading at full speed now, gets what its kernel still held, then the reset.
  clearInterval(trickle);
  socket.on('data', (piece: Buffer) => {
    received += piece.length;
  });
  const how = await closed;
  t.is(head, 'HTTP/1.1 200');
  // The server's kernel had taken ≈ 4 MiB for this client; a FIN would still deliver it
  // all, a reset drops it (Node reports the reset as the stream's end).
  t.true(received < 2 * MiB, `the client got ${received} of ${BIG_BYTES} bytes (closed by ${how})`);
});

test('six requests for a chunk that is a FIFO do not stop the server (each answered at once)', async (t) => {
  const f = t.context.fixture;
  const server = await serve(t, f);
  // Opening the write end frees any open of the FIFO still blocked (so a failing run ends).
  t.teardown(async () => {
    const fifo = join(t.context.fixture.storeDir, '.chunks', FIFO_HEX.slice(0, 4), FIFO_HEX);
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
    await writer?.close();
  });
  const answers = await Promise.race([
    Promise.all(Array.from({ length: 6 }, () => get(`${server.url}${t.context.fifoPath}`))),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000).unref()),
  ]);
  t.deepEqual(
    answers?.map((a) => a.status),
    [404, 404, 404, 404, 404, 404],
    'six answers within 10 s',
  );
  t.is((await get(`${server.url}/snapshots`)).status, 200);
});

test('bytesTakenByKernel falls back to completed writes without libuv counters', (t) => {
  t.is(bytesTakenByKernel({ bytesWritten: 5000, writableLength: 1000 }), 4000);
  t.is(
    bytesTakenByKernel({
      bytesWritten: 5000,
      writableLength: 1000,
      _bytesDispatched: 4500,
      _handle: { writeQueueSize: 300 },
    }),
    4200,
  );
});

test('rateWindowMs: the requested window where the kernel count moves byte by byte; on TLS, long enough for one whole write', (t) => {
  const tcp = { bytesWritten: 0, writableLength: 0, _bytesDispatched: 0, _handle: { writeQueueSize: 0 } };
  t.is(rateWindowMs(tcp, 30_000, 4096, MiB), 30_000);
  t.is(rateWindowMs({ ...tcp, encrypted: true }, 30_000, 4096, MiB), 256_000);
  t.is(rateWindowMs({ ...tcp, encrypted: true }, 30_000, 1024 * 1024, MiB), 30_000);
  t.is(rateWindowMs({ bytesWritten: 0, writableLength: 0 }, 30_000, 1, MiB), 1_048_576_000);
  t.is(
    rateWindowMs({ bytesWritten: 0, writableLength: 0 }, 30_000, 0.1, MiB),
    2 ** 31 - 1,
    'a timer cannot wait longer',
  );
});

/** A response on a fake TCP socket whose counters the test moves, and the one interval the guard arms. */
function watchedResponse(): {
  socket: {
    bytesWritten: number;
    writableLength: number;
    _bytesDispatched: number;
    _handle: { writeQueueSize: number };
  };
  tick(): void;
  cut: () => boolean;
} {
  const socket = { bytesWritten: 0, writableLength: 0, _bytesDispatched: 0, _handle: { writeQueueSize: 0 } };
  const res = Object.assign(new EventEmitter(), { socket, destroyed: false });
  let callback: (() => void) | undefined;
  let cleared = false;
  const timers: IntervalTimers = {
    setInterval: (fn) => {
      callback = fn;
      return { unref: () => {} };
    },
    clearInterval: () => {
      cleared = true;
    },
  };
  let slow = false;
  enforceMinTransferRate(
    res as unknown as ServerResponse,
    4096,
    30_000,
    MiB,
    () => {
      slow = true;
    },
    timers,
  );
  return {
    socket,
    tick: () => {
      if (!cleared) callback!();
    },
    cut: () => slow,
  };
}

test('the minimum rate cuts a client that leaves bytes unread, not one the server is slow to feed', (t) => {
  // The server has nothing to send for a whole window (a slow cache miss): the client is not judged.
  const starved = watchedResponse();
  starved.tick();
  t.false(starved.cut());
  // Bytes wait for the client and fewer than 4 KiB/s × 30 s were taken: cut.
  const stalled = watchedResponse();
  stalled.socket._bytesDispatched = 2 * MiB;
  stalled.socket._handle.writeQueueSize = 2 * MiB - 1000;
  stalled.tick();
  t.true(stalled.cut());
  // A client that reads enough in the window is kept.
  const reading = watchedResponse();
  reading.socket._bytesDispatched = 2 * MiB;
  reading.socket._handle.writeQueueSize = MiB;
  reading.tick();
  t.false(reading.cut());
});

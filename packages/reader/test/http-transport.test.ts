/**
 * The HTTP transport against a scripted loopback server, on a fake clock: the backoff
 * between retries, the per-attempt deadline and the transient/permanent split are
 * observed as timers and requests, without waiting for real time.
 */
import { EventEmitter, once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '@liverestore/format/internal';
import { FakeClock, withTimeout } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { HttpTransport, type RequestKind } from '../src/internal.js';

const TIMEOUT_MS = 30_000;
const KIND: RequestKind = { notFoundCode: 'ERR_LR_CHUNK_MISSING', maxBytes: 1 << 20, what: 'chunk x' };

const isBackoff = (ms: number): boolean => ms < TIMEOUT_MS;
const isDeadline = (ms: number): boolean => ms === TIMEOUT_MS;

/** A loopback server answering request n with `script[n]` (the last entry repeats). */
async function scriptedServer(
  t: ExecutionContext,
  script: ((res: ServerResponse) => void)[],
): Promise<{ url: URL; requests: () => number; received: (count: number) => Promise<void> }> {
  let requests = 0;
  const arrivals = new EventEmitter();
  const server = createServer((_req, res) => {
    const answer = script[Math.min(requests, script.length - 1)]!;
    requests++;
    arrivals.emit('request');
    answer(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  /** Resolves once `count` requests have arrived in all. */
  const received = async (count: number): Promise<void> => {
    while (requests < count) await withTimeout(once(arrivals, 'request'), 20_000, `request ${count}`);
  };
  return { url: new URL(`http://127.0.0.1:${port}`), requests: () => requests, received };
}

function transport(t: ExecutionContext, url: URL, clock: Clock, retries: number): HttpTransport {
  const http = new HttpTransport(url, {
    timeoutMs: TIMEOUT_MS,
    retries,
    connections: 2,
    refusalHint: 'a token is required',
    clock,
    random: () => 0.5,
  });
  t.teardown(() => http.close());
  return http;
}

const status503 = (res: ServerResponse): void => {
  res.writeHead(503).end();
};

test('transient failures are retried after equal-jitter backoff: 75 ms, then 150 ms (base 100, random 0.5)', async (t) => {
  const server = await scriptedServer(t, [status503, status503, (res) => res.end('hello')]);
  const clock = new FakeClock();
  const body = transport(t, server.url, clock, 8).get('/chunks/x', KIND);
  const first = await clock.nextTimer(isBackoff);
  t.is(first.ms, 75);
  t.is(server.requests(), 1);
  first.fire();
  const second = await clock.nextTimer(isBackoff);
  t.is(second.ms, 150);
  t.is(server.requests(), 2);
  second.fire();
  t.is(Buffer.from((await body)!).toString(), 'hello');
  t.is(server.requests(), 3);
});

test('an attempt past its deadline fails with ERR_LR_SOURCE_TIMEOUT, counted as transient', async (t) => {
  const server = await scriptedServer(t, [() => undefined]); // never answers
  const clock = new FakeClock();
  const body = transport(t, server.url, clock, 0).get('/chunks/x', KIND);
  await server.received(1);
  (await clock.nextTimer(isDeadline)).fire();
  const error = await t.throwsAsync(body, { code: 'ERR_LR_SOURCE_UNAVAILABLE' });
  t.is((error?.cause as { code?: string } | undefined)?.code, 'ERR_LR_SOURCE_TIMEOUT');
  t.regex(error?.message ?? '', /1 attempt failed/);
});

test('a permanent failure is not retried: the server’s code and message, after one request', async (t) => {
  const server = await scriptedServer(t, [
    (res) =>
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { code: 'ERR_LR_CHUNK_MISSING', message: 'no such chunk' } })),
  ]);
  const clock = new FakeClock();
  const error = await t.throwsAsync(transport(t, server.url, clock, 8).get('/chunks/x', KIND), {
    code: 'ERR_LR_CHUNK_MISSING',
  });
  t.regex(error?.message ?? '', /no such chunk \(HTTP 404\)/);
  t.is(server.requests(), 1);
});

test('close() ends a backoff sleep with ERR_LR_SOURCE_CLOSED', async (t) => {
  const server = await scriptedServer(t, [status503]);
  const clock = new FakeClock();
  const http = transport(t, server.url, clock, 8);
  const body = http.get('/chunks/x', KIND);
  await clock.nextTimer(isBackoff);
  await http.close();
  await t.throwsAsync(body, { code: 'ERR_LR_SOURCE_CLOSED' });
});

test('a stalled attempt ends at its deadline and is retried: 3 attempts, then ERR_LR_SOURCE_UNAVAILABLE', async (t) => {
  const server = await scriptedServer(t, [() => undefined]); // never answers
  const clock = new FakeClock();
  const body = transport(t, server.url, clock, 2).get('/chunks/x', KIND);
  for (let attempt = 1; attempt <= 3; attempt++) {
    await server.received(attempt);
    (await clock.nextTimer(isDeadline)).fire();
    if (attempt < 3) (await clock.nextTimer(isBackoff)).fire();
  }
  const error = await t.throwsAsync(body, { code: 'ERR_LR_SOURCE_UNAVAILABLE' });
  t.regex(error?.message ?? '', /3 attempts failed, the last with ERR_LR_SOURCE_TIMEOUT/);
  t.is(server.requests(), 3);
  t.deepEqual(clock.armed, [], 'no timer left behind');
});

test('an abort during a stalled attempt or a backoff rejects with the signal reason and cancels its timer', async (t) => {
  const server = await scriptedServer(t, [() => undefined]);
  const clock = new FakeClock();
  const http = transport(t, server.url, clock, 20);
  const stalled = new AbortController();
  const reason = new Error('user gave up');
  const inStall = http.get('/chunks/x', KIND, { signal: stalled.signal });
  await server.received(1);
  await clock.nextTimer(isDeadline);
  stalled.abort(reason);
  t.is(await inStall.catch((err: unknown) => err), reason);
  t.deepEqual(clock.armed, [], 'the deadline timer is cancelled');

  const failing = await scriptedServer(t, [status503]);
  const backingOff = new AbortController();
  const inBackoff = transport(t, failing.url, clock, 20).get('/chunks/x', KIND, {
    signal: backingOff.signal,
  });
  await clock.nextTimer(isBackoff);
  // abort() without a reason: the signal's own reason (a DOMException AbortError) comes back.
  backingOff.abort();
  const err = await inBackoff.catch((e: unknown) => e);
  t.is(err, backingOff.signal.reason);
  t.is((err as Error).name, 'AbortError');
  t.deepEqual(clock.armed, [], 'the backoff sleep is cancelled: no attempt can follow');
  t.is(failing.requests(), 1);
});

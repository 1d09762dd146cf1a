/*
 * The parts of `bench live-restore` that must be right for its numbers to mean
 * anything: the shaping proxy (bytes intact and in order, bandwidth cap and latency
 * hold) and A's old-design reader (right bytes, one fetch at a time per drive, only the
 * current chunk kept), and that a run of only some series (`--series`) reports what it
 * measured. The NBD client is @liverestore/nbd's, tested there.
 */

import { randomBytes } from 'node:crypto';
import { createServer, connect as tcpConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { imageBytes } from '@liverestore/testkit';
import test from 'ava';
import {
  cpuTable,
  goalNotes,
  type Iteration,
  plotSeries,
  type System,
  speedupOver,
  systemsOf,
} from '../src/live-report.js';
import { parseSeries } from '../src/live-settings.js';
import { bootTrace, GUEST_MAX_READ, GUEST_MIN_READ, GUEST_QUEUE_DEPTH } from '../src/live-workload.js';
import { measureRoundTrips, startEchoServer, startShapedProxy } from '../src/net-proxy.js';
import { OldDriveReader } from '../src/old-reader.js';
import { mostUsedChunks } from '../src/remote-chunk-reader.js';
import { backedUpDrive, TEST_CHUNK_BYTES } from './pbs-fixture.js';

test('proxy: concurrent connections get their bytes back intact and in order', async (t) => {
  const echo = await startEchoServer();
  const proxy = await startShapedProxy({
    upstream: { host: '127.0.0.1', port: echo.port },
    conditions: { rttMs: 2, bitsPerSecond: 400e6 },
  });
  t.teardown(async () => {
    await proxy.close();
    await echo.close();
  });
  await Promise.all(
    [1, 2, 3].map(async (n) => {
      const data = randomBytes(n * 1024 * 1024 + 17);
      const socket = tcpConnect({ host: '127.0.0.1', port: proxy.port });
      const got: Buffer[] = [];
      let length = 0;
      await new Promise<void>((resolve, reject) => {
        socket.on('error', reject);
        socket.on('data', (d: Buffer) => {
          got.push(d);
          length += d.length;
          if (length >= data.length) resolve();
        });
        // Many small writes, so pieces of all connections interleave on the shaped links.
        for (let at = 0; at < data.length; at += 5000) socket.write(data.subarray(at, at + 5000));
      });
      socket.destroy();
      t.true(Buffer.concat(got).equals(data), `connection ${n}`);
    }),
  );
});

test('proxy: the bandwidth cap and the added latency hold (lower bounds only)', async (t) => {
  let received = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const total = 3 * 1024 * 1024;
  const sink = createServer((s) => {
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= total) done();
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const proxy = await startShapedProxy({
    upstream: { host: '127.0.0.1', port: (sink.address() as { port: number }).port },
    conditions: { rttMs: 0, bitsPerSecond: 100e6 },
  });
  t.teardown(async () => {
    await proxy.close();
    await new Promise<void>((r) => sink.close(() => r()));
  });
  const socket = tcpConnect({ host: '127.0.0.1', port: proxy.port });
  const t0 = performance.now();
  socket.write(Buffer.alloc(total, 1));
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  socket.destroy();
  // 100 Mbit/s = 12.5 MB/s: 3 MiB minus the 64 KiB burst cannot take less than 0.246 s.
  t.true(seconds >= (total - 64 * 1024) / 12.5e6 - 0.002, `${seconds} s`);

  const echo = await startEchoServer();
  const slow = await startShapedProxy({
    upstream: { host: '127.0.0.1', port: echo.port },
    conditions: { rttMs: 10, bitsPerSecond: 0 },
  });
  const rtts = await measureRoundTrips(slow.port, 20);
  await slow.close();
  await echo.close();
  // Delivered at the first 1 ms tick no earlier than half a tick before due.
  t.true(Math.min(...rtts) >= 9, `round trips ${Math.min(...rtts)}…${Math.max(...rtts)} ms`);
});

test('old-design reader: right bytes, one fetch at a time per drive, current chunk only', async (t) => {
  const { spec, ref, source } = await backedUpDrive(t, 3, 9 * 1024 * 1024 + 8192);
  const reader = await OldDriveReader.open(source, ref, 'drive-scsi0');
  t.is(reader.name, 'drive-scsi0.img');
  const ranges = Array.from({ length: 40 }, (_, i) => ({
    offset: ((i * 104_729) % 2200) * 4096,
    length: 4096 * (1 + ((i * 13) % 64)),
  })).filter((r) => r.offset + r.length <= reader.size);
  ranges.push(
    { offset: 1024 * 1024 - 4096, length: 3 * 1024 * 1024 },
    { offset: reader.size - 8192, length: 8192 },
  );
  const buffers = ranges.map((r) => Buffer.alloc(r.length));
  await Promise.all(ranges.map((r, i) => reader.read(buffers[i]!, r.offset)));
  ranges.forEach((r, i) => {
    t.true(buffers[i]!.equals(imageBytes(spec, r.offset, r.length)), `range ${i}`);
  });
  t.is(
    source.maxInFlight,
    1,
    'reads of a drive are serialised and the chunks of a read fetched one after another',
  );
  const most = mostUsedChunks(reader.index);
  t.true(
    reader.heldBytes <= (1 + most.size) * TEST_CHUNK_BYTES,
    'holds its current chunk and the most-used ones',
  );
  const fetches = reader.stats.fetches;
  const again = Buffer.alloc(4096);
  await reader.read(again, reader.size - 4096);
  t.is(reader.stats.fetches, fetches, 'a read in the current chunk fetches nothing');
  await reader.read(again, 0);
  await reader.read(again, reader.size - 4096);
  t.is(reader.stats.fetches, fetches + 2, 'the chunk before is gone once another was read');
});

test('boot trace: deterministic, 4–256 KiB reads inside the disk, bursts of at most 16', (t) => {
  const size = 512 * 1024 * 1024;
  const a = bootTrace(1, 0, size, 500);
  t.deepEqual(a, bootTrace(1, 0, size, 500));
  t.notDeepEqual(a, bootTrace(1, 1, size, 500));
  const reads = a.flatMap((b) => b.reads);
  t.is(reads.length, 500);
  for (const b of a) t.true(b.reads.length >= 1 && b.reads.length <= GUEST_QUEUE_DEPTH && b.thinkMs >= 0);
  for (const r of reads) {
    t.true(r.length >= GUEST_MIN_READ && r.length <= GUEST_MAX_READ && r.offset % 4096 === 0);
    t.true(r.offset + r.length <= size);
  }
  // Hot spots: far fewer distinct 4 MiB chunks than reads.
  t.true(new Set(reads.map((r) => Math.floor(r.offset / (4 * 1024 * 1024)))).size < reads.length / 3);
});

test('--series: A, C, B in run order whatever the order asked; unknown names refused', (t) => {
  t.deepEqual(parseSeries(undefined), ['A', 'C', 'B']);
  t.deepEqual(parseSeries('b,a'), ['A', 'B']);
  t.deepEqual(parseSeries('B'), ['B']);
  t.throws(() => parseSeries('B,D'), { message: /unknown series "D"/ });
  t.throws(() => parseSeries(','), { message: /at least one/ });
});

test('report of a run without C: no speed-up over C, the p99 line names only the systems run', (t) => {
  const run = (system: System, iteration: number, seconds: number): Iteration => ({
    system,
    drives: 2,
    iteration,
    seconds,
    copySeconds: [seconds],
    guestReads: 10,
    guestReadsPlanned: 10,
    guestP50Ms: 1,
    guestP99Ms: system === 'B' ? 40 : 90,
    guestMaxMs: 100,
    chunkRefs: 20,
    chunkFetches: 10,
    minFetches: 10,
    fetchedBytes: 1e6,
    hitRate: 0.5,
    peakRssBytes: null,
    cpuSeconds: { reader: 1, serve: 0, proxy: 0, client: 0, others: 0 },
  });
  const runs = [run('A', 1, 6), run('B', 1, 2), run('A', 2, 9), run('B', 2, 3)];
  t.deepEqual(systemsOf(runs), ['A', 'B']);
  t.is(speedupOver(runs, 'C'), undefined);
  t.is(speedupOver(runs, 'A')?.median, 3);
  const notes = goalNotes(runs);
  t.is(notes.length, 2);
  t.regex(notes[0]!, /over A, the old PBS read path .* median 3.00×/);
  t.regex(notes[1]!, /: A 90(.0)? ms, B 40(.0)? ms; goal for B < 50 ms: met/);
  t.deepEqual(
    plotSeries(runs).map((s) => s.values),
    [
      [6, 9],
      [2, 3],
    ],
  );
  t.is(cpuTable(runs).rows.length, 2);
});

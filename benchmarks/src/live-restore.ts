/**
 * `pnpm bench live-restore`: PBS's live-restore A/B picture, reproduced on this machine,
 * with PBS today as a third system. A is the old PBS read path (old-reader.ts), C is PBS's
 * read path today (pbs-today-reader.ts), B is liverestore; all read from the same
 * `liverestore serve` through the same injected network conditions (net-proxy.ts), in
 * turn within each iteration (A, C, B), under a workload modelled on a QEMU live restore
 * (live-workload.ts); live-report.ts turns the runs into tables, goals and the plot.
 * The options are in live-settings.ts, one system's iteration in live-iteration.ts, the
 * cold full restore in live-cold-restore.ts.
 * Optionally also a scaling run (1…8 drives, one cache budget) and a cold full restore
 * next to the decode limit of the same chunks.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Datastore } from '@liverestore/datastore';
import type { BenchContext, Benchmark } from './benchmark.js';
import { coldRestoreSection } from './live-cold-restore.js';
import { backupVm, type Environment, roundTrips, runIteration, warmPageCache } from './live-iteration.js';
import {
  cpuTable,
  goalFigures,
  goalNotes,
  type Iteration,
  iterationTable,
  ms,
  pct,
  plotSeries,
  rssText,
  SYSTEM_NAMES,
  speedupOver,
  systemCases,
} from './live-report.js';
import { DEFAULTS, LIVE_RESTORE_OPTIONS, readSettings, STORE_COMPRESSION } from './live-settings.js';
import { COPY_REQUEST_BYTES, GUEST_QUEUE_DEPTH, MEAN_THINK_MS, percentile } from './live-workload.js';
import {
  type LiverestoreProcess,
  notInfoLog,
  startLiverestoreProcess,
  startNodeProcess,
} from './liverestore-process.js';
import { machineInfo } from './machine.js';
import { PBS_SHARED_CACHE_CHUNKS } from './pbs-today-reader.js';
import type { BenchResult, PlainTable } from './result.js';
import { summarize } from './stats.js';
import { formatBitRate, formatBytes, formatNumber, mbPerSecond } from './units.js';

async function runLiveRestore(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const s = readSettings(context);
  // Taken now: its load average is the one at the start of the run.
  const machine = machineInfo();
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-'));
  const processes: LiverestoreProcess[] = [];
  try {
    const storeDir = join(scratch, 'store');
    const store = await Datastore.create(storeDir);
    const vm = await backupVm(context, store, scratch, '100', s, s.drives, s.sizeBytes);
    const maxScaling = Math.max(0, ...s.scaling);
    const scalingVm =
      maxScaling === 0
        ? undefined
        : await backupVm(context, store, scratch, '200', s, maxScaling, s.scalingSizeBytes);
    await warmPageCache(storeDir);

    const serve = await startLiverestoreProcess(
      ['serve', '--store', storeDir, '--listen', '127.0.0.1:0'],
      [],
      { keepStderrLine: notInfoLog },
    );
    processes.push(serve);
    const serveHost = new URL(serve.address).host;
    const proxyScript = fileURLToPath(new URL('./net-proxy-child.js', import.meta.url));
    const shaping = [String(s.rttMs), String(s.bitsPerSecond)];
    const proxy = await startNodeProcess(proxyScript, [serveHost, ...shaping], 'network proxy');
    processes.push(proxy);
    const env: Environment = {
      s,
      servePid: serve.pid,
      proxyPid: proxy.pid,
      serveUrl: serve.address,
      sourceUrl: `http://${proxy.address}`,
      context,
    };
    context.progress(
      `measuring the round trip through a proxy with the same settings (${s.rttMs} ms configured) …`,
    );
    const rtts = await roundTrips(proxyScript, shaping);

    const runs: Iteration[] = [];
    for (let it = 1; it <= s.iterations; it++) {
      for (const system of s.series) {
        context.progress(`iteration ${it}/${s.iterations}: ${SYSTEM_NAMES[system]} (${s.mode}) …`);
        const r = await runIteration(env, system, vm, s.drives, it);
        runs.push(r);
        context.progress(
          `  ${formatNumber(r.seconds)} s, guest p50 ${ms(r.guestP50Ms)} p99 ${ms(r.guestP99Ms)}, hit rate ${pct(r.hitRate)}, ${r.chunkFetches} fetches (${r.minFetches} distinct data chunks), peak RSS ${rssText(r.peakRssBytes)}`,
        );
      }
    }
    const overA = speedupOver(runs, 'A');
    const overC = speedupOver(runs, 'C');

    const scalingRuns: Iteration[] = [];
    if (scalingVm !== undefined) {
      for (const n of s.scaling) {
        context.progress(
          `scaling: ${SYSTEM_NAMES.B} with ${n} drive${n === 1 ? '' : 's'} of ${formatBytes(s.scalingSizeBytes)} …`,
        );
        const r = await runIteration(env, 'B', scalingVm, n, 1);
        scalingRuns.push(r);
        context.progress(
          `  ${formatNumber(r.seconds)} s, peak RSS ${rssText(r.peakRssBytes)}, guest p99 ${ms(r.guestP99Ms)}`,
        );
      }
    }

    const cold = s.scaling.length > 0 ? await coldRestoreSection(env, vm, storeDir, scratch) : undefined;

    const tables: PlainTable[] = [iterationTable(runs), cpuTable(runs)];
    const notes: string[] = goalNotes(runs);
    let scalingGoal: string | undefined;
    if (scalingRuns.length > 0) {
      const rss = scalingRuns.map((r) => r.peakRssBytes ?? Number.NaN);
      const lo = Math.min(...rss);
      const hi = Math.max(...rss);
      const spread = (hi - lo) / lo;
      scalingGoal = `Peak RSS of B from ${s.scaling[0]} to ${s.scaling.at(-1)} drives: ${formatBytes(lo)} – ${formatBytes(hi)} (${formatNumber(100 * spread)} % spread); goal flat within 10 %: ${spread <= 0.1 ? 'met' : 'missed'}.`;
      notes.push(scalingGoal);
      tables.push({
        title: `Scaling: B with 1…${maxScaling} drives of ${formatBytes(s.scalingSizeBytes)}, one cache of ${formatBytes(s.cacheBytes)} (${s.mode} mode, one iteration each)`,
        columns: [
          'drives',
          'seconds',
          'image MB/s',
          'guest p50',
          'guest p99',
          'hit rate',
          'chunk fetches',
          'reader CPU s',
          'other processes CPU s',
          'peak RSS',
        ],
        rows: scalingRuns.map((r) => [
          String(r.drives),
          formatNumber(r.seconds),
          formatNumber(mbPerSecond(r.drives * s.scalingSizeBytes, r.seconds)),
          ms(r.guestP50Ms),
          ms(r.guestP99Ms),
          pct(r.hitRate),
          `${r.chunkFetches} (${r.minFetches} distinct)`,
          formatNumber(r.cpuSeconds.reader),
          formatNumber(r.cpuSeconds.others),
          rssText(r.peakRssBytes),
        ]),
      });
    }
    if (cold !== undefined) notes.push(cold.goal);
    const rssWhat =
      s.mode === 'nbd'
        ? "peak RSS is the VmHWM of the NBD server process (`liverestore nbd` for B, the PBS read path's NBD server for A and C), a fresh process per iteration"
        : 'peak RSS is the VmHWM of the process doing the reading (a fresh child per iteration running the readers and the workload)';
    notes.push(
      `Measured round trip through the proxy (64-byte ping-pong, ${rtts.length} samples, ${s.rttMs} ms configured): p50 ${ms(percentile(rtts, 50))}, p99 ${ms(percentile(rtts, 99))}; the proxy delays by scheduling on a 1 ms ticker, so single pieces see 0–1 ms jitter around the configured delay.`,
      `Hit rate = 1 − chunk fetches / chunk references: references are the (read, non-zero chunk) pairs of every copy and guest read issued, fetches are the chunk requests \`liverestore serve\` answered in the iteration (its /metrics); readahead fetches count as fetches. ${rssWhat}.`,
      `A: per drive one reader holding only its current decoded chunk (plus PBS's cache hint: the ≤ 8 chunks the index uses more than once, i.e. the zero chunk), every read under the drive's mutex, chunks of a read fetched one after another, decode inline (CRC-32, decompress, SHA-256) on the main thread; same HTTP client and server as B.`,
      `C: PBS today — one LRU of ${PBS_SHARED_CACHE_CHUNKS} decoded chunks (counted in entries, not bytes) shared by all drives, concurrent readers of a chunk sharing one fetch + decode, reads of a drive not serialised (no mutex), chunks of a read fetched one after another, decode ${s.pbsDecodeThreads === 0 ? 'inline on the main thread' : `on ${s.pbsDecodeThreads} thread${s.pbsDecodeThreads === 1 ? '' : 's'} (PBS's tokio workers)`}, no readahead, PBS's most-used cache hint per drive as in A; same HTTP client and server as A and B.`,
      `B: liverestore ${s.mode === 'nbd' ? '`liverestore nbd --from URL`' : 'library (openSnapshot, ChunkCache, CachedChunkReader.readAt) in-process'}: one ${formatBytes(s.cacheBytes)} cache shared by all drives, ${s.workers} decode workers, readahead ${s.readaheadChunks} chunks.`,
    );

    const settings = {
      iterations: s.iterations,
      series: s.series.join(','),
      mode: s.mode,
      drives: s.drives,
      sizeBytesPerDrive: s.sizeBytes,
      mix: s.mix,
      cacheBytes: s.cacheBytes,
      workers: s.workers,
      readaheadChunks: s.readaheadChunks,
      rttMs: s.rttMs,
      bandwidth: formatBitRate(s.bitsPerSecond),
      bitsPerSecond: s.bitsPerSecond,
      guestReadsPerDrive: s.guestReads,
      guestQueueDepth: GUEST_QUEUE_DEPTH,
      guestMeanThinkMs: MEAN_THINK_MS,
      copyRequestBytes: COPY_REQUEST_BYTES,
      seed: s.seed,
      quick: s.quick,
      scalingDrives: s.scaling.join(',') || 'off',
      scalingSizeBytesPerDrive: s.scalingSizeBytes,
      storedBytes: vm.storedBytes,
      chunkBytes: 4 * 1024 * 1024,
      compress: STORE_COMPRESSION,
      pbsTodayCacheChunks: PBS_SHARED_CACHE_CHUNKS,
      pbsDecodeThreads: s.pbsDecodeThreads,
    };
    const speedups = [
      ...(overC === undefined ? [] : [`${formatNumber(overC.median)}× over C`]),
      ...(overA === undefined ? [] : [`${formatNumber(overA.median)}× over A`]),
    ];
    const plotSubtitle = `${s.mode} mode, ${s.drives} drives × ${formatBytes(s.sizeBytes)} (${s.mix}), ${s.rttMs} ms RTT, ${formatBitRate(s.bitsPerSecond)}, B's cache ${formatBytes(s.cacheBytes)}${speedups.length === 0 ? '' : `; B's median speed-up ${speedups.join(', ')}`}`;
    return {
      benchmark: 'live-restore',
      title: `Live restore, A (old PBS read path), C (PBS today) and B (liverestore): ${s.drives} × ${formatBytes(s.sizeBytes)}, ${s.rttMs} ms RTT, ${formatBitRate(s.bitsPerSecond)}`,
      machine,
      settings,
      sections: [
        {
          title: `Live restore time per iteration (${s.mode} mode): copy jobs of ${s.drives} drives with a boot-like guest`,
          meanLabel: 'mean / iteration',
          ...systemCases(runs, vm.sizeBytes),
        },
        ...(cold === undefined ? [] : [cold.section]),
      ],
      tables,
      notes,
      raw: {
        iterations: runs,
        speedups: { overA, overC },
        roundTripMs: { p50: percentile(rtts, 50), p99: percentile(rtts, 99), mean: summarize(rtts).mean },
        scaling: scalingRuns,
      },
      plot: {
        xLabel: 'iteration',
        yLabel: 'seconds per live restore',
        unit: 's',
        subtitle: plotSubtitle,
        series: plotSeries(runs),
      },
      figures: goalFigures(runs, plotSubtitle),
      durationSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    for (const p of processes.reverse()) p.stop();
    await Promise.all(processes.map((p) => p.exited));
    await rm(scratch, { recursive: true, force: true });
  }
}

export const liveRestoreBenchmark: Benchmark = {
  name: 'live-restore',
  summary: 'live restore: old PBS read path (A), PBS today (C), liverestore (B); QEMU-like copy + guest',
  description: `
Backs up a synthetic VM (@liverestore/testkit, --drives drives of --size) into a scratch
datastore, serves it with \`liverestore serve\` behind a user-space proxy that injects
--rtt and caps --bandwidth, then runs live restores in turn with A (the old PBS read path:
one current chunk per drive, a mutex per drive, serial fetches, inline decode), C (PBS's
read path today: one shared LRU of 64 decoded chunks with in-flight dedup, no mutex,
serial fetches within a read, inline decode, no readahead), both built in this package,
and B (liverestore). Per drive, a copy job reads the disk sequentially in
512 KiB requests while a boot-like guest trace issues random 4-256 KiB reads (hot
spots, up to 16 in flight); an iteration ends when every copy job is done. --mode nbd
(default) drives real NBD connections (one per drive) to \`liverestore nbd\` (B) and to
an NBD server over A's or C's readers, each in its own fresh process per iteration;
--mode api runs the readers in-process in a fresh child per iteration.

Reports time per iteration, guest-read p50/p99, cache hit rate, peak RSS, CPU seconds,
B's median speed-up over C and over A (paired per iteration) and a plot. --scaling adds B at 1, 2, 4, 8 drives with the same cache and a
cold full restore next to the decode limit. Defaults take about 4 minutes on a quiet
2-core machine (more under load); --quick (3 iterations of 2 × 256 MiB) about a minute.`,
  defaultSamples: DEFAULTS.iterations,
  options: LIVE_RESTORE_OPTIONS,
  run: runLiveRestore,
};

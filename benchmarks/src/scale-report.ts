/**
 * The result of `bench scale` from its run records: a table of the N concurrent restores
 * per origin (total time next to the single-restore time × N, origin GETs vs distinct
 * chunks, read p50/p99, peak RSS vs budget, bytes verified), a table of the single
 * restores, the goal verdicts of issue 16, and one figure per goal.
 */

import type { MachineInfo } from './machine.js';
import type { BenchResult, CaseResult, DetailColumn, GoalFigure, Scalar, SeriesPlot } from './result.js';
import { measuredCase } from './result.js';
import type { OriginName } from './scale-origins.js';
import type { MemoryPeaks } from './scale-reader-child.js';
import { type RunRecord, readPercentiles } from './scale-run.js';
import { MEMORY_SLACK_BYTES, type ScaleSettings } from './scale-setup.js';
import { formatBytes, formatNumber } from './units.js';

const MiB = 1024 ** 2;

/** What the benchmark hands over besides the records. */
export interface ScaleRun {
  readonly settings: ScaleSettings;
  readonly machine: MachineInfo;
  readonly records: readonly RunRecord[];
  /** Seconds of one restore alone of each (snapshot, drive), by origin: mean over iterations. */
  readonly singleTimesN: ReadonlyMap<OriginName, number>;
  /** Origins that could not run, with why. */
  readonly skipped: ReadonlyMap<OriginName, string>;
  readonly durationSeconds: number;
}

const CONCURRENT_COLUMNS: readonly DetailColumn[] = [
  { key: 'singleTimesN', label: 'single × N', format: 'seconds' },
  { key: 'vsSingle', label: 'total ÷ (single × N)', format: 'decimal' },
  { key: 'originGets', label: 'origin GETs / run', format: 'integer' },
  { key: 'distinctChunks', label: 'distinct chunks', format: 'integer' },
  { key: 'cacheHits', label: 'nginx hits', format: 'text' },
  { key: 'p50', label: 'read p50 ms', format: 'decimal' },
  { key: 'p99', label: 'read p99 ms', format: 'decimal' },
  { key: 'maxReaderRss', label: 'max reader RSS', format: 'bytes' },
  { key: 'serveRss', label: 'serve RSS', format: 'text' },
  { key: 'verified', label: 'drives verified', format: 'text' },
];

const SINGLE_COLUMNS: readonly DetailColumn[] = [
  { key: 'p50', label: 'read p50 ms', format: 'decimal' },
  { key: 'p99', label: 'read p99 ms', format: 'decimal' },
  { key: 'originGets', label: 'origin GETs / run', format: 'decimal' },
  { key: 'distinctChunks', label: 'distinct chunks / run', format: 'decimal' },
];

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

function of(records: readonly RunRecord[], origin: OriginName, kind: RunRecord['kind']): RunRecord[] {
  return records.filter((r) => r.origin === origin && r.kind === kind);
}

function maxRss(records: readonly RunRecord[], reader: boolean): number {
  let max = Number.NaN;
  for (const r of records)
    for (const p of r.processes)
      if (p.name.startsWith('reader') === reader && p.peakRssBytes !== null)
        max = Number.isNaN(max) ? p.peakRssBytes : Math.max(max, p.peakRssBytes);
  return max;
}

function concurrentCase(run: ScaleRun, origin: OriginName): CaseResult {
  const runs = of(run.records, origin, 'concurrent');
  const walls = runs.map((r) => r.wallSeconds);
  const single = run.singleTimesN.get(origin) ?? Number.NaN;
  const { p50, p99 } = readPercentiles(runs.flatMap((r) => r.readMs));
  const hits = runs.map((r) => r.cache).filter((c) => c !== undefined);
  const serveRss = maxRss(runs, false);
  const details: Record<string, Scalar> = {
    singleTimesN: single,
    vsSingle: mean(walls) / single,
    originGets: Math.round(mean(runs.map((r) => r.originGets))),
    distinctChunks: runs[0]?.distinctChunks ?? 0,
    cacheHits:
      hits.length === 0
        ? '–'
        : `${hits.reduce((n, c) => n + (c.byCacheStatus.HIT ?? 0), 0) / hits.length} / ${hits.reduce((n, c) => n + c.requests, 0) / hits.length}`,
    p50,
    p99,
    maxReaderRss: maxRss(runs, true),
    serveRss: Number.isNaN(serveRss) ? '–' : formatBytes(serveRss),
    verified: `${runs.reduce((n, r) => n + r.verified, 0)}/${runs.reduce((n, r) => n + r.readers, 0)}`,
  };
  return measuredCase(origin, runs[0]?.bytes ?? 0, walls, details);
}

function singleCase(run: ScaleRun, origin: OriginName): CaseResult {
  const runs = of(run.records, origin, 'single');
  const { p50, p99 } = readPercentiles(runs.flatMap((r) => r.readMs));
  return measuredCase(
    origin,
    run.settings.sizeBytes,
    runs.map((r) => r.wallSeconds),
    {
      p50,
      p99,
      originGets: mean(runs.map((r) => r.originGets)),
      distinctChunks: mean(runs.map((r) => r.distinctChunks)),
    },
  );
}

/** The largest of each memory part over the reader processes of `records`; undefined when none said. */
function readerMemoryPeaks(records: readonly RunRecord[]): MemoryPeaks | undefined {
  const all = records.flatMap((r) => r.processes.flatMap((p) => (p.memory === undefined ? [] : [p.memory])));
  if (all.length === 0) return undefined;
  return {
    heapUsedBytes: Math.max(...all.map((m) => m.heapUsedBytes)),
    externalBytes: Math.max(...all.map((m) => m.externalBytes)),
    arrayBuffersBytes: Math.max(...all.map((m) => m.arrayBuffersBytes)),
    blobBytes: Math.max(...all.map((m) => m.blobBytes)),
    atRssPeak: all.map((m) => m.atRssPeak).reduce((a, b) => (b.rssBytes > a.rssBytes ? b : a)),
  };
}

/** The goal verdicts, one line each, from what was measured. */
export function goalVerdicts(run: ScaleRun): string[] {
  const all = run.records;
  const readers = all.reduce((n, r) => n + r.readers, 0);
  const bad = all.flatMap((r) => r.mismatched.map((m) => `${r.origin} #${r.iteration}: ${m}`));
  const lines = [
    bad.length === 0
      ? `Every byte correct: **met** — all ${readers} restored drives (singles included) hashed to their source's SHA-256.`
      : `Every byte correct: **not met** — ${bad.length} of ${readers} drives differ: ${bad.slice(0, 5).join('; ')}.`,
  ];
  const over = all.flatMap((r) =>
    r.processes
      .filter((p) => p.peakRssBytes !== null && p.peakRssBytes > p.budgetBytes + MEMORY_SLACK_BYTES)
      .map((p) => `${r.origin} #${r.iteration} ${p.name} ${formatBytes(p.peakRssBytes!)}`),
  );
  const readerMax = maxRss(all, true);
  const serveMax = maxRss(all, false);
  lines.push(
    `No process above its budget + 150 MiB: **${over.length === 0 ? 'met' : 'not met'}** — reader processes peaked at ${formatBytes(readerMax)} (budget ${formatBytes(run.settings.cacheBytes)} + 150 MiB = ${formatBytes(run.settings.cacheBytes + MEMORY_SLACK_BYTES)})` +
      (Number.isNaN(serveMax)
        ? ''
        : `, serve at ${formatBytes(serveMax)} (its --cache-size 64 MiB + 150 MiB)`) +
      (over.length === 0 ? '.' : `; over: ${over.slice(0, 5).join('; ')}.`),
  );
  const peaks = readerMemoryPeaks(all);
  if (peaks !== undefined)
    lines.push(
      `Reader processes' own view at their peaks (largest over runs, sampled every 20 ms): V8 heap ${formatBytes(peaks.heapUsedBytes)}, ` +
        `ArrayBuffers ${formatBytes(peaks.arrayBuffersBytes)} (the cache's ${formatBytes(run.settings.cacheBytes)} of SharedArrayBuffer included: ` +
        `${formatBytes(peaks.arrayBuffersBytes - run.settings.cacheBytes)} of blobs and buffers besides), external ${formatBytes(peaks.externalBytes)}; ` +
        `blobs between fetch and decode at most ${formatBytes(peaks.blobBytes)} as the cache charges them (plaintext length + header). ` +
        `At the largest sampled resident set (${formatBytes(peaks.atRssPeak.rssBytes)}): V8 heap ${formatBytes(peaks.atRssPeak.heapUsedBytes)} used of ${formatBytes(peaks.atRssPeak.heapTotalBytes)}, ArrayBuffers ${formatBytes(peaks.atRssPeak.arrayBuffersBytes)}.`,
    );
  for (const origin of ['nginx', 'rgw-nginx', 'rgw-serve-nginx'] as const) {
    const runs = of(all, origin, 'concurrent');
    if (runs.length === 0) continue;
    const worst = Math.max(...runs.map((r) => r.originGets - r.distinctChunks));
    lines.push(
      `Origin GETs ≤ distinct chunks through nginx (${origin}, ${run.settings.readers} readers): **${worst <= 0 ? 'met' : 'not met'}** — ${runs.map((r) => `${r.originGets} GETs for ${r.distinctChunks} chunks`).join(', ')}` +
        '.',
    );
  }
  for (const [origin, single] of run.singleTimesN) {
    const walls = of(all, origin, 'concurrent').map((r) => r.wallSeconds);
    if (walls.length === 0) continue;
    lines.push(
      `${origin}: ${run.settings.readers} restores at once took ${formatNumber(mean(walls))} s; one restore alone × ${run.settings.readers} is ${formatNumber(single)} s.`,
    );
  }
  return lines;
}

function figures(run: ScaleRun, origins: readonly OriginName[], subtitle: string): GoalFigure[] {
  const concurrent = (o: OriginName) => of(run.records, o, 'concurrent');
  const budgetMiB = (run.settings.cacheBytes + MEMORY_SLACK_BYTES) / MiB;
  return [
    {
      slug: 'memory',
      title: 'Peak RSS of each reader process',
      xLabel: 'reader process (the iterations one after another)',
      yLabel: 'peak RSS, MiB',
      unit: 'MiB',
      subtitle,
      series: origins.map((o) => ({
        name: o,
        values: concurrent(o).flatMap((r) =>
          r.processes
            .filter((p) => p.name.startsWith('reader'))
            .map((p) => (p.peakRssBytes ?? Number.NaN) / MiB),
        ),
      })),
      goal: { value: budgetMiB, label: `goal: ≤ cache budget + 150 MiB = ${formatNumber(budgetMiB)} MiB` },
    },
    {
      slug: 'p99',
      title: `p99 of the 4 MiB reads, ${run.settings.readers} readers at once`,
      xLabel: 'iteration',
      yLabel: 'p99 read latency, ms',
      unit: 'ms',
      subtitle,
      series: origins.map((o) => ({
        name: o,
        values: concurrent(o).map((r) => readPercentiles(r.readMs).p99),
      })),
    },
    {
      slug: 'origin-gets',
      title: 'GETs at the origin per distinct chunk',
      xLabel: 'iteration',
      yLabel: 'origin GETs ÷ distinct chunks',
      subtitle,
      series: origins.map((o) => ({
        name: o,
        values: concurrent(o).map((r) => r.originGets / r.distinctChunks),
      })),
      goal: { value: 1, label: 'goal through nginx: ≤ 1' },
    },
  ];
}

/** The BenchResult of a finished run. */
export function scaleResult(run: ScaleRun): BenchResult {
  const s = run.settings;
  const origins = s.origins.filter((o) => !run.skipped.has(o));
  const subtitle = `${s.readers} readers in ${s.processes} processes, ${s.snapshots} snapshots × ${s.drives} drives of ${formatBytes(s.sizeBytes)}, cache ${formatBytes(s.cacheBytes)} per process`;
  const plot: SeriesPlot = {
    title: `Total time of ${s.readers} concurrent restores, per origin`,
    xLabel: 'iteration',
    yLabel: 'seconds until every reader is done',
    unit: 's',
    subtitle,
    series: origins.map((o) => ({
      name: o,
      values: of(run.records, o, 'concurrent').map((r) => r.wallSeconds),
    })),
  };
  return {
    benchmark: 'scale',
    title: `${s.readers} concurrent restores from one origin: ${origins.join(', ')}`,
    machine: run.machine,
    settings: {
      iterations: s.iterations,
      origins: s.origins.join(','),
      readers: s.readers,
      processes: s.processes,
      snapshots: s.snapshots,
      drives: s.drives,
      sizeBytes: s.sizeBytes,
      changes: s.changes,
      cacheBytes: s.cacheBytes,
      workers: s.workers,
      readaheadChunks: s.readaheadChunks,
      readBytes: s.readBytes,
      seed: s.seed,
      serveCacheBytes: 64 * MiB,
    },
    sections: [
      {
        title: `${s.readers} restores at once (${s.processes} reader processes)`,
        meanLabel: 'mean / run',
        cases: [
          ...origins.map((o) => concurrentCase(run, o)),
          ...[...run.skipped].map(([o, why]) => ({ name: o, bytesPerOp: 0, secondsPerOp: [], skipped: why })),
        ],
        columns: CONCURRENT_COLUMNS,
        notes: [
          `Reader r reads drive r mod ${s.snapshots * s.drives} of the ${s.snapshots} snapshots; the processes hold contiguous blocks of readers, so every drive is read in several processes at once. Each reader copies its whole drive in 4 MiB leaseAt calls (views on the cache's pages, hashed, released), one after another (a live restore's background copy), through its process's one ChunkCache.`,
          'Throughput is all readers\' bytes over the total time. "single × N": each reader\'s drive restored alone (fresh origin, one process), summed over the N readers.',
          "Origin GETs: chunk blobs the origin was asked for: serve's liverestore_http_chunk_fetches_total, or the GETs of .chunks/ objects in radosgw's access log. nginx hits: chunk requests answered from its cache / all chunk requests it saw.",
          `Every origin is started fresh for each run (nginx with an empty cache); RGW runs for the whole benchmark. Peak RSS: VmHWM of each process; budget of a reader process = its --cache-size.`,
        ],
      },
      {
        title: 'One restore alone (each drive in turn, fresh origin each time)',
        meanLabel: 'mean / restore',
        cases: origins.map((o) => singleCase(run, o)),
        columns: SINGLE_COLUMNS,
      },
    ],
    notes: goalVerdicts(run),
    raw: { records: run.records, singleTimesN: Object.fromEntries(run.singleTimesN) },
    plot,
    figures: figures(run, origins, subtitle),
    durationSeconds: run.durationSeconds,
  };
}

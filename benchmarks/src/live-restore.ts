/**
 * `pnpm bench live-restore`: PBS's live-restore A/B picture, reproduced on this machine,
 * with PBS today as a third system. A is the old PBS read path (old-reader.ts), C is PBS's
 * read path today (pbs-today-reader.ts), B is liverestore; all read from the same
 * `liverestore serve` through the same injected network conditions (net-proxy.ts), in
 * turn within each iteration (A, C, B), under a workload modelled on a QEMU live restore
 * (live-workload.ts); live-report.ts turns the runs into tables, goals and the plot.
 * Optionally also a scaling run (1…8 drives, one cache budget) and a cold full restore
 * next to the decode limit of the same chunks.
 */

import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { backup, Datastore } from '@liverestore/datastore';
import type { ChunkIndex } from '@liverestore/format';
import { NbdClient } from '@liverestore/nbd';
import { type CachedChunkReader, ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import {
  type ContentMix,
  DATA_DISK_MIX,
  SYSTEM_DISK_MIX,
  vmImageSet,
  writeImageFile,
} from '@liverestore/testkit';
import type { BenchContext, Benchmark } from './benchmark.js';
import { MIXES } from './codec-inputs.js';
import { collectRestoreChunks, decodeLimitPool, timeDecodeLimit } from './decode-limit.js';
import { UsageError } from './errors.js';
import {
  cpuTable,
  goalFigures,
  goalNotes,
  type Iteration,
  iterationTable,
  median,
  ms,
  pct,
  plotSeries,
  rssText,
  SYSTEM_NAMES,
  SYSTEMS,
  type System,
  speedupOver,
  systemCases,
} from './live-report.js';
import type { ChildConfig, ChildOutput } from './live-restore-child.js';
import { distinctDataChunks, readIndexes, zeroDigests } from './live-systems.js';
import {
  bootTrace,
  ChunkRefCounter,
  COPY_REQUEST_BYTES,
  defaultGuestReads,
  GUEST_QUEUE_DEPTH,
  MEAN_THINK_MS,
  percentile,
  runWorkload,
  type WorkloadResult,
} from './live-workload.js';
import {
  type LiverestoreProcess,
  notInfoLog,
  startLiverestoreProcess,
  startNodeProcess,
} from './liverestore-process.js';
import { machineBusySeconds, machineInfo } from './machine.js';
import { measureRoundTrips, startEchoServer } from './net-proxy.js';
import { cacheSizeOption, iterationCount, optionText } from './options.js';
import { PBS_SHARED_CACHE_CHUNKS } from './pbs-today-reader.js';
import { peakRssBytes, processCpuSeconds, serveChunkCounters } from './proc-stats.js';
import { type Costed, costed, fetchEveryBlob, writeBytes } from './restore-costs.js';
import { type BenchResult, type CaseResult, measuredCase, type PlainTable } from './result.js';
import { summarize } from './stats.js';
import {
  formatBitRate,
  formatBytes,
  formatNumber,
  formatRate,
  mbPerSecond,
  parseBitsPerSecond,
  parseBytes,
  parseList,
  parseMilliseconds,
  parseNonNegativeInt,
  parsePositiveInt,
} from './units.js';

type Mode = 'nbd' | 'api';

/** The mixes `--mix` accepts: vm (system disk + data disks, testkit's VM), or one mix for every drive. */
const DRIVE_MIXES: ReadonlyMap<string, ContentMix | undefined> = new Map<string, ContentMix | undefined>([
  ['vm', undefined],
  ['system', SYSTEM_DISK_MIX],
  ['data', DATA_DISK_MIX],
  ...MIXES.filter((m) => m.name !== 'vm').map((m) => [m.name, m.mix] as [string, ContentMix]),
]);

interface Settings {
  readonly iterations: number;
  readonly sizeBytes: number;
  readonly drives: number;
  readonly mix: string;
  readonly cacheBytes: number;
  readonly workers: number;
  readonly readaheadChunks: number;
  /** C's decode threads, standing in for PBS's tokio workers (0: inline, the default). */
  readonly pbsDecodeThreads: number;
  readonly rttMs: number;
  readonly bitsPerSecond: number;
  readonly mode: Mode;
  readonly guestReads: number;
  readonly seed: number;
  readonly quick: boolean;
  readonly scaling: readonly number[];
  readonly scalingSizeBytes: number;
  readonly profileDir: string | undefined;
  readonly dir: string;
}

const DEFAULTS = { iterations: 12, size: '512MiB', drives: 2, scalingSize: '512MiB' } as const;
const QUICK = { iterations: 3, size: '256MiB' } as const;

function readSettings(context: BenchContext): Settings {
  const o = context.options;
  const str = optionText(context);
  const quick = o.quick === true;
  const iterations = iterationCount(context, QUICK.iterations);
  const sizeBytes = parseBytes(str('size') ?? (quick ? QUICK.size : DEFAULTS.size), '--size');
  if (sizeBytes < 8 * 1024 ** 2) throw new UsageError('--size must be at least 8MiB');
  const drives = str('drives') === undefined ? DEFAULTS.drives : parsePositiveInt(str('drives')!, '--drives');
  const mix = str('mix') ?? 'vm';
  if (!DRIVE_MIXES.has(mix))
    throw new UsageError(`--mix: unknown mix "${mix}" (one of: ${[...DRIVE_MIXES.keys()].join(', ')})`);
  const mode = str('mode') ?? 'nbd';
  if (mode !== 'nbd' && mode !== 'api') throw new UsageError(`--mode must be nbd or api, got "${mode}"`);
  const readahead = str('readahead');
  if (readahead !== undefined && !/^\d+$/.test(readahead))
    throw new UsageError(`--readahead must be a non-negative integer, got "${readahead}"`);
  const scaling =
    o.scaling === true
      ? str('scaling-drives') === undefined
        ? [1, 2, 4, 8]
        : parseList(str('scaling-drives')!).map((d) => parsePositiveInt(d, '--scaling-drives'))
      : [];
  const cacheBytes = cacheSizeOption(context, '256MiB');
  return {
    iterations,
    sizeBytes,
    drives,
    mix,
    cacheBytes,
    workers:
      str('workers') === undefined ? availableParallelism() : parsePositiveInt(str('workers')!, '--workers'),
    readaheadChunks: readahead === undefined ? 8 : Number(readahead),
    pbsDecodeThreads:
      str('pbs-decode-threads') === undefined
        ? 0
        : parseNonNegativeInt(str('pbs-decode-threads')!, '--pbs-decode-threads'),
    rttMs: parseMilliseconds(str('rtt') ?? '1ms', '--rtt'),
    bitsPerSecond: parseBitsPerSecond(str('bandwidth') ?? '1Gbit', '--bandwidth'),
    mode,
    guestReads:
      str('guest-reads') === undefined
        ? defaultGuestReads(sizeBytes)
        : parsePositiveInt(str('guest-reads')!, '--guest-reads'),
    seed: str('seed') === undefined ? 1 : parsePositiveInt(str('seed')!, '--seed'),
    quick,
    scaling,
    scalingSizeBytes: parseBytes(
      str('scaling-size') ?? (quick ? QUICK.size : DEFAULTS.scalingSize),
      '--scaling-size',
    ),
    profileDir: str('profile'),
    dir: str('dir') ?? tmpdir(),
  };
}

/** One backed-up VM: its snapshot and, per drive, the archive name and index. */
interface BackedUpVm {
  readonly snapshot: string;
  readonly drives: readonly { readonly name: string; readonly index: ChunkIndex }[];
  readonly sizeBytes: number;
  readonly storedBytes: number;
}

async function backupVm(
  context: BenchContext,
  store: Datastore,
  scratch: string,
  id: string,
  s: Settings,
  drives: number,
  sizeBytes: number,
): Promise<BackedUpVm> {
  const mix = DRIVE_MIXES.get(s.mix);
  const set = vmImageSet(s.seed, { drives, sizeBytes }).map((d) =>
    mix === undefined ? d : { ...d, spec: { ...d.spec, mix } },
  );
  context.progress(
    `writing ${drives} synthetic ${formatBytes(sizeBytes)} drive${drives === 1 ? '' : 's'} (mix ${s.mix}) and backing them up as vm/${id} …`,
  );
  const inputs = [];
  for (const d of set) {
    const path = join(scratch, `${id}-${d.name}.raw`);
    await writeImageFile(d.spec, path);
    inputs.push({ name: d.name, path });
  }
  const result = await backup(store, { type: 'vm', id, inputs });
  for (const input of inputs) await rm(input.path);
  return {
    snapshot: result.snapshot,
    drives: await readIndexes(
      store.dir,
      result.snapshot,
      set.map((d) => d.name),
    ),
    sizeBytes: drives * sizeBytes,
    storedBytes: result.bytesWritten,
  };
}

/** Reads every chunk file once, so no iteration pays for a cold page cache. */
async function warmPageCache(dir: string): Promise<void> {
  const entries = await readdir(join(dir, '.chunks'), { recursive: true, withFileTypes: true });
  for (const e of entries) if (e.isFile()) await readFile(join(e.parentPath, e.name));
}

interface CpuSnapshot {
  readonly serve: number | undefined;
  readonly proxy: number | undefined;
  readonly self: number;
  readonly machine: number | undefined;
}

/**
 * CPU seconds per component between two snapshots; `readerTotal` is what the reading
 * process used in the window (all of it for an API child, start-up included).
 */
function cpuShares(
  before: CpuSnapshot,
  after: CpuSnapshot,
  reader: number,
  readerTotal: number,
  clientHere: boolean,
): Iteration['cpuSeconds'] {
  const delta = (k: keyof CpuSnapshot): number => (after[k] ?? Number.NaN) - (before[k] ?? Number.NaN);
  const ours = readerTotal + delta('serve') + delta('proxy') + delta('self');
  return {
    reader,
    serve: delta('serve'),
    proxy: delta('proxy'),
    client: clientHere ? delta('self') : 0,
    others: delta('machine') - ours,
  };
}

async function cpuSnapshot(env: Environment): Promise<CpuSnapshot> {
  const self = process.cpuUsage();
  return {
    serve: await processCpuSeconds(env.servePid),
    proxy: await processCpuSeconds(env.proxyPid),
    self: (self.user + self.system) / 1e6,
    machine: machineBusySeconds(),
  };
}

interface Environment {
  readonly s: Settings;
  readonly servePid: number;
  readonly proxyPid: number;
  readonly serveUrl: string;
  readonly sourceUrl: string;
  readonly context: BenchContext;
}

const PBS_NBD_CHILD = fileURLToPath(new URL('./pbs-nbd-child.js', import.meta.url));
const API_CHILD = fileURLToPath(new URL('./live-restore-child.js', import.meta.url));

async function runNbdIteration(
  env: Environment,
  system: System,
  vm: BackedUpVm,
  drives: number,
): Promise<{
  workload: WorkloadResult;
  peakRssBytes: number | undefined;
  cpu: Iteration['cpuSeconds'];
}> {
  const { s } = env;
  const names = vm.drives.slice(0, drives).map((d) => d.name);
  const profile = s.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', s.profileDir];
  const server: LiverestoreProcess =
    system === 'B'
      ? await startLiverestoreProcess(
          [
            'nbd',
            '--from',
            env.sourceUrl,
            vm.snapshot,
            '--listen',
            '127.0.0.1:0',
            '--cache-size',
            String(s.cacheBytes),
            '--workers',
            String(s.workers),
            '--readahead',
            String(s.readaheadChunks),
          ],
          profile,
        )
      : await startNodeProcess(
          PBS_NBD_CHILD,
          [system, String(s.pbsDecodeThreads), env.sourceUrl, vm.snapshot, ...names],
          `NBD server of ${SYSTEM_NAMES[system]}`,
          profile,
        );
  const clients: NbdClient[] = [];
  try {
    const port = Number(server.address.slice(server.address.lastIndexOf(':') + 1));
    for (const name of names) clients.push(await NbdClient.connect({ port, exportName: name }));
    const traces = clients.map((c, i) => bootTrace(s.seed, i, c.size, s.guestReads));
    const counters = vm.drives
      .slice(0, drives)
      .map((d) => new ChunkRefCounter(d.index, zeroDigests(d.index)));
    const cpu0 = await processCpuSeconds(server.pid);
    const before = await cpuSnapshot(env);
    const workload = await runWorkload(clients, traces, counters);
    const after = await cpuSnapshot(env);
    const cpu1 = await processCpuSeconds(server.pid);
    const rss = await peakRssBytes(server.pid);
    const reader = cpu0 === undefined || cpu1 === undefined ? Number.NaN : cpu1 - cpu0;
    return { workload, peakRssBytes: rss, cpu: cpuShares(before, after, reader, reader, true) };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    server.stop();
    await server.exited;
  }
}

function runApiIteration(
  env: Environment,
  system: System,
  vm: BackedUpVm,
  drives: number,
): Promise<ChildOutput> {
  const { s } = env;
  const config: ChildConfig = {
    system,
    url: env.sourceUrl,
    snapshot: vm.snapshot,
    drives: vm.drives.slice(0, drives).map((d) => d.name),
    cache: { cacheBytes: s.cacheBytes, workers: s.workers, readaheadChunks: s.readaheadChunks },
    pbsDecodeThreads: s.pbsDecodeThreads,
    seed: s.seed,
    guestReads: s.guestReads,
  };
  const profile = s.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', s.profileDir];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...profile, API_CHILD, JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      out += t;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`live-restore API child (${system}) exited (${code ?? signal})`));
        return;
      }
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildOutput);
      } catch (error) {
        reject(new Error(`live-restore API child printed no result: ${(error as Error).message}`));
      }
    });
  });
}

async function runIteration(
  env: Environment,
  system: System,
  vm: BackedUpVm,
  drives: number,
  iteration: number,
): Promise<Iteration> {
  const before = await serveChunkCounters(env.serveUrl);
  let workload: WorkloadResult;
  let rss: number | undefined;
  let cpu: Iteration['cpuSeconds'];
  let stats: Record<string, number> | undefined;
  if (env.s.mode === 'nbd') {
    ({ workload, peakRssBytes: rss, cpu } = await runNbdIteration(env, system, vm, drives));
  } else {
    const cpuBefore = await cpuSnapshot(env);
    const out = await runApiIteration(env, system, vm, drives);
    cpu = cpuShares(cpuBefore, await cpuSnapshot(env), out.cpuSeconds, out.cpuTotalSeconds, false);
    workload = out.workload;
    rss = out.peakRssBytes ?? undefined;
    stats = out.stats;
  }
  const after = await serveChunkCounters(env.serveUrl);
  const sorted = [...workload.guestLatenciesMs].sort((a, b) => a - b);
  const fetches = after.requests - before.requests;
  return {
    system,
    drives,
    iteration,
    seconds: workload.seconds,
    copySeconds: workload.copySeconds,
    guestReads: sorted.length,
    guestReadsPlanned: workload.guestReadsPlanned,
    guestP50Ms: percentile(sorted, 50),
    guestP99Ms: percentile(sorted, 99),
    guestMaxMs: sorted.at(-1) ?? Number.NaN,
    chunkRefs: workload.chunkRefs,
    chunkFetches: fetches,
    minFetches: distinctDataChunks(vm.drives.slice(0, drives)),
    fetchedBytes: after.bytes - before.bytes,
    hitRate: workload.chunkRefs === 0 ? Number.NaN : 1 - fetches / workload.chunkRefs,
    peakRssBytes: rss ?? null,
    cpuSeconds: cpu,
    ...(stats === undefined ? {} : { stats }),
  };
}

/** A cold full restore of every drive at once from `url`: its wall time and CPU (ours and serve's). */
async function timeColdRestore(
  env: Environment,
  url: string,
  vm: BackedUpVm,
  scratch: string,
): Promise<Costed> {
  const s = env.s;
  const cache = new ChunkCache({ cacheBytes: s.cacheBytes, workers: s.workers });
  try {
    const snap = await openSnapshot({ source: url, snapshot: vm.snapshot, cache });
    try {
      const readers: CachedChunkReader[] = [];
      for (const d of vm.drives)
        readers.push(await snap.openArchive(d.name, { readaheadChunks: s.readaheadChunks }));
      const cost = await costed(env.servePid, async () => {
        await Promise.all(
          readers.map((r, i) =>
            restoreArchive(r, join(scratch, `restored-${i}.raw`), { concurrency: 2 * s.workers + 2 }),
          ),
        );
      });
      for (let i = 0; i < readers.length; i++) await rm(join(scratch, `restored-${i}.raw`), { force: true });
      return cost;
    } finally {
      await snap.close();
    }
  } finally {
    await cache.close();
  }
}

/** Round trips through a second proxy child with the same settings, in front of an echo server. */
async function roundTrips(proxyScript: string, shaping: readonly string[]): Promise<number[]> {
  const echo = await startEchoServer();
  try {
    const proxy = await startNodeProcess(
      proxyScript,
      [`127.0.0.1:${echo.port}`, ...shaping],
      'network proxy',
    );
    try {
      const port = Number(proxy.address.slice(proxy.address.lastIndexOf(':') + 1));
      return (await measureRoundTrips(port, 200)).sort((a, b) => a - b);
    } finally {
      proxy.stop();
      await proxy.exited;
    }
  } finally {
    await echo.close();
  }
}

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
      for (const system of SYSTEMS) {
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

    let coldSection: BenchResult['sections'][number] | undefined;
    let coldGoal: string | undefined;
    if (s.scaling.length > 0) {
      const chunks = await collectRestoreChunks(
        storeDir,
        vm.snapshot,
        vm.drives.map((d) => d.name),
      );
      const pool = decodeLimitPool(s.workers);
      const decode: Costed[] = [];
      const fetchOnly: Costed[] = [];
      const writeOnly: Costed[] = [];
      const direct: Costed[] = [];
      const shaped: Costed[] = [];
      try {
        for (let round = 1; round <= 3; round++) {
          context.progress(
            `cold full restore round ${round}/3: decode limit, fetch only, write only, restore from serve, restore through the proxy …`,
          );
          decode.push(await timeDecodeLimit(pool, chunks));
          fetchOnly.push(
            await costed(env.servePid, () => fetchEveryBlob(env.serveUrl, chunks, 2 * s.workers + 2)),
          );
          writeOnly.push(
            await costed(env.servePid, () => writeBytes(join(scratch, 'write-only.raw'), chunks.dataBytes)),
          );
          direct.push(await timeColdRestore(env, env.serveUrl, vm, scratch));
          shaped.push(await timeColdRestore(env, env.sourceUrl, vm, scratch));
        }
      } finally {
        await pool.destroy();
      }
      const seconds = (runs: readonly Costed[]): number[] => runs.map((r) => r.seconds);
      const cpu = (runs: readonly Costed[]): number => median(runs.map((r) => r.cpuSeconds));
      const cpuDetail = (runs: readonly Costed[]) => ({ cpuSeconds: cpu(runs) });
      const decodeCase = measuredCase(
        `decode limit: ${chunks.tasks.size} distinct chunks on ${s.workers} threads`,
        chunks.distinctBytes,
        seconds(decode),
        cpuDetail(decode),
      );
      const limit = decodeCase.throughputMBps!;
      const restoreCase = (name: string, runs: readonly Costed[]): CaseResult => {
        const rate = mbPerSecond(chunks.dataBytes, summarize(seconds(runs)).mean);
        return measuredCase(name, vm.sizeBytes, seconds(runs), {
          dataRateMBps: rate,
          ofDecodeLimit: `${formatNumber((100 * rate) / limit)} %`,
          ...cpuDetail(runs),
        });
      };
      const fetchCase = measuredCase(
        `fetch only: the ${chunks.tasks.size} distinct blobs from liverestore serve (loopback), not decoded`,
        chunks.blobBytes,
        seconds(fetchOnly),
        cpuDetail(fetchOnly),
      );
      const writeCase = measuredCase(
        `write only: ${formatBytes(chunks.dataBytes)} to the scratch directory, then fsync`,
        chunks.dataBytes,
        seconds(writeOnly),
        cpuDetail(writeOnly),
      );
      const directCase = restoreCase(
        'cold full restore from liverestore serve (loopback, no shaping)',
        direct,
      );
      const shapedCase = restoreCase(
        `cold full restore through the proxy (${s.rttMs} ms, ${formatBitRate(s.bitsPerSecond)})`,
        shaped,
      );
      const directShare = (directCase.details!.dataRateMBps as number) / limit;
      // The parts of a restore measured alone need this much CPU; on `cores` cores even a
      // perfectly overlapped restore takes at least that divided by the cores.
      // Nor can it be done before its bytes are on disk, which writing them alone takes.
      const cores = availableParallelism();
      const partsCpu = cpu(decode) + cpu(fetchOnly) + cpu(writeOnly);
      const cpuFloor = partsCpu / cores;
      const diskFloor = median(seconds(writeOnly));
      // As a rate of non-zero bytes, like the restore rows' share.
      const bestShare = mbPerSecond(chunks.dataBytes, Math.max(cpuFloor, diskFloor)) / limit;
      coldGoal = `Cold full restore: ${formatNumber(100 * directShare)} % of the decode limit over loopback (goal ≥ 70 %: ${directShare >= 0.7 ? 'met' : 'missed'}); through the ${formatBitRate(s.bitsPerSecond)} proxy ${formatNumber((100 * (shapedCase.details!.dataRateMBps as number)) / limit)} %. Decoding, fetching and writing, each measured alone, need ${formatNumber(partsCpu)} CPU s (${formatNumber(cpu(decode))} + ${formatNumber(cpu(fetchOnly))} + ${formatNumber(cpu(writeOnly))}), at least ${formatNumber(cpuFloor)} s on ${cores} cores, and writing alone takes ${formatNumber(diskFloor)} s: no restore here can beat ${formatNumber(Math.max(cpuFloor, diskFloor))} s, ${formatNumber(100 * bestShare)} % of the decode limit (the restore took ${formatNumber(median(seconds(direct)))} s and ${formatNumber(cpu(direct))} CPU s).`;
      coldSection = {
        title: `Cold full restore of the ${s.drives} drives vs the decode limit of the same chunks`,
        meanLabel: 'mean / run',
        cases: [decodeCase, fetchCase, writeCase, directCase, shapedCase],
        columns: [
          { key: 'dataRateMBps', label: 'non-zero MB/s', format: 'decimal' },
          { key: 'ofDecodeLimit', label: 'of decode limit', format: 'text' },
          { key: 'cpuSeconds', label: 'CPU s', format: 'decimal' },
        ],
        notes: [
          `${formatBytes(chunks.dataBytes)} in non-zero chunks (${chunks.tasks.size} distinct, ${formatBytes(chunks.distinctBytes)}; ${formatBytes(chunks.blobBytes)} of blobs); the decode limit decodes each distinct chunk once on a pool of ${s.workers} threads with the blobs in memory (${formatRate(limit)}), as \`bench restore\` does.`,
          `The restores run restoreArchive on all drives at once through one fresh ChunkCache (${formatBytes(s.cacheBytes)}, ${s.workers} workers), writing to scratch files, in the benchmark process; "non-zero MB/s" counts the bytes of non-zero chunks, which is what compares with the decode limit.`,
          `"fetch only" and "write only" are the other two parts of a restore, measured alone: every distinct blob fetched once as a background fetch (${2 * s.workers + 2} at a time, through HttpChunkSource's lanes) and dropped; the non-zero bytes written in 4 MiB pieces to one file in the scratch directory as restoreArchive writes (writeback started every 256 MiB, fsync at the end). "CPU s" (median) is this process, all threads, plus \`serve\`.`,
        ],
      };
    }

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
    if (coldGoal !== undefined) notes.push(coldGoal);
    const rssWhat =
      s.mode === 'nbd'
        ? "peak RSS is the VmHWM of the NBD server process (`liverestore nbd` for B, the PBS read path's NBD server for A and C), a fresh process per iteration"
        : 'peak RSS is the VmHWM of the process doing the reading (a fresh child per iteration running the readers and the workload)';
    notes.push(
      `Measured round trip through the proxy (64-byte ping-pong, ${rtts.length} samples, ${s.rttMs} ms configured): p50 ${ms(percentile(rtts, 50))}, p99 ${ms(percentile(rtts, 99))}; the proxy delays by scheduling on a 1 ms ticker, so single pieces see 0–1 ms jitter around the configured delay.`,
      `Hit rate = 1 − chunk fetches / chunk references: references are the (read, non-zero chunk) pairs of every copy and guest read issued, fetches are the chunk requests \`liverestore serve\` answered in the iteration (its /metrics); readahead fetches count as fetches. ${rssWhat}.`,
      `A: per drive one reader holding only its current decoded chunk (plus PBS's cache hint: the ≤ 8 chunks the index uses more than once, i.e. the zero chunk), every read under the drive's mutex, chunks of a read fetched one after another, decode inline (CRC-32, inflate, SHA-256) on the main thread; same HTTP client and server as B.`,
      `C: PBS today — one LRU of ${PBS_SHARED_CACHE_CHUNKS} decoded chunks (counted in entries, not bytes) shared by all drives, concurrent readers of a chunk sharing one fetch + decode, reads of a drive not serialised (no mutex), chunks of a read fetched one after another, decode ${s.pbsDecodeThreads === 0 ? 'inline on the main thread' : `on ${s.pbsDecodeThreads} thread${s.pbsDecodeThreads === 1 ? '' : 's'} (PBS's tokio workers)`}, no readahead, PBS's most-used cache hint per drive as in A; same HTTP client and server as A and B.`,
      `B: liverestore ${s.mode === 'nbd' ? '`liverestore nbd --from URL`' : 'library (openSnapshot, ChunkCache, CachedChunkReader.readAt) in-process'}: one ${formatBytes(s.cacheBytes)} cache shared by all drives, ${s.workers} decode workers, readahead ${s.readaheadChunks} chunks.`,
    );

    const settings = {
      iterations: s.iterations,
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
      compress: 'deflate',
      pbsTodayCacheChunks: PBS_SHARED_CACHE_CHUNKS,
      pbsDecodeThreads: s.pbsDecodeThreads,
    };
    const plotSubtitle = `${s.mode} mode, ${s.drives} drives × ${formatBytes(s.sizeBytes)} (${s.mix}), ${s.rttMs} ms RTT, ${formatBitRate(s.bitsPerSecond)}, B's cache ${formatBytes(s.cacheBytes)}; B's median speed-up ${formatNumber(overC.median)}× over C, ${formatNumber(overA.median)}× over A`;
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
        ...(coldSection === undefined ? [] : [coldSection]),
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
  options: [
    {
      name: 'iterations',
      type: 'string',
      valueName: 'N',
      description: 'iterations of A, C and B (same as --samples)',
      defaultText: String(DEFAULTS.iterations),
    },
    {
      name: 'size',
      type: 'string',
      valueName: 'SIZE',
      description: 'size of each drive',
      defaultText: DEFAULTS.size,
    },
    {
      name: 'drives',
      type: 'string',
      valueName: 'N',
      description: 'drives of the VM',
      defaultText: String(DEFAULTS.drives),
    },
    {
      name: 'mix',
      type: 'string',
      valueName: 'NAME',
      description: `content: ${[...DRIVE_MIXES.keys()].join(', ')} (vm = system disk + data disks)`,
      defaultText: 'vm',
    },
    {
      name: 'cache-size',
      type: 'string',
      valueName: 'SIZE',
      description: "B's chunk cache, shared by all drives",
      defaultText: '256MiB',
    },
    {
      name: 'workers',
      type: 'string',
      valueName: 'N',
      description: "B's decode threads",
      defaultText: 'machine parallelism',
    },
    {
      name: 'readahead',
      type: 'string',
      valueName: 'N',
      description: "B's readahead window in chunks",
      defaultText: '8',
    },
    {
      name: 'pbs-decode-threads',
      type: 'string',
      valueName: 'N',
      description: "C's decode threads, as PBS's tokio workers (0: inline on the event loop)",
      defaultText: '0',
    },
    {
      name: 'rtt',
      type: 'string',
      valueName: 'TIME',
      description: 'round-trip time added by the proxy (1ms, 500us, 0)',
      defaultText: '1ms',
    },
    {
      name: 'bandwidth',
      type: 'string',
      valueName: 'RATE',
      description: 'bandwidth cap per direction (1Gbit, 100Mbit, unlimited)',
      defaultText: '1Gbit',
    },
    {
      name: 'mode',
      type: 'string',
      valueName: 'nbd|api',
      description: 'drive the workload over NBD or through the library',
      defaultText: 'nbd',
    },
    {
      name: 'guest-reads',
      type: 'string',
      valueName: 'N',
      description: 'guest reads per drive',
      defaultText: 'one per 2 MiB of drive',
    },
    {
      name: 'seed',
      type: 'string',
      valueName: 'N',
      description: 'testkit VM seed and guest trace seed',
      defaultText: '1',
    },
    {
      name: 'quick',
      type: 'boolean',
      description: `quick setting: ${QUICK.iterations} iterations of ${QUICK.size} drives (explicit options win)`,
    },
    {
      name: 'scaling',
      type: 'boolean',
      description: 'also run B at 1, 2, 4, 8 drives and a cold full restore vs the decode limit',
    },
    {
      name: 'scaling-drives',
      type: 'string',
      valueName: 'LIST',
      description: 'drive counts of the scaling run',
      defaultText: '1,2,4,8',
    },
    {
      name: 'scaling-size',
      type: 'string',
      valueName: 'SIZE',
      description: 'size of each drive in the scaling run',
      defaultText: DEFAULTS.scalingSize,
    },
    {
      name: 'profile',
      type: 'string',
      valueName: 'DIR',
      description: 'write --cpu-prof profiles of the reading processes to DIR',
    },
    {
      name: 'dir',
      type: 'string',
      valueName: 'DIR',
      description: 'scratch directory',
      defaultText: 'the OS temp dir',
    },
  ],
  run: runLiveRestore,
};

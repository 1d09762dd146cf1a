/**
 * One iteration of `bench live-restore`: a system (A, C or B) serving the backed-up VM's
 * drives while the workload runs against it, over NBD (a fresh server process) or through
 * the library (a fresh child), with the CPU of every process involved and the chunks
 * `serve` answered.
 */

import { spawn } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backup, type Datastore } from '@liverestore/datastore';
import type { ChunkIndex } from '@liverestore/format';
import { NbdClient } from '@liverestore/nbd';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import type { BenchContext } from './benchmark.js';
import { type Iteration, SYSTEM_NAMES, type System } from './live-report.js';
import type { ChildConfig, ChildOutput } from './live-restore-child.js';
import { DRIVE_MIXES, type Settings, STORE_COMPRESSION } from './live-settings.js';
import { distinctDataChunks, readIndexes, zeroDigests } from './live-systems.js';
import { bootTrace, ChunkRefCounter, percentile, runWorkload, type WorkloadResult } from './live-workload.js';
import { type LiverestoreProcess, startLiverestoreProcess, startNodeProcess } from './liverestore-process.js';
import { machineBusySeconds } from './machine.js';
import { measureRoundTrips, startEchoServer } from './net-proxy.js';
import { peakRssBytes, processCpuSeconds, serveChunkCounters } from './proc-stats.js';
import { formatBytes } from './units.js';

/** One backed-up VM: its snapshot and, per drive, the archive name and index. */
export interface BackedUpVm {
  readonly snapshot: string;
  readonly drives: readonly { readonly name: string; readonly index: ChunkIndex }[];
  readonly sizeBytes: number;
  readonly storedBytes: number;
}

export async function backupVm(
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
  const result = await backup(store, { type: 'vm', id, inputs, compress: STORE_COMPRESSION });
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
export async function warmPageCache(dir: string): Promise<void> {
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

export interface Environment {
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

export async function runIteration(
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

/** Round trips through a second proxy child with the same settings, in front of an echo server. */
export async function roundTrips(proxyScript: string, shaping: readonly string[]): Promise<number[]> {
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

/**
 * The cold full restore of `bench live-restore --scaling`: every drive restored at once
 * through one fresh cache, directly from `serve` and through the proxy, next to the
 * decode limit of the same chunks and the fetch and write costs measured alone.
 */

import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { type CachedChunkReader, ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import { collectRestoreChunks, decodeLimitPool, timeDecodeLimit } from './decode-limit.js';
import type { BackedUpVm, Environment } from './live-iteration.js';
import { median } from './live-report.js';
import { type Costed, costed, fetchEveryBlob, writeBytes } from './restore-costs.js';
import { type BenchResult, type CaseResult, measuredCase } from './result.js';
import { summarize } from './stats.js';
import { formatBitRate, formatBytes, formatNumber, formatRate, mbPerSecond } from './units.js';

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

/**
 * The cold-restore section of the report and its goal line: three rounds of the decode
 * limit, fetch only, write only, a restore from `serve` and one through the proxy.
 */
export async function coldRestoreSection(
  env: Environment,
  vm: BackedUpVm,
  storeDir: string,
  scratch: string,
): Promise<{ section: BenchResult['sections'][number]; goal: string }> {
  const { s, context } = env;
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
  const directCase = restoreCase('cold full restore from liverestore serve (loopback, no shaping)', direct);
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
  const goal = `Cold full restore: ${formatNumber(100 * directShare)} % of the decode limit over loopback (goal ≥ 70 %: ${directShare >= 0.7 ? 'met' : 'missed'}); through the ${formatBitRate(s.bitsPerSecond)} proxy ${formatNumber((100 * (shapedCase.details!.dataRateMBps as number)) / limit)} %. Decoding, fetching and writing, each measured alone, need ${formatNumber(partsCpu)} CPU s (${formatNumber(cpu(decode))} + ${formatNumber(cpu(fetchOnly))} + ${formatNumber(cpu(writeOnly))}), at least ${formatNumber(cpuFloor)} s on ${cores} cores, and writing alone takes ${formatNumber(diskFloor)} s: no restore here can beat ${formatNumber(Math.max(cpuFloor, diskFloor))} s, ${formatNumber(100 * bestShare)} % of the decode limit (the restore took ${formatNumber(median(seconds(direct)))} s and ${formatNumber(cpu(direct))} CPU s).`;
  const section: BenchResult['sections'][number] = {
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
  return { section, goal };
}

/**
 * One sample of the backup benchmark, run in its own process so that its peak RSS
 * (getrusage maxRSS, which only ever grows) and its CPU time belong to this backup
 * alone. Reads a {@link BackupTask} as JSON from argv[2], prints a
 * {@link BackupSample} as one JSON line on stdout, progress on stderr.
 */

import { type BackupProgress, backup, Datastore } from '@liverestore/datastore';
import type { Compression } from '@liverestore/format';
import { machineBusySeconds } from './machine.js';

/** What the parent asks one child to do. */
export interface BackupTask {
  readonly storeDir: string;
  readonly imagePath: string;
  /** Undefined: the backup writer's default (the machine's parallelism). */
  readonly encodeThreads?: number;
  readonly compress: Compression;
  /** Prefix of the progress lines. */
  readonly label: string;
}

/** What one backup measured. */
export interface BackupSample {
  /** Wall time of the `backup()` call alone (no process start-up). */
  readonly seconds: number;
  readonly bytesRead: number;
  readonly chunks: number;
  readonly zeroChunks: number;
  readonly chunksNew: number;
  readonly chunksReused: number;
  readonly bytesWritten: number;
  /** User + system CPU time of the process, all threads (encode workers included). */
  readonly cpuSeconds: number;
  readonly cpuUserSeconds: number;
  readonly cpuSystemSeconds: number;
  /**
   * CPU seconds other processes used during the backup (machine busy time from
   * /proc/stat minus ours); undefined off Linux.
   */
  readonly otherCpuSeconds?: number;
  /** Peak resident set of the process, Node's own baseline included. */
  readonly peakRssBytes: number;
}

const PROGRESS_STEPS = 4;

async function main(): Promise<void> {
  const task = JSON.parse(process.argv[2] ?? '') as BackupTask;
  const store = await Datastore.create(task.storeDir);
  let nextReport = 1;
  const onProgress = (p: BackupProgress): void => {
    if (p.totalBytesDone >= (nextReport * p.totalBytes) / PROGRESS_STEPS && nextReport < PROGRESS_STEPS) {
      process.stderr.write(`backup: ${task.label}: ${Math.round((nextReport * 100) / PROGRESS_STEPS)} %\n`);
      nextReport++;
    }
  };
  const busyBefore = machineBusySeconds();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const result = await backup(store, {
    type: 'vm',
    id: 'bench',
    inputs: [{ name: 'drive-scsi0', path: task.imagePath }],
    compress: task.compress,
    onProgress,
    ...(task.encodeThreads === undefined ? {} : { encodeThreads: task.encodeThreads }),
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const busyAfter = machineBusySeconds();
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const archive = result.archives[0];
  const sample: BackupSample = {
    seconds,
    bytesRead: result.bytesRead,
    chunks: archive?.chunks ?? 0,
    zeroChunks: archive?.zeroChunks ?? 0,
    chunksNew: result.chunksNew,
    chunksReused: result.chunksReused,
    bytesWritten: result.bytesWritten,
    cpuSeconds,
    cpuUserSeconds: cpu.user / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
    ...(busyBefore === undefined || busyAfter === undefined
      ? {}
      : { otherCpuSeconds: Math.max(0, busyAfter - busyBefore - cpuSeconds) }),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  process.stdout.write(`${JSON.stringify(sample)}\n`);
}

await main();

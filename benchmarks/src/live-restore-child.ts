/**
 * One iteration of `bench live-restore --mode api`, in a fresh process so that every
 * iteration starts cold and its peak RSS is its own: opens A's, B's or C's readers on the
 * source URL, runs the workload in-process, prints one JSON line (IterationOutput).
 *
 *   node live-restore-child.js '<ChildConfig as JSON>'
 */

import { type CacheSettings, openNewSystem, openPbsReadPath, zeroDigests } from './live-systems.js';
import { bootTrace, ChunkRefCounter, runWorkload, type WorkloadResult } from './live-workload.js';
import { peakRssBytes } from './proc-stats.js';

/** What the parent passes. */
export interface ChildConfig {
  readonly system: 'A' | 'B' | 'C';
  readonly url: string;
  readonly snapshot: string;
  readonly drives: readonly string[];
  readonly cache: CacheSettings;
  /** C's decode threads (0: inline on the event loop). */
  readonly pbsDecodeThreads: number;
  readonly seed: number;
  readonly guestReads: number;
}

/** What the child prints. */
export interface ChildOutput {
  readonly workload: WorkloadResult;
  readonly peakRssBytes: number | null;
  /** CPU seconds of this process (all threads) during the workload. */
  readonly cpuSeconds: number;
  /** CPU seconds of this process (all threads) since it started. */
  readonly cpuTotalSeconds: number;
  readonly stats: Record<string, number>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ChildConfig;
const system =
  config.system === 'B'
    ? await openNewSystem(config.url, config.snapshot, config.drives, config.cache)
    : await openPbsReadPath(
        config.system,
        config.url,
        config.snapshot,
        config.drives,
        config.pbsDecodeThreads,
      );
try {
  const traces = system.drives.map((d, i) => bootTrace(config.seed, i, d.size, config.guestReads));
  const counters = system.drives.map((d) => new ChunkRefCounter(d.index, zeroDigests(d.index)));
  const cpu0 = process.cpuUsage();
  const workload = await runWorkload(system.drives, traces, counters);
  const cpu = process.cpuUsage(cpu0);
  const out: ChildOutput = {
    workload,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    cpuTotalSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    peakRssBytes: (await peakRssBytes('self')) ?? null,
    stats: system.stats(),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await system.close();
}

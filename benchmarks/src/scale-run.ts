/**
 * One run of `bench scale` against one origin: the origin started fresh (cold at every
 * tier), the readers of `plan` run together in their processes, then the numbers read
 * from outside: chunk GETs at the origin, what the nginx tier answered from its cache,
 * each process's peak RSS, and every restored drive's SHA-256 against its source.
 */

import { CleanupScope } from './children.js';
import { distinctDataChunks } from './live-systems.js';
import { percentile } from './live-workload.js';
import type { AccessCounts } from './nginx-cache.js';
import { peakRssBytes } from './proc-stats.js';
import { type OriginName, type OriginStores, startOrigin } from './scale-origins.js';
import type { MemoryPeaks, ReaderOutcome } from './scale-reader-child.js';
import { type ReaderSettings, runReaders } from './scale-readers.js';
import type { DriveFixture } from './scale-setup.js';

/** Peak RSS of one process of a run and the budget it is held to. */
export interface ProcessMemory {
  readonly name: string;
  readonly peakRssBytes: number | null;
  readonly budgetBytes: number;
  /** A reader process's own view of its memory at its peaks (absent for origin processes). */
  readonly memory?: MemoryPeaks;
}

/** Everything one run measured. */
export interface RunRecord {
  readonly iteration: number;
  readonly origin: OriginName;
  readonly kind: 'single' | 'concurrent';
  /** `SNAPSHOT DRIVE` of a single restore; `N readers` of a concurrent run. */
  readonly restored: string;
  readonly readers: number;
  /** From `go` to the last reader's answer. */
  readonly wallSeconds: number;
  readonly bytes: number;
  /** Chunk GETs at serve, or every GET at RGW; NaN when the origin cannot say. */
  readonly originGets: number;
  /** Distinct non-zero chunks of the drives read: the fewest GETs a cold copy needs. */
  readonly distinctChunks: number;
  /** Chunk requests at the nginx tier by cache status; absent without one. */
  readonly cache?: AccessCounts;
  /** Latency of every 4 MiB read, ms. */
  readonly readMs: readonly number[];
  readonly processes: readonly ProcessMemory[];
  /** Readers whose bytes hashed to the source's SHA-256. */
  readonly verified: number;
  /** `snapshot drive` of each reader whose bytes did not. */
  readonly mismatched: readonly string[];
}

/** p50 and p99 of a run's reads, ms. */
export function readPercentiles(readMs: readonly number[]): { p50: number; p99: number } {
  const sorted = [...readMs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/**
 * `SNAPSHOT DRIVE` of every reader whose bytes did not hash to its fixture's SHA-256
 * (outcomes in the plan's order), or that restored another drive or size than planned.
 */
export function mismatchedDrives(
  fixtures: readonly DriveFixture[],
  outcomes: readonly ReaderOutcome[],
): string[] {
  if (outcomes.length !== fixtures.length)
    throw new Error(`${outcomes.length} readers answered for ${fixtures.length} planned`);
  return outcomes
    .filter((o, i) => {
      const f = fixtures[i]!;
      return (
        o.snapshot !== f.snapshot ||
        o.drive !== f.drive ||
        o.bytes !== f.index.sizeBytes ||
        o.sha256 !== f.sha256
      );
    })
    .map((o) => `${o.snapshot} ${o.drive}`);
}

/** Runs `plan` (fixtures per process) once against a fresh `origin`. */
export async function runOnce(
  origin: OriginName,
  iteration: number,
  kind: RunRecord['kind'],
  plan: readonly (readonly DriveFixture[])[],
  stores: OriginStores,
  settings: ReaderSettings,
  dir: string,
): Promise<RunRecord> {
  const scope = new CleanupScope();
  try {
    const running = await startOrigin(origin, scope, stores, dir);
    const tasks = plan.map((fixtures) => fixtures.map(({ snapshot, drive }) => ({ snapshot, drive })));
    const run = await runReaders(scope, running.from, tasks, settings, running.env);
    const fixtures = plan.flat();
    const outcomes = run.processes.flatMap((p) => p.readers);
    const mismatched = mismatchedDrives(fixtures, outcomes);
    const originProcesses: ProcessMemory[] = [];
    for (const p of running.processes)
      originProcesses.push({
        name: p.name,
        peakRssBytes: (await peakRssBytes(p.pid)) ?? null,
        budgetBytes: p.budgetBytes,
      });
    const originGets = await running.originGets();
    const cache = await running.cacheCounts();
    const distinct = new Map(fixtures.map((f) => [`${f.snapshot} ${f.drive}`, f]));
    return {
      iteration,
      origin,
      kind,
      restored:
        kind === 'single' ? `${fixtures[0]!.snapshot} ${fixtures[0]!.drive}` : `${outcomes.length} readers`,
      readers: outcomes.length,
      wallSeconds: run.wallSeconds,
      bytes: outcomes.reduce((sum, o) => sum + o.bytes, 0),
      originGets,
      distinctChunks: distinctDataChunks([...distinct.values()]),
      ...(cache === undefined ? {} : { cache }),
      readMs: outcomes.flatMap((o) => o.readMs.map((ms) => Math.round(ms * 100) / 100)),
      processes: [
        ...run.processes.map((p, i) => ({
          name: `reader ${i + 1}`,
          peakRssBytes: p.peakRssBytes,
          budgetBytes: settings.cacheBytes,
          memory: p.memory,
        })),
        ...originProcesses,
      ],
      verified: outcomes.length - mismatched.length,
      mismatched,
    };
  } finally {
    await scope.close();
  }
}

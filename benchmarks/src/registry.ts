/**
 * The benchmarks `pnpm bench` knows, in the order `--help` lists them. To add one
 * (live-restore, restore, nbd): write src/<name>.ts exporting a `Benchmark` and
 * add it here.
 */

import { backupBenchmark } from './backup.js';
import type { Benchmark } from './benchmark.js';
import { codecsBenchmark } from './codecs.js';
import { liveRestoreBenchmark } from './live-restore.js';
import { nbdBenchmark } from './nbd.js';
import { qemuBenchmark } from './qemu.js';
import { restoreBenchmark } from './restore.js';
import { s3Benchmark } from './restore-s3.js';
import { scaleBenchmark } from './scale.js';
import { testkitBenchmark } from './testkit.js';

export const BENCHMARKS: readonly Benchmark[] = [
  codecsBenchmark,
  backupBenchmark,
  restoreBenchmark,
  s3Benchmark,
  scaleBenchmark,
  nbdBenchmark,
  liveRestoreBenchmark,
  qemuBenchmark,
  testkitBenchmark,
];

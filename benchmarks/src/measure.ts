/**
 * Timing of synchronous, CPU-bound operations (the codec benchmark).
 *
 * One call of a measured function processes a fixed set of chunks. Each sample
 * repeats the call enough times to last at least `minSampleMs`, so timer resolution
 * and one-off pauses stay small next to it, after a warm-up that lets the JIT and
 * the allocator settle. Samples are seconds per chunk.
 *
 * Cases are sampled round-robin (sample 1 of every case, then sample 2, …): when
 * something else on the machine takes a core for a while, it widens the ± of every
 * case a little instead of silently slowing the few cases that happened to run then.
 */

/** Options of {@link measureSync}. */
export interface MeasureOptions {
  readonly samples: number;
  /** Shortest duration of one sample; calls are repeated to reach it. */
  readonly minSampleMs: number;
  /** Warm-up duration before the first sample (at least two calls are made). */
  readonly warmupMs: number;
  /** Chunks one call processes; samples are divided by it. */
  readonly chunksPerCall: number;
}

/** Samples in seconds per chunk, and how many calls each sample made. */
export interface Measurement {
  readonly secondsPerChunk: number[];
  readonly callsPerSample: number;
}

/**
 * Keeps results alive so the optimiser cannot drop a call whose output is unused;
 * exported so the value is observable (it is never read for anything else).
 */
export const blackhole = { value: 0 };

function now(): number {
  return performance.now();
}

/** Warms `fn` up and returns how many calls make one sample last at least `minSampleMs`. */
function calibrate(fn: () => number, options: MeasureOptions): number {
  let calls = 0;
  const warmStart = now();
  while (calls < 2 || now() - warmStart < options.warmupMs) {
    blackhole.value ^= fn();
    calls++;
  }
  const perCallMs = (now() - warmStart) / calls;
  return Math.max(1, Math.ceil(options.minSampleMs / Math.max(perCallMs, 1e-6)));
}

function sample(fn: () => number, calls: number, chunksPerCall: number): number {
  const start = now();
  for (let i = 0; i < calls; i++) blackhole.value ^= fn();
  return (now() - start) / 1000 / (calls * chunksPerCall);
}

/**
 * Measures each function, sampling them round-robin; every function must return
 * something derived from its work (a length, a digest byte). `onRound` reports
 * progress after each round.
 */
export function measureInterleaved(
  fns: readonly (() => number)[],
  options: MeasureOptions,
  onRound?: (round: number) => void,
): Measurement[] {
  const callsPerSample = fns.map((fn) => calibrate(fn, options));
  const samples = fns.map((): number[] => []);
  for (let round = 1; round <= options.samples; round++) {
    fns.forEach((fn, i) => {
      samples[i]!.push(sample(fn, callsPerSample[i]!, options.chunksPerCall));
    });
    onRound?.(round);
  }
  return fns.map((_, i) => ({ secondsPerChunk: samples[i]!, callsPerSample: callsPerSample[i]! }));
}

/** Measures one function; see {@link measureInterleaved}. */
export function measureSync(fn: () => number, options: MeasureOptions): Measurement {
  return measureInterleaved([fn], options)[0]!;
}

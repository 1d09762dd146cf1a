/**
 * Summary statistics of benchmark samples.
 *
 * Benchmarks take few samples (3–20), so the tolerance we print is the half-width of
 * the 95% confidence interval of the mean from Student's t distribution, not the
 * normal 1.96: with 3 samples the normal interval would claim 2.2× more precision
 * than the data has.
 */

/** What a table needs to know about one case's samples (all in the samples' unit). */
export interface SampleStats {
  readonly count: number;
  readonly mean: number;
  /** Sample standard deviation (n − 1); 0 for a single sample. */
  readonly stddev: number;
  readonly min: number;
  readonly max: number;
  readonly median: number;
  /** Half-width of the 95% confidence interval of the mean; NaN with fewer than 2 samples. */
  readonly ci95: number;
  /** `ci95 / mean` in percent, the `±` of the tables; NaN with fewer than 2 samples. */
  readonly ci95Percent: number;
  /** `stddev / mean` in percent. */
  readonly rsdPercent: number;
}

/**
 * Two-sided 95% critical values of Student's t for 1…30 degrees of freedom; beyond
 * that {@link tCritical95} interpolates towards the normal 1.960.
 */
const T95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
] as const;
const T95_TAIL: ReadonlyArray<readonly [number, number]> = [
  [30, 2.042],
  [40, 2.021],
  [60, 2.0],
  [120, 1.98],
  [Number.POSITIVE_INFINITY, 1.96],
];

/** The t multiplier of a 95% two-sided interval with `degreesOfFreedom` (≥ 1). */
export function tCritical95(degreesOfFreedom: number): number {
  if (!Number.isInteger(degreesOfFreedom) || degreesOfFreedom < 1) {
    throw new RangeError('degreesOfFreedom must be a positive integer');
  }
  const exact = T95[degreesOfFreedom - 1];
  if (exact !== undefined) return exact;
  for (let i = 1; i < T95_TAIL.length; i++) {
    const [hiDf, hiT] = T95_TAIL[i]!;
    if (degreesOfFreedom <= hiDf) {
      const [loDf, loT] = T95_TAIL[i - 1]!;
      if (hiDf === Number.POSITIVE_INFINITY) return hiT + (loT - hiT) * (loDf / degreesOfFreedom);
      return loT + ((hiT - loT) * (degreesOfFreedom - loDf)) / (hiDf - loDf);
    }
  }
  return 1.96;
}

/** Arithmetic mean; throws on an empty list rather than returning NaN into a table. */
export function mean(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('values must not be empty');
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Summarises samples; every sample must be a finite number. */
export function summarize(samples: readonly number[]): SampleStats {
  if (samples.length === 0) throw new RangeError('samples must not be empty');
  for (const s of samples) {
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new TypeError('samples must be finite numbers');
  }
  const n = samples.length;
  const m = mean(samples);
  let squares = 0;
  for (const s of samples) squares += (s - m) ** 2;
  const stddev = n > 1 ? Math.sqrt(squares / (n - 1)) : 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(n / 2);
  const median = n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const ci95 = n > 1 ? (tCritical95(n - 1) * stddev) / Math.sqrt(n) : Number.NaN;
  return {
    count: n,
    mean: m,
    stddev,
    min: sorted[0]!,
    max: sorted[n - 1]!,
    median,
    ci95,
    ci95Percent: m === 0 ? Number.NaN : (ci95 / m) * 100,
    rsdPercent: m === 0 ? Number.NaN : (stddev / m) * 100,
  };
}

import test from 'ava';
import { mean, summarize, tCritical95 } from '../src/index.js';

test('mean of known values', (t) => {
  t.is(mean([1, 2, 3, 4]), 2.5);
  t.throws(() => mean([]), { instanceOf: RangeError });
});

test('summarize computes sample stddev and the Student-t 95% interval', (t) => {
  const s = summarize([1, 2, 3, 4, 5]);
  t.is(s.count, 5);
  t.is(s.mean, 3);
  t.is(s.median, 3);
  t.is(s.min, 1);
  t.is(s.max, 5);
  t.true(Math.abs(s.stddev - Math.sqrt(2.5)) < 1e-12);
  // t(0.975, 4) = 2.776; half-width = 2.776 × 1.5811 / √5 = 1.9629
  t.true(Math.abs(s.ci95 - (2.776 * Math.sqrt(2.5)) / Math.sqrt(5)) < 1e-12);
  t.true(Math.abs(s.ci95Percent - (s.ci95 / 3) * 100) < 1e-12);
  t.true(Math.abs(s.rsdPercent - (Math.sqrt(2.5) / 3) * 100) < 1e-12);
});

test('summarize of identical samples has zero tolerance', (t) => {
  const s = summarize([2, 2, 2]);
  t.is(s.stddev, 0);
  t.is(s.ci95, 0);
  t.is(s.ci95Percent, 0);
});

test('a single sample has no interval', (t) => {
  const s = summarize([7]);
  t.is(s.stddev, 0);
  t.true(Number.isNaN(s.ci95));
  t.true(Number.isNaN(s.ci95Percent));
});

test('median of an even count is the mean of the middle pair', (t) => {
  t.is(summarize([4, 1, 3, 2]).median, 2.5);
});

test('summarize rejects empty and non-finite samples', (t) => {
  t.throws(() => summarize([]), { instanceOf: RangeError });
  t.throws(() => summarize([1, Number.NaN]), { instanceOf: TypeError });
  t.throws(() => summarize([1, Number.POSITIVE_INFINITY]), { instanceOf: TypeError });
});

test('t critical values: table, interpolation and normal limit', (t) => {
  t.is(tCritical95(1), 12.706);
  t.is(tCritical95(2), 4.303);
  t.is(tCritical95(30), 2.042);
  const t35 = tCritical95(35);
  t.true(t35 < 2.042 && t35 > 2.021);
  t.true(Math.abs(tCritical95(1_000_000) - 1.96) < 1e-3);
  let previous = Number.POSITIVE_INFINITY;
  for (let df = 1; df <= 500; df++) {
    const value = tCritical95(df);
    t.true(value <= previous, `t(${df}) must not exceed t(${df - 1})`);
    previous = value;
  }
  t.throws(() => tCritical95(0), { instanceOf: RangeError });
});

import test from 'ava';
import {
  formatDifference,
  markdownReport,
  markdownTable,
  measuredCase,
  sectionTable,
  TOLERANCE_LABEL,
} from '../src/index.js';
import { fakeResult } from './helpers.js';

function tableLines(markdown: string): string[] {
  return markdown.split('\n').filter((line) => line.startsWith('|'));
}

/** Splits a Markdown table row into cells, honouring `\|` escapes. */
function cells(line: string): string[] {
  return line
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim());
}

test('a section table has a header, a rule and one row per case', (t) => {
  const section = fakeResult().sections[0]!;
  const lines = tableLines(sectionTable(section));
  t.is(lines.length, 2 + section.cases.length);
  t.deepEqual(cells(lines[0]!), [
    'case',
    'samples',
    'mean / 4 MiB chunk',
    TOLERANCE_LABEL,
    'throughput',
    'vs slowest',
  ]);
  for (const line of lines) t.is(cells(line).length, 6);
});

test('rows give samples, mean, tolerance, throughput and the difference to the slowest', (t) => {
  const [, , slow, fast, skipped] = tableLines(sectionTable(fakeResult().sections[0]!)).map(cells);
  t.deepEqual(slow, ['slow codec', '3', '100 ms', '±24.8 %', '41.9 MB/s', '–']);
  t.is(fast![0], 'fast \\| codec');
  t.is(fast![1], '3');
  t.is(fast![3], '±0.00 %');
  t.is(fast![4], '4,194 MB/s');
  t.is(fast![5], '+9,900 % (×100)');
  t.is(skipped![2], 'skipped: no zstd encoder');
});

test('detail columns follow the standard ones', (t) => {
  const lines = tableLines(sectionTable(fakeResult().sections[1]!)).map(cells);
  t.deepEqual(lines[0]!.slice(6), ['chunks new', 'peak RSS']);
  t.deepEqual(lines[2]!.slice(6), ['400', '250 MiB']);
  t.is(lines[2]![3], '±60.5 %');
});

test('formatDifference: percent, and the factor for big gaps', (t) => {
  t.is(formatDifference(10, 10), '–');
  t.is(formatDifference(15, 10), '+50.0 %');
  t.is(formatDifference(370, 10), '+3,600 % (×37.0)');
});

test('markdownTable pads, aligns and rejects ragged rows', (t) => {
  const md = markdownTable(
    ['a', 'b'],
    [
      ['x', '1'],
      ['longer', '22'],
    ],
  );
  t.is(md, ['| a      |   b |', '| ------ | --: |', '| x      |   1 |', '| longer |  22 |'].join('\n'));
  t.throws(() => markdownTable(['a', 'b'], [['only one']]), { instanceOf: RangeError });
});

test('a measured case derives throughput from bytes and the mean time', (t) => {
  const c = measuredCase('x', 4_000_000, [0.01, 0.03]);
  t.is(c.throughputMBps, 200);
  t.deepEqual(c.secondsPerOp, [0.01, 0.03]);
});

test('the report names the machine and settings above the tables', (t) => {
  const md = markdownReport(fakeResult());
  const machineAt = md.indexOf('Machine: Test CPU');
  const settingsAt = md.indexOf('Settings: samples=3, chunks=2');
  const firstTable = md.indexOf('| case');
  t.true(machineAt > 0 && settingsAt > machineAt && firstTable > settingsAt);
  t.true(md.includes('### first section'));
  t.true(md.includes('### second section'));
  t.true(md.includes('- a note'));
  t.true(md.includes('**ratios**'));
  t.true(md.includes('1-min load average 0.25'));
  t.true(md.includes('zstd decoder zstd-napi 0.0.13 (libzstd 1.5.7)'), 'the zstd decoder is stated');
  t.true(md.includes('Code: commit abc1234.'));
});

import { readFile } from 'node:fs/promises';
import { tempDir } from '@liverestore/testkit';
import test from 'ava';
import { type BenchResult, isPng, plotRenderer, seriesPlot, writeResultFiles } from '../src/index.js';
import { fakeResult } from './helpers.js';

/** Black text on white: with no font loaded resvg draws nothing and the PNG is blank. */
function textSvg(content: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="10" y="25" style="font-family:'No Such Font';font-size:16px">${content}</text></svg>`;
}

for (const build of ['native', 'wasm'] as const) {
  test(`the ${build} resvg build renders text with the bundled font, whatever family the SVG asks for`, async (t) => {
    const renderer = await plotRenderer(build);
    t.regex(
      renderer.name,
      build === 'native' ? /^@resvg\/resvg-js .*native/ : /^@resvg\/resvg-wasm .*WebAssembly/,
    );
    const written = renderer.toPng(textSvg('throughput 1,234 MB/s'));
    const blank = renderer.toPng(textSvg(''));
    t.true(isPng(written) && isPng(blank));
    t.false(Buffer.from(written).equals(Buffer.from(blank)), 'the text was drawn');
  });
}

test('both builds draw the same picture', async (t) => {
  const svg = seriesPlot(fakeResult(), {
    xLabel: 'iteration',
    yLabel: 'seconds',
    unit: 's',
    series: [{ name: 'B', values: [1, 2] }],
  });
  const [native, wasm] = await Promise.all([plotRenderer('native'), plotRenderer('wasm')]);
  // PNG encoders may differ in compression; the picture's size is in the IHDR chunk.
  const ihdr = (png: Uint8Array) => Buffer.from(png.subarray(16, 24)).toString('hex');
  t.is(ihdr(native.toPng(svg)), ihdr(wasm.toPng(svg)));
});

test('a series plot marks each iteration without joining them, with medians and the goal line', (t) => {
  const svg = seriesPlot(fakeResult(), {
    title: 'Guest read p99 latency per iteration',
    xLabel: 'iteration',
    yLabel: 'p99, ms',
    unit: 'ms',
    series: [
      { name: 'lr-nbd', values: [120, 90, Number.NaN] },
      { name: 'nbdkit-curl', values: [6, 7, 8] },
    ],
    goal: { value: 50, label: 'goal: ≤ 50 ms' },
  });
  t.is((svg.match(/<circle /g) ?? []).length, 5, 'a marker per finite value');
  t.notRegex(svg, /<polyline/, 'independent iterations are not joined by lines');
  t.regex(svg, /lr-nbd: median 105 ms/);
  t.regex(svg, /class="goal"/);
  t.regex(svg, /goal: ≤ 50 ms/);
  t.regex(svg, />Guest read p99 latency per iteration</);
});

test('writeResultFiles writes an SVG and a PNG for the main plot and for every goal figure', async (t) => {
  const dir = await tempDir('lr-bench-png-');
  t.teardown(() => dir.cleanup());
  const result: BenchResult = {
    ...fakeResult(),
    plot: { xLabel: 'iteration', yLabel: 'seconds', unit: 's', series: [{ name: 'B', values: [1, 2] }] },
    figures: [
      {
        slug: 'p99',
        xLabel: 'iteration',
        yLabel: 'ms',
        series: [{ name: 'B', values: [40, 60] }],
        goal: { value: 50, label: 'goal' },
      },
    ],
  };
  const files = await writeResultFiles(result, dir.path);
  t.true(files.png.written, files.png.written ? '' : files.png.reason);
  t.is(files.figures.length, 1);
  t.is(files.figures[0]!.svg, `${dir.path}/fake-p99.svg`);
  for (const plot of [files, ...files.figures]) {
    t.true(isPng(await readFile(plot.png.path)), plot.png.path);
    t.regex(await readFile(plot.svg, 'utf8'), /<\/svg>\s*$/);
  }
});

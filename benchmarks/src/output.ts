/**
 * Writing a result to disk: `<name>.json` (everything, raw samples included),
 * `<name>.md` (the tables), `<name>.svg` (the plot), `<name>-<goal>.svg` for each goal
 * figure, and a `.png` beside every SVG.
 */

import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PngOutcome, writePng } from './png.js';
import { markdownReport } from './report.js';
import type { BenchResult } from './result.js';
import { seriesPlot } from './series-plot.js';
import { svgPlot } from './svg-plot.js';

/**
 * `bench-results/` at the repository root (git-ignored), found from this file's
 * location (benchmarks/dist/src/) so it does not depend on the working directory.
 */
export const DEFAULT_OUT_DIR = resolve(fileURLToPath(new URL('../../../bench-results', import.meta.url)));

/** One picture: its SVG and what became of its PNG. */
export interface WrittenPlot {
  readonly svg: string;
  readonly png: PngOutcome & { readonly path: string };
}

/** The files written for one result. */
export interface WrittenFiles extends WrittenPlot {
  readonly json: string;
  readonly markdown: string;
  /** The goal figures, in the result's order. */
  readonly figures: readonly WrittenPlot[];
}

/** Writes `svg` to `<base>.svg` and renders `<base>.png` from it. */
async function writePlot(base: string, svg: string): Promise<WrittenPlot> {
  const files = { svg: `${base}.svg`, png: `${base}.png` };
  await writeFile(files.svg, svg);
  // A PNG left from an earlier run would show numbers that are not in the new SVG.
  await rm(files.png, { force: true });
  const png = await writePng(files.svg, files.png);
  if (!png.written) await rm(files.png, { force: true });
  return { svg: files.svg, png: { ...png, path: files.png } };
}

/** Writes the result files into `outDir` (created if needed) and returns their paths. */
export async function writeResultFiles(result: BenchResult, outDir: string): Promise<WrittenFiles> {
  await mkdir(outDir, { recursive: true });
  const base = join(outDir, result.benchmark);
  const json = `${base}.json`;
  const markdown = `${base}.md`;
  await writeFile(json, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(markdown, markdownReport(result));
  const main = await writePlot(
    base,
    result.plot === undefined ? svgPlot(result) : seriesPlot(result, result.plot),
  );
  const figures: WrittenPlot[] = [];
  for (const figure of result.figures ?? []) {
    figures.push(await writePlot(`${base}-${figure.slug}`, seriesPlot(result, figure)));
  }
  return { json, markdown, ...main, figures };
}

/**
 * Writing a result to disk: `<name>.json` (everything, raw samples included),
 * `<name>.md` (the tables), `<name>.svg` (the plot) and, when a converter works,
 * `<name>.png`.
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

/** The files written for one result. */
export interface WrittenFiles {
  readonly json: string;
  readonly markdown: string;
  readonly svg: string;
  readonly png: PngOutcome & { readonly path: string };
}

/** Writes the result files into `outDir` (created if needed) and returns their paths. */
export async function writeResultFiles(result: BenchResult, outDir: string): Promise<WrittenFiles> {
  await mkdir(outDir, { recursive: true });
  const base = join(outDir, result.benchmark);
  const files = { json: `${base}.json`, markdown: `${base}.md`, svg: `${base}.svg`, png: `${base}.png` };
  await writeFile(files.json, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(files.markdown, markdownReport(result));
  await writeFile(files.svg, result.plot === undefined ? svgPlot(result) : seriesPlot(result, result.plot));
  // A PNG left from an earlier run would show numbers that are not in the new SVG.
  await rm(files.png, { force: true });
  const png = await writePng(files.svg, files.png);
  if (!png.written) await rm(files.png, { force: true });
  return { ...files, png: { ...png, path: files.png } };
}

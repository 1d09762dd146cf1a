/**
 * Optional PNG copies of the plots, for places that do not show SVG. No converter
 * is bundled: we use `rsvg-convert` or ImageMagick when one is installed and works,
 * and otherwise say why no PNG was written rather than failing the benchmark.
 */

import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { findOnPath } from './tools.js';

const run = promisify(execFile);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CONVERT_TIMEOUT_MS = 60_000;

/** A converter command line: the program and its arguments for (svg, png). */
interface Converter {
  readonly program: string;
  args(svgPath: string, pngPath: string): string[];
}

const CONVERTERS: readonly Converter[] = [
  { program: 'rsvg-convert', args: (svg, png) => ['--background-color=white', '-o', png, svg] },
  { program: 'magick', args: (svg, png) => [svg, png] },
  { program: 'convert', args: (svg, png) => [svg, png] },
];

/** What {@link writePng} did: the converter used, or why there is no PNG. */
export type PngOutcome =
  | { readonly written: true; readonly tool: string }
  | { readonly written: false; readonly reason: string };

async function isPng(path: string): Promise<boolean> {
  try {
    const file = await open(path, 'r');
    try {
      const head = Buffer.alloc(PNG_SIGNATURE.length);
      await file.read(head, 0, head.length, 0);
      return head.equals(PNG_SIGNATURE);
    } finally {
      await file.close();
    }
  } catch {
    return false;
  }
}

/**
 * Converts `svgPath` to `pngPath` with the first converter that exists and produces a
 * real PNG; a program that exists but fails (e.g. an ImageMagick without an SVG
 * delegate) is skipped and named in the reason.
 */
export async function writePng(svgPath: string, pngPath: string): Promise<PngOutcome> {
  const failures: string[] = [];
  for (const converter of CONVERTERS) {
    const path = await findOnPath(converter.program);
    if (path === undefined) {
      failures.push(`${converter.program}: not installed`);
      continue;
    }
    try {
      await run(path, converter.args(svgPath, pngPath), { timeout: CONVERT_TIMEOUT_MS });
      if (await isPng(pngPath)) return { written: true, tool: converter.program };
      failures.push(`${converter.program}: produced no PNG`);
    } catch (err) {
      const message = ((err as { stderr?: string }).stderr ?? (err as Error).message).trim().split('\n')[0];
      failures.push(`${converter.program}: failed (${message ?? 'unknown error'})`);
    }
  }
  return { written: false, reason: failures.join('; ') };
}

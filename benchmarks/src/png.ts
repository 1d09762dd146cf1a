/**
 * PNG copies of the plots, rendered in this process by resvg with the DejaVu Sans font
 * that ships in `benchmarks/fonts/`: every machine writes the same picture, with no
 * converter program and no system fonts. The native build (`@resvg/resvg-js`, an optional
 * dependency) renders when it loads on this platform; otherwise the WebAssembly build
 * (`@resvg/resvg-wasm`) does. `LIVERESTORE_PLOT_RENDERER=wasm` picks the WebAssembly
 * build even where the native one loads (the tests render with both).
 */

import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLOT_FONT_FAMILY } from './svg-plot.js';

/** From benchmarks/dist/src/ (compiled) to benchmarks/fonts/. */
const FONT_DIR = new URL('../../fonts/', import.meta.url);
const FONT_FILES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'] as const;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One build of resvg, ready to render. */
export interface SvgRenderer {
  /** Package and version, for the "wrote …" line. */
  readonly name: string;
  toPng(svg: string): Uint8Array;
}

/** What {@link writePng} did: the renderer used, or why there is no PNG. */
export type PngOutcome =
  | { readonly written: true; readonly tool: string }
  | { readonly written: false; readonly reason: string };

const FONT_OPTIONS = {
  defaultFontFamily: PLOT_FONT_FAMILY,
  sansSerifFamily: PLOT_FONT_FAMILY,
  serifFamily: PLOT_FONT_FAMILY,
  monospaceFamily: PLOT_FONT_FAMILY,
} as const;
const BACKGROUND = 'white';
const require = createRequire(import.meta.url);

/** The version of the package whose file `entry` (a path in its root directory) is. */
async function versionBeside(entry: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(dirname(entry), 'package.json'), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}

async function nativeRenderer(): Promise<SvgRenderer> {
  const { Resvg } = await import('@resvg/resvg-js');
  const fontFiles = FONT_FILES.map((f) => fileURLToPath(new URL(f, FONT_DIR)));
  return {
    name: `@resvg/resvg-js ${await versionBeside(require.resolve('@resvg/resvg-js'))} (native)`,
    toPng: (svg) =>
      new Resvg(svg, { background: BACKGROUND, font: { loadSystemFonts: false, fontFiles, ...FONT_OPTIONS } })
        .render()
        .asPng(),
  };
}

async function wasmRenderer(): Promise<SvgRenderer> {
  const wasm = await import('@resvg/resvg-wasm');
  const wasmFile = require.resolve('@resvg/resvg-wasm/index_bg.wasm');
  await wasm.initWasm(await readFile(wasmFile));
  const fontBuffers = await Promise.all(FONT_FILES.map((f) => readFile(new URL(f, FONT_DIR))));
  return {
    name: `@resvg/resvg-wasm ${await versionBeside(wasmFile)} (WebAssembly)`,
    toPng: (svg) => {
      const resvg = new wasm.Resvg(svg, { background: BACKGROUND, font: { fontBuffers, ...FONT_OPTIONS } });
      try {
        return resvg.render().asPng();
      } finally {
        resvg.free();
      }
    },
  };
}

let wasmBuild: Promise<SvgRenderer> | undefined;
let nativeBuild: Promise<SvgRenderer | undefined> | undefined;

/**
 * The renderer of this process: the native build when it loads (and the environment does
 * not ask for WebAssembly), else the WebAssembly build, which loads on every machine.
 * The WebAssembly module can be set up once per process, so both are kept.
 */
export async function plotRenderer(
  prefer: 'native' | 'wasm' = process.env.LIVERESTORE_PLOT_RENDERER === 'wasm' ? 'wasm' : 'native',
): Promise<SvgRenderer> {
  if (prefer === 'native') {
    nativeBuild ??= nativeRenderer().catch(() => undefined);
    const native = await nativeBuild;
    if (native !== undefined) return native;
  }
  wasmBuild ??= wasmRenderer();
  return wasmBuild;
}

/** True when `bytes` start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return (
    bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.equals(bytes.subarray(0, PNG_SIGNATURE.length))
  );
}

/** Renders `svgPath` to `pngPath`; a rendering failure is reported, not thrown. */
export async function writePng(svgPath: string, pngPath: string): Promise<PngOutcome> {
  try {
    const renderer = await plotRenderer();
    const png = renderer.toPng(await readFile(svgPath, 'utf8'));
    if (!isPng(png)) return { written: false, reason: `${renderer.name} produced no PNG` };
    await writeFile(pngPath, png);
    return { written: true, tool: renderer.name };
  } catch (err) {
    return { written: false, reason: `rendering failed (${(err as Error).message.split('\n')[0]})` };
  }
}

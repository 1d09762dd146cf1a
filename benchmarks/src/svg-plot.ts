/**
 * A dependency-free SVG bar chart of a result: one horizontal bar per case, its
 * throughput at the end, grouped by section, with the machine line under the title.
 *
 *   Title
 *   machine line
 *   ┌ section ─────────────────────────────────────┐
 *   │ case label     ████████████████  1,234 MB/s  │
 *   │ case label     ███  85.2 MB/s                │
 *
 * When the fastest case is more than 50× the slowest (memcpy vs DEFLATE), the axis is
 * logarithmic with a grid line per decade, or the slow bars would be invisible.
 */

import { machineLine } from './machine.js';
import type { BenchResult } from './result.js';
import { formatNumber, formatRate } from './units.js';

const PLOT_WIDTH = 480;
const VALUE_WIDTH = 120;
/** Rough advance of one character at 12 px DejaVu Sans, to size the label column. */
const CHAR_WIDTH = 7.2;
const MIN_LABEL_WIDTH = 160;
const BAR_HEIGHT = 16;
const ROW_HEIGHT = 22;
const SECTION_GAP = 14;
const TOP = 74;
const AXIS_HEIGHT = 36;
const LOG_SCALE_SPREAD = 50;
/**
 * The font the plots ask for first: PNGs are rendered with it (png.ts bundles it), and a
 * browser showing the SVG falls back to its own sans-serif.
 */
export const PLOT_FONT_FAMILY = 'DejaVu Sans';
/** The CSS font stack of every plot's text. */
export const FONT_STACK = `'${PLOT_FONT_FAMILY}',Helvetica,Arial,sans-serif`;
export const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1', '#9c755f'] as const;

/** Escapes text for an SVG text node or attribute. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** Maps a throughput to a bar length in pixels, linear or logarithmic. */
interface Scale {
  readonly log: boolean;
  readonly ticks: readonly number[];
  x(value: number): number;
}

/** A round step for about five grid lines up to `max`. */
export function niceStep(max: number): number {
  const raw = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
  return 10 * magnitude;
}

/** Chooses the axis for a set of positive values. */
export function chooseScale(values: readonly number[]): Scale {
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  const max = positive.length === 0 ? 1 : Math.max(...positive);
  const min = positive.length === 0 ? 1 : Math.min(...positive);
  if (max / min > LOG_SCALE_SPREAD) {
    const lo = 10 ** Math.floor(Math.log10(min));
    const decade = 10 ** Math.floor(Math.log10(max));
    const hi = [1, 2, 5, 10].map((m) => m * decade).find((v) => v >= max) ?? 10 * decade;
    const span = Math.log10(hi) - Math.log10(lo);
    const ticks: number[] = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    if (ticks.at(-1)! < hi * 0.9999) ticks.push(hi);
    return {
      log: true,
      ticks,
      x: (v) => (v <= lo ? 0 : ((Math.log10(v) - Math.log10(lo)) / span) * PLOT_WIDTH),
    };
  }
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let t = 0; t <= top * 1.0001; t += step) ticks.push(t);
  return { log: false, ticks, x: (v) => (Math.max(v, 0) / top) * PLOT_WIDTH };
}

/** An axis tick label: integers with separators, others with sensible decimals. */
export function tickLabel(value: number): string {
  return Number.isInteger(value) ? value.toLocaleString('en-US') : formatNumber(value);
}

/** An SVG text element with escaped content. */
export function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs === '' ? '' : ` ${attrs}`}>${escapeXml(content)}</text>`;
}

/** Renders the result as a standalone SVG document. */
export function svgPlot(result: BenchResult): string {
  const values = result.sections.flatMap((s) => s.cases.map((c) => c.throughputMBps ?? 0));
  const longestLabel = Math.max(0, ...result.sections.flatMap((s) => s.cases.map((c) => c.name.length)));
  const plotLeft = Math.max(MIN_LABEL_WIDTH, Math.ceil(longestLabel * CHAR_WIDTH) + 24);
  const width = Math.max(plotLeft + PLOT_WIDTH + VALUE_WIDTH, 720);
  const scale = chooseScale(values);
  const body: string[] = [];
  let y = TOP;
  result.sections.forEach((section, si) => {
    const color = PALETTE[si % PALETTE.length]!;
    body.push(text(12, y + 12, section.title, 'class="section"'));
    y += ROW_HEIGHT;
    for (const c of section.cases) {
      body.push(text(plotLeft - 8, y + 12, c.name, 'class="label" text-anchor="end"'));
      if (c.throughputMBps === undefined) {
        body.push(text(plotLeft + 4, y + 12, `skipped: ${c.skipped ?? 'not measured'}`, 'class="skipped"'));
      } else {
        const w = Math.max(1, scale.x(c.throughputMBps));
        body.push(
          `<rect x="${plotLeft}" y="${y}" width="${w.toFixed(1)}" height="${BAR_HEIGHT}" fill="${color}"/>`,
          text(plotLeft + w + 6, y + 12, formatRate(c.throughputMBps), 'class="value"'),
        );
      }
      y += ROW_HEIGHT;
    }
    y += SECTION_GAP;
  });
  const gridTop = TOP;
  const gridBottom = y - SECTION_GAP;
  const grid = scale.ticks.map((t) => {
    const x = plotLeft + scale.x(t);
    return (
      `<line x1="${x.toFixed(1)}" y1="${gridTop}" x2="${x.toFixed(1)}" y2="${gridBottom}" class="grid"/>` +
      text(x, gridBottom + 14, tickLabel(t), 'class="tick" text-anchor="middle"')
    );
  });
  const height = gridBottom + AXIS_HEIGHT;
  const axisLabel = `throughput, MB/s${scale.log ? ' (log scale)' : ''}`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<style>text{font-family:${FONT_STACK};font-size:12px;fill:#222}` +
      `.title{font-size:17px;font-weight:bold}.machine{font-size:11px;fill:#555}` +
      `.section{font-weight:bold}.skipped{fill:#888;font-style:italic}.tick{font-size:10px;fill:#666}` +
      `.grid{stroke:#ddd;stroke-width:1}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    text(12, 24, result.title, 'class="title"'),
    text(12, 42, machineLine(result.machine), 'class="machine"'),
    text(
      12,
      58,
      `${axisLabel}; mean of the samples (± and settings in ${result.benchmark}.md)`,
      'class="machine"',
    ),
    ...grid,
    ...body,
    text(plotLeft + PLOT_WIDTH / 2, height - 6, axisLabel, 'class="tick" text-anchor="middle"'),
    `</svg>`,
    '',
  ].join('\n');
}

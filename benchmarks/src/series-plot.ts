/**
 * A dependency-free SVG plot of values per iteration, in the style of PBS's live-restore
 * picture: iteration on x, the value on y, one marker per iteration and series (the
 * iterations are independent runs, so no line joins them; series sit side by side within
 * an iteration), a dashed line at each series' median (in the legend), and the goal as a
 * dotted line when the plot has one.
 */

import { machineLine } from './machine.js';
import type { BenchResult, SeriesPlot } from './result.js';
import { summarize } from './stats.js';
import { escapeXml, FONT_STACK, niceStep, PALETTE, text, tickLabel } from './svg-plot.js';
import { formatNumber } from './units.js';

const MIN_WIDTH = 760;
/** Rough advance of one character of the 16 px bold title. */
const TITLE_CHAR_WIDTH = 9;
const HEIGHT = 440;
const LEFT = 70;
const RIGHT = 24;
const TOP = 96;
const BOTTOM = 56;
/** Series colours: A in the palette's red, B in its blue, then the rest. */
const COLORS = [PALETTE[3], PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[4]] as const;

/** A value with the plot's unit: `1.5 s`, `48.2 ms`, `512 MiB`. */
function withUnit(value: number, unit: string | undefined): string {
  return unit === undefined ? formatNumber(value) : `${formatNumber(value)} ${unit}`;
}

/** Renders `plot` of `result` as a standalone SVG document. */
export function seriesPlot(result: BenchResult, plot: SeriesPlot): string {
  const width = Math.max(MIN_WIDTH, Math.ceil((plot.title ?? result.title).length * TITLE_CHAR_WIDTH) + 24);
  const all = [
    ...plot.series.flatMap((s) => s.values.filter((v) => Number.isFinite(v))),
    ...(plot.goal === undefined ? [] : [plot.goal.value]),
  ];
  const count = Math.max(1, ...plot.series.map((s) => s.values.length));
  const step = niceStep(Math.max(...all, 1e-9));
  const top = Math.ceil(Math.max(...all, 1e-9) / step) * step;
  const plotW = width - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  /** Iterations sit inside the frame, clear of the axes, with room for side-by-side markers. */
  const inset = 28;
  const x = (i: number): number =>
    LEFT + (count === 1 ? plotW / 2 : inset + (i / (count - 1)) * (plotW - 2 * inset));
  const y = (v: number): number => TOP + plotH - (v / top) * plotH;
  const body: string[] = [];
  for (let t = 0; t <= top * 1.0001; t += step) {
    body.push(
      `<line x1="${LEFT}" y1="${y(t).toFixed(1)}" x2="${LEFT + plotW}" y2="${y(t).toFixed(1)}" class="grid"/>`,
      text(LEFT - 6, y(t) + 4, tickLabel(t), 'class="tick" text-anchor="end"'),
    );
  }
  const xStep = Math.max(1, Math.ceil(count / 20));
  for (let i = 0; i < count; i += xStep) {
    body.push(text(x(i), TOP + plotH + 16, String(i + 1), 'class="tick" text-anchor="middle"'));
  }
  body.push(
    `<line x1="${LEFT}" y1="${TOP + plotH}" x2="${LEFT + plotW}" y2="${TOP + plotH}" class="axis"/>`,
    `<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${TOP + plotH}" class="axis"/>`,
  );
  const dodge =
    plot.series.length > 1 && count > 1 ? Math.min(10, plotW / count / (plot.series.length + 1)) : 0;
  plot.series.forEach((series, si) => {
    const color = COLORS[si % COLORS.length]!;
    const offset = (si - (plot.series.length - 1) / 2) * dodge;
    series.values.forEach((v, i) => {
      if (Number.isFinite(v))
        body.push(
          `<circle cx="${(x(i) + offset).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${color}"/>`,
        );
    });
    const finite = series.values.filter((v) => Number.isFinite(v));
    if (finite.length > 0) {
      const m = summarize(finite).median;
      body.push(
        `<line x1="${LEFT}" y1="${y(m).toFixed(1)}" x2="${LEFT + plotW}" y2="${y(m).toFixed(1)}" stroke="${color}" stroke-dasharray="5,4" stroke-width="1"/>`,
      );
      const ly = TOP - 26 + si * 16;
      body.push(
        `<rect x="${LEFT + plotW - 250}" y="${ly - 9}" width="10" height="10" fill="${color}"/>`,
        text(LEFT + plotW - 234, ly, `${series.name}: median ${withUnit(m, plot.unit)}`),
      );
    }
  });
  if (plot.goal !== undefined && plot.goal.value <= top) {
    const gy = y(plot.goal.value).toFixed(1);
    body.push(
      `<line x1="${LEFT}" y1="${gy}" x2="${LEFT + plotW}" y2="${gy}" class="goal"/>`,
      text(LEFT + 6, Number(gy) - 4, plot.goal.label, 'class="goal-label"'),
    );
  }
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}">`,
    `<style>text{font-family:${FONT_STACK};font-size:12px;fill:#222}` +
      `.title{font-size:16px;font-weight:bold}.machine{font-size:11px;fill:#555}` +
      `.tick{font-size:10px;fill:#666}.grid{stroke:#e4e4e4;stroke-width:1}.axis{stroke:#888;stroke-width:1}` +
      `.goal{stroke:#c00;stroke-width:1.5;stroke-dasharray:2,3}.goal-label{font-size:11px;fill:#c00}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    text(12, 22, plot.title ?? result.title, 'class="title"'),
    text(12, 40, machineLine(result.machine), 'class="machine"'),
    ...(plot.subtitle === undefined ? [] : [text(12, 55, plot.subtitle, 'class="machine"')]),
    ...body,
    text(LEFT + plotW / 2, HEIGHT - 14, plot.xLabel, 'class="tick" text-anchor="middle"'),
    `<text x="16" y="${TOP + plotH / 2}" class="tick" text-anchor="middle" transform="rotate(-90 16 ${TOP + plotH / 2})">${escapeXml(plot.yLabel)}</text>`,
    `</svg>`,
    '',
  ].join('\n');
}

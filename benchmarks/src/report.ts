/**
 * The Markdown report of a result (`<name>.md`, and what the CLI prints): title,
 * the machine and settings right under it, then a table per section. The numbers
 * never appear without the line saying where and how they were measured.
 */

import { loadLine, machineLine } from './machine.js';
import type { BenchResult } from './result.js';
import { plainTable, sectionTable, settingsLine, TOLERANCE_LABEL } from './table.js';
import { formatDuration } from './units.js';

/** The whole report as Markdown; `headingLevel` 2 gives `##` for the title and `###` per section. */
export function markdownReport(result: BenchResult, headingLevel = 2): string {
  const h = (extra: number): string => '#'.repeat(headingLevel + extra);
  const m = result.machine;
  const parts: string[] = [
    `${h(0)} ${result.title}`,
    [
      `Machine: ${machineLine(m)}; zlib ${m.zlibVersion}, OpenSSL ${m.opensslVersion}; zstd decoder ${m.zstdDecoder}; ${loadLine(m)}.`,
      ...(result.code === undefined ? [] : [`Code: commit ${result.code}.`]),
      `Settings: ${settingsLine(result.settings)}.`,
      `Tolerance ${TOLERANCE_LABEL}: half-width of the 95% confidence interval of the mean ` +
        `(Student's t), relative to the mean. Throughput in decimal MB/s (10^6 bytes/s). ` +
        `Run took ${formatDuration(result.durationSeconds)}.`,
    ].join('  \n'),
  ];
  for (const section of result.sections) {
    parts.push(`${h(1)} ${section.title}`, sectionTable(section));
    if (section.notes !== undefined && section.notes.length > 0) {
      parts.push(section.notes.map((n) => `- ${n}`).join('\n'));
    }
  }
  for (const table of result.tables ?? []) parts.push(plainTable(table));
  if (result.notes !== undefined && result.notes.length > 0) {
    parts.push(`${h(1)} Notes`, result.notes.map((n) => `- ${n}`).join('\n'));
  }
  return `${parts.join('\n\n')}\n`;
}

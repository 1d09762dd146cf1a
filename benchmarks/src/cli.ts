/**
 * The `pnpm bench <name> [options]` command line, independent of which benchmarks
 * exist: main.ts passes the registry in, tests pass fakes.
 */

import { loadavg } from 'node:os';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Benchmark, OptionSpec } from './benchmark.js';
import { codeVersion } from './code-version.js';
import { ToolMissingError, UsageError } from './errors.js';
import { DEFAULT_OUT_DIR, writeResultFiles } from './output.js';
import { markdownReport } from './report.js';
import { parsePositiveInt } from './units.js';

/** Where the CLI writes: results to stdout, progress and file names to stderr. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

/** Options every benchmark accepts. */
export const COMMON_OPTIONS: readonly OptionSpec[] = [
  { name: 'samples', type: 'string', valueName: 'N', description: 'samples per case' },
  { name: 'json', type: 'boolean', description: 'print the JSON result to stdout instead of the table' },
  {
    name: 'out',
    type: 'string',
    valueName: 'DIR',
    description: 'directory for <name>.json, .md, .svg and .png (and <name>-<goal>.svg/.png per goal figure)',
    defaultText: 'bench-results/ at the repository root',
  },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

function optionLines(options: readonly OptionSpec[], samplesDefault?: number): string[] {
  const left = options.map((o) => `--${o.name}${o.valueName === undefined ? '' : ` ${o.valueName}`}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return options.map((o, i) => {
    const def = o.name === 'samples' && samplesDefault !== undefined ? String(samplesDefault) : o.defaultText;
    return `  ${left[i]!.padEnd(width)}${o.description}${def === undefined ? '' : ` (default: ${def})`}`;
  });
}

/** The `--help` text of one benchmark. */
export function benchmarkHelp(bench: Benchmark): string {
  return [
    `Usage: pnpm bench ${bench.name} [options]`,
    '',
    bench.description.trim(),
    '',
    'Options:',
    ...optionLines(bench.options),
    '',
    'Common options:',
    ...optionLines(COMMON_OPTIONS, bench.defaultSamples),
    '',
  ].join('\n');
}

/** The text of `pnpm bench --help`: usage and the list of benchmarks. */
export function generalHelp(registry: readonly Benchmark[]): string {
  const width = Math.max(...registry.map((b) => b.name.length)) + 2;
  return [
    'Usage: pnpm bench <name> [options]      (pnpm bench <name> --help for its options)',
    '',
    'Benchmarks:',
    ...registry.map((b) => `  ${b.name.padEnd(width)}${b.summary}`),
    '',
    'Common options: --samples N, --json, --out DIR, --help',
    '',
  ].join('\n');
}

type ParsedValues = Record<string, string | boolean | undefined>;

/** Parses the arguments after the benchmark name; unknown options are usage errors. */
export function parseBenchArgs(bench: Benchmark, argv: readonly string[]): ParsedValues {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const o of [...COMMON_OPTIONS, ...bench.options]) options[o.name] = { type: o.type };
  (options.help as { short?: string }).short = 'h';
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options,
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}"`);
    return values as ParsedValues;
  } catch (err) {
    throw new UsageError(`${bench.name}: ${(err as Error).message.split('\n')[0]}`);
  }
}

/**
 * Runs the CLI and returns the exit status: 0 ok, 1 a tool is missing (one line naming
 * it) or the benchmark failed (thrown, with its stack), 2 usage error.
 */
export async function runCli(
  registry: readonly Benchmark[],
  argv: readonly string[],
  io: CliIo,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout.write(generalHelp(registry));
    return name === undefined ? 2 : 0;
  }
  const bench = registry.find((b) => b.name === name);
  try {
    if (bench === undefined) {
      throw new UsageError(`unknown benchmark "${name}" (one of: ${registry.map((b) => b.name).join(', ')})`);
    }
    const values = parseBenchArgs(bench, rest);
    if (values.help === true) {
      io.stdout.write(benchmarkHelp(bench));
      return 0;
    }
    const samples =
      typeof values.samples === 'string'
        ? parsePositiveInt(values.samples, '--samples')
        : bench.defaultSamples;
    const outDir = typeof values.out === 'string' ? values.out : DEFAULT_OUT_DIR;
    const own: ParsedValues = {};
    for (const o of bench.options) own[o.name] = values[o.name];
    const measured = await bench.run({
      samples,
      options: own,
      progress: (line) => io.stderr.write(`${bench.name}: ${line}\n`),
    });
    const result = {
      ...measured,
      machine: { ...measured.machine, loadAverage1mEnd: loadavg()[0] ?? 0 },
      code: await codeVersion(),
    };
    const files = await writeResultFiles(result, outDir);
    io.stdout.write(values.json === true ? `${JSON.stringify(result, null, 2)}\n` : markdownReport(result));
    io.stderr.write(`${bench.name}: wrote ${files.json}, ${files.markdown}\n`);
    for (const plot of [files, ...files.figures]) {
      io.stderr.write(
        plot.png.written
          ? `${bench.name}: wrote ${plot.svg}, ${plot.png.path} (${plot.png.tool})\n`
          : `${bench.name}: wrote ${plot.svg}; no PNG (${plot.png.reason})\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(
        `bench: ${err.message}\n${bench === undefined ? 'see pnpm bench --help' : `see pnpm bench ${bench.name} --help`}\n`,
      );
      return 2;
    }
    if (err instanceof ToolMissingError) {
      io.stderr.write(`bench: ${err.code}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

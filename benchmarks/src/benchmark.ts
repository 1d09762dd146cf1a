/**
 * The plug-in interface of a benchmark. Each benchmark is one module under src/
 * exporting a {@link Benchmark}; main.ts lists them in its registry, and the CLI
 * gives each the common options (--samples, --json, --out, --help) plus its own.
 * A later benchmark (live-restore, restore, nbd) is one new file and one registry line.
 */

import type { BenchResult } from './result.js';

/** One benchmark-specific command-line option. */
export interface OptionSpec {
  /** Long name without dashes: `size` for `--size`. */
  readonly name: string;
  readonly type: 'string' | 'boolean';
  /** Placeholder in the help text: `SIZE`, `LIST`. */
  readonly valueName?: string;
  readonly description: string;
  /** Default as shown in the help text; the benchmark applies it. */
  readonly defaultText?: string;
}

/** What a benchmark gets to run with. */
export interface BenchContext {
  /** Samples per case: `--samples`, or the benchmark's {@link Benchmark.defaultSamples}. */
  readonly samples: number;
  /** Values of the benchmark's own options, by name; absent when not given. */
  readonly options: Readonly<Record<string, string | boolean | undefined>>;
  /** Writes one progress line to stderr (stdout is for results). */
  progress(line: string): void;
}

/** A benchmark the CLI can run as `pnpm bench <name>`. */
export interface Benchmark {
  readonly name: string;
  /** One line for the benchmark list. */
  readonly summary: string;
  /** Paragraphs of `--help` between the usage line and the options. */
  readonly description: string;
  readonly defaultSamples: number;
  readonly options: readonly OptionSpec[];
  run(context: BenchContext): Promise<BenchResult>;
}

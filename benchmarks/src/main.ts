/** Entry point of `pnpm bench <name> [options]`; see registry.ts for the benchmarks. */

import { runCli } from './cli.js';
import { BENCHMARKS } from './registry.js';

process.exitCode = await runCli(BENCHMARKS, process.argv.slice(2), process);

/**
 * External programs the benchmarks run (fio, nbdkit, lighttpd, QEMU's tools, zstd, PNG
 * converters): finding them on PATH, and refusing to start a benchmark that needs one
 * that is missing with {@link ToolMissingError}, which names the Debian package to
 * install, before any scratch data is written.
 */

import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { ToolMissingError } from './errors.js';

/** The absolute path of `program` in a PATH directory where it is executable, or undefined. */
export async function findOnPath(program: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** A program a benchmark needs and the Debian package that installs it. */
export interface ToolNeed {
  readonly program: string;
  readonly debianPackage: string;
}

/** Throws {@link ToolMissingError} naming every missing program and its package at once. */
export async function requireTools(benchmark: string, needs: readonly ToolNeed[]): Promise<void> {
  const missing: ToolNeed[] = [];
  for (const need of needs) if ((await findOnPath(need.program)) === undefined) missing.push(need);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((m) => m.debianPackage))];
  throw new ToolMissingError(
    `${benchmark} needs ${missing.map((m) => m.program).join(', ')} on PATH: apt-get install ${packages.join(' ')}`,
    missing.map((m) => m.program),
  );
}

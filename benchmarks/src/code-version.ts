/**
 * Which code a result measured: the git commit of the repository, and whether the
 * working tree had changes. A number is only comparable with another one measured on
 * the same code, or across a known change.
 */

import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** `9392e07`, `9392e07 + uncommitted changes`, or `unknown (not a git checkout)`. */
export async function codeVersion(cwd: string = REPO_ROOT): Promise<string> {
  try {
    const { stdout: head } = await run('git', ['rev-parse', '--short', 'HEAD'], { cwd, timeout: 10_000 });
    const { stdout: status } = await run('git', ['status', '--porcelain'], {
      cwd,
      timeout: 10_000,
    });
    return `${head.trim()}${status.trim() === '' ? '' : ' + uncommitted changes'}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/*
 * External tools that independent cross-checks run (python3 for conformance/, the zstd
 * CLI for zstd stores, git for the README test). On a developer machine a missing tool
 * skips the check with a log line; in CI (LIVERESTORE_REQUIRE_TOOLS=1, set by .ci/run)
 * a missing tool fails the test, so a cross-check can never disappear silently.
 */
import { spawnSync } from 'node:child_process';

/** The part of ava's ExecutionContext that {@link requireTool} uses (small, so it can be faked in a test). */
export interface ToolContext {
  log(...values: unknown[]): void;
  pass(message?: string): void;
  fail(message?: string): void;
}

const found = new Map<string, boolean>();

/**
 * True when `name --version` (or `name ...versionArgs`: `openssl version`) runs and exits 0;
 * the answer is cached per process.
 */
export function hasTool(name: string, versionArgs: readonly string[] = ['--version']): boolean {
  const key = [name, ...versionArgs].join(' ');
  let ok = found.get(key);
  if (ok === undefined) {
    const result = spawnSync(name, versionArgs, { stdio: 'ignore', timeout: 30_000 });
    ok = result.error === undefined && result.status === 0;
    found.set(key, ok);
  }
  return ok;
}

/**
 * True when the tool is there. Otherwise the test is over: with
 * `LIVERESTORE_REQUIRE_TOOLS=1` it fails naming the tool, else it logs and passes as
 * skipped. Use as `if (!requireTool(t, 'python3')) return;`. `versionArgs` is how the tool
 * is probed (`['version']` for openssl).
 */
export function requireTool(
  t: ToolContext,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  versionArgs: readonly string[] = ['--version'],
): boolean {
  if (hasTool(name, versionArgs)) return true;
  if (env.LIVERESTORE_REQUIRE_TOOLS === '1') {
    t.fail(
      `required tool "${name}" is missing (LIVERESTORE_REQUIRE_TOOLS=1): install it, e.g. apt-get install ${name}`,
    );
  } else {
    t.log(`SKIPPED: "${name}" is not installed (in CI, LIVERESTORE_REQUIRE_TOOLS=1 makes this a failure)`);
    t.pass();
  }
  return false;
}

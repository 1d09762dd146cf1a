/**
 * A child process with a file-descriptor limit of its own (`ulimit -n`), for tests and
 * probes that exhaust descriptors at a fixed scale: the limit is what they say it is,
 * whatever the limit of the machine that runs them. Lowering it needs no privilege;
 * raising it over the hard limit needs root, and then the child fails to start (the
 * shell says why), so a test that depends on it fails instead of running at another scale.
 */

/**
 * The command and arguments that run `command args…` with `RLIMIT_NOFILE` (soft and hard)
 * set to `limit`: a POSIX shell sets it, then `exec`s the command, so the process id is
 * the command's and signals reach it.
 */
export function withDescriptorLimit(
  limit: number,
  command: string,
  args: readonly string[],
): [string, string[]] {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError('limit must be a positive integer');
  return ['sh', ['-c', 'ulimit -n "$0" && exec "$@"', String(limit), command, ...args]];
}

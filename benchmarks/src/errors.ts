/**
 * Errors of the benchmark CLI. Only usage mistakes get their own class: the CLI
 * prints them with the benchmark's `--help` hint and exits with status 2, while any
 * other error is a failure of the code being measured and keeps its stack.
 */

/** A bad command line: unknown benchmark or option, or a malformed option value. */
export class UsageError extends Error {
  readonly code = 'ERR_LR_BENCH_USAGE';
  override readonly name = 'UsageError';
}

/**
 * A program the benchmark runs (fio, nbdkit, lighttpd, qemu-storage-daemon, …) is not
 * installed. Not a usage mistake and not a failure of the code measured: the CLI prints
 * the message, which names the Debian packages to install, and exits with status 1.
 */
export class ToolMissingError extends Error {
  readonly code = 'ERR_LR_BENCH_TOOL_MISSING';
  override readonly name = 'ToolMissingError';
  constructor(
    message: string,
    /** The missing programs. */
    readonly programs: readonly string[],
  ) {
    super(message);
  }
}

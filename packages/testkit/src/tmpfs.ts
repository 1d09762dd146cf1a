/*
 * A small file system for the tests of a full disk (ENOSPC): a tmpfs of a given size,
 * mounted for one test and unmounted after it. Tests run as root (as CI does), so a mount
 * that fails fails the test: a full-disk test never passes by skipping.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What {@link mountSmallTmpfs} needs of ava's ExecutionContext. */
export interface TeardownContext {
  teardown(fn: () => unknown): void;
}

/**
 * Mounts a tmpfs of `bytes` at `dir` (created if missing) until the test ends. Throws,
 * failing the test, when it cannot: it needs root, which the tests have.
 */
export async function mountSmallTmpfs(t: TeardownContext, dir: string, bytes: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir]);
  } catch (err) {
    const why = ((err as { stderr?: string }).stderr || (err as Error).message).trim().split('\n')[0];
    throw new Error(`cannot mount a ${bytes}-byte tmpfs at ${dir} (the tests run as root): ${why}`);
  }
  t.teardown(() => run('umount', ['-l', dir]));
}

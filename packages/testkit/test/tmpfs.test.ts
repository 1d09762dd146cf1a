/** The small tmpfs of the full-disk tests: mounted at its size, gone after the test, and never a silent skip. */
import { readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { mountSmallTmpfs, tempDir } from '../src/index.js';

/** A teardown list the test runs itself, so it can look at the mount before and after. */
function teardowns(): { teardown(fn: () => unknown): void; run(): Promise<void> } {
  const fns: (() => unknown)[] = [];
  return {
    teardown: (fn) => fns.push(fn),
    run: async () => {
      for (const fn of fns.reverse()) await fn();
    },
  };
}

async function mountedAt(dir: string): Promise<boolean> {
  return (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((line) => line.split(' ')[1] === dir);
}

test('mountSmallTmpfs mounts a tmpfs of the size asked for at a new directory, and its teardown unmounts it', async (t) => {
  const base = await tempDir('testkit-tmpfs-');
  t.teardown(() => base.cleanup());
  const dir = join(base.path, 'small');
  const ctx = teardowns();
  await mountSmallTmpfs(ctx, dir, 1024 * 1024);
  t.true(await mountedAt(dir));
  const fs = await statfs(dir);
  t.is(fs.blocks * fs.bsize, 1024 * 1024);
  await ctx.run();
  t.false(await mountedAt(dir));
});

test('mountSmallTmpfs throws when the mount fails (the test fails, it is not skipped)', async (t) => {
  const base = await tempDir('testkit-tmpfs-');
  t.teardown(() => base.cleanup());
  const ctx = teardowns();
  await t.throwsAsync(mountSmallTmpfs(ctx, join(base.path, 'bad'), Number.NaN), {
    message: /^cannot mount a NaN-byte tmpfs at .*\(the tests run as root\): /,
  });
  t.false(await mountedAt(join(base.path, 'bad')));
});

/*
 * The target directory's lock: racing takers (in one process here; two real processes in
 * packages/cli/test/live-restore.test.ts), stale locks of dead processes, a takeover
 * token left by a taker that died.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@liverestore/testkit';
import test from 'ava';
import { lockTargetDir, TARGET_LOCK_FILE, type TargetLock } from '../src/target-lock.js';

/** The pid of a process that has exited (what a crash leaves in a lock). */
function deadPid(): number {
  const { pid } = spawnSync(process.execPath, ['-e', '']);
  return pid!;
}

async function workDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await tempDir('lr-lock-');
  t.teardown(() => dir.cleanup());
  return dir.path;
}

/** Races `takers` lockTargetDir calls on `dir`; returns the winners and the refusal codes. */
async function race(dir: string, takers: number): Promise<{ won: TargetLock[]; refused: string[] }> {
  const results = await Promise.allSettled(Array.from({ length: takers }, () => lockTargetDir(dir)));
  const won: TargetLock[] = [];
  const refused: string[] = [];
  for (const r of results) {
    if (r.status === 'fulfilled') won.push(r.value);
    else refused.push((r.reason as { code?: string }).code ?? String(r.reason));
  }
  return { won, refused };
}

test('racing takers after a crash left a stale lock: exactly one holds it, 100 of 100 times', async (t) => {
  const root = await workDir(t);
  const dead = deadPid();
  for (let round = 0; round < 100; round++) {
    const dir = join(root, `r${round}`);
    await mkdir(dir);
    // Old format (pid only), new format (pid nonce), and no lock at all.
    const kind = round % 3;
    if (kind === 0) await writeFile(join(dir, TARGET_LOCK_FILE), `${dead}\n`);
    if (kind === 1) await writeFile(join(dir, TARGET_LOCK_FILE), `${dead} 3f0c-stale\n`);
    const { won, refused } = await race(dir, 2 + (round % 3));
    t.is(won.length, 1, `round ${round}: exactly one taker holds the lock`);
    t.deepEqual(
      refused,
      refused.map(() => 'ERR_LR_LIVE_TARGET_BUSY'),
    );
    const content = await readFile(join(dir, TARGET_LOCK_FILE), 'utf8');
    t.is(content, `${process.pid} ${won[0]!.nonce}\n`, `round ${round}: the lock names the winner`);
    await won[0]!.release();
    t.deepEqual(await readdir(dir), [], `round ${round}: no lock, candidate or token file left`);
  }
});

/** A lock-taker process (test/fixtures/lock-taker.ts) and a way to ask it one thing. */
function taker(t: { teardown(fn: () => void): void }): { ask(line: string): Promise<string> } {
  const child = spawn(process.execPath, [fileURLToPath(new URL('fixtures/lock-taker.js', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const answers = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    async ask(line) {
      child.stdin!.write(`${line}\n`);
      const next = await answers.next();
      if (next.done === true) throw new Error('the lock taker exited');
      return next.value;
    },
  };
}

test('two processes racing for a target dir with a stale lock: exactly one holds it, 100 of 100 times', async (t) => {
  const root = await workDir(t);
  const takers = [taker(t), taker(t)];
  const dead = deadPid();
  for (let round = 0; round < 100; round++) {
    const dir = join(root, `p${round}`);
    await mkdir(dir);
    if (round % 4 !== 3) await writeFile(join(dir, TARGET_LOCK_FILE), `${dead}\n`);
    const answers = await Promise.all(takers.map((p) => p.ask(`lock ${dir}`)));
    t.deepEqual([...answers].sort(), ['refused ERR_LR_LIVE_TARGET_BUSY', 'won'], `round ${round}`);
    const winner = takers[answers.indexOf('won')];
    if (winner !== undefined) t.is(await winner.ask('release'), 'released');
    else for (const p of takers) await p.ask('release');
  }
});

test('a lock held by a live process, or by another restore of this process, is refused and left alone', async (t) => {
  const dir = await workDir(t);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const lockPath = join(dir, TARGET_LOCK_FILE);
  await writeFile(lockPath, `${child.pid} other-process\n`);
  const err = await t.throwsAsync(lockTargetDir(dir), { code: 'ERR_LR_LIVE_TARGET_BUSY' });
  t.regex(err!.message, new RegExp(`pid ${child.pid}`));
  t.is(await readFile(lockPath, 'utf8'), `${child.pid} other-process\n`);
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  const mine = await lockTargetDir(dir); // the child is gone: its lock is stale now
  await t.throwsAsync(lockTargetDir(dir), {
    code: 'ERR_LR_LIVE_TARGET_BUSY',
    message: /another live restore of this process/,
  });
  await mine.release();
  await mine.release(); // twice is harmless
  const again = await lockTargetDir(dir);
  await again.release();
});

test('a takeover token or a candidate left by a taker that died does not block the directory and is removed', async (t) => {
  const dir = await workDir(t);
  const lockPath = join(dir, TARGET_LOCK_FILE);
  await writeFile(lockPath, `${deadPid()} crashed-holder\n`);
  const { ino } = await stat(lockPath);
  // A taker died right after taking the token of that lock file; another one between
  // writing its candidate and removing it.
  await writeFile(`${lockPath}.takeover-${ino}`, `${deadPid()} crashed-taker\n`);
  await writeFile(
    join(dir, `${TARGET_LOCK_FILE}.${deadPid()}-0b8e2c1a-5d3f-4e1b-9a7c-2f6d8e4b1c3a.tmp`),
    'x',
  );
  const lock = await lockTargetDir(dir);
  t.is(await readFile(lockPath, 'utf8'), `${process.pid} ${lock.nonce}\n`);
  await lock.release();
  t.deepEqual(await readdir(dir), [], 'tokens and the dead candidate removed');
});

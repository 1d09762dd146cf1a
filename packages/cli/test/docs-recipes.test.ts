/*
 * The recipes of README.md and docs/ that are marked runnable (an HTML comment starting
 * with "runnable" on the line before the ```sh fence) run as written: each block in a
 * fresh directory, by bash with errexit, with `liverestore` on PATH as a user has it
 * after install. A recipe that starts servers must stop them itself.
 */
import { execFile } from 'node:child_process';
import { chmod, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { BIN, ROOT, testDir } from './helpers.js';

const run = promisify(execFile);
const RUNNABLE = /^<!-- runnable\b.*-->\n```(?:sh|bash)\n([\s\S]*?)\n```$/gm;
/** The fixed ports the recipes use, as a user would (serve's and NBD's defaults). */
const RECIPE_PORTS = [8007, 10809];
const RECIPE_TIMEOUT_MS = 120_000;

async function recipeFiles(): Promise<string[]> {
  const docs = (await readdir(join(ROOT, 'docs')))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f));
  return ['README.md', ...docs.sort()];
}

/** Every runnable block: its file, line and text. */
async function recipes(): Promise<{ file: string; line: number; script: string }[]> {
  const out = [];
  for (const file of await recipeFiles()) {
    const text = await readFile(join(ROOT, file), 'utf8');
    for (const match of text.matchAll(RUNNABLE)) {
      out.push({ file, line: text.slice(0, match.index).split('\n').length + 1, script: match[1]! });
    }
  }
  return out;
}

/**
 * Kills what a recipe left running in its directory (servers it started with --fork when a
 * later line failed before its `kill`): every process whose working directory is `dir`.
 */
async function killProcessesIn(dir: string): Promise<void> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => undefined);
    if (cwd !== undefined && (cwd === dir || cwd.startsWith(`${dir}/`))) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {}
    }
  }
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

test('README.md has runnable recipes, and the check finds them', async (t) => {
  const found = await recipes();
  t.true(found.some((r) => r.file === 'README.md' && r.script.includes('liverestore backup')));
});

test.serial('every runnable recipe in README.md and docs/ runs as written', async (t) => {
  const haveQemuImg = await run('sh', ['-c', 'command -v qemu-img']).then(
    () => true,
    () => false,
  );
  if (!haveQemuImg && process.env.LIVERESTORE_REQUIRE_TOOLS !== '1') {
    t.log('qemu-img is not installed (Debian: qemu-utils): the recipes use it, not run');
    t.pass();
    return;
  }
  for (const port of RECIPE_PORTS) t.true(await portFree(port), `port ${port} must be free for the recipes`);
  const dir = await testDir(t, 'lr-recipes-');
  const bin = join(dir, 'bin');
  await run('mkdir', ['-p', bin]);
  await writeFile(join(bin, 'liverestore'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`);
  await chmod(join(bin, 'liverestore'), 0o755);
  for (const recipe of await recipes()) {
    const work = join(dir, `${recipe.file.replace(/\W/g, '-')}-${recipe.line}`);
    await run('mkdir', ['-p', work]);
    try {
      await run('bash', ['-e', '-o', 'pipefail', '-c', recipe.script], {
        cwd: work,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
        timeout: RECIPE_TIMEOUT_MS,
        maxBuffer: 64 * 1024 * 1024,
      });
      t.pass(`${recipe.file}:${recipe.line}`);
    } catch (err) {
      const e = err as { stderr?: string; code?: unknown };
      t.fail(`${recipe.file}:${recipe.line} failed (${String(e.code)}): ${e.stderr ?? String(err)}`);
    }
    await killProcessesIn(work);
    // kill(1) returns before a server has stopped (gracefully: up to 5 s, more on a loaded machine).
    for (const port of RECIPE_PORTS) {
      const deadline = Date.now() + 30_000;
      while (!(await portFree(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      t.true(await portFree(port), `${recipe.file}:${recipe.line} left a server on port ${port}`);
    }
  }
});

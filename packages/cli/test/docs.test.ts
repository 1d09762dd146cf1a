import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { COMMANDS } from '../src/index.js';

/** Repository root, from packages/cli/dist/test/. */
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

async function codesInSources(): Promise<Set<string>> {
  const codes = new Set<string>();
  const dirs = (await readdir(join(ROOT, 'packages'))).map((pkg) => join(ROOT, 'packages', pkg, 'src'));
  // The benchmarks' codes (ERR_LR_BENCH_*) are part of `liverestore bench`'s interface too.
  dirs.push(join(ROOT, 'benchmarks', 'src'));
  for (const dir of dirs) {
    for (const file of await sourceFiles(dir).catch(() => [])) {
      for (const match of (await readFile(file, 'utf8')).matchAll(/ERR_LR_[A-Z0-9_]+/g)) codes.add(match[0]);
    }
  }
  return codes;
}

test('docs/errors.md lists exactly the error codes the sources use', async (t) => {
  const used = await codesInSources();
  const documented = new Set(
    (await readFile(join(ROOT, 'docs/errors.md'), 'utf8')).match(/ERR_LR_[A-Z0-9_]+/g) ?? [],
  );
  t.true(used.size > 20, 'the scan found the codes');
  t.deepEqual([...used].filter((c) => !documented.has(c)).sort(), [], 'codes used but not documented');
  t.deepEqual([...documented].filter((c) => !used.has(c)).sort(), [], 'codes documented but never used');
});

test('docs/cli.md documents every command', async (t) => {
  const text = await readFile(join(ROOT, 'docs/cli.md'), 'utf8');
  for (const command of COMMANDS)
    t.true(text.includes(`liverestore ${command.name}`), `docs/cli.md lacks ${command.name}`);
});

test('README links only to docs that exist', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const links = [...readme.matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
  t.true(links.length >= 5);
  for (const link of links) await t.notThrowsAsync(readFile(join(ROOT, link)), link);
});

test('docs/cli.md carries the --help text of every command verbatim', async (t) => {
  const text = await readFile(join(ROOT, 'docs/cli.md'), 'utf8');
  for (const command of COMMANDS) {
    t.true(
      text.includes(command.help),
      `docs/cli.md is out of date for "${command.name}": run pnpm docs:cli`,
    );
  }
});

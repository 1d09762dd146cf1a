/*
 * The public packages as someone else installs them: packed with pnpm (which turns
 * workspace:* into versions), installed from the tarballs into an empty project with
 * npm, nothing from the monorepo. The CLI runs its demo; a TypeScript program compiles
 * against the shipped .d.ts and runs; a CommonJS program require()s the packages.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT, testDir } from './helpers.js';

const run = promisify(execFile);
const PUBLIC_PACKAGES = ['format', 'datastore', 'reader', 'server', 'nbd', 'live', 'vmgen', 'cli'];
const FIXTURES = join(ROOT, 'packages/cli/test/fixtures/consumer');
const LONG = { timeout: 300_000, maxBuffer: 64 * 1024 * 1024 } as const;

test('every public package carries license, engines, repository and files (scripts/package-metadata.mjs)', async (t) => {
  const out = await run(process.execPath, [join(ROOT, 'scripts/package-metadata.mjs'), '--check']).catch(
    (err: { stderr?: string }) => ({ stderr: err.stderr ?? String(err), failed: true }),
  );
  t.false('failed' in out, out.stderr);
});

test.serial('packed tarballs install into an empty project and work without the monorepo', async (t) => {
  const dir = await testDir(t, 'lr-packaging-');
  const packs = join(dir, 'packs');
  await mkdir(packs);
  for (const name of PUBLIC_PACKAGES) {
    await run('npx', ['-y', 'pnpm@12.4.2', 'pack', '--pack-destination', packs], {
      cwd: join(ROOT, 'packages', name),
      ...LONG,
    });
  }
  const tarballs = (await readdir(packs)).filter((f) => f.endsWith('.tgz')).sort();
  t.is(tarballs.length, PUBLIC_PACKAGES.length, tarballs.join(', '));

  for (const tarball of tarballs) {
    const { stdout } = await run('tar', ['tzf', join(packs, tarball)]);
    const files = stdout.split('\n').filter((f) => f !== '');
    const bad = files.filter((f) => /\/test\/|\.tsbuildinfo$|\.(pem|key)$|\/fixtures\//.test(f));
    t.deepEqual(bad, [], `${tarball} ships no tests, build info or keys`);
    t.true(files.includes('package/LICENSE'), `${tarball}: LICENSE`);
    t.true(files.includes('package/dist/src/index.js'), `${tarball}: compiled code`);
    // Source maps point at ../../src/*.ts: those must be in the tarball too.
    const sources = files
      .filter((f) => /^package\/src\/.*\.ts$/.test(f))
      .map((f) => f.slice('package/'.length));
    const maps = files.filter((f) => f.endsWith('.js.map'));
    t.true(maps.length > 0 && sources.length > 0, `${tarball}: maps and sources`);
    for (const map of maps) {
      const expected = map.replace(/^package\/dist\//, '').replace(/\.js\.map$/, '.ts');
      t.true(
        sources.includes(expected) || sources.includes(expected.replace(/\.ts$/, '.cts')),
        `${map} → ${expected}`,
      );
    }
  }

  const project = join(dir, 'project');
  await mkdir(project);
  const deps = Object.fromEntries(
    tarballs.map((f) => [
      `@liverestore/${f.replace(/^liverestore-/, '').replace(/-\d+\.\d+\.\d+\.tgz$/, '')}`,
      `file:${join(packs, f)}`,
    ]),
  );
  // overrides: the packages' dependencies on each other resolve to these tarballs too.
  await writeFile(
    join(project, 'package.json'),
    JSON.stringify(
      { name: 'consumer', private: true, type: 'module', dependencies: deps, overrides: deps },
      null,
      2,
    ),
  );
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: project, ...LONG });

  const cli = join(project, 'node_modules/.bin/liverestore');
  const version = await run(cli, ['--version'], { cwd: project });
  t.regex(version.stdout, /^0\.1\.0\n/);
  const demo = await run(cli, ['demo', '--size', '4MiB', '--json'], { cwd: project, ...LONG });
  t.true(JSON.parse(demo.stdout).ok, 'the installed CLI runs its demo');

  await cp(FIXTURES, project, { recursive: true });
  await writeFile(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2023',
        lib: ['es2023'],
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules/@types')],
        outDir: 'out',
      },
      files: ['consumer.mts'],
    }),
  );
  await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: project, ...LONG });
  const typescript = await run(process.execPath, ['out/consumer.mjs'], { cwd: project, ...LONG });
  t.regex(typescript.stdout, /^typescript consumer: vm\/100\/\S+ identical [0-9a-f]{12}\n$/);
  const commonjs = await run(process.execPath, ['consumer.cjs'], { cwd: project, ...LONG });
  t.regex(commonjs.stdout, /^commonjs consumer: 1 snapshot\(s\), ct\/web, decodeBlob is a function\n$/);
});

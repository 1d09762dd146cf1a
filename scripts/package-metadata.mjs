// Sets the metadata every public package publishes with (description aside): license,
// repository, engines, the files it ships, and its copy of LICENSE. Run after adding a
// package: node scripts/package-metadata.mjs. With --check it changes nothing and exits
// 1 naming each package that differs (packages/cli/test/packaging.test.ts runs that).
import { copyFile, readFile, writeFile } from 'node:fs/promises';

export const PUBLIC_PACKAGES = ['format', 'datastore', 'reader', 'server', 'nbd', 'live', 'vmgen', 'cli'];
const ORDER = [
  'name',
  'version',
  'description',
  'license',
  'repository',
  'engines',
  'type',
  'exports',
  'bin',
  'man',
  'files',
];

/** What a package ships: its compiled sources, the sources its source maps point at, and the CLI's extras. */
function filesOf(dir) {
  return dir === 'cli' ? ['dist/src', 'src', 'bin', 'man'] : ['dist/src', 'src'];
}

export function withMetadata(dir, pkg) {
  const out = {
    ...pkg,
    license: 'MIT',
    repository: {
      type: 'git',
      url: 'git+https://github.com/liverestore/liverestore.git',
      directory: `packages/${dir}`,
    },
    engines: { node: '>=20.19' },
    files: filesOf(dir),
  };
  const ordered = {};
  for (const key of ORDER) if (key in out) ordered[key] = out[key];
  for (const [key, value] of Object.entries(out)) if (!(key in ordered)) ordered[key] = value;
  return ordered;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes('--check');
  const license = await readFile(new URL('../LICENSE', import.meta.url), 'utf8');
  const differing = [];
  for (const dir of PUBLIC_PACKAGES) {
    const path = new URL(`../packages/${dir}/package.json`, import.meta.url);
    const licensePath = new URL(`../packages/${dir}/LICENSE`, import.meta.url);
    const text = await readFile(path, 'utf8');
    const wanted = `${JSON.stringify(withMetadata(dir, JSON.parse(text)), null, 2)}\n`;
    const pkg = JSON.parse(text);
    const ownLicense = await readFile(licensePath, 'utf8').catch(() => '');
    if (typeof pkg.description !== 'string' || pkg.description === '')
      differing.push(`${dir}: no description`);
    if (text !== wanted) differing.push(`${dir}: package.json metadata`);
    if (ownLicense !== license) differing.push(`${dir}: LICENSE`);
    if (!check) {
      await writeFile(path, wanted);
      await copyFile(new URL('../LICENSE', import.meta.url), licensePath);
    }
  }
  if (check) {
    for (const line of differing)
      console.error(`package-metadata: ${line} (run node scripts/package-metadata.mjs)`);
    process.exit(differing.length === 0 ? 0 : 1);
  }
  console.log(`updated ${PUBLIC_PACKAGES.length} packages`);
}

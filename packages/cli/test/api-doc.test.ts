/**
 * The public API of each published package is what docs/api.md lists under "Public
 * exports": the package's main entry exports exactly those values and types, nothing more
 * (internals live at `@liverestore/<pkg>/internal`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

/** Repository root, from packages/cli/dist/test/. */
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

interface Names {
  readonly values: string[];
  readonly types: string[];
}

/** The "Public exports: …; types: …." paragraph of the package's section of docs/api.md. */
async function documented(pkg: string): Promise<Names> {
  const doc = await readFile(join(ROOT, 'docs/api.md'), 'utf8');
  const start = doc.indexOf(`## \`@liverestore/${pkg}\``);
  if (start < 0) throw new Error(`docs/api.md has no section for @liverestore/${pkg}`);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end < 0 ? undefined : end);
  const paragraph = /^Public exports: ([\s\S]*?)\n\n/m.exec(`${section}\n\n`)?.[1];
  if (paragraph === undefined)
    throw new Error(`@liverestore/${pkg}'s section has no "Public exports:" paragraph`);
  const [values = '', types = ''] = paragraph.split('; types:');
  const names = (text: string): string[] =>
    [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1]!).filter((name) => IDENTIFIER.test(name));
  return { values: names(values).sort(), types: names(types).sort() };
}

/** What the compiled main entry's declarations export: `export { a, type B } from …` and `export type { C } …`. */
async function declared(pkg: string): Promise<string[]> {
  const dts = await readFile(join(ROOT, 'packages', pkg, 'dist/src/index.d.ts'), 'utf8');
  assertNoWholeModuleExport(pkg, dts);
  const out: string[] = [];
  for (const match of dts.matchAll(/export (?:type )?\{([^}]*)\}/g)) {
    for (const item of match[1]!.split(',')) {
      const name = item.trim().replace(/^type\s+/, '');
      if (name !== '') out.push(name);
    }
  }
  return out.sort();
}

function assertNoWholeModuleExport(pkg: string, dts: string): void {
  if (/export \*/.test(dts)) throw new Error(`@liverestore/${pkg} re-exports a module whole (export *)`);
}

for (const pkg of ['format', 'datastore', 'reader', 'server', 'nbd', 'live', 'vmgen']) {
  test(`@liverestore/${pkg} exports exactly the names docs/api.md lists`, async (t) => {
    const docs = await documented(pkg);
    t.true(docs.values.length > 3, 'the docs list was found');
    const runtime = Object.keys(await import(`@liverestore/${pkg}`)).sort();
    t.deepEqual(runtime, docs.values, 'values: the main entry vs docs/api.md');
    t.deepEqual(
      await declared(pkg),
      [...docs.values, ...docs.types].sort(),
      'values and types vs docs/api.md',
    );
  });
}

test('the /internal entries load and hold what the main entries leave out', async (t) => {
  const format = await import('@liverestore/format/internal');
  t.is(typeof format.Semaphore, 'function');
  const datastore = await import('@liverestore/datastore/internal');
  t.is(typeof datastore.writeFileAtomic, 'function');
  const reader = await import('@liverestore/reader/internal');
  t.is(typeof reader.SlotTable, 'function');
  t.is(typeof reader.LinkScheduler, 'function');
  t.false('SlotTable' in (await import('@liverestore/reader')));
  const server = await import('@liverestore/server/internal');
  t.is(typeof server.parseRange, 'function');
  t.false('parseRange' in (await import('@liverestore/server')));
  const live = await import('@liverestore/live/internal');
  t.is(typeof live.TokenBucket, 'function');
  t.is(typeof live.readMapFile, 'function');
  t.false('TokenBucket' in (await import('@liverestore/live')));
  const nbd = await import('@liverestore/nbd/internal');
  t.is(typeof nbd.validateRequest, 'function');
  t.false('validateRequest' in (await import('@liverestore/nbd')));
});

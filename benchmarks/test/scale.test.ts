/*
 * `bench scale`: its pure parts (reader plan, byte verification, log counting), and a
 * smoke run of one tiny iteration against serve, checked for shape and for every drive
 * verified. No timing assertions: the numbers only have to be there.
 */

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ChunkCache, openSnapshot } from '@liverestore/reader';
import { requireTool, tempDir } from '@liverestore/testkit';
import test from 'ava';
import { parseNginxAccessLog } from '../src/nginx-cache.js';
import { countChunkGets } from '../src/scale-origins.js';
import type { ReaderOutcome } from '../src/scale-reader-child.js';
import { planReaders } from '../src/scale-readers.js';
import { mismatchedDrives } from '../src/scale-run.js';
import { backUpSnapshots, createLocalStore, type ScaleSettings } from '../src/scale-setup.js';
import { runNode } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

test('planReaders: reader r reads task r mod T; processes hold contiguous blocks of readers', (t) => {
  const plan = planReaders(['a', 'b', 'c'], 7, 3);
  t.deepEqual(plan, [
    ['a', 'b', 'c'],
    ['a', 'b'],
    ['c', 'a'],
  ]);
  t.deepEqual(planReaders(['a', 'b'], 2, 4), [['a'], ['b']], 'never more processes than readers');
});

const TINY: ScaleSettings = {
  iterations: 1,
  origins: ['serve'],
  readers: 2,
  processes: 1,
  snapshots: 2,
  drives: 1,
  sizeBytes: 1024 ** 2,
  changes: 4,
  cacheBytes: 8 * 1024 ** 2,
  workers: 0,
  blobBudgetBytes: undefined,
  readaheadChunks: 0,
  readBytes: 4 * 1024 ** 2,
  sources: 'snapshot',
  gcEveryMs: 0,
  seed: 3,
  dir: '',
  endpoint: undefined,
};

test('backUpSnapshots: the SHA-256 of each fixture is what a restore of its drive reads; snapshots differ', async (t) => {
  const dir = await tempDir('lr-bench-scale-');
  t.teardown(() => dir.cleanup());
  const store = await createLocalStore(dir.path);
  const fixtures = await backUpSnapshots(TINY, [store], store.dir, dir.path, () => {});
  t.is(fixtures.length, 2);
  t.not(fixtures[0]!.sha256, fixtures[1]!.sha256, 'the second snapshot has changed blocks');
  const cache = new ChunkCache({ cacheBytes: 8 * 1024 ** 2, workers: 0 });
  t.teardown(() => cache.close());
  const outcomes: ReaderOutcome[] = [];
  for (const f of fixtures) {
    const snap = await openSnapshot({ source: store.dir, snapshot: f.snapshot, cache });
    const reader = await snap.openArchive(f.drive);
    const bytes = Buffer.alloc(reader.size);
    await reader.readAt(bytes, 0);
    await snap.close();
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    outcomes.push({ ...f, bytes: bytes.length, sha256, startMs: 0, endMs: 0, readMs: [] });
  }
  t.deepEqual(mismatchedDrives(fixtures, outcomes), []);
  // One flipped hash, one reader of the wrong drive: both named.
  const wrong = [
    { ...outcomes[0]!, sha256: '0'.repeat(64) },
    { ...outcomes[1]!, snapshot: fixtures[0]!.snapshot },
  ];
  t.deepEqual(mismatchedDrives(fixtures, wrong), [
    `${fixtures[0]!.snapshot} ${fixtures[0]!.drive}`,
    `${fixtures[0]!.snapshot} ${fixtures[1]!.drive}`,
  ]);
  t.throws(() => mismatchedDrives(fixtures, outcomes.slice(1)), {
    message: /1 readers answered for 2 planned/,
  });
});

test("log counting: nginx chunk requests by cache status; radosgw GETs of one store's chunk objects", (t) => {
  const nginx = ['200 MISS GET /chunks/ab', '200 HIT GET /chunks/ab', '200 - GET /snapshots', ''].join('\n');
  t.deepEqual(parseNginxAccessLog(nginx, '/chunks/'), { requests: 2, byCacheStatus: { MISS: 1, HIT: 1 } });
  const rgw = [
    '2026-12-07T12:22:17 7fd 1 beast: 0x7: 127.0.0.1 - test [07/Dec/2026] "GET /b/store/.chunks/0123/0123ab HTTP/1.1" 200 100 - - -',
    '2026-12-07T12:22:17 7fd 1 beast: 0x7: 127.0.0.1 - test [07/Dec/2026] "GET /b/store/.cnt/vm/100/x/index.json.blob HTTP/1.1" 200 10 - - -',
    '2026-12-07T12:22:17 7fd 1 beast: 0x7: 127.0.0.1 - test [07/Dec/2026] "PUT /b/store/.chunks/0123/0123cd HTTP/1.1" 200 0 - - -',
    '2026-12-07T12:22:17 7fd 1 beast: 0x7: 127.0.0.1 - test [07/Dec/2026] "GET /other/store/.chunks/0123/0123ab HTTP/1.1" 200 100 - - -',
  ].join('\n');
  t.is(countChunkGets(rgw, '/b/store'), 1);
});

test('bench scale --origins serve: one tiny iteration restores every drive alone and all at once, each verified', async (t) => {
  const dir = await tempDir('lr-bench-scale-');
  t.teardown(() => dir.cleanup());
  const args = ['scale', '--origins', 'serve', '--readers', '3', '--processes', '2'];
  args.push('--snapshots', '2', '--drives', '1', '--size', '8MiB', '--cache-size', '16MiB', '--quick');
  const { code, stdout, stderr } = await runNode([
    MAIN,
    ...args,
    '--json',
    '--out',
    dir.path,
    '--dir',
    dir.path,
  ]);
  t.is(code, 0, stderr);
  const json = JSON.parse(await readFile(`${dir.path}/scale.json`, 'utf8'));
  t.deepEqual(JSON.parse(stdout), json);
  t.is(json.benchmark, 'scale');
  t.deepEqual(
    json.sections.map((s: { cases: { name: string }[] }) => s.cases.map((c) => c.name)),
    [['serve'], ['serve']],
  );
  const [concurrent] = json.sections[0].cases;
  t.is(concurrent.secondsPerOp.length, 1);
  t.is(concurrent.details.verified, '3/3');
  t.is(concurrent.bytesPerOp, 3 * 8 * 1024 ** 2);
  const records = json.raw.records as {
    kind: string;
    readers: number;
    verified: number;
    mismatched: string[];
    readMs: number[];
    originGets: number;
    distinctChunks: number;
    processes: { name: string; peakRssBytes: number | null }[];
  }[];
  t.deepEqual(
    records.map((r) => [r.kind, r.readers]),
    [
      ['single', 1],
      ['single', 1],
      ['concurrent', 3],
    ],
  );
  for (const r of records) {
    t.is(r.verified, r.readers);
    t.deepEqual(r.mismatched, []);
    t.is(r.readMs.length, r.readers * 2, 'two 4 MiB reads per 8 MiB drive');
    t.true(
      r.distinctChunks > 0 && r.originGets >= r.distinctChunks,
      'a cold copy fetches every distinct chunk',
    );
    t.deepEqual(
      r.processes.map((p) => p.name),
      r.kind === 'single' ? ['reader 1', 'serve'] : ['reader 1', 'reader 2', 'serve'],
    );
    for (const p of r.processes) t.true((p.peakRssBytes ?? 0) > 0);
  }
  t.regex(json.notes[0], /^Every byte correct: \*\*met\*\*/);
  t.deepEqual(
    json.figures.map((f: { slug: string }) => f.slug),
    ['memory', 'p99', 'origin-gets'],
  );
});

// nginx's workers run as an unprivileged user when it starts as root, and could not reach
// a cache below a private --dir (tempDir, like mktemp -d, makes 0700 folders): every chunk
// request was a 500 until the generated config ran the workers as root.
test('bench scale --origins nginx under a private --dir: every drive verified through the cache', async (t) => {
  if (!requireTool(t, 'nginx', process.env, ['-v'])) return;
  const dir = await tempDir('lr-bench-scale-nginx-');
  t.teardown(() => dir.cleanup());
  t.is((await stat(dir.path)).mode & 0o777, 0o700, 'the scratch folder is private');
  const args = ['scale', '--origins', 'nginx', '--readers', '3', '--processes', '2', '--snapshots', '2'];
  args.push('--drives', '1', '--size', '8MiB', '--cache-size', '16MiB', '--quick', '--json');
  const { code, stderr } = await runNode([MAIN, ...args, '--out', dir.path, '--dir', dir.path]);
  t.is(code, 0, stderr);
  const json = JSON.parse(await readFile(`${dir.path}/scale.json`, 'utf8'));
  t.is(json.sections[0].cases[0].name, 'nginx');
  t.is(json.sections[0].cases[0].details.verified, '3/3');
});

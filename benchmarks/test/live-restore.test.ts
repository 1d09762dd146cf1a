/*
 * Smoke test of `bench live-restore`: one tiny iteration per mode, run as a user runs it
 * (through `liverestore bench`, a real `liverestore serve`, the shaping proxy, NBD
 * servers in their own processes), then the files it wrote are checked for shape.
 * No timing assertions: the numbers only have to be there and make sense.
 */

import { cp, mkdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { runNode as run } from './helpers.js';

const CLI = fileURLToPath(new URL('../../../packages/cli/bin/liverestore.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const TINY = [
  '--size',
  '12MiB',
  '--drives',
  '2',
  '--iterations',
  '1',
  '--cache-size',
  '16MiB',
  '--guest-reads',
  '24',
];

interface Iteration {
  system: string;
  seconds: number;
  guestP50Ms: number;
  guestP99Ms: number;
  guestReads: number;
  hitRate: number;
  chunkFetches: number;
  minFetches: number;
  chunkRefs: number;
  peakRssBytes: number | null;
  drives: number;
}

async function checkOutput(t: ExecutionContext, dir: string, stdout: string, stderr: string, mode: string) {
  const json = JSON.parse(await readFile(`${dir}/live-restore.json`, 'utf8'));
  t.deepEqual(JSON.parse(stdout), json, '--json prints what live-restore.json holds');
  t.is(json.benchmark, 'live-restore');
  t.is(json.settings.mode, mode);
  t.is(json.settings.drives, 2);
  t.is(json.settings.rttMs, 1);
  t.is(json.settings.bitsPerSecond, 1e9);
  t.is(
    json.settings.compress,
    'zstd',
    'the store is written as a user would back up (zstd), and the report says so',
  );
  const [ab] = json.sections;
  t.deepEqual(
    ab.cases.map((c: { name: string }) => c.name),
    ['A: old PBS read path', 'C: PBS today', 'B: liverestore'],
  );
  for (const c of ab.cases) {
    t.is(c.secondsPerOp.length, 1);
    t.true(c.secondsPerOp[0] > 0);
  }
  const iterations = json.raw.iterations as Iteration[];
  t.deepEqual(
    iterations.map((r) => r.system),
    ['A', 'C', 'B'],
    'A, C and B in turn',
  );
  for (const r of iterations) {
    t.true(r.seconds > 0);
    t.true(r.guestReads > 0 && r.guestReads <= 48);
    t.true(r.guestP50Ms > 0 && r.guestP99Ms >= r.guestP50Ms, `${r.system}: guest latencies`);
    t.true(r.chunkRefs > 0);
    // Every distinct data chunk is fetched at least once: a copy job reads the whole disk.
    t.true(r.chunkFetches >= r.minFetches && r.minFetches > 0, `${r.system}: fetches ${r.chunkFetches}`);
    t.true(r.hitRate <= 1);
    t.true(
      typeof r.peakRssBytes === 'number' && r.peakRssBytes > 10 * 1024 * 1024,
      'peak RSS read from /proc',
    );
  }
  for (const over of ['overA', 'overC']) {
    const s = json.raw.speedups[over];
    t.is(s.values.length, 1, over);
    t.true(Number.isFinite(s.median) && s.median > 0 && s.min <= s.median && s.median <= s.max, over);
  }
  const c = iterations.find((r) => r.system === 'C')!;
  t.true(c.chunkFetches >= c.minFetches, 'C fetched every data chunk (counted by serve)');
  t.true(json.raw.roundTripMs.p50 > 0);
  t.deepEqual(
    json.plot.series.map((s: { name: string; values: number[] }) => [s.name, s.values.length]),
    [
      ['A: old PBS read path', 1],
      ['B: liverestore', 1],
      ['C: PBS today', 1],
    ],
  );
  const md = await readFile(`${dir}/live-restore.md`, 'utf8');
  t.regex(md, /B's speed-up over C, PBS today .*: median [\d.]+× .*goal ≥ 1\.50?×: (met|missed)/);
  t.regex(md, /B's speed-up over A, the old PBS read path .*: median [\d.]+× .*goal ≥ 2\.50?×: (met|missed)/);
  t.regex(md, /\| iteration \| +system \| +seconds \| +× B \|/);
  for (const system of ['A', 'C', 'B'])
    t.regex(md, new RegExp(`\\| 1 +\\| +${system} +\\|`), `row of ${system}`);
  t.regex(md, /\| C: PBS today +\|/, 'C in the CPU table');
  const svg = await readFile(`${dir}/live-restore.svg`, 'utf8');
  t.true(svg.startsWith('<?xml') && svg.trimEnd().endsWith('</svg>'));
  t.is((svg.match(/<circle /g) ?? []).length, 3, 'one marker per series and iteration');
  t.regex(svg, /C: PBS today/);
  t.regex(svg, /seconds per live restore/);
  for (const name of ['live-restore', 'live-restore-p99', 'live-restore-memory']) {
    t.regex(stderr, new RegExp(`wrote .*${name}\\.svg, .*${name}\\.png \\(@resvg`), `${name}: SVG and PNG`);
    const png = await readFile(`${dir}/${name}.png`);
    t.true(png.subarray(0, 8).equals(PNG_SIGNATURE), `${name}: PNG signature`);
  }
  t.deepEqual(
    json.figures.map((f: { slug: string; series: unknown[] }) => [f.slug, f.series.length]),
    [
      ['p99', 3],
      ['memory', 3],
    ],
  );
  return json;
}

test('liverestore bench live-restore: one tiny NBD iteration writes well-formed JSON, Markdown, SVG and PNG', async (t) => {
  const out = await tempDir('lr-bench-live-');
  t.teardown(() => out.cleanup());
  const r = await run([CLI, 'bench', 'live-restore', ...TINY, '--json', '--out', out.path]);
  t.is(r.code, 0, r.stderr);
  await checkOutput(t, out.path, r.stdout, r.stderr, 'nbd');
});

test('bench live-restore --mode api with the scaling run and the cold restore', async (t) => {
  const out = await tempDir('lr-bench-live-');
  t.teardown(() => out.cleanup());
  const r = await run([
    MAIN,
    'live-restore',
    ...TINY,
    '--mode',
    'api',
    '--pbs-decode-threads',
    '1',
    '--scaling',
    '--scaling-drives',
    '1,2',
    '--scaling-size',
    '8MiB',
    '--json',
    '--out',
    out.path,
  ]);
  t.is(r.code, 0, r.stderr);
  const json = await checkOutput(t, out.path, r.stdout, r.stderr, 'api');
  t.is(json.settings.pbsDecodeThreads, 1);
  t.regex(json.notes.join('\n'), /C: PBS today .* decode on 1 thread \(PBS's tokio workers\)/);
  const scaling = json.raw.scaling as Iteration[];
  t.deepEqual(
    scaling.map((s) => [s.system, s.drives]),
    [
      ['B', 1],
      ['B', 2],
    ],
  );
  for (const s of scaling) t.true(typeof s.peakRssBytes === 'number' && s.seconds > 0);
  const cold = json.sections[1];
  t.regex(cold.title, /Cold full restore/);
  t.deepEqual(
    cold.cases.map((c: { name: string }) => c.name.split(':')[0]),
    [
      'decode limit',
      'fetch only',
      'write only',
      'cold full restore from liverestore serve (loopback, no shaping)',
      'cold full restore through the proxy (1 ms, 1 Gbit/s)',
    ],
  );
  for (const c of cold.cases) t.true(c.throughputMBps > 0 && c.details.cpuSeconds > 0, c.name);
  t.regex(
    json.notes.join('\n'),
    /Decoding, fetching and writing, each measured alone, need [\d.]+ CPU s .* no restore here can beat [\d.]+ s/,
  );
  const md = await readFile(`${out.path}/live-restore.md`, 'utf8');
  t.regex(md, /\*\*Scaling: B with 1…2 drives/);
  t.regex(md, /\*\*CPU seconds per iteration/);
  t.regex(md, /Peak RSS of B from 1 to 2 drives/);
});

test('bench live-restore rejects bad options with status 2', async (t) => {
  for (const bad of [
    ['--mode', 'carrier-pigeon'],
    ['--rtt', 'fast'],
    ['--bandwidth', '3 furlongs'],
    ['--mix', 'nope'],
  ]) {
    const r = await run([MAIN, 'live-restore', ...bad]);
    t.is(r.code, 2, bad.join(' '));
    t.regex(r.stderr, /see pnpm bench live-restore --help/);
  }
});

test('liverestore bench without a built benchmarks package: ERR_LR_BENCH_NOT_BUILT, status 1', async (t) => {
  // A copy of the CLI outside the workspace: the benchmarks are not next to it.
  const dir = await tempDir('lr-bench-cli-');
  t.teardown(() => dir.cleanup());
  const cliRoot = fileURLToPath(new URL('../../../packages/cli/', import.meta.url));
  const copy = join(dir.path, 'packages', 'cli');
  await mkdir(copy, { recursive: true });
  for (const entry of ['dist', 'bin', 'package.json'])
    await cp(join(cliRoot, entry), join(copy, entry), { recursive: true });
  await symlink(join(cliRoot, 'node_modules'), join(copy, 'node_modules'));
  const r = await run([join(copy, 'bin', 'liverestore.js'), 'bench', 'live-restore', '--quick']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^liverestore: ERR_LR_BENCH_NOT_BUILT: .*benchmarks\/dist\/src\/main\.js/);
  const help = await run([join(copy, 'bin', 'liverestore.js'), 'bench', '--help']);
  t.is(help.code, 0, 'its own --help needs no benchmarks');
  t.regex(help.stdout, /^Usage: liverestore bench NAME/);
});

/*
 * Smoke test of `bench qemu`: one tiny iteration of every system, run as a user runs
 * it (through `liverestore bench`, real serve, lighttpd, nbdkit, qemu-storage-daemon and
 * fio), then the result's shape: every system measured, every number present and
 * positive, fetches at least the distinct chunks. No timing assertions. Without the
 * tools it skips, unless LIVERESTORE_REQUIRE_TOOLS=1 (CI), where a missing tool fails.
 */

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tempDir } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { isPng } from '../src/png.js';
import { findOnPath } from '../src/tools.js';
import { runNode as run } from './helpers.js';

const CLI = fileURLToPath(new URL('../../../packages/cli/bin/liverestore.js', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const TOOLS = ['fio', 'nbdkit', 'lighttpd', 'qemu-img', 'qemu-storage-daemon'];
const MiB = 1024 * 1024;

/** True when every tool is on PATH; else skips (logged), or fails in CI. */
async function haveTools(t: ExecutionContext): Promise<boolean> {
  const missing = [];
  for (const tool of TOOLS) if ((await findOnPath(tool)) === undefined) missing.push(tool);
  if (missing.length === 0) return true;
  if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1')
    t.fail(`required tools missing (LIVERESTORE_REQUIRE_TOOLS=1): ${missing.join(', ')}`);
  else {
    t.log(`SKIPPED: not installed: ${missing.join(', ')}`);
    t.pass();
  }
  return false;
}

interface Iteration {
  system: string;
  workload: string;
  copySeconds: number;
  guestSeconds: number;
  guestBytes: number;
  guestMiBps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  fetches: number | null;
  fetchedBytes: number | null;
  distinctChunks: number;
  cpuSeconds: Record<string, number>;
  peakRssBytes: Record<string, number>;
  slowLoads?: { urgentLoads: number; slowLoads: number; totalMs: number };
}

/** The processes each system has besides fio (the proxy only with an RTT). */
const ROLES: Record<string, string[]> = {
  'lr-nbd': ['http', 'nbd', 'qsd'],
  'lr-live': ['http', 'nbd'],
  'nbdkit-curl': ['http', 'nbd', 'qsd'],
  'nbdkit-file': ['nbd', 'qsd'],
};

function checkIteration(t: ExecutionContext, r: Iteration, plannedBytes: number, proxied: boolean): void {
  const what = `${r.system}/${r.workload}`;
  t.true(r.copySeconds > 0 && r.guestSeconds > 0, `${what}: times`);
  t.is(r.guestBytes, plannedBytes, `${what}: fio read every planned byte`);
  t.true(r.guestMiBps > 0, `${what}: guest rate`);
  t.true(r.p50Ms > 0 && r.p99Ms >= r.p50Ms && r.p999Ms >= r.p99Ms, `${what}: latency percentiles`);
  const roles = [...ROLES[r.system]!, ...(proxied && r.system !== 'nbdkit-file' ? ['proxy'] : [])].sort();
  t.deepEqual(Object.keys(r.peakRssBytes).sort(), roles, `${what}: processes measured`);
  t.deepEqual(Object.keys(r.cpuSeconds).sort(), [...roles, 'fio'].sort(), `${what}: CPU per process`);
  for (const role of roles) {
    t.true(r.peakRssBytes[role]! > 1024 * 1024, `${what}: ${role} peak RSS`);
    t.true(Number.isFinite(r.cpuSeconds[role]) && r.cpuSeconds[role]! >= 0, `${what}: ${role} CPU`);
  }
  // fio reads megabytes: it uses at least a few 10 ms ticks.
  t.true(r.cpuSeconds.fio! > 0, `${what}: fio CPU`);
  t.true(r.distinctChunks > 0);
  if (r.system === 'nbdkit-file') t.is(r.fetches, null);
  else if (r.system === 'nbdkit-curl')
    t.true(r.fetches! > 0 && r.fetchedBytes! > 0, `${what}: lighttpd requests`);
  // A full copy fetches every distinct non-zero chunk at least once.
  else t.true(r.fetches! >= r.distinctChunks && r.fetchedBytes! > 0, `${what}: ${r.fetches} chunk fetches`);
  // The guest's random reads miss: liverestore's load trace has urgent loads to sum up.
  if (r.system.startsWith('lr-') && r.workload === 'rand64k') {
    t.true(r.slowLoads !== undefined && r.slowLoads.urgentLoads > 0, `${what}: urgent loads traced`);
    t.true(r.slowLoads!.slowLoads >= 1 && r.slowLoads!.totalMs > 0, `${what}: the slowest loads`);
  } else if (!r.system.startsWith('lr-')) t.is(r.slowLoads, undefined);
}

test('liverestore bench qemu: one tiny iteration of every system writes a well-formed result', async (t) => {
  if (!(await haveTools(t))) return;
  const out = await tempDir('lr-bench-qemu-');
  t.teardown(() => out.cleanup());
  const scratch = await tempDir('lr-bench-qemu-scratch-');
  t.teardown(() => scratch.cleanup());
  const r = await run([
    CLI,
    'bench',
    'qemu',
    '--size',
    '32MiB',
    '--iterations',
    '1',
    '--workload',
    'rand64k',
    '--dir',
    scratch.path,
    '--json',
    '--out',
    out.path,
  ]);
  t.is(r.code, 0, r.stderr);
  const json = JSON.parse(await readFile(`${out.path}/qemu.json`, 'utf8'));
  t.deepEqual(JSON.parse(r.stdout), json, '--json prints what qemu.json holds');
  t.is(json.benchmark, 'qemu');
  t.is(json.settings.sizeBytes, 32 * MiB);
  t.is(json.settings.cacheBytes, 256 * MiB);
  t.is(json.settings.rttMs, 0);
  const iterations = json.raw.iterations as Iteration[];
  t.deepEqual(
    iterations.map((i) => i.system),
    ['lr-nbd', 'lr-live', 'nbdkit-curl', 'nbdkit-file'],
    'every system once, in order in the first iteration',
  );
  // rand64k scales 96 MiB per 512 MiB of disk: 6 MiB here.
  for (const i of iterations) checkIteration(t, i, 6 * MiB, false);
  t.deepEqual(
    json.sections.map((s: { title: string; cases: { name: string; secondsPerOp: number[] }[] }) => [
      s.title.split(':')[0],
      s.cases.map((c) => c.name),
    ]),
    [
      ['rand64k', ['lr-nbd', 'lr-live', 'nbdkit-curl', 'nbdkit-file']],
      ['rand64k', ['lr-nbd', 'lr-live', 'nbdkit-curl', 'nbdkit-file']],
    ],
  );
  const md = await readFile(`${out.path}/qemu.md`, 'utf8');
  t.regex(md, /\*\*CPU seconds per iteration and peak RSS per process/);
  t.regex(md, /Goals of issue 14 for lr-nbd/);
  t.regex(md, /Where lr-live's slowest misses wait \(rand64k; --trace-loads/);
  const svg = await readFile(`${out.path}/qemu.svg`, 'utf8');
  t.is((svg.match(/<rect x=/g) ?? []).length, 8, 'a bar per system for the copy and for the guest');
  t.deepEqual(
    json.figures.map((f: { slug: string }) => f.slug),
    ['copy', 'p99', 'guest-rate', 'memory'],
  );
  for (const slug of ['copy', 'p99', 'guest-rate', 'memory']) {
    const figure = await readFile(`${out.path}/qemu-${slug}.svg`, 'utf8');
    t.is((figure.match(/<circle /g) ?? []).length, 4, `${slug}: a marker per system in the one iteration`);
    t.true(isPng(await readFile(`${out.path}/qemu-${slug}.png`)), `${slug}: PNG`);
  }
  t.regex(await readFile(`${out.path}/qemu-p99.svg`, 'utf8'), /goal: ≤ 50 ms/);
  t.deepEqual(await readdir(scratch.path), [], 'the scratch directory is left empty');
});

test('bench qemu --rtt-ms and --bandwidth put the proxy in front of serve and lighttpd; boot and rand4k run', async (t) => {
  if (!(await haveTools(t))) return;
  const out = await tempDir('lr-bench-qemu-');
  t.teardown(() => out.cleanup());
  const r = await run([
    MAIN,
    'qemu',
    '--size',
    '16MiB',
    '--iterations',
    '1',
    '--systems',
    'lr-live,nbdkit-curl',
    '--workload',
    'rand4k,boot',
    '--rtt-ms',
    '1',
    '--bandwidth',
    '1Gbit',
    '--decode-as-arriving',
    '--out',
    out.path,
  ]);
  t.is(r.code, 0, r.stderr);
  const json = JSON.parse(await readFile(`${out.path}/qemu.json`, 'utf8'));
  t.is(json.settings.rttMs, 1);
  t.is(json.settings.bandwidth, '1 Gbit/s');
  t.is(json.settings.decodeAsArriving, true);
  const iterations = json.raw.iterations as Iteration[];
  t.deepEqual(
    iterations.map((i) => `${i.workload} ${i.system}`),
    ['rand4k lr-live', 'rand4k nbdkit-curl', 'boot lr-live', 'boot nbdkit-curl'],
  );
  const planned = new Map<string, number>(
    (json.raw.jobs as { workload: string; plannedBytes: number }[]).map((j) => [j.workload, j.plannedBytes]),
  );
  t.is(planned.get('rand4k'), 64 * 4096, 'at least 64 reads of 4 KiB');
  for (const i of iterations) checkIteration(t, i, planned.get(i.workload)!, true);
});

test('bench qemu without its tools: ERR_LR_BENCH_TOOL_MISSING naming the Debian packages, status 1', async (t) => {
  const r = await run([MAIN, 'qemu', '--quick'], { ...process.env, PATH: '/nonexistent' });
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /^bench: ERR_LR_BENCH_TOOL_MISSING: bench qemu needs fio, qemu-img, qemu-storage-daemon, nbdkit, lighttpd on PATH: apt-get install fio qemu-utils qemu-system-common nbdkit lighttpd\n$/,
  );
});

test('bench qemu rejects bad options with status 2', async (t) => {
  for (const bad of [
    ['--systems', 'lr-nbd,vmware'],
    ['--workload', 'fortnite'],
    ['--size', '1MiB'],
    ['--rtt-ms', 'soon'],
    ['--bandwidth', 'fast'],
  ]) {
    const r = await run([MAIN, 'qemu', ...bad]);
    t.is(r.code, 2, bad.join(' '));
    t.regex(r.stderr, /see pnpm bench qemu --help/);
  }
});

/** Live (not zombie) processes whose command line mentions `text`. */
async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

test('bench qemu when qemu-storage-daemon fails: its error, status 1, no process or scratch left', async (t) => {
  if (!(await haveTools(t))) return;
  // The fault, injected through PATH: a qemu-storage-daemon that refuses to start.
  const bin = await tempDir('lr-bench-qemu-bin-');
  t.teardown(() => bin.cleanup());
  await writeFile(
    `${bin.path}/qemu-storage-daemon`,
    '#!/bin/sh\necho "qemu-storage-daemon: injected failure" >&2\nexit 1\n',
    { mode: 0o755 },
  );
  const scratch = await tempDir('lr-bench-qemu-scratch-');
  t.teardown(() => scratch.cleanup());
  const r = await run(
    [
      MAIN,
      'qemu',
      '--size',
      '16MiB',
      '--iterations',
      '1',
      '--systems',
      'lr-nbd',
      '--workload',
      'rand4k',
      '--dir',
      scratch.path,
    ],
    { ...process.env, PATH: `${bin.path}:${process.env.PATH ?? ''}` },
  );
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /qemu-storage-daemon exited \(status 1\) while starting:\nqemu-storage-daemon: injected failure/,
  );
  t.deepEqual(await readdir(scratch.path), [], 'scratch removed');
  t.deepEqual(await processesMentioning(scratch.path), [], 'serve and liverestore nbd stopped');
});

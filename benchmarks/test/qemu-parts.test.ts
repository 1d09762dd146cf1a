/*
 * The parts of `bench qemu` whose mistakes would not show in its smoke test: the boot
 * trace (deterministic, aligned, inside the disk, shaped as documented), the parsers of
 * fio's JSON and lighttpd's access log, the cleanup order of a CleanupScope, and that
 * a benchmark's children die with it.
 */

import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { CleanupScope } from '../src/children.js';
import { parseFioJson } from '../src/fio.js';
import { bootTraceReads, guestJob } from '../src/guest-workloads.js';
import { slowLoadPhases } from '../src/load-phases.js';
import { parseAccessLog } from '../src/static-http.js';

const MiB = 1024 * 1024;

test('slowLoadPhases: the mean phases of the tenth of the urgent loads that ended well a guest waited longest for', (t) => {
  let n = 0;
  const load = (
    urgent: boolean,
    ok: boolean,
    totalMs: number,
    digestHex = `d${n++}`,
    joinedAtMs = 1,
    decodedArriving = false,
  ) =>
    JSON.stringify({
      digestHex,
      from: 'source',
      urgent,
      ok,
      totalMs,
      urgentWaitMs: urgent ? totalMs - joinedAtMs : 0,
      memoryWaitMs: 1,
      pagesWaitMs: 0.5,
      blobMs: totalMs / 2,
      decodeWaitMs: 2,
      decodeMs: 3,
      decodedArriving,
    });
  const lines = [
    ...Array.from({ length: 18 }, (_, i) => load(true, true, 10 + i, undefined, 1, i < 4)),
    load(true, true, 100),
    load(true, true, 80),
    load(true, true, 300, 'late', 295), // readahead a guest joined 5 ms before its end
    load(false, true, 500, 'd0'), // background: the guest did not wait for it; d0 a second time
    load(true, false, 400), // failed
    '',
  ].join('\n');
  t.deepEqual(slowLoadPhases(lines), {
    sourceLoads: 22,
    distinctSourceChunks: 21,
    urgentLoads: 21,
    slowLoads: 3,
    arrivingLoads: 4,
    // 100, 80 and 27 ms loads; not the 300 ms load a guest waited 5 ms for.
    urgentWaitMs: 68,
    totalMs: 69,
    memoryWaitMs: 1,
    pagesWaitMs: 0.5,
    blobMs: 34.5,
    decodeWaitMs: 2,
    decodeMs: 3,
  });
  t.is(slowLoadPhases(load(false, true, 5)), undefined);
});

test('boot trace: deterministic per seed, 4 KiB aligned, inside the disk', (t) => {
  for (const size of [16 * MiB, 512 * MiB + 64 * 1024, 2048 * MiB]) {
    const reads = bootTraceReads(7, size);
    t.deepEqual(bootTraceReads(7, size), reads, 'same seed, same trace');
    t.notDeepEqual(bootTraceReads(8, size), reads, 'another seed, another trace');
    for (const r of reads) {
      t.true(r.offset % 4096 === 0 && r.length % 4096 === 0 && r.length > 0);
      t.true(r.offset + r.length <= size, `read ${r.offset}+${r.length} inside ${size}`);
    }
  }
});

test('boot trace at 512 MiB: sequential start, then 4 KiB metadata reads and a few large reads', (t) => {
  const size = 512 * MiB;
  const reads = bootTraceReads(1, size);
  // 1. Sequential from 0 over 1/64 of the disk, read sizes doubling from 4 KiB to 64 KiB.
  let end = 0;
  let i = 0;
  for (; end < size / 64; i++) {
    t.is(reads[i]!.offset, end, 'sequential');
    end += reads[i]!.length;
  }
  t.is(end, size / 64);
  t.deepEqual(
    reads.slice(0, 6).map((r) => r.length / 1024),
    [4, 8, 16, 32, 64, 64],
  );
  // 2 and 3: one 4 KiB read per 512 KiB of disk plus the program loads (each with two 4 KiB reads).
  const rest = reads.slice(i);
  const large = rest.filter((r) => r.length > 4096);
  t.true(large.length >= 2 && large.length <= size / (32 * MiB), `${large.length} program loads`);
  for (const r of large) t.true(r.length >= 128 * 1024 && r.length <= MiB);
  t.is(rest.length - large.length, size / (512 * 1024) + 2 * large.length);
});

test('guest jobs scale with the disk and say what they read', async (t) => {
  const job = await guestJob('rand64k', 512 * MiB, 1, '/nonexistent');
  t.is(job.plannedBytes, 96 * MiB);
  t.true(job.fioOptions.includes('--iodepth=16') && job.fioOptions.includes('--bs=65536'));
  t.is((await guestJob('rand64k', 2048 * MiB, 1, '/nonexistent')).plannedBytes, 384 * MiB);
  const lat = await guestJob('rand4k', 512 * MiB, 1, '/nonexistent');
  t.is(lat.plannedBytes, 4 * MiB);
  t.true(lat.fioOptions.includes('--iodepth=1'));
});

test('parseFioJson: read side and percentiles, after warning lines', (t) => {
  const doc = {
    jobs: [
      {
        error: 0,
        read: {
          io_bytes: 6291456,
          total_ios: 96,
          bw_bytes: 300_000_000,
          iops: 4577.6,
          runtime: 21,
          clat_ns: { percentile: { '50.000000': 1_000_000, '99.000000': 5_000_000, '99.900000': 7_000_000 } },
        },
      },
    ],
  };
  const parsed = parseFioJson(`fio: connected to NBD server\n${JSON.stringify(doc)}`);
  t.deepEqual(parsed, {
    bytes: 6291456,
    ios: 96,
    bytesPerSecond: 300_000_000,
    iops: 4577.6,
    runtimeMs: 21,
    p50Ns: 1_000_000,
    p99Ns: 5_000_000,
    p999Ns: 7_000_000,
  });
  doc.jobs[0]!.error = 5;
  t.throws(() => parseFioJson(JSON.stringify(doc)), { message: /error 5/ });
  t.throws(() => parseFioJson('fio: engine nbd not loadable'), { message: /no JSON/ });
});

test('parseAccessLog: counts only the image and its body bytes', (t) => {
  const log = [
    '200 0 /',
    '206 65536 /disk.raw',
    '206 1048576 /disk.raw',
    '304 - /disk.raw',
    '206 10 /other',
    '',
  ];
  t.deepEqual(parseAccessLog(log.join('\n'), '/disk.raw'), { requests: 3, bytes: 65536 + 1048576 });
});

test('CleanupScope: steps run newest first, all of them, and the first failure is rethrown', async (t) => {
  const scope = new CleanupScope();
  const order: string[] = [];
  scope.defer(() => {
    order.push('dir');
  });
  scope.add({
    stop: async () => {
      order.push('server');
      throw new Error('server would not stop');
    },
  });
  scope.defer(() => {
    order.push('daemon');
  });
  await t.throwsAsync(scope.close(), { message: 'server would not stop' });
  t.deepEqual(order, ['daemon', 'server', 'dir']);
  await t.throwsAsync(
    scope.close(),
    { message: 'server would not stop' },
    'closing twice runs nothing again',
  );
  t.is(order.length, 3);
});

const SCOPE_CHILD = fileURLToPath(new URL('./fixtures/scope-child.js', import.meta.url));

/** True once `pid` is gone or a zombie (killed, not yet reaped by its new parent). */
async function dead(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

for (const how of ['exit', 'signal'] as const) {
  test(`a benchmark that ends by ${how === 'exit' ? 'process.exit' : 'SIGTERM'} leaves no child behind`, async (t) => {
    const parent = spawn(process.execPath, [SCOPE_CHILD, how], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => parent.once('exit', resolve));
    const pid = await new Promise<number>((resolve) => {
      parent.stdout.setEncoding('utf8').once('data', (line: string) => resolve(Number(line.trim())));
    });
    t.teardown(async () => {
      if (!(await dead(pid))) process.kill(pid, 'SIGKILL');
    });
    if (how === 'signal') {
      t.false(await dead(pid), 'the child runs until its parent gets the signal');
      parent.kill('SIGTERM');
    }
    t.is(await exited, how === 'exit' ? 3 : 143);
    const deadline = Date.now() + 10_000;
    while (!(await dead(pid))) {
      if (Date.now() > deadline) {
        t.fail(`child ${pid} outlived its parent`);
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    t.pass();
  });
}

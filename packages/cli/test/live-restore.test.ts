/*
 * `liverestore live-restore` as a user runs it: a real process, real NBD clients
 * (qemu-io, qemu-img, nbdcopy), SIGKILL at random moments and resumes, and bad target
 * directories refused with their codes.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { imageBytes, mountSmallTmpfs, vmImageSet, writeImageFile } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { parseRate, progressLine } from '../src/commands/live-restore.js';
import { assertCliError, BIN, backupArgv, cli, exec, lines, MiB, testDir, untilDoneArgv } from './helpers.js';
import { requireTool } from './tools.js';

/** A started `liverestore live-restore`: its address, output so far, and how it ended. */
interface Running {
  readonly child: ChildProcess;
  readonly address: string;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

async function startLive(args: readonly string[]): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'live-restore', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
    });
    void exited.then((code) => reject(new Error(`live-restore exited early with ${code}: ${err}`)));
  });
  return { child, address, stdout: () => out, stderr: () => err, exited };
}

/** A two-drive VM backed up to `dir/store`, and its source images. */
async function backedUpVm(
  dir: string,
  sizes: [number, number],
): Promise<{ store: string; images: Buffer[] }> {
  const set = vmImageSet(77, { drives: 2, sizeBytes: sizes });
  const args: string[] = [];
  const images: Buffer[] = [];
  for (const d of set) {
    const path = join(dir, `${d.name}.raw`);
    await writeImageFile(d.spec, path);
    args.push(`${d.name}=${path}`);
    images.push(imageBytes(d.spec, 0, d.spec.sizeBytes));
  }
  const store = join(dir, 'store');
  const backup = await cli(backupArgv(store, args, { json: false, chunkSize: '1MiB' }));
  if (backup.code !== 0) throw new Error(backup.stderr);
  return { store, images };
}

const NAMES = ['drive-scsi0.img', 'drive-scsi1.img'];

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * `qemu-io write -f` (FUA): once qemu-io reports "wrote", the server acknowledged a FUA
 * write, which must be durable (qemu-io flushes at exit too).
 */
async function qemuWrite(address: string, drive: number, offset: number, length: number, pattern: number) {
  const out = await exec(
    'qemu-io',
    ['-f', 'raw', '-c', `write -f -P ${pattern} ${offset} ${length}`, `nbd://${address}/${NAMES[drive]}`],
    { timeoutMs: 30_000 },
  );
  return { ...out, acknowledged: out.code === 0 && /wrote \d+\/\d+ bytes/.test(out.stdout) };
}

test('live-restore: qemu-io writes during the copy, qemu-img reads, --exit-when-done; targets = source + writes', async (t) => {
  for (const tool of ['qemu-io', 'qemu-img']) if (!requireTool(t, tool)) return;
  const dir = await testDir(t);
  const { store, images } = await backedUpVm(dir, [16 * MiB + 512 * 3, 8 * MiB]);
  const target = join(dir, 'target');
  const live = await startLive([
    '--from',
    store,
    'vm/100',
    '--target-dir',
    target,
    '--rate-limit',
    '4MB/s',
    '--exit-when-done',
  ]);
  t.teardown(() => live.child.kill('SIGKILL'));
  t.regex(live.address, /^127\.0\.0\.1:\d+$/);
  const writes: [number, number, number, number][] = [
    [0, 6 * MiB + 100 * 512, 64 * 1024, 0xab],
    [0, 2 * MiB - 512, 4096, 0xcd],
    [1, 7 * MiB, MiB, 0x42],
  ];
  for (const [drive, offset, length, pattern] of writes) {
    const w = await qemuWrite(live.address, drive, offset, length, pattern);
    t.is(w.code, 0, w.stderr);
    images[drive]!.fill(pattern, offset, offset + length);
  }
  const copy = join(dir, 'read.raw');
  const convert = await exec(
    'qemu-img',
    ['convert', '-f', 'raw', '-O', 'raw', `nbd://${live.address}/${NAMES[0]}`, copy],
    { timeoutMs: 30_000 },
  );
  t.is(convert.code, 0, convert.stderr);
  t.is(firstDifference(await readFile(copy), images[0]!), -1, 'qemu-img reads source + writes');
  t.is(await live.exited, 0, live.stderr());
  t.regex(live.stdout(), /all drives local after/);
  for (const [i, name] of NAMES.entries()) {
    t.is(firstDifference(await readFile(join(target, name)), images[i]!), -1, name);
  }
  // Run again on the complete target dir: nothing to copy, exits at once.
  const again = await cli(untilDoneArgv(store, target, 'vm/100', '--json'), { timeoutMs: 30_000 });
  t.is(again.code, 0, again.stderr);
  // --json: every stdout line is one JSON event, the first one `started` with the address.
  const events = again.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { event: string; resumed?: boolean; drives?: { bytesCopied: number }[] });
  t.is(events[0]?.event, 'started');
  t.true(events.find((e) => e.event === 'started')?.resumed);
  const done = events.find((e) => e.event === 'done');
  t.deepEqual(
    done?.drives?.map((d) => d.bytesCopied),
    [0, 0],
    'nothing copied twice',
  );
});

/** One 512-byte sector of `actual` equals the old or the new content: a write not flushed may land or not. */
function sectorsOldOrNew(actual: Buffer, old: Buffer, pattern: number): boolean {
  for (let s = 0; s < actual.length; s += 512) {
    const a = actual.subarray(s, s + 512);
    if (!a.equals(old.subarray(s, s + 512)) && !a.every((b) => b === pattern)) return false;
  }
  return true;
}

test('live-restore: SIGKILL during copy, during writes and right after a flush; every resume keeps flushed writes', async (t) => {
  if (!requireTool(t, 'qemu-io')) return;
  const dir = await testDir(t);
  const { store, images } = await backedUpVm(dir, [20 * MiB + 512 * 5, 12 * MiB]);
  const source = images.map((b) => Buffer.from(b));
  const target = join(dir, 'target');
  const args = ['--from', store, 'vm/100', '--target-dir', target];
  // Deterministic "random" moments: a seeded sequence.
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const unflushed: { drive: number; offset: number; length: number; pattern: number }[] = [];
  let pattern = 0x10;
  // Offsets used by writes are disjoint (one slot of 256 KiB per write), so a write that
  // may or may not have landed never overlaps one that must have.
  let slot = 0;
  const nextRange = (drive: number) => {
    const size = images[drive]!.length;
    const slots = Math.floor(size / (256 * 1024));
    const at = (slot++ * 7) % slots; // spread across the image, never twice the same slot
    const length = 512 * (1 + Math.floor(rand() * 200));
    return { offset: at * 256 * 1024 + 512 * Math.floor(rand() * 100), length };
  };
  const moments = ['copy', 'write', 'flush', 'copy', 'flush', 'write'] as const;
  for (const moment of moments) {
    const live = await startLive([...args, '--rate-limit', '4MB/s']);
    t.teardown(() => live.child.kill('SIGKILL'));
    if (moment === 'copy') {
      const drive = slot % 2;
      const { offset, length } = nextRange(drive);
      const w = await qemuWrite(live.address, drive, offset, length, ++pattern);
      t.true(w.acknowledged, w.stdout + w.stderr);
      images[drive]!.fill(pattern, offset, offset + length);
      await sleep(100 + rand() * 600);
    } else if (moment === 'flush') {
      const drive = slot % 2;
      const { offset, length } = nextRange(drive);
      const w = await qemuWrite(live.address, drive, offset, length, ++pattern);
      t.true(w.acknowledged, w.stdout + w.stderr); // FUA, and qemu-io flushes before it exits
      images[drive]!.fill(pattern, offset, offset + length);
    } else {
      const drive = slot % 2;
      const { offset, length } = nextRange(drive);
      const p = ++pattern;
      const w = qemuWrite(live.address, drive, offset, length, p);
      await sleep(rand() * 30);
      live.child.kill('SIGKILL');
      const result = await w;
      if (result.acknowledged)
        images[drive]!.fill(p, offset, offset + length); // acknowledged FUA: durable
      else unflushed.push({ drive, offset, length, pattern: p });
    }
    live.child.kill('SIGKILL');
    await live.exited;
    const resumed = /already local/.exec(live.stderr()) === null ? 'fresh' : live.stderr().split('\n')[0];
    t.log(`killed at "${moment}" (${resumed})`);
    const complete = /all drives local/.test(live.stdout());
    if (moment !== moments.at(-1)) t.false(complete, 'killed before the copy was complete');
  }
  // SIGTERM: a graceful stop (maps persisted, exit 0), resumable.
  const stopped = await startLive([...args, '--rate-limit', '4MB/s']);
  await sleep(300);
  stopped.child.kill('SIGTERM');
  t.is(await stopped.exited, 0, stopped.stderr());
  t.regex(stopped.stderr(), /run the same command to resume/);
  // The last run finishes the copy.
  const last = await startLive([...args, '--exit-when-done']);
  t.is(await last.exited, 0, last.stderr());
  t.regex(last.stderr(), /resuming vm\/100/);
  for (const [i, name] of NAMES.entries()) {
    const actual = await readFile(join(target, name));
    for (const u of unflushed.filter((w) => w.drive === i)) {
      const range = actual.subarray(u.offset, u.offset + u.length);
      t.true(sectorsOldOrNew(range, source[i]!.subarray(u.offset, u.offset + u.length), u.pattern));
      range.copy(images[i]!, u.offset); // whatever it is, it is allowed
    }
    t.is(firstDifference(actual, images[i]!), -1, `${name}: source + every flushed write`);
  }
});

test('live-restore: bad options are usage errors', async (t) => {
  assertCliError(t, await cli(['live-restore', 'vm/100', '--target-dir', 'x']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['live-restore', '--from', '.', 'vm/100']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['live-restore', '--from', '.', '--target-dir', 'x']), 'ERR_LR_USAGE', 2);
  assertCliError(
    t,
    await cli(['live-restore', '--from', '.', 'vm/100', '--target-dir', 'x', '--rate-limit', 'fast']),
    'ERR_LR_USAGE',
    2,
  );
  assertCliError(
    t,
    await cli([
      'live-restore',
      '--from',
      '.',
      'vm/100',
      '--target-dir',
      'x',
      '--listen',
      'a:1',
      '--socket',
      's',
    ]),
    'ERR_LR_USAGE',
    2,
  );
});

async function expectRefused(
  t: ExecutionContext,
  store: string,
  snapshot: string,
  target: string,
  code: string,
) {
  const out = await cli(
    ['live-restore', '--from', store, snapshot, '--target-dir', target, '--listen', '127.0.0.1:0'],
    { timeoutMs: 30_000 },
  );
  const line = assertCliError(t, out, code);
  t.log(line);
}

test('live-restore: another snapshot, a wrong-size target, a damaged map are refused with their codes', async (t) => {
  const dir = await testDir(t);
  const { store } = await backedUpVm(dir, [3 * MiB + 512, 2 * MiB]);
  const target = join(dir, 'target');
  const first = await cli(untilDoneArgv(store, target), { timeoutMs: 30_000 });
  t.is(first.code, 0, first.stderr);
  // A second snapshot of the group: vm/100 now names it.
  const other = join(dir, 'other.raw');
  await writeFile(other, Buffer.alloc(3 * MiB + 512, 7));
  t.is(
    (await cli(backupArgv(store, [`drive-scsi0=${other}`, `drive-scsi1=${other}`], { json: false }))).code,
    0,
  );
  await expectRefused(t, store, 'vm/100', target, 'ERR_LR_LIVE_SNAPSHOT_MISMATCH');

  const wrongSize = join(dir, 'wrong-size');
  await cp(target, wrongSize, { recursive: true });
  await truncate(join(wrongSize, NAMES[1]!), MiB);
  const firstSnapshot = (await readFile(join(target, `${NAMES[0]}.map`)))
    .toString('utf8')
    .match(/vm\/100\/\S+/)![0];
  await expectRefused(t, store, firstSnapshot, wrongSize, 'ERR_LR_LIVE_TARGET_SIZE');

  const damaged = join(dir, 'damaged');
  await cp(target, damaged, { recursive: true });
  const map = join(damaged, `${NAMES[0]}.map`);
  const bytes = await readFile(map);
  bytes[bytes.length - 33]! ^= 0x80;
  await writeFile(map, bytes);
  await expectRefused(t, store, firstSnapshot, damaged, 'ERR_LR_LIVE_MAP_CORRUPT');
  // The intact dir still resumes with the full snapshot name.
  const ok = await cli(untilDoneArgv(store, target, firstSnapshot), { timeoutMs: 30_000 });
  t.is(ok.code, 0, ok.stderr);
});

test('live-restore: a full target file system stalls the copy; with --exit-when-done and no client: ERR_LR_LIVE_NO_SPACE (exit 1)', async (t) => {
  const dir = await testDir(t);
  const { store } = await backedUpVm(dir, [8 * MiB, 4 * MiB]);
  const target = join(dir, 'small');
  await mountSmallTmpfs(t, target, 2 * MiB);
  const out = await cli(untilDoneArgv(store, target), { timeoutMs: 60_000 });
  t.is(out.code, 1, out.stderr);
  const last = lines(out.stderr).at(-1) ?? '';
  t.regex(last, /^liverestore: ERR_LR_LIVE_NO_SPACE: no space left on the device of /);
  t.false(/^\s+at /m.test(out.stderr), 'no stack trace');
});

test('live-restore: a busy port fails before anything is created in the target dir', async (t) => {
  const dir = await testDir(t);
  const { store } = await backedUpVm(dir, [2 * MiB, MiB]);
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const port = (busy.address() as AddressInfo).port;
  const target = join(dir, 'target');
  const out = await cli(
    ['live-restore', '--from', store, 'vm/100', '--target-dir', target, '--listen', `127.0.0.1:${port}`],
    { timeoutMs: 30_000 },
  );
  t.is(out.code, 1, out.stderr);
  t.regex(lines(out.stderr).at(-1) ?? '', /^liverestore: ERR_LR_\w+: .*EADDRINUSE|address.*in use/i);
  t.false(existsSync(target), 'the target dir was not even created');
});

test('live-restore: two processes started together on a target dir with a stale lock: exactly one serves it', async (t) => {
  const dir = await testDir(t);
  const { store } = await backedUpVm(dir, [2 * MiB, MiB]);
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  for (let round = 0; round < 3; round++) {
    const target = join(dir, `target-${round}`);
    await mkdir(target);
    await writeFile(join(target, '.liverestore.lock'), `${dead}\n`); // left by a crash
    const runs = [0, 1].map(() => {
      const child = spawn(
        process.execPath,
        [BIN, 'live-restore', '--from', store, 'vm/100', '--target-dir', target, '--listen', '127.0.0.1:0'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      t.teardown(() => child.kill('SIGKILL'));
      let out = '';
      let err = '';
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
      });
      child.stderr!.setEncoding('utf8').on('data', (s: string) => {
        err += s;
      });
      // Serving = the export lines are printed (after the lock and the targets); refused = exit.
      const outcome = new Promise<'serving' | number | null>((resolve) => {
        child.stdout!.on('data', () => {
          if (/export drive-scsi1\.img/.test(out)) resolve('serving');
        });
        child.once('exit', (code) => resolve(code));
      });
      return { child, outcome, stderr: () => err };
    });
    const outcomes = await Promise.all(runs.map((r) => r.outcome));
    t.deepEqual(
      [...outcomes].sort(),
      [1, 'serving'],
      `round ${round}: ${runs.map((r) => r.stderr()).join(' | ')}`,
    );
    const refused = runs[outcomes.indexOf(1)]!;
    t.regex(lines(refused.stderr()).at(-1) ?? '', /^liverestore: ERR_LR_LIVE_TARGET_BUSY: /);
    const serving = runs[outcomes.indexOf('serving')]!;
    serving.child.kill('SIGTERM');
    t.is(await new Promise((resolve) => serving.child.once('exit', resolve)), 0);
  }
});

test('live-restore: --rate-limit units and the progress line', (t) => {
  t.is(parseRate('200MB/s'), 200_000_000);
  t.is(parseRate('50MiB/s'), 50 * MiB);
  t.is(parseRate('1g'), 1024 ** 3);
  t.throws(() => parseRate('0MB/s'), { message: /more than 0/ });
  t.throws(() => parseRate('fast'));
  const line = progressLine({
    snapshot: 'vm/100/2026-11-26T10:00:00Z',
    elapsedSeconds: 3,
    bytesTotal: 8 * MiB,
    bytesLocal: 2 * MiB,
    bytesPerSecond: 1_500_000,
    etaSeconds: 4.2,
    cacheHitRate: 0.5,
    complete: false,
    drives: [
      {
        name: 'drive-scsi0.img',
        target: 't/drive-scsi0.img',
        sizeBytes: 4 * MiB,
        bytesLocal: 2 * MiB,
        regionsLocal: 2,
        regionCount: 4,
        complete: false,
        bytesCopied: 0,
        bytesFilledForGuest: 0,
        bytesFromTargetCopies: 0,
        bytesWrittenByGuest: 0,
      },
    ],
  });
  t.is(line, '2.0 MiB/8.0 MiB local (25%) 1.5 MB/s ETA 5s, cache hits 50% | drive-scsi0.img 50%');
});

test('live-restore: an encrypted snapshot with --keyfile; without it ERR_LR_KEY_REQUIRED', async (t) => {
  const dir = await testDir(t);
  const key = join(dir, 'key.json');
  t.is((await cli(['key', 'create', '--keyfile', key])).code, 0);
  const set = vmImageSet(5, { drives: 2, sizeBytes: [3 * MiB + 512, 2 * MiB] });
  const args: string[] = [];
  for (const d of set) {
    const path = join(dir, `${d.name}.raw`);
    await writeImageFile(d.spec, path);
    args.push(`${d.name}=${path}`);
  }
  const store = join(dir, 'store');
  const backup = await cli(['backup', '--store', store, '--snapshot', 'vm/100', '--keyfile', key, ...args]);
  t.is(backup.code, 0, backup.stderr);
  const target = join(dir, 'target');
  const common = [
    'live-restore',
    '--from',
    store,
    'vm/100',
    '--target-dir',
    target,
    '--listen',
    '127.0.0.1:0',
  ];
  assertCliError(t, await cli(common, { timeoutMs: 30_000 }), 'ERR_LR_KEY_REQUIRED');
  const out = await cli([...common, '--keyfile', key, '--exit-when-done'], { timeoutMs: 30_000 });
  t.is(out.code, 0, out.stderr);
  for (const [i, d] of set.entries()) {
    const actual = await readFile(join(target, NAMES[i]!));
    t.is(firstDifference(actual, imageBytes(d.spec, 0, d.spec.sizeBytes)), -1, NAMES[i]);
  }
});

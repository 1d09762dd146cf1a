/*
 * A model test of LiveDrive: random sequences of guest reads, writes (with and without
 * FUA), WRITE_ZEROES, TRIM, background copies of regions, flushes and crashes (the
 * unsynced writes are lost, or some of them land; or the process dies in the map write,
 * before or right after its rename) against a reference image. Asserted:
 * - every read equals the model (so the copy never overwrites guest data);
 * - after a crash, the reopened drive reads, sector by sector, what the image was at the
 *   last acknowledged flush or after a later write: every flushed write survives, and no
 *   region is recorded local (durable) with bytes that never were the model's.
 * Some steps run a few non-overlapping requests and region copies at once (the copy
 * racing guest fills for the region locks).
 * Replay a failure with LIVE_MODEL_SEED=… LIVE_MODEL_PATH=… (printed by fast-check; a
 * concurrent step may interleave differently on a replay);
 * LIVE_MODEL_RUNS sets the number of sequences (default 1000).
 */

import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { type CachedChunkReader, ChunkCache, openSnapshot } from '@liverestore/reader';
import { chunkCacheInternals, heapScratch } from '@liverestore/reader/internal';
import { prng, tempDir } from '@liverestore/testkit';
import anyTest, { type TestFn } from 'ava';
import fc from 'fast-check';
import { LiveDrive, stateName } from '../src/index.js';
import { FaultFiles } from './fault-files.js';

const REGION = 64 * 1024;
const REGIONS = 6;
const SIZE = (REGIONS - 1) * REGION + 16 * 1024; // the last region is short
const SECTOR = 512;
const SECTORS = SIZE / SECTOR;
const signal = new AbortController().signal;

interface Context {
  source: Buffer;
  cache: ChunkCache;
  reader: CachedChunkReader;
  snapshot: string;
  /** Where each sequence gets its target directory (tmpfs when there is one: fsync is free there). */
  scratch: string;
  cleanup(): Promise<void>;
}
const test = anyTest as TestFn<Context>;

test.before(async (t) => {
  const work = await tempDir('lr-model-');
  // Regions: data, zero, data, data, zero, data (short).
  const source = Buffer.alloc(SIZE);
  const random = prng(2026);
  for (const r of [0, 2, 3, 5]) {
    for (let i = r * REGION; i < Math.min(SIZE, (r + 1) * REGION); i++)
      source[i] = Math.floor(random() * 256);
  }
  const imagePath = join(work.path, 'disk.raw');
  await writeFile(imagePath, source);
  const store = await Datastore.create(join(work.path, 'store'));
  const made = await backup(store, {
    type: 'vm',
    id: '300',
    backupTime: 1_790_000_000,
    inputs: [{ name: 'drive-scsi0', path: imagePath }],
    chunkSizeBytes: REGION,
    encodeThreads: 0,
  });
  const cache = new ChunkCache({ cacheBytes: 2 * 1024 * 1024, workers: 0 });
  const snap = await openSnapshot({ source: join(work.path, 'store'), snapshot: made.snapshot, cache });
  const reader = await snap.openArchive(snap.archives[0]!.name);
  const scratch = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'lr-model-'));
  t.context = {
    source,
    cache,
    reader,
    snapshot: snap.path,
    scratch,
    async cleanup() {
      await snap.close();
      await cache.close();
      await rm(scratch, { recursive: true, force: true });
      await work.cleanup();
    },
  };
});
test.after.always(async (t) => {
  await t.context.cleanup?.();
});

type Op =
  /**
   * `lease`: through LiveDrive.lease (views on the cache's pages, as the NBD server reads)
   * instead of read; `settle` false: the next step starts while the copy-on-read stores
   * this read started are still written behind (a write, flush, copy or crash meets them).
   */
  | { kind: 'read'; offset: number; length: number; lease: boolean; settle: boolean }
  | { kind: 'write'; offset: number; length: number; fill: number; fua: boolean }
  | { kind: 'zero' | 'trim'; offset: number; length: number }
  | { kind: 'copy'; region: number }
  | { kind: 'flush' }
  | { kind: 'crash'; keep: boolean[] }
  | { kind: 'crash-in-map-write'; when: 'crash-before-rename' | 'crash-after-rename' }
  | { kind: 'concurrent'; ops: ConcurrentOp[] };
/** What may run at once in one batch (byte ranges that do not overlap, so the result is defined). */
type ConcurrentOp =
  | Extract<Op, { kind: 'read' | 'write' | 'copy' }>
  | { kind: 'zero'; offset: number; length: number };

const sectorRange = fc
  .tuple(fc.nat(SECTORS - 1), fc.integer({ min: 1, max: 320 }))
  .map(([sector, count]) => ({
    offset: sector * SECTOR,
    length: Math.min(count, SECTORS - sector) * SECTOR,
  }));
/** Whole regions: writes and zeroing that need no fill, the pristine-hole shortcut. */
const regionRange = fc.tuple(fc.nat(REGIONS - 1), fc.integer({ min: 1, max: 2 })).map(([region, count]) => ({
  offset: region * REGION,
  length: Math.min(SIZE, (region + count) * REGION) - region * REGION,
}));
const range = fc.oneof({ weight: 3, arbitrary: sectorRange }, { weight: 1, arbitrary: regionRange });
const readFlags = fc.record({ lease: fc.boolean(), settle: fc.boolean() });
const concurrentArb: fc.Arbitrary<ConcurrentOp> = fc.oneof(
  fc.tuple(range, readFlags).map(([r, flags]): ConcurrentOp => ({ kind: 'read', ...r, ...flags })),
  fc
    .tuple(range, fc.integer({ min: 1, max: 255 }))
    .map(([r, fill]): ConcurrentOp => ({ kind: 'write', ...r, fill, fua: false })),
  range.map((r): ConcurrentOp => ({ kind: 'zero', ...r })),
  fc.nat(REGIONS - 1).map((region): ConcurrentOp => ({ kind: 'copy', region })),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc
      .array(concurrentArb, { minLength: 2, maxLength: 4 })
      .map((ops): Op => ({ kind: 'concurrent', ops: disjoint(ops) })),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(range, readFlags).map(([r, flags]): Op => ({ kind: 'read', ...r, ...flags })),
  },
  {
    weight: 4,
    arbitrary: fc
      .tuple(range, fc.integer({ min: 1, max: 255 }), fc.boolean())
      .map(([r, fill, fua]): Op => ({ kind: 'write', ...r, fill, fua })),
  },
  { weight: 1, arbitrary: range.map((r): Op => ({ kind: 'zero', ...r })) },
  { weight: 1, arbitrary: range.map((r): Op => ({ kind: 'trim', ...r })) },
  { weight: 2, arbitrary: fc.nat(REGIONS - 1).map((region): Op => ({ kind: 'copy', region })) },
  { weight: 2, arbitrary: fc.constant<Op>({ kind: 'flush' }) },
  {
    weight: 1,
    arbitrary: fc.array(fc.boolean(), { maxLength: 8 }).map((keep): Op => ({ kind: 'crash', keep })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('crash-before-rename' as const, 'crash-after-rename' as const)
      .map((when): Op => ({ kind: 'crash-in-map-write', when })),
  },
);

/** Keeps the ops whose byte ranges do not overlap an earlier one's (copies change no byte: all kept). */
function disjoint(ops: readonly ConcurrentOp[]): ConcurrentOp[] {
  const taken: { offset: number; length: number }[] = [];
  return ops.filter((op) => {
    if (op.kind === 'copy') return true;
    if (taken.some((r) => op.offset < r.offset + r.length && r.offset < op.offset + op.length)) return false;
    taken.push(op);
    return true;
  });
}

/** Guest bytes that differ per sector, so a write landing at the wrong place is seen. */
function guestBytes(offset: number, length: number, fill: number): Buffer {
  const data = Buffer.allocUnsafe(length);
  for (let s = 0; s < length; s += SECTOR)
    data.fill((fill + ((offset + s) / SECTOR) * 31) & 0xff, s, s + SECTOR);
  return data;
}

/** Reads through `read`, or through `lease` (the bytes copied out, then released) as the NBD server does. */
async function guestRead(drive: LiveDrive, offset: number, length: number, lease: boolean): Promise<Buffer> {
  if (!lease) {
    const buf = Buffer.alloc(length);
    await drive.read(buf, offset, signal);
    return buf;
  }
  const leased = await drive.lease(offset, length, signal, heapScratch);
  try {
    return Buffer.concat(leased.views, length);
  } finally {
    leased.release();
  }
}

/** One simulated process: its faulty files and its drive over `dir`. */
async function startProcess(ctx: Context, dir: string): Promise<{ files: FaultFiles; drive: LiveDrive }> {
  const files = new FaultFiles();
  const drive = await LiveDrive.open({ reader: ctx.reader, targetDir: dir, snapshot: ctx.snapshot, files });
  return { files, drive };
}

/** Runs one sequence; throws (with what differs) when the drive departs from the model. */
async function runSequence(ctx: Context, ops: readonly Op[]): Promise<void> {
  const dir = await mkdtemp(join(ctx.scratch, 'seq-'));
  let { files, drive } = await startProcess(ctx, dir);
  const drives = [drive]; // every process's drive: their stores must all end and unpin
  const image = Buffer.from(ctx.source); // what reads must return now
  // What a crash may leave, sector by sector: the image at the last acknowledged flush,
  // or after any write since (unflushed writes may or may not survive).
  let candidates: Buffer[] = [Buffer.from(image)];
  const mutated = (): void => {
    candidates.push(Buffer.from(image));
  };
  const flushed = (): void => {
    candidates = [Buffer.from(image)];
  };
  const crashAndReopen = async (keep: (k: number) => boolean): Promise<void> => {
    await files.crash(keep);
    // A verifier process reads the image and crashes losing everything it wrote (its
    // copy-on-read stores), so the next process starts from what the crash left.
    const verifier = await startProcess(ctx, dir);
    const after = Buffer.alloc(SIZE);
    await verifier.drive.read(after, 0, signal);
    await verifier.drive.storesSettled();
    const states = Array.from({ length: REGIONS }, (_, i) => stateName(verifier.drive.regionState(i)));
    await verifier.files.crash(() => false);
    ({ files, drive } = await startProcess(ctx, dir));
    drives.push(verifier.drive, drive);
    for (let at = 0; at < SIZE; at += SECTOR) {
      const sector = after.subarray(at, at + SECTOR);
      if (!candidates.some((c) => c.subarray(at, at + SECTOR).equals(sector))) {
        const region = Math.floor(at / REGION);
        throw new Error(
          `after a crash, sector at ${at} (region ${region}, ${states[region]}) ` +
            `reads ${sector[0]}…, which the image never held since the last flush (${candidates.length} candidates)`,
        );
      }
    }
    after.copy(image);
    flushed(); // what survived is on disk now; reads of regions not local come from the backup
  };
  try {
    for (const op of ops) {
      switch (op.kind) {
        case 'read': {
          const buf = await guestRead(drive, op.offset, op.length, op.lease);
          if (!buf.equals(image.subarray(op.offset, op.offset + op.length))) {
            throw new Error(`read ${op.offset}+${op.length} differs from the model`);
          }
          break;
        }
        case 'write': {
          const data = guestBytes(op.offset, op.length, op.fill);
          await drive.writer.write(data, op.offset, op.fua);
          data.copy(image, op.offset);
          if (op.fua) flushed();
          else mutated();
          break;
        }
        case 'zero':
        case 'trim':
          if (op.kind === 'zero') await drive.writer.writeZeroes(op.offset, op.length, false, false);
          else await drive.writer.trim(op.offset, op.length, false);
          image.fill(0, op.offset, op.offset + op.length);
          mutated();
          break;
        case 'copy':
          await drive.copyRegion(op.region);
          break;
        case 'flush':
          await drive.writer.flush();
          flushed();
          break;
        case 'crash':
          await crashAndReopen((k) => op.keep[k] ?? false);
          break;
        case 'concurrent': {
          // All at once: the copy races the guest's fills and writes for the region locks.
          const results = await Promise.all(
            op.ops.map(async (sub) => {
              if (sub.kind === 'copy') await drive.copyRegion(sub.region);
              else if (sub.kind === 'zero')
                await drive.writer.writeZeroes(sub.offset, sub.length, false, false);
              else if (sub.kind === 'write') {
                await drive.writer.write(guestBytes(sub.offset, sub.length, sub.fill), sub.offset, false);
              } else {
                return { at: sub.offset, buf: await guestRead(drive, sub.offset, sub.length, sub.lease) };
              }
              return undefined;
            }),
          );
          for (const r of results) {
            // A read overlaps no write of its batch: before and after are the same there.
            if (r !== undefined && !r.buf.equals(image.subarray(r.at, r.at + r.buf.length))) {
              throw new Error(`concurrent read ${r.at}+${r.buf.length} differs from the model`);
            }
          }
          for (const sub of op.ops) {
            if (sub.kind === 'write') guestBytes(sub.offset, sub.length, sub.fill).copy(image, sub.offset);
            else if (sub.kind === 'zero') image.fill(0, sub.offset, sub.offset + sub.length);
            else continue;
            mutated();
          }
          break;
        }
        case 'crash-in-map-write': {
          files.nextMapWrite = op.when;
          const ok = await drive.writer.flush().then(
            () => true,
            () => false,
          );
          if (ok) flushed(); // no region became local since the last map: no map write, no crash
          await crashAndReopen(() => false);
          break;
        }
      }
      // Copy-on-read stores finish (the sequence replays the same way), unless this read
      // leaves them to run behind into the next step.
      if (op.kind !== 'read' || op.settle) await drive.storesSettled();
    }
    for (const d of drives) await d.storesSettled();
    if (chunkCacheInternals(ctx.cache).table.totalPins() !== 0 || ctx.cache.stats().lentBytes !== 0) {
      throw new Error(
        `${chunkCacheInternals(ctx.cache).table.totalPins()} cache pins (${ctx.cache.stats().lentBytes} bytes lent) left after every store ended`,
      );
    }
  } finally {
    await drive.close().catch(() => undefined);
    for (const d of drives) await d.storesSettled();
    await rm(dir, { recursive: true, force: true });
  }
}

test('LiveDrive model: random read/write/zero/trim/copy/flush/crash sequences keep every flushed write and read as the model', async (t) => {
  const numRuns = Number(process.env.LIVE_MODEL_RUNS ?? 1000);
  const seed =
    process.env.LIVE_MODEL_SEED === undefined
      ? Date.now() ^ (Math.random() * 2 ** 31)
      : Number(process.env.LIVE_MODEL_SEED);
  const path = process.env.LIVE_MODEL_PATH;
  t.log(`seed ${seed}, ${numRuns} sequences (replay: LIVE_MODEL_SEED=${seed})`);
  // The image must exercise fills: four data regions, two zero ones (local at once).
  const probe = await startProcess(t.context, await mkdtemp(join(t.context.scratch, 'probe-')));
  t.deepEqual(
    Array.from({ length: REGIONS }, (_, i) => stateName(probe.drive.regionState(i))),
    [
      'REMOTE_PRISTINE',
      'LOCAL_KNOWN_ZERO',
      'REMOTE_PRISTINE',
      'REMOTE_PRISTINE',
      'LOCAL_KNOWN_ZERO',
      'REMOTE_PRISTINE',
    ],
  );
  await probe.drive.close();
  const counts = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 14 }), async (ops) => {
      for (const op of ops) counts.set(op.kind, (counts.get(op.kind) ?? 0) + 1);
      await runSequence(t.context, ops);
    }),
    { numRuns, seed, ...(path === undefined ? {} : { path }) },
  );
  t.log([...counts].map(([k, n]) => `${k} ${n}`).join(', '));
  t.pass();
});

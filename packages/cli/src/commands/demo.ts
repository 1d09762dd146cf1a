import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backup, Datastore, verifySnapshots } from '@liverestore/datastore';
import { ChunkCache, openSnapshot, restoreArchive } from '@liverestore/reader';
import {
  changedRanges,
  mutate,
  sha256OfImage,
  tempDir,
  vmImageSet,
  writeImageFile,
} from '@liverestore/testkit';
import { COMMON_OPTIONS, commandProgress, defineCommand, printJson } from '../command.js';
import { UsageError } from '../errors.js';
import { formatBytes, formatRate, parseBytes } from '../units.js';

/** The demo changes 16 blocks of 4 KiB, each in its own slice of the disk: keep slices roomy. */
const MIN_DEMO_BYTES = 1024 * 1024;

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'run the whole pipeline on a generated two-drive VM (no setup)',
  help: `Usage: liverestore demo [--size SIZE] [--seed N] [--keep] [--json]

Generates a deterministic synthetic VM with two drives (a system disk and a data
disk), backs it up into a temporary datastore, changes a few blocks of the system
disk as a running guest would, backs it up again (incremental: only changed chunks
are written), verifies every chunk of both snapshots, and restores both drives of the
latest snapshot through the shared chunk cache and parallel decode pool, checking the
restored images against the generator. Prints what each step did.

Options:
  --size SIZE   size of each drive (default 256MiB)
  --seed N      generator seed (default 1)
  --keep        keep the temporary datastore and images and print where they are
  --json        print the summary as JSON
  -h, --help    show this help`,
  options: {
    ...COMMON_OPTIONS,
    size: { type: 'string' },
    seed: { type: 'string' },
    keep: { type: 'boolean' },
  },
  async run({ values }, io) {
    const sizeBytes = parseBytes(values.size ?? '256MiB', '--size');
    if (sizeBytes < MIN_DEMO_BYTES)
      throw new UsageError(`demo: --size must be at least 1MiB, got "${values.size}"`);
    const seed = Number(values.seed ?? '1');
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new UsageError(`demo: --seed must be a non-negative integer, got "${values.seed}"`);
    const say = (line: string): void => {
      if (values.json !== true) io.stdout.write(`${line}\n`);
    };
    const work = await tempDir('liverestore-demo-');
    try {
      const storeDir = join(work.path, 'store');
      const drives = vmImageSet(seed, { drives: 2, sizeBytes });
      say(
        `liverestore demo: a synthetic VM with ${drives.length} drives of ${formatBytes(sizeBytes)} in ${work.path}`,
      );
      const inputs: { name: string; path: string }[] = [];
      for (const drive of drives) {
        const path = join(work.path, `${drive.name}.raw`);
        const written = await writeImageFile(drive.spec, path, { sparse: true });
        inputs.push({ name: drive.name, path });
        say(
          `  generated ${drive.name}: ${formatBytes(written.sizeBytes)} (${formatBytes(written.writtenBytes)} allocated, the rest sparse)`,
        );
      }
      const store = await Datastore.create(storeDir);
      const run = async (label: string) => {
        const progress = commandProgress(io, label, drives.length * sizeBytes, values.json);
        const result = await backup(store, {
          type: 'vm',
          id: '100',
          inputs,
          onProgress: (p) => progress.update(p.totalBytesDone),
        });
        progress.finish();
        say(
          `  ${label} -> ${result.snapshot}: ${result.chunksNew} new chunks, ${result.chunksReused} reused, ` +
            `${formatBytes(result.bytesWritten)} written, ${formatRate(result.bytesRead, result.seconds)}`,
        );
        return result;
      };
      say('1. full backup');
      const first = await run('backup');
      const changed = mutate(drives[0]!.spec, { seed: seed + 1, changes: 16 });
      await writeImageFile(changed, inputs[0]!.path, { sparse: true });
      const ranges = changedRanges(changed);
      say(`2. the guest changes ${ranges.length} blocks of ${drives[0]!.name}; incremental backup`);
      const second = await run('incremental');
      say('3. verify every chunk of both snapshots');
      const refs = [first.ref, second.ref];
      const report = await verifySnapshots(store, refs);
      say(
        `  ${report.ok ? 'OK' : 'FAILED'}: ${report.chunks} distinct chunks, ${formatBytes(report.bytes)} decoded and hashed`,
      );
      say('4. restore both drives of the latest snapshot through the shared cache');
      const expected = [changed, drives[1]!.spec];
      const cache = new ChunkCache({ cacheBytes: 64 * 1024 * 1024 });
      const restored: { archive: string; seconds: number; identical: boolean }[] = [];
      try {
        const snap = await openSnapshot({ source: storeDir, snapshot: 'vm/100', cache });
        for (const [i, drive] of drives.entries()) {
          const reader = await snap.openArchive(drive.name);
          const out = join(work.path, `restored-${drive.name}.raw`);
          const result = await restoreArchive(reader, out);
          const digest = createHash('sha256')
            .update(await readFile(out))
            .digest('hex');
          const identical = digest === (await sha256OfImage(expected[i]!));
          restored.push({ archive: reader.name, seconds: result.seconds, identical });
          say(
            `  ${reader.name}: ${formatRate(result.sizeBytes, result.seconds)}, ${identical ? 'identical to the source' : 'DIFFERENT from the source'}`,
          );
        }
        await snap.close();
        const stats = cache.stats();
        say(
          `  cache (64 MiB budget): ${stats.misses + stats.prefetches} chunks fetched and decoded on ${cache.decoder.threads} worker threads, ${stats.hits} hits`,
        );
      } finally {
        await cache.close();
      }
      const ok = report.ok && restored.every((r) => r.identical);
      if (values.json === true) {
        printJson(io, {
          ok,
          workDir: work.path,
          kept: values.keep === true,
          first,
          second,
          verify: report,
          restored,
        });
      }
      if (values.keep === true) {
        say(
          `kept ${work.path}; try:\n  liverestore snapshots --store ${storeDir}\n  liverestore verify --store ${storeDir}\n  liverestore restore --from ${storeDir} vm/100 drive-scsi0 --out disk.raw`,
        );
      }
      return ok ? 0 : 1;
    } finally {
      if (values.keep !== true) await work.cleanup();
    }
  },
});

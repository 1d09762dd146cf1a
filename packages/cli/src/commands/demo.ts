import { join } from 'node:path';
import { backup, Datastore, verifySnapshots } from '@liverestore/datastore';
import { changedRanges, mutate, tempDir, vmImageSet, writeImageFile } from '@liverestore/testkit';
import { COMMON_OPTIONS, defineCommand, printJson } from '../command.js';
import { UsageError } from '../errors.js';
import { Progress } from '../progress.js';
import { formatBytes, formatRate, parseBytes } from '../units.js';

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'run the whole pipeline on a generated two-drive VM (no setup)',
  help: `Usage: liverestore demo [--size SIZE] [--seed N] [--keep] [--json]

Generates a deterministic synthetic VM with two drives (a system disk and a data
disk), backs it up into a temporary datastore, changes a few blocks of the system
disk as a running guest would, backs it up again (incremental: only changed chunks
are written), and verifies every chunk of both snapshots. Prints what each step did.

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
        const progress = new Progress(label, drives.length * sizeBytes, { quiet: values.json === true });
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
      if (values.json === true)
        printJson(io, { workDir: work.path, kept: values.keep === true, first, second, verify: report });
      if (values.keep === true) {
        say(
          `kept ${work.path}; try:\n  liverestore snapshots --store ${storeDir}\n  liverestore verify --store ${storeDir}`,
        );
      }
      return report.ok ? 0 : 1;
    } finally {
      if (values.keep !== true) await work.cleanup();
    }
  },
});

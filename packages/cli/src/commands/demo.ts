import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { backup, Datastore, verifySnapshots } from '@liverestore/datastore';
import { type LiveRestoreSummary, liveRestore } from '@liverestore/live';
import { NbdClient } from '@liverestore/nbd';
import { startChunkServer } from '@liverestore/server';
import { type ImageSpec, imageBytes, prng, vmImageSet, writeImageFile } from '@liverestore/vmgen';
import { COMMON_OPTIONS, commandProgress, defineCommand, printJson, stopSignal } from '../command.js';
import { UsageError } from '../errors.js';
import { backupResultJson, verifyReportJson } from '../json-shapes.js';
import { parseRateLimit } from '../option-values.js';
import { formatBytes, formatRate, parseBytes } from '../units.js';

const MiB = 1024 * 1024;
/** Guest writes are up to 64 KiB and land anywhere: keep drives roomy enough to hold them. */
const MIN_DEMO_BYTES = MiB;

/** A write the guest made: applied over the backup image, it gives the expected target. */
interface GuestWrite {
  readonly offset: number;
  readonly data: Buffer;
}

/** What the guest did on one drive while the copy ran. */
interface GuestReport {
  reads: number;
  readBytes: number;
  readsChecked: number;
  writes: number;
  writtenBytes: number;
  flushes: number;
  latenciesMs: number[];
}

/** The expected bytes of a drive range: the backup image with the guest's writes applied in order. */
function expectedBytes(
  spec: ImageSpec,
  writes: readonly GuestWrite[],
  offset: number,
  length: number,
): Buffer {
  const out = Buffer.from(imageBytes(spec, offset, length));
  for (const w of writes) {
    const from = Math.max(offset, w.offset);
    const to = Math.min(offset + length, w.offset + w.data.length);
    if (from < to) w.data.copy(out, from - offset, from - w.offset, to - w.offset);
  }
  return out;
}

/**
 * A guest on one drive, as a booting VM behaves: bursts of 8 concurrent reads (4–256 KiB,
 * 70% of them in a few hot spots), then a write (4–64 KiB, a pattern of its own), a flush
 * after every 8 writes. Every read is checked against the backup plus the writes so far.
 * Reads and writes never overlap in time, so the expected bytes are always well defined.
 */
async function runGuest(
  disk: NbdClient,
  spec: ImageSpec,
  writes: GuestWrite[],
  seed: number,
  until: () => boolean,
): Promise<GuestReport> {
  const random = prng(seed);
  const size = disk.size;
  const hotSpots = Array.from({ length: 4 }, () => Math.floor(random() * size));
  const report: GuestReport = {
    reads: 0,
    readBytes: 0,
    readsChecked: 0,
    writes: 0,
    writtenBytes: 0,
    flushes: 0,
    latenciesMs: [],
  };
  const range = (maxBytes: number): { offset: number; length: number } => {
    const length = Math.min(size, 4096 * (1 + Math.floor(random() * (maxBytes / 4096))));
    const around = random() < 0.7 ? hotSpots[Math.floor(random() * hotSpots.length)]! : random() * size;
    const offset = Math.max(0, Math.min(size - length, Math.floor(around + (random() - 0.5) * 8 * MiB)));
    return { offset: offset - (offset % 512), length };
  };
  while (!until()) {
    const burst = Array.from({ length: 8 }, () => range(256 * 1024));
    await Promise.all(
      burst.map(async ({ offset, length }) => {
        const buffer = Buffer.allocUnsafe(length);
        const started = performance.now();
        await disk.read(buffer, offset);
        report.latenciesMs.push(performance.now() - started);
        report.reads++;
        report.readBytes += length;
        if (!buffer.equals(expectedBytes(spec, writes, offset, length))) {
          throw new Error(
            `guest read ${offset}+${length} of ${spec.sizeBytes}-byte drive returned wrong data`,
          );
        }
        report.readsChecked++;
      }),
    );
    const { offset, length } = range(64 * 1024);
    const data = Buffer.alloc(length, (writes.length * 37 + 11) & 0xff);
    await disk.write(data, offset);
    writes.push({ offset, data });
    report.writes++;
    report.writtenBytes += length;
    if (report.writes % 8 === 0) {
      await disk.flush();
      report.flushes++;
    }
  }
  await disk.flush();
  report.flushes++;
  return report;
}

/** SHA-256 of the target file and of the backup image with the guest's writes, block by block. */
async function compareTarget(path: string, spec: ImageSpec, writes: readonly GuestWrite[]): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size !== spec.sizeBytes) return false;
    const got = createHash('sha256');
    const want = createHash('sha256');
    const buffer = Buffer.allocUnsafe(4 * MiB);
    for (let offset = 0; offset < size; offset += buffer.length) {
      const length = Math.min(buffer.length, size - offset);
      const { bytesRead } = await handle.read(buffer, 0, length, offset);
      if (bytesRead !== length) return false;
      got.update(buffer.subarray(0, length));
      want.update(expectedBytes(spec, writes, offset, length));
    }
    return got.digest('hex') === want.digest('hex');
  } finally {
    await handle.close();
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The QEMU line that boots a VM from live-restore's default exports. */
function realVmRecipeQemu(driveNames: readonly string[]): string {
  return (
    'qemu-system-x86_64 -m 2048 -machine accel=kvm ' +
    driveNames
      .map((name) => `-drive file=nbd://127.0.0.1:10809/${name},format=raw,if=virtio,cache=none`)
      .join(' ')
  );
}

/**
 * The closing recipe: the same steps on a real VM. It names only what still exists after
 * the demo: this demo's store when --keep keeps it, otherwise example paths (the demo's
 * temporary directory is removed when it exits).
 */
function realVmRecipe(keptStoreDir: string | undefined, driveNames: readonly string[]): string {
  const store = keptStoreDir ?? '/srv/liverestore';
  return [
    `\nOn a real VM: back it up, serve the store, live-restore it, and boot straight from the exports${
      keptStoreDir === undefined
        ? " (example paths; this demo's store is removed on exit, --keep keeps it)"
        : ''
    }:`,
    ...(keptStoreDir === undefined
      ? ['  liverestore backup --store /srv/liverestore --snapshot vm/100 drive-scsi0=/dev/vg0/vm-100-disk-0']
      : []),
    '  printf %s "$(openssl rand -hex 32)" > token   # printf: no newline, QEMU\'s secret file= reads it verbatim',
    `  liverestore serve --store ${store} --token-file token &`,
    '  liverestore live-restore --from http://127.0.0.1:8007 --token-file token vm/100 --target-dir /var/lib/vms/100 &',
    `  ${realVmRecipeQemu(driveNames)}`,
  ].join('\n');
}

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'a live restore of a generated two-drive VM, with a guest writing during the copy (no setup)',
  help: `Usage: liverestore demo [--size SIZE] [--seed N] [--rate-limit RATE] [--keep] [--json]

Generates a deterministic synthetic VM with two drives (a system disk and a data
disk), backs it up into a temporary datastore and verifies every chunk, serves the
datastore over HTTP on loopback (liverestore serve, with a random token), and runs a
live restore from that URL into a temporary target directory: each drive becomes a
writable NBD export on loopback while a background job copies it to a local file. A
guest-like workload connects to every export over NBD and reads (checking every
byte) and writes while the copy runs. When every drive is local, the demo checks
that each target file equals the backup image with exactly the guest's writes
applied, and prints a summary and the QEMU command line for a real VM.

Options:
  --size SIZE        size of each drive (default 256MiB)
  --seed N           generator and guest seed (default 1)
  --rate-limit RATE  background copy limit, e.g. 100MB/s (default 64MB/s, so the guest
                     has time to run during the copy; at least 4KiB/s, 0 = unlimited)
  --keep             keep the datastore and targets, and keep serving (HTTP and NBD)
                     until Ctrl-C, to explore with qemu-img, nbdinfo or a VM
  --json             print the summary as JSON
  -h, --help         show this help`,
  options: {
    ...COMMON_OPTIONS,
    size: { type: 'string' },
    seed: { type: 'string' },
    'rate-limit': { type: 'string' },
    keep: { type: 'boolean' },
  },
  async run({ values }, io) {
    const sizeBytes = parseBytes(values.size ?? '256MiB', '--size');
    if (sizeBytes < MIN_DEMO_BYTES)
      throw new UsageError(`demo: --size must be at least 1MiB, got "${values.size}"`);
    const seed = Number(values.seed ?? '1');
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new UsageError(`demo: --seed must be a non-negative integer, got "${values.seed}"`);
    const rateText = values['rate-limit'] ?? '64MB/s';
    const rateLimit = rateText === '0' ? 0 : parseRateLimit(rateText, 'demo');
    const say = (line: string): void => {
      if (values.json !== true) io.stdout.write(`${line}\n`);
    };
    const workPath = await mkdtemp(join(tmpdir(), 'liverestore-demo-'));
    const work = {
      path: workPath,
      cleanup: () => rm(workPath, { recursive: true, force: true, maxRetries: 3 }),
    };
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const storeDir = join(work.path, 'store');
      const targetDir = join(work.path, 'target');
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

      say('1. back up both drives, then verify every chunk');
      const store = await Datastore.create(storeDir);
      const progress = commandProgress(io, 'backup', drives.length * sizeBytes, values.json);
      const backedUp = await backup(store, {
        type: 'vm',
        id: '100',
        inputs,
        onProgress: (p) => progress.update(p.totalBytesDone),
      });
      progress.finish();
      say(
        `  ${backedUp.snapshot}: ${backedUp.chunksNew} chunks, ${formatBytes(backedUp.bytesWritten)} stored, ${formatRate(backedUp.bytesRead, backedUp.seconds)}`,
      );
      const verified = await verifySnapshots(store, [backedUp.ref]);
      say(
        `  ${verified.ok ? 'verified' : 'VERIFY FAILED'}: ${verified.chunks} chunks, ${formatBytes(verified.bytes)} decoded and hashed`,
      );

      say('2. serve the datastore over HTTP on loopback (liverestore serve)');
      const token = randomBytes(16).toString('hex');
      const http = await startChunkServer({
        store: storeDir,
        listen: { host: '127.0.0.1', port: 0 },
        token,
        logLevel: 'warn',
      });
      cleanups.unshift(() => http.close());
      say(`  ${http.url} (bearer token required)`);

      say('3. live restore from that URL: every drive a writable NBD export, copied in the background');
      const restore = await liveRestore({
        source: http.url,
        http: { token },
        snapshot: backedUp.snapshot,
        targetDir,
        cacheBytes: 64 * MiB,
        ...(rateLimit > 0 ? { rateLimitBytesPerSecond: rateLimit } : {}),
        listen: { host: '127.0.0.1', port: 0 },
      });
      cleanups.unshift(() => restore.close());
      const address = restore.address!;
      say(
        `  nbd://${address}/${restore.drives.map((d) => d.name).join(`, nbd://${address}/`)} → ${targetDir}` +
          (rateLimit > 0 ? ` (background copy limited to ${formatRate(rateLimit, 1)})` : ''),
      );
      const copyBar = commandProgress(io, 'live restore', drives.length * sizeBytes, values.json);
      restore.on('progress', (p) => copyBar.update(p.bytesLocal));

      say('4. a guest reads (checking every byte) and writes on every drive while the copy runs');
      const [host, port] = [
        address.slice(0, address.lastIndexOf(':')),
        Number(address.slice(address.lastIndexOf(':') + 1)),
      ];
      const clients = await Promise.all(
        restore.drives.map((d) => NbdClient.connect({ host, port, exportName: d.name })),
      );
      let copied = false;
      // A full disk only stalls a live restore's copy; the demo has nobody to free space: it fails.
      const stalled = new Promise<never>((_, reject) => restore.once('stalled', reject));
      stalled.catch(() => undefined);
      const summaryPromise: Promise<LiveRestoreSummary> = Promise.race([restore.done, stalled]).finally(
        () => {
          copied = true;
        },
      );
      const writes: GuestWrite[][] = drives.map(() => []);
      // The guest runs until the copy is done (and at least a few bursts, however fast).
      let bursts = 0;
      const guests = await Promise.all(
        clients.map((disk, i) =>
          runGuest(disk, drives[i]!.spec, writes[i]!, seed * 100 + i, () => copied && ++bursts > 8),
        ),
      );
      const summary = await summaryPromise;
      copyBar.update(drives.length * sizeBytes);
      copyBar.finish();
      const all = guests.flatMap((g) => g.latenciesMs);
      const totals = {
        reads: guests.reduce((s, g) => s + g.reads, 0),
        readsChecked: guests.reduce((s, g) => s + g.readsChecked, 0),
        readBytes: guests.reduce((s, g) => s + g.readBytes, 0),
        writes: guests.reduce((s, g) => s + g.writes, 0),
        writtenBytes: guests.reduce((s, g) => s + g.writtenBytes, 0),
        flushes: guests.reduce((s, g) => s + g.flushes, 0),
        readLatencyP50Ms: percentile(all, 50),
        readLatencyP99Ms: percentile(all, 99),
      };
      // One process runs the HTTP server, the restore, the NBD server and this checking
      // guest, so the latencies include the guest's own work on the same event loop.
      say(
        `  guest: ${totals.reads} reads (${formatBytes(totals.readBytes)}, all correct; p50 ${totals.readLatencyP50Ms.toFixed(2)} ms, p99 ${totals.readLatencyP99Ms.toFixed(2)} ms), ${totals.writes} writes (${formatBytes(totals.writtenBytes)}), ${totals.flushes} flushes`,
      );
      say(
        `  every drive local after ${summary.seconds.toFixed(1)} s (${formatRate(drives.length * sizeBytes, summary.seconds)}); the backup is no longer read`,
      );

      say('5. check the targets: backup image + exactly the guest writes');
      // The targets are checked after the guest disconnected; with --keep the exports stay up.
      await Promise.all(clients.map((c) => c.close()));
      const checked = [];
      for (const [i, drive] of restore.drives.entries()) {
        const identical = await compareTarget(drive.targetPath, drives[i]!.spec, writes[i]!);
        checked.push({ name: drive.name, target: drive.targetPath, writes: writes[i]!.length, identical });
      }
      const ok = verified.ok && checked.every((c) => c.identical) && totals.readsChecked === totals.reads;
      say(
        `  ${ok ? 'OK' : 'FAILED'}: ${checked
          .map(
            (c) => `${c.name} ${c.identical ? 'equals' : 'DIFFERS from'} backup + ${c.writes} guest writes`,
          )
          .join('; ')}`,
      );
      const qemu = realVmRecipeQemu(restore.drives.map((d) => d.name));
      say(
        realVmRecipe(
          values.keep === true ? storeDir : undefined,
          restore.drives.map((d) => d.name),
        ),
      );
      if (values.json === true) {
        printJson(io, {
          ok,
          workDir: work.path,
          kept: values.keep === true,
          backup: backupResultJson(backedUp),
          verify: verifyReportJson(verified, [backedUp.ref]),
          http: http.url,
          nbd: address,
          liveRestore: summary,
          guest: totals,
          targets: checked,
          qemu,
        });
      }
      if (values.keep === true) {
        say(
          `\nkept ${work.path}; still serving ${http.url} (token ${token}) and nbd://${address}/ — try:\n` +
            `  nbdinfo --list nbd://${address}\n  qemu-img compare -f raw -F raw nbd://${address}/${restore.drives[0]!.name} ${restore.drives[0]!.targetPath}\n` +
            'Ctrl-C stops.',
        );
        await stopSignal();
      }
      return ok ? 0 : 1;
    } finally {
      for (const cleanup of cleanups) await cleanup().catch(() => undefined);
      if (values.keep !== true) await work.cleanup();
    }
  },
});

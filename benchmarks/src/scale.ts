/**
 * `pnpm bench scale`: N live restores at once (issue 16, item 5). N readers in a few
 * processes each copy a whole drive of one of several snapshots from one origin — serve,
 * serve behind nginx, Ceph RGW, RGW behind nginx — alternating origins per iteration,
 * next to each drive restored alone from the same origin in the same run. Reports total
 * time vs single × N, origin GETs vs distinct chunks, read p50/p99, every process's peak
 * RSS vs its budget, and checks every restored byte.
 */

import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type BackupStore, resolveS3Settings, S3Client, S3Datastore } from '@liverestore/datastore';
import type { BenchContext, Benchmark } from './benchmark.js';
import { ToolMissingError } from './errors.js';
import { warmPageCache } from './live-iteration.js';
import { machineInfo } from './machine.js';
import { startRgw } from './restore-s3.js';
import type { BenchResult } from './result.js';
import type { OriginName, RgwGateway } from './scale-origins.js';
import { planReaders, type ReaderSettings } from './scale-readers.js';
import { scaleResult } from './scale-report.js';
import { type RunRecord, runOnce } from './scale-run.js';
import {
  backUpSnapshots,
  createLocalStore,
  type DriveFixture,
  readScaleSettings,
  SCALE_OPTIONS,
  type ScaleSettings,
} from './scale-setup.js';
import { formatBytes, formatNumber } from './units.js';

/** The RGW of this run and how to let it go. */
interface RgwHandle {
  readonly gateway: RgwGateway;
  release(): Promise<void>;
}

/** Starts an RGW (or uses --endpoint) with a fresh bucket; undefined with the reason when it cannot. */
async function openRgw(s: ScaleSettings, scratch: string): Promise<RgwHandle | string> {
  let stop = (): void => {};
  let endpoint = s.endpoint;
  let rgwDir: string | undefined;
  let accessKeyId = process.env.AWS_ACCESS_KEY_ID ?? '';
  let secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY ?? '';
  if (endpoint === undefined) {
    const dir = join(scratch, 'rgw');
    try {
      const rgw = startRgw(dir);
      stop = rgw.stop;
      endpoint = rgw.connection.endpoint!;
      accessKeyId = rgw.connection.accessKeyId!;
      secretAccessKey = rgw.connection.secretAccessKey!;
      rgwDir = dir;
    } catch (error) {
      if (error instanceof ToolMissingError) return error.message;
      throw error;
    }
  }
  const bucket = `lr-scale-${randomBytes(4).toString('hex')}`;
  const client = new S3Client(bucket, resolveS3Settings({ endpoint, accessKeyId, secretAccessKey }));
  await client.createBucket();
  return {
    gateway: { endpoint, accessKeyId, secretAccessKey, storeUrl: `s3://${bucket}/store`, dir: rgwDir },
    async release() {
      await client.deleteObjects((await client.list('')).keys).catch(() => undefined);
      await client.close();
      stop();
    },
  };
}

/** Σ over the plan's readers of the mean single-restore time of each one's drive. */
function singleTimesN(
  records: readonly RunRecord[],
  origin: OriginName,
  plan: readonly DriveFixture[][],
): number {
  const single = new Map<string, number[]>();
  for (const r of records) {
    if (r.origin !== origin || r.kind !== 'single') continue;
    single.set(r.restored, [...(single.get(r.restored) ?? []), r.wallSeconds]);
  }
  let total = 0;
  for (const f of plan.flat()) {
    const times = single.get(`${f.snapshot} ${f.drive}`) ?? [Number.NaN];
    total += times.reduce((a, b) => a + b, 0) / times.length;
  }
  return total;
}

async function runScale(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const machine = machineInfo();
  const s = readScaleSettings(context);
  const scratch = await mkdtemp(join(s.dir, 'liverestore-bench-scale-'));
  // nginx's workers run as an unprivileged user when it starts as root: they must pass
  // through to their cache directory inside.
  await chmod(scratch, 0o711);
  const skipped = new Map<OriginName, string>();
  let rgw: RgwHandle | undefined;
  try {
    const local = await createLocalStore(scratch);
    const stores: BackupStore[] = [local];
    let s3: S3Datastore | undefined;
    if (s.origins.some((o) => o.startsWith('rgw'))) {
      context.progress('starting a Ceph RGW on loopback (scripts/rgw-up.sh) …');
      const opened = await openRgw(s, scratch);
      if (typeof opened === 'string') {
        for (const o of s.origins) if (o.startsWith('rgw')) skipped.set(o, opened);
      } else {
        rgw = opened;
        const { endpoint, accessKeyId, secretAccessKey, storeUrl } = opened.gateway;
        s3 = await S3Datastore.open(storeUrl, { endpoint, accessKeyId, secretAccessKey, create: true });
        stores.push(s3);
      }
    }
    const fixtures = await backUpSnapshots(s, stores, local.dir, scratch, context.progress);
    await s3?.close();
    await warmPageCache(local.dir);
    const plan = planReaders(fixtures, s.readers, s.processes);
    const readerSettings: ReaderSettings = {
      cacheBytes: s.cacheBytes,
      workers: s.workers,
      ...(s.blobBudgetBytes === undefined ? {} : { blobBudgetBytes: s.blobBudgetBytes }),
      readaheadChunks: s.readaheadChunks,
      readBytes: s.readBytes,
      sharedSource: s.sources === 'process',
      gcEveryMs: s.gcEveryMs,
    };
    const originStores = { localDir: local.dir, rgw: rgw?.gateway };
    const origins = s.origins.filter((o) => !skipped.has(o));
    const records: RunRecord[] = [];
    for (let it = 1; it <= s.iterations; it++) {
      for (const origin of it % 2 === 1 ? origins : [...origins].reverse()) {
        for (const [i, f] of fixtures.entries()) {
          context.progress(
            `iteration ${it}/${s.iterations}, ${origin}: one restore alone, drive ${i + 1}/${fixtures.length} …`,
          );
          records.push(await runOnce(origin, it, 'single', [[f]], originStores, readerSettings, scratch));
        }
        context.progress(`iteration ${it}/${s.iterations}, ${origin}: ${s.readers} restores at once …`);
        const record = await runOnce(origin, it, 'concurrent', plan, originStores, readerSettings, scratch);
        records.push(record);
        context.progress(
          `  ${formatNumber(record.wallSeconds)} s, ${record.originGets} origin GETs for ${record.distinctChunks} distinct chunks, ${record.verified}/${record.readers} verified, ${formatBytes(record.bytes)}`,
        );
      }
    }
    return scaleResult({
      settings: s,
      machine,
      records,
      singleTimesN: new Map(origins.map((o) => [o, singleTimesN(records, o, plan)])),
      skipped,
      durationSeconds: (performance.now() - started) / 1000,
    });
  } finally {
    await rgw?.release();
    await rm(scratch, { recursive: true, force: true });
  }
}

export const scaleBenchmark: Benchmark = {
  name: 'scale',
  summary: 'N live restores at once from serve, Ceph RGW, serve over RGW, each also behind nginx',
  description: `
Backs up --snapshots successive snapshots of a synthetic VM (--drives drives of --size,
--changes changed blocks from one to the next) into a local datastore and, for the rgw
origins, into an S3 datastore in a Ceph RGW it starts on loopback (scripts/rgw-up.sh; or
--endpoint). Then per iteration and origin (alternating): each drive restored alone, and
--readers readers in --processes processes restoring drives at once, each reader
copying a whole drive in 4 MiB reads through its process's ChunkCache. Origins: serve
(liverestore serve on loopback), nginx (serve behind nginx's proxy_cache, the
configuration of docs/scale-out.md), rgw (S3 in RGW), rgw-nginx (RGW behind nginx, the
S3 block of docs/scale-out.md), rgw-serve (serve --store s3://… in front of RGW) and
rgw-serve-nginx (that serve behind nginx). Reports total time vs single × N, origin GETs vs distinct
chunks, p50/p99 of the reads, peak RSS of every process vs its budget + 150 MiB, and
checks the SHA-256 of every restored drive. Defaults take a few minutes on 2 cores.`,
  defaultSamples: 2,
  options: SCALE_OPTIONS,
  run: runScale,
};

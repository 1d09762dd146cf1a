import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseSnapshotSpec, snapshotJson } from '@liverestore/datastore';
import { LiverestoreError } from '@liverestore/format';
import {
  ChunkCache,
  type ChunkCacheStats,
  openSnapshot,
  type RestoreResult,
  restoreArchive,
} from '@liverestore/reader';
import { writeArchiveTo } from '../archive-to-stream.js';
import {
  CHUNK_CACHE_OPTIONS,
  chunkCacheHelp,
  chunkCacheLine,
  chunkCacheStats,
} from '../chunk-cache-options.js';
import { COMMON_OPTIONS, commandProgress, defineCommand, printJson, required } from '../command.js';
import { UsageError } from '../errors.js';
import { parseWorkers } from '../option-values.js';
import { s3Help } from '../s3-options.js';
import {
  NAMESPACE_OPTION,
  namespaceHelp,
  SNAPSHOT_SOURCE_OPTIONS,
  snapshotSourceSettings,
  tlsTrustHelp,
} from '../source.js';
import { formatBytes, formatRate, parseBytes } from '../units.js';

/** Creates `--out-dir`; a file in the way is a clear output error, not a bare EEXIST. */
async function makeOutDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    const code = (cause as { code?: string }).code ?? 'error';
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : code;
    throw new LiverestoreError(
      'ERR_LR_OUTPUT_INVALID',
      `--out-dir ${dir} cannot be made a directory (${why})`,
      {
        cause,
      },
    );
  }
}

export const restoreCommand = defineCommand({
  name: 'restore',
  summary: 'restore archives of a snapshot to local files (parallel fetch and decode)',
  help: `Usage: liverestore restore --from DIR|URL SNAPSHOT ARCHIVE --out FILE [options]
       liverestore restore --from DIR|URL SNAPSHOT --all --out-dir DIR [options]

Restores one archive (e.g. drive-scsi0.img, with or without .fidx) of SNAPSHOT
(TYPE/ID/TIME, or TYPE/ID for the latest) to FILE, or every archive with --all into
DIR (one file per archive, named like the archive). Each distinct chunk is fetched
once and decoded and verified by a decode thread, which writes it at every offset where
it occurs; all-zero chunks stay holes (sparse files). Each file is written under a temporary name and renamed when
complete, so FILE is either the whole image or untouched. A block device as FILE is
written in place.

Options:
  --from DIR|URL      datastore directory, http(s):// URL of a liverestore
                      server, or S3 datastore s3://BUCKET/STORE (required)
  --token-file FILE   bearer token for an http(s) --from (a file, so the token
                      does not show in ps)
${tlsTrustHelp(22)}
${s3Help(22)}
  --out FILE          output file (one archive); - writes the archive to stdout
                      (zeros included, the summary goes to stderr)
  --all               restore every archive of the snapshot
  --out-dir DIR       output directory (with --all; created if missing)
  --cache-size SIZE   chunk cache budget (default 256MiB)
${chunkCacheHelp()}
  --workers N         decode threads, 0 to 64 (default: CPU count)
  --keyfile FILE      PBS key file of an encrypted snapshot
${namespaceHelp()}
  --json              print the summary as JSON
  -h, --help          show this help`,
  options: {
    ...COMMON_OPTIONS,
    from: { type: 'string' },
    out: { type: 'string' },
    all: { type: 'boolean' },
    'out-dir': { type: 'string' },
    'cache-size': { type: 'string' },
    workers: { type: 'string' },
    ...SNAPSHOT_SOURCE_OPTIONS,
    ...CHUNK_CACHE_OPTIONS,
    ...NAMESPACE_OPTION,
  },
  async run({ values, positionals }, io) {
    const from = required(values.from, '--from', 'restore');
    const [snapshotArg, archiveArg, ...extra] = positionals;
    if (snapshotArg === undefined) throw new UsageError('restore: SNAPSHOT is required (e.g. vm/100)');
    if (extra.length > 0) throw new UsageError(`restore: unexpected argument "${extra[0]}"`);
    const spec = parseSnapshotSpec(snapshotArg, values.ns);
    if (values.all === true) {
      if (archiveArg !== undefined) throw new UsageError('restore: give either ARCHIVE or --all');
      required(values['out-dir'], '--out-dir', 'restore');
    } else {
      if (archiveArg === undefined) throw new UsageError('restore: ARCHIVE is required (or --all)');
      required(values.out, '--out', 'restore');
      if (values.out === '-' && values.json === true)
        throw new UsageError('restore: --json prints to stdout, which --out - fills with the archive');
    }
    const cacheBytes =
      values['cache-size'] === undefined ? undefined : parseBytes(values['cache-size'], '--cache-size');
    const workers = parseWorkers(values.workers, 'restore');
    const settings = await snapshotSourceSettings(values, from, 'restore', io);
    const cache = new ChunkCache({
      ...(cacheBytes === undefined ? {} : { cacheBytes }),
      ...(workers === undefined ? {} : { workers }),
    });
    try {
      const snap = await openSnapshot({ source: from, snapshot: spec, cache, ...settings });
      try {
        const names = values.all === true ? snap.archives.map((a) => a.name) : [archiveArg!];
        if (values.all === true) await makeOutDir(values['out-dir']!);
        const results: (RestoreResult & { archive: string })[] = [];
        for (const name of names) {
          const reader = await snap.openArchive(name);
          const out = values.all === true ? join(values['out-dir']!, reader.name) : values.out!;
          const progress = commandProgress(io, `restore ${reader.name}`, reader.size, values.json);
          if (out === '-') {
            const started = performance.now();
            const bytes = await writeArchiveTo(reader, io.stdout, (done) => progress.update(done));
            progress.finish();
            const seconds = (performance.now() - started) / 1000;
            io.stderr.write(
              `${reader.name} -> stdout: ${formatBytes(bytes)} in ${seconds.toFixed(1)} s (${formatRate(bytes, seconds)})\n`,
            );
            return 0;
          }
          const result = await restoreArchive(reader, out, {
            concurrency: 2 * Math.max(1, cache.decoder.threads) + 2,
            onProgress: (p) => progress.update(p.bytesDone),
          });
          progress.finish();
          results.push({ archive: reader.name, ...result });
          if (values.json !== true) {
            io.stdout.write(
              `${reader.name} -> ${out}: ${formatBytes(result.sizeBytes)} in ${result.seconds.toFixed(1)} s ` +
                `(${formatRate(result.sizeBytes, result.seconds)}; ${result.zeroChunks} zero chunks left sparse)\n`,
            );
          }
        }
        const stats: ChunkCacheStats = cache.stats();
        const persistent = await chunkCacheStats(snap.source);
        if (values.json === true) {
          const archives = results.map(({ archive, ...result }) => ({ name: archive, ...result }));
          printJson(io, {
            ...snapshotJson(snap.ref),
            archives,
            cache: stats,
            ...(persistent === undefined ? {} : { chunkCache: persistent }),
          });
        } else {
          io.stdout.write(
            `cache: ${stats.misses} fetched, ${stats.hits} hits, ${stats.dedupJoins} shared fetches, ${stats.prefetches} prefetched, ` +
              `${formatBytes(stats.bytesDecoded)} decoded\n`,
          );
          if (persistent !== undefined) io.stdout.write(`${chunkCacheLine(persistent)}\n`);
        }
        return 0;
      } finally {
        await snap.close();
      }
    } finally {
      await cache.close();
    }
  },
});

import { setTimeout as sleep } from 'node:timers/promises';
import { type LiveRestore, type LiveRestoreProgress, liveRestore } from '@liverestore/live';
import { CHUNK_CACHE_OPTIONS, chunkCacheHelp, openCachedSource } from '../chunk-cache-options.js';
import { COMMON_OPTIONS, type CommandIo, defineCommand, required, stopSignal } from '../command.js';
import { announceReady, checkPidFile, DAEMON_HELP, DAEMON_OPTIONS } from '../daemon.js';
import { DECODE_AS_ARRIVING_HELP, DECODE_AS_ARRIVING_OPTIONS } from '../decode-options.js';
import { LOAD_TRACE_HELP, LOAD_TRACE_OPTIONS, openLoadTrace } from '../load-trace.js';
import { parseNbdServeArgs } from '../nbd-serve-args.js';
import { parseRateLimit } from '../option-values.js';
import { s3Help } from '../s3-options.js';
import {
  NAMESPACE_OPTION,
  namespaceHelp,
  SNAPSHOT_SOURCE_OPTIONS,
  snapshotSourceSettings,
  tlsTrustHelp,
} from '../source.js';
import { printableLine } from '../terminal-text.js';
import { SERVER_TLS_OPTIONS, serverTlsFromOptions, serverTlsHelp } from '../tls-options.js';
import { formatBytes, formatRate } from '../units.js';

/** `200MB/s`, `50MiB/s`, `1g` (per second implied) → bytes per second. */
export function parseRate(text: string): number {
  return parseRateLimit(text, 'live-restore');
}

function percent(done: number, total: number): string {
  return `${total === 0 ? 100 : Math.floor((100 * done) / total)}%`;
}

/** One line of progress: total, rate, ETA, cache hit rate, then each drive. */
export function progressLine(p: LiveRestoreProgress): string {
  const eta = p.complete || p.etaSeconds === undefined ? '' : ` ETA ${Math.max(0, Math.ceil(p.etaSeconds))}s`;
  const drives = p.drives.map((d) => `${d.name} ${percent(d.bytesLocal, d.sizeBytes)}`).join(', ');
  return (
    `${formatBytes(p.bytesLocal)}/${formatBytes(p.bytesTotal)} local (${percent(p.bytesLocal, p.bytesTotal)}) ` +
    `${formatRate(p.bytesPerSecond, 1)}${eta}, cache hits ${(100 * p.cacheHitRate).toFixed(0)}% | ${drives}`
  );
}

/** Progress on stderr: a redrawn bar on a terminal, a line every 5 s otherwise; JSON lines on stdout with --json. */
function progressReporter(
  io: CommandIo,
  json: boolean,
): { update(p: LiveRestoreProgress): void; end(): void } {
  const tty = io.stderr.isTTY === true;
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      if (json) {
        io.stdout.write(`${JSON.stringify({ event: 'progress', ...p })}\n`);
        return;
      }
      const now = performance.now();
      if (!tty) {
        if (now - last < 5000 && !p.complete) return;
        last = now;
        io.stderr.write(`live-restore ${progressLine(p)}\n`);
        return;
      }
      const columns = (io.stderr as { columns?: number }).columns ?? 100;
      const width = 20;
      const filled = Math.round((p.bytesTotal === 0 ? 1 : p.bytesLocal / p.bytesTotal) * width);
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progressLine(p)}`;
      io.stderr.write(`\r\x1b[2K${line.slice(0, Math.max(20, columns - 1))}`);
      drawn = true;
    },
    end() {
      if (drawn) io.stderr.write('\n');
      drawn = false;
    },
  };
}

/** Resolves when the restore is complete and no NBD client is connected (polled). */
async function completeAndIdle(restore: LiveRestore): Promise<void> {
  await restore.done;
  while (restore.clients() > 0) await sleep(200);
}

/**
 * Resolves with the error once the copy stalled on a full disk while no NBD client is
 * connected (polled): with --exit-when-done nothing is left to serve and nothing can move on.
 */
async function stalledAndIdle(restore: LiveRestore): Promise<Error> {
  for (;;) {
    const stalled =
      restore.stalled ?? (await new Promise<Error>((resolve) => restore.once('stalled', resolve)));
    if (restore.clients() === 0 && restore.stalled === stalled) return stalled;
    await sleep(200);
  }
}

export const liveRestoreCommand = defineCommand({
  name: 'live-restore',
  summary: 'restore every drive to local files while serving them writable over NBD (crash-safe, resumable)',
  help: `Usage: liverestore live-restore --from DIR|URL SNAPSHOT --target-dir DIR
                       [--listen 127.0.0.1:10809 | --socket PATH] [--rate-limit RATE]
                       [--cache-size SIZE] [--chunk-cache DIR] [--chunk-cache-size SIZE]
                       [--workers N] [--readahead N]
                       [--exit-when-done] [--json] [--keyfile F] [--token-file F]
                       [--ns NS]

Restores every disk image (fixed-index archive) of SNAPSHOT (TYPE/ID/TIME, or TYPE/ID
for the latest) into DIR/<archive name> (a sparse raw file of the image size, e.g.
DIR/drive-scsi0.img) and serves each as a writable NBD export named like the archive,
so a VM can run on it at once:
  qemu-system-x86_64 -drive file=nbd://127.0.0.1:10809/drive-scsi0.img,format=raw ...
Reads of regions not yet local come from the backup (through one shared chunk cache)
and are stored in the target; writes go to the target. A background copy fills the
rest in order, yielding to the guest, within --rate-limit. A full disk stops only the
copy (retried every 10 s): local regions are still served, writes that need space get
ENOSPC. DIR/<archive>.map records
which regions are local; FLUSH (and FUA) make every acknowledged write durable (data
fdatasync'ed before the map records it). Once every drive is local the backup is
closed and never read again; the exports keep serving the local files.

Crash-safe: after a crash or kill -9, run the same command with the same --target-dir
to resume: flushed writes are kept and nothing is copied twice. A target dir of another
snapshot, a target of the wrong size or a damaged map is refused.

Options:
  --from DIR|URL       datastore directory, http(s):// URL of liverestore serve,
                       or S3 datastore s3://BUCKET/STORE (required)
  --target-dir DIR     where the target files and maps live (required; created if missing)
  --listen HOST:PORT   TCP address (default 127.0.0.1:10809; port 0 picks one)
  --socket PATH        listen on a Unix socket instead (must not exist)
  --rate-limit RATE    backup bytes per second for the background copy, e.g. 200MB/s
                       (at least 4KiB/s; guest reads are never limited)
  --cache-size SIZE    chunk cache (default 256MiB)
${chunkCacheHelp(23)}
  --workers N          decode threads, 0 to 64 (default: CPU count)
  --readahead N        chunks to load ahead of a sequential guest reader (default 8)
${LOAD_TRACE_HELP}
${DECODE_AS_ARRIVING_HELP}
  --exit-when-done     exit once every drive is local and no NBD client is connected
                       (or, exit 1, once a full disk stopped the copy and none is)
  --json               progress and the end as JSON lines on stdout
  --keyfile FILE       PBS key file of an encrypted snapshot
${namespaceHelp(23)}
  --token-file FILE    bearer token for an http(s) --from
${tlsTrustHelp(23)}
${s3Help(23)}
${serverTlsHelp(23, 'clients must use TLS (nbds://)')}
${DAEMON_HELP}
  -h, --help           show this help

Prints the NBD address on the first line of stdout, then one line per export; progress
goes to stderr (a bar on a terminal, a line every 5 s otherwise). Stops gracefully on
SIGINT/SIGTERM (maps persisted; run again to resume).`,
  options: {
    ...COMMON_OPTIONS,
    ...DAEMON_OPTIONS,
    ...SERVER_TLS_OPTIONS,
    from: { type: 'string' },
    'target-dir': { type: 'string' },
    listen: { type: 'string' },
    socket: { type: 'string' },
    'rate-limit': { type: 'string' },
    'cache-size': { type: 'string' },
    workers: { type: 'string' },
    readahead: { type: 'string' },
    'exit-when-done': { type: 'boolean' },
    ...LOAD_TRACE_OPTIONS,
    ...DECODE_AS_ARRIVING_OPTIONS,
    ...SNAPSHOT_SOURCE_OPTIONS,
    ...CHUNK_CACHE_OPTIONS,
    ...NAMESPACE_OPTION,
  },
  async run({ values, positionals }, io) {
    checkPidFile(values['pid-file']);
    required(values.from, '--from DIR|URL', 'live-restore');
    const targetDir = required(values['target-dir'], '--target-dir', 'live-restore');
    const { from, spec, listen, cacheBytes, workers, readaheadChunks } = parseNbdServeArgs(
      values,
      positionals,
      'live-restore',
    );
    const rate = values['rate-limit'] === undefined ? undefined : parseRate(values['rate-limit']);
    const json = values.json === true;
    const { chunkCache, crypt, http, s3 } = await snapshotSourceSettings(values, from, 'live-restore', io);
    const tls = await serverTlsFromOptions(values, 'live-restore');
    const trace = openLoadTrace(values, (line) => io.stderr.write(`live-restore: ${line}\n`));
    // With a persistent chunk cache or S3 options the source is opened here (and closed at the end).
    const source =
      chunkCache === undefined && Object.keys(s3).length === 0
        ? from
        : await openCachedSource(from, http, chunkCache, s3);
    // The signal handlers go when the command ends, also when it ends without a signal.
    const ended = new AbortController();
    const stop = stopSignal(ended.signal);
    const restore = await liveRestore({
      source,
      http,
      snapshot: spec,
      crypt,
      targetDir,
      listen,
      log: (line: string) => io.stderr.write(`${line}\n`),
      ...(tls === undefined ? {} : { tls }),
      cacheBytes,
      workers,
      onLoad: trace?.onLoad,
      decodeAsArriving: values['decode-as-arriving'] === true,
      readaheadChunks,
      rateLimitBytesPerSecond: rate,
      progressIntervalMs: json ? 1000 : io.stderr.isTTY === true ? 200 : 1000,
    }).catch(async (err: unknown) => {
      ended.abort();
      trace?.close();
      if (typeof source !== 'string') await source.close?.();
      throw err;
    });
    const reporter = progressReporter(io, json);
    let closed = false;
    try {
      const start = restore.progress();
      if (!json) io.stdout.write(`${restore.address}\n`);
      if (json) {
        io.stdout.write(
          `${JSON.stringify({
            event: 'started',
            address: restore.address,
            resumed: restore.resumed,
            snapshot: restore.snapshot,
            targetDir,
            exports: restore.drives.map((d) => ({ name: d.name, target: d.targetPath, sizeBytes: d.size })),
            bytesLocal: start.bytesLocal,
            bytesTotal: start.bytesTotal,
          })}\n`,
        );
      } else {
        for (const d of restore.drives) io.stdout.write(`  export ${d.name} -> ${d.targetPath}\n`);
        if (restore.resumed) {
          io.stderr.write(
            `live-restore: resuming ${restore.snapshot}: ${formatBytes(start.bytesLocal)} of ${formatBytes(start.bytesTotal)} already local\n`,
          );
        }
      }
      announceReady(values, `live-restoring ${restore.snapshot}; exports on ${restore.address}`, io);
      restore.on('progress', (p) => reporter.update(p));
      restore.on('warning', (err) => {
        reporter.end();
        const code = (err as { code?: unknown }).code;
        io.stderr.write(
          `liverestore: warning: ${printableLine(`${typeof code === 'string' ? `${code}: ` : ''}${err.message}`)}\n`,
        );
      });
      void restore.done.then(
        (summary) => {
          reporter.end();
          if (json) io.stdout.write(`${JSON.stringify({ event: 'done', ...summary })}\n`);
          else {
            io.stdout.write(
              `all drives local after ${summary.seconds.toFixed(1)} s: the backup is no longer read` +
                `${values['exit-when-done'] === true ? '' : ' (still serving; stop with Ctrl-C)'}\n`,
            );
          }
        },
        () => undefined,
      );
      // Ends on a signal, on a copy failure (rethrown below), or when complete and idle.
      const failed = restore.done.then(
        () => new Promise<never>(() => undefined),
        (err: unknown) => err,
      );
      const outcome = await Promise.race([
        stop.then(() => 'signal' as const),
        failed.then((err) => ({ err })),
        ...(values['exit-when-done'] === true
          ? [
              completeAndIdle(restore).then(() => 'done' as const),
              stalledAndIdle(restore).then((err) => ({ err })),
            ]
          : []),
      ]);
      reporter.end();
      closed = true;
      let closeError: unknown;
      await restore.close().catch((err: unknown) => {
        closeError = err;
      });
      // The copy's failure is the cause; a close failing after it (e.g. the final map on a
      // full disk) is a consequence.
      if (typeof outcome === 'object') throw outcome.err;
      if (closeError !== undefined) throw closeError;
      const end = restore.progress();
      if (json) {
        io.stdout.write(
          `${JSON.stringify({ event: 'exit', reason: outcome, complete: end.complete, bytesLocal: end.bytesLocal, bytesTotal: end.bytesTotal })}\n`,
        );
      } else if (!end.complete) {
        io.stderr.write(
          `live-restore: stopped with ${formatBytes(end.bytesLocal)} of ${formatBytes(end.bytesTotal)} local; ` +
            'run the same command to resume\n',
        );
      }
      return 0;
    } finally {
      ended.abort();
      if (!closed) await restore.close();
      trace?.close();
      if (typeof source !== 'string') await source.close?.();
    }
  },
});

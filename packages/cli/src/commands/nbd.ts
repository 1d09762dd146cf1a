import { snapshotExports, startNbdServer } from '@liverestore/nbd';
import { ChunkCache, openSnapshot } from '@liverestore/reader';
import { CHUNK_CACHE_OPTIONS, chunkCacheHelp } from '../chunk-cache-options.js';
import { COMMON_OPTIONS, defineCommand, stopSignal } from '../command.js';
import { announceReady, checkPidFile, DAEMON_HELP, DAEMON_OPTIONS } from '../daemon.js';
import { DECODE_AS_ARRIVING_HELP, DECODE_AS_ARRIVING_OPTIONS } from '../decode-options.js';
import { LOAD_TRACE_HELP, LOAD_TRACE_OPTIONS, openLoadTrace } from '../load-trace.js';
import { loggedExport } from '../logged-export.js';
import { parseNbdServeArgs } from '../nbd-serve-args.js';
import { s3Help } from '../s3-options.js';
import {
  NAMESPACE_OPTION,
  namespaceHelp,
  SNAPSHOT_SOURCE_OPTIONS,
  snapshotSourceSettings,
  tlsTrustHelp,
} from '../source.js';
import { SPILL_HELP, SPILL_OPTIONS, spillFromOptions } from '../spill-options.js';
import { SERVER_TLS_OPTIONS, serverTlsFromOptions, serverTlsHelp } from '../tls-options.js';

export const nbdCommand = defineCommand({
  name: 'nbd',
  summary: 'export every drive of a snapshot read-only over NBD (QEMU, nbdcopy, qemu-img)',
  help: `Usage: liverestore nbd --from DIR|URL SNAPSHOT [--listen 127.0.0.1:10809 | --socket PATH]
                       [--cache-size SIZE] [--spill-dir DIR] [--spill-size SIZE]
                       [--chunk-cache DIR] [--chunk-cache-size SIZE]
                       [--workers N] [--readahead N] [--keyfile F] [--token-file F]
                       [--ns NS]

Serves every disk image (fixed-index archive) of SNAPSHOT (TYPE/ID/TIME, or TYPE/ID
for the latest) as a read-only NBD export named like the archive, e.g.
nbd://127.0.0.1:10809/drive-scsi0.img; the default export is the first drive. All
exports and connections share one chunk cache of a fixed size; a chunk that
leaves it goes to a local spill file and is read back from there, never fetched
and decoded again. Zero chunks are
reported as holes (base:allocation). Stops gracefully on SIGINT/SIGTERM.

Options:
  --from DIR|URL       datastore directory, http(s):// URL of liverestore serve,
                       or S3 datastore s3://BUCKET/STORE (required)
  --listen HOST:PORT   TCP address (default 127.0.0.1:10809; port 0 picks one)
  --socket PATH        listen on a Unix socket instead (must not exist)
  --cache-size SIZE    chunk cache (default 256MiB)
${SPILL_HELP}
${chunkCacheHelp(23)}
  --workers N          decode threads, 0 to 64 (default: CPU count)
  --readahead N        chunks to load ahead of a sequential reader (default 8, 0 = off)
${LOAD_TRACE_HELP}
${DECODE_AS_ARRIVING_HELP}
  --keyfile FILE       PBS key file of an encrypted snapshot
  --token-file FILE    bearer token for an http(s) --from
${tlsTrustHelp(23)}
${s3Help(23)}
${namespaceHelp(23)}
${serverTlsHelp(23, 'clients must use TLS (nbds://)')}
${DAEMON_HELP}
  -h, --help           show this help

At most 1024 connections are open at once (more are closed at once, with a line on
stderr); a client that reads none of its replies for 60 s is disconnected, and all
connections together hold at most 256 MiB of replies.

Prints the address and the exports, then serves until stopped.`,
  options: {
    help: COMMON_OPTIONS.help,
    ...DAEMON_OPTIONS,
    ...SERVER_TLS_OPTIONS,
    from: { type: 'string' },
    listen: { type: 'string' },
    socket: { type: 'string' },
    'cache-size': { type: 'string' },
    ...SPILL_OPTIONS,
    ...CHUNK_CACHE_OPTIONS,
    workers: { type: 'string' },
    readahead: { type: 'string' },
    ...LOAD_TRACE_OPTIONS,
    ...DECODE_AS_ARRIVING_OPTIONS,
    ...SNAPSHOT_SOURCE_OPTIONS,
    ...NAMESPACE_OPTION,
  },
  async run({ values, positionals }, io) {
    checkPidFile(values['pid-file']);
    const { from, spec, listen, cacheBytes, workers, readaheadChunks } = parseNbdServeArgs(
      values,
      positionals,
      'nbd',
    );
    const settings = await snapshotSourceSettings(values, from, 'nbd', io);
    const tls = await serverTlsFromOptions(values, 'nbd');
    const trace = openLoadTrace(values, (line) => io.stderr.write(`nbd: ${line}\n`));
    const cache = new ChunkCache({
      ...(cacheBytes === undefined ? {} : { cacheBytes }),
      ...(workers === undefined ? {} : { workers }),
      spill: spillFromOptions(values, 'nbd'),
      prefault: true, // a guest's first reads must not pay the arena's first-touch faults
      onLoad: trace?.onLoad,
      decodeAsArriving: values['decode-as-arriving'] === true,
    });
    try {
      const snapshot = await openSnapshot({ source: from, snapshot: spec, cache, ...settings });
      try {
        const readerOptions = readaheadChunks === undefined ? {} : { readaheadChunks };
        // Each export logs its failed reads (the client only sees EIO).
        const exports = (await snapshotExports(snapshot, readerOptions)).map((e) =>
          loggedExport(e, io.stderr),
        );
        // Refused (over 1024 connections) and cut (replies unread for 60 s) connections.
        const log = (line: string): void => {
          io.stderr.write(`${line}\n`);
        };
        // No disk image: let the library say so about the snapshot.
        const server = await startNbdServer(
          exports.length === 0 ? { snapshot, listen, log, tls } : { exports, listen, log, tls },
        );
        io.stdout.write(`${server.address}\n`);
        for (const name of server.exports) io.stdout.write(`  export ${name}\n`);
        announceReady(values, `serving ${server.exports.length} export(s) on ${server.address}`, io);
        await stopSignal();
        await server.close();
        return 0;
      } finally {
        await snapshot.close();
      }
    } finally {
      await cache.close();
      trace?.close();
    }
  },
});

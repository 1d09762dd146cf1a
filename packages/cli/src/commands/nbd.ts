import { parseSnapshotSpec } from '@liverestore/datastore';
import { type NbdListen, snapshotExports, startNbdServer } from '@liverestore/nbd';
import { ChunkCache, openSnapshot } from '@liverestore/reader';
import { COMMON_OPTIONS, defineCommand, loadKeyFile, stopSignal } from '../command.js';
import { UsageError } from '../errors.js';
import { loggedExport } from '../logged-export.js';
import { parseWorkers } from '../option-values.js';
import { loadTokenFile, NAMESPACE_OPTION, namespaceHelp } from '../source.js';
import { SPILL_HELP, SPILL_OPTIONS, spillFromOptions } from '../spill-options.js';
import { parseBytes } from '../units.js';
import { parseListen } from './serve.js';

function nonNegativeInteger(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0)
    throw new UsageError(`nbd: ${option} must be a non-negative integer, got "${text}"`);
  return value;
}

export const nbdCommand = defineCommand({
  name: 'nbd',
  summary: 'export every drive of a snapshot read-only over NBD (QEMU, nbdcopy, qemu-img)',
  help: `Usage: liverestore nbd --from DIR|URL SNAPSHOT [--listen 127.0.0.1:10809 | --socket PATH]
                       [--cache-size SIZE] [--spill-dir DIR] [--spill-size SIZE]
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
  --workers N          decode threads, 0 to 64 (default: CPU count)
  --readahead N        chunks to load ahead of a sequential reader (default 8, 0 = off)
  --keyfile FILE       PBS key file of an encrypted snapshot
  --token-file FILE    bearer token for an http(s) --from
${namespaceHelp(23)}
  -h, --help           show this help

At most 1024 connections are open at once (more are closed at once, with a line on
stderr); a client that reads none of its replies for 60 s is disconnected, and all
connections together hold at most 256 MiB of replies.

Prints the address and the exports, then serves until stopped.`,
  options: {
    help: COMMON_OPTIONS.help,
    from: { type: 'string' },
    listen: { type: 'string' },
    socket: { type: 'string' },
    'cache-size': { type: 'string' },
    ...SPILL_OPTIONS,
    workers: { type: 'string' },
    readahead: { type: 'string' },
    keyfile: { type: 'string' },
    'token-file': { type: 'string' },
    ...NAMESPACE_OPTION,
  },
  async run({ values, positionals }, io) {
    if (values.from === undefined)
      throw new UsageError('nbd: --from DIR|URL is required (see liverestore nbd --help)');
    const [snapshotArg, ...extra] = positionals;
    if (snapshotArg === undefined) throw new UsageError('nbd: SNAPSHOT is required (e.g. vm/100)');
    if (extra.length > 0) throw new UsageError(`nbd: unexpected argument "${extra[0]}"`);
    const spec = parseSnapshotSpec(snapshotArg, values.ns);
    if (values.listen !== undefined && values.socket !== undefined) {
      throw new UsageError('nbd: give either --listen or --socket, not both');
    }
    const listen: NbdListen =
      values.socket !== undefined
        ? { socket: values.socket }
        : parseListen(values.listen ?? '127.0.0.1:10809', 'nbd');
    const cacheBytes =
      values['cache-size'] === undefined ? undefined : parseBytes(values['cache-size'], '--cache-size');
    const workers = parseWorkers(values.workers, 'nbd');
    const readaheadChunks = nonNegativeInteger(values.readahead, '--readahead');
    const crypt = await loadKeyFile(values.keyfile);
    const token = await loadTokenFile(values['token-file'], values.from, 'nbd');
    const cache = new ChunkCache({
      ...(cacheBytes === undefined ? {} : { cacheBytes }),
      ...(workers === undefined ? {} : { workers }),
      spill: spillFromOptions(values, 'nbd'),
    });
    try {
      const snapshot = await openSnapshot({
        source: values.from,
        snapshot: spec,
        cache,
        crypt,
        http: token === undefined ? {} : { token },
      });
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
          exports.length === 0 ? { snapshot, listen, log } : { exports, listen, log },
        );
        io.stdout.write(`${server.address}\n`);
        for (const name of server.exports) io.stdout.write(`  export ${name}\n`);
        await stopSignal();
        await server.close();
        return 0;
      } finally {
        await snapshot.close();
      }
    } finally {
      await cache.close();
    }
  },
});

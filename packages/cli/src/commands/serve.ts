import { isS3Url } from '@liverestore/datastore';
import { ChunkCache } from '@liverestore/reader';
import { startChunkServer } from '@liverestore/server';
import { COMMON_OPTIONS, defineCommand, required, stopSignal } from '../command.js';
import { announceReady, checkPidFile, DAEMON_HELP, DAEMON_OPTIONS, systemdListenFd } from '../daemon.js';
import { UsageError } from '../errors.js';
import { S3_OPTIONS, s3Help, s3OptionsFromValues } from '../s3-options.js';
import { refuseUnusableUrl } from '../source.js';
import { readOptionFile, serverTlsFromOptions } from '../tls-options.js';
import { parseBytes } from '../units.js';

/** Parses `HOST:PORT`, `[v6]:PORT` or `:PORT` (host 127.0.0.1). */
export function parseListen(text: string, command = 'serve'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[3]);
  if (match === null || port > 65535) {
    throw new UsageError(`${command}: --listen must be HOST:PORT (e.g. 127.0.0.1:8007), got "${text}"`);
  }
  return { host: match[1] ?? (match[2] === '' ? '127.0.0.1' : match[2]!), port };
}

/** `--max-per-client N` and `--min-rate RATE` as startChunkServer options (only those given). */
function clientLimitOptions(
  perClient: string | undefined,
  minRate: string | undefined,
): { maxRequestsPerClient?: number; minBytesPerSecond?: number } {
  const out: { maxRequestsPerClient?: number; minBytesPerSecond?: number } = {};
  if (perClient !== undefined) {
    const n = Number(perClient);
    if (!Number.isSafeInteger(n) || n < 1)
      throw new UsageError(`serve: --max-per-client must be a positive integer, got "${perClient}"`);
    out.maxRequestsPerClient = n;
  }
  if (minRate !== undefined)
    out.minBytesPerSecond = minRate === '0' ? 0 : parseBytes(minRate.replace(/\/s$/i, ''), '--min-rate');
  return out;
}

export const serveCommand = defineCommand({
  name: 'serve',
  summary: 'serve a datastore read-only over HTTP (chunks, indexes, images with Range)',
  help: `Usage: liverestore serve --store DIR|s3://BUCKET/STORE [--listen 127.0.0.1:8007] [--token-file F]
                         [--tls-cert F --tls-key F] [--cache-size SIZE]
                         [--max-per-client N] [--min-rate RATE]

Serves the datastore DIR, or the S3 datastore s3://BUCKET/STORE (PBS 4.x layout),
read-only over HTTP (HTTPS with --tls-cert/--tls-key):
  GET /snapshots                          snapshots of the root namespace (JSON)
  GET /snapshots?ns=NS&max-depth=N        of PBS namespace NS (a/b) and N levels below
  GET /namespaces[?ns=NS]                 the namespaces (JSON: [{"ns": "a/b"}, …])
  GET /snapshots/TYPE/ID/TIME/FILE        a raw index or manifest file
  GET /chunks/DIGEST                      a raw chunk blob
  GET /snapshots/TYPE/ID/TIME/NAME.img    the reconstructed disk image, with Range,
                                          HEAD and an ETag (curl, qemu-img, nbdkit)
A snapshot in a namespace is addressed as it lies on disk, with ns/NAME/ before
TYPE, e.g. /snapshots/ns/prod/vm/100/TIME/drive-scsi0.img.
  GET /metrics                            Prometheus metrics (no token needed)
With --token-file every other request needs "Authorization: Bearer TOKEN". Access
logs go to stderr as JSON lines. Listens on 127.0.0.1 unless told otherwise. Stops
gracefully on SIGINT/SIGTERM (finishes responses in progress).
Over an S3 datastore serve keeps nothing between requests: run it N times in front
of one bucket (docs/scale-out.md). When the object store does not answer, a request
gets 503 ERR_LR_SOURCE_UNAVAILABLE after two retries.

Options:
  --store DIR|URL      datastore directory or s3://BUCKET/STORE (required)
  --listen HOST:PORT   address to listen on (default 127.0.0.1:8007; port 0 picks one)
  --token-file FILE    file holding the bearer token clients must send
  --tls-cert FILE      PEM certificate (with --tls-key)
  --tls-key FILE       PEM private key (with --tls-cert)
  --cache-size SIZE    chunk cache for image downloads (default 256MiB)
  --max-per-client N   requests in progress one client address may hold (default
                       128, half of the server's 256; behind a proxy give 256)
  --min-rate RATE      a download read slower than this over 30 s is cut, e.g. 4KiB/s
                       (default 4KiB/s; 0 = never)
${s3Help(23)}
${DAEMON_HELP}
  -h, --help           show this help

Prints the URL it listens on, then serves until stopped.`,
  options: {
    help: COMMON_OPTIONS.help,
    ...DAEMON_OPTIONS,
    store: { type: 'string' },
    listen: { type: 'string' },
    'token-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'cache-size': { type: 'string' },
    'max-per-client': { type: 'string' },
    'min-rate': { type: 'string' },
    ...S3_OPTIONS,
  },
  async run({ values }, io) {
    checkPidFile(values['pid-file']);
    const store = required(values.store, '--store', 'serve');
    if (!isS3Url(store))
      refuseUnusableUrl(store, '--store', 'serve', 'a datastore directory or s3://BUCKET/STORE');
    const s3 = await s3OptionsFromValues(values, store, 'serve');
    // No --listen: systemd's socket when it activated us, else the PBS port on loopback.
    const activated = values.listen === undefined ? systemdListenFd() : undefined;
    const listen =
      activated !== undefined ? { fd: activated } : parseListen(values.listen ?? '127.0.0.1:8007');
    let token: string | undefined;
    if (values['token-file'] !== undefined) {
      token = (await readOptionFile(values['token-file'], 'token file')).toString('utf8').trim();
      if (token === '') throw new UsageError(`serve: token file ${values['token-file']} is empty`);
    }
    const tls = await serverTlsFromOptions(values, 'serve');
    const cache =
      values['cache-size'] === undefined
        ? undefined
        : new ChunkCache({ cacheBytes: parseBytes(values['cache-size'], '--cache-size') });
    try {
      const server = await startChunkServer({
        store,
        ...(isS3Url(store) ? { s3 } : {}),
        listen,
        ...(token === undefined ? {} : { token }),
        ...(tls === undefined ? {} : { tls }),
        ...(cache === undefined ? {} : { cache }),
        ...clientLimitOptions(values['max-per-client'], values['min-rate']),
      });
      io.stdout.write(`${server.url}\n`);
      announceReady(values, `serving ${store} on ${server.url}`, io);
      await stopSignal();
      await server.close();
      return 0;
    } finally {
      await cache?.close();
    }
  },
});

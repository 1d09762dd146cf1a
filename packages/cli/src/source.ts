import { readFile } from 'node:fs/promises';
import {
  type BackupStore,
  Datastore,
  isS3Url,
  type S3ConnectionOptions,
  S3Datastore,
} from '@liverestore/datastore';
import { type CryptConfig, LiverestoreError } from '@liverestore/format';
import {
  type ChunkSource,
  type HttpChunkSourceOptions,
  isSourceUrl,
  LocalChunkSource,
  normalizeFingerprint,
  openChunkSource,
  type PersistentChunkCacheOptions,
  type RetryEvent,
} from '@liverestore/reader';
import { chunkCacheFromOptions } from './chunk-cache-options.js';
import { type CommandIo, loadKeyFile, required } from './command.js';
import { UsageError } from './errors.js';
import { optionHelpLines } from './help-options.js';
import { S3_OPTIONS, type S3OptionValues, s3OptionsFromValues } from './s3-options.js';
import { printableLine } from './terminal-text.js';

/**
 * Reads the bearer token for an http(s) source from a file (never from the command line,
 * where `ps` would show it). Undefined when no file is given.
 */
export async function loadTokenFile(
  path: string | undefined,
  source: string,
  command: string,
): Promise<string | undefined> {
  if (path === undefined) return undefined;
  if (!isSourceUrl(source)) throw new UsageError(`${command}: --token-file needs an http(s):// --from`);
  let token: string;
  try {
    token = (await readFile(path, 'utf8')).trim();
  } catch (cause) {
    throw new LiverestoreError(
      'ERR_LR_TOKEN_FILE_UNREADABLE',
      `cannot read token file ${path} (${(cause as { code?: string }).code ?? 'error'})`,
      { cause },
    );
  }
  if (token === '') throw new UsageError(`${command}: token file ${path} is empty`);
  return token;
}

/**
 * Refuses a URL that `command` cannot use where it wants a store (`kinds` says what it
 * takes), instead of taking `s3:/…` or `http:/…` for a directory name.
 */
export function refuseUnusableUrl(text: string, option: string, command: string, kinds: string): void {
  // `scheme:/…` too: `s3:/bucket/store` is a mistyped URL, not a directory to create.
  if (/^[a-z][a-z0-9+.-]*:\//i.test(text)) {
    throw new LiverestoreError(
      'ERR_LR_SOURCE_UNSUPPORTED',
      `${command}: ${option} "${text}" is not something ${command} can use: give ${kinds}`,
    );
  }
}

/**
 * Opens the store `backup --store` writes to: a directory (created if missing) or an S3
 * datastore `s3://BUCKET/STORE` (the bucket must exist; connection settings from `s3`, else AWS_*).
 * Any other URL is refused.
 */
export async function openBackupStore(
  store: string,
  command: string,
  s3: S3ConnectionOptions = {},
): Promise<BackupStore & { close?(): Promise<void> }> {
  if (isS3Url(store)) return S3Datastore.open(store, { ...s3, create: true });
  refuseUnusableUrl(store, '--store', command, 'a datastore directory or s3://BUCKET/STORE');
  return Datastore.create(store);
}

/** How an https:// source's certificate is trusted (next to --token-file on every reading command). */
export const TLS_TRUST_OPTIONS = {
  ca: { type: 'string' },
  fingerprint: { type: 'string' },
} as const;

/**
 * How a `--from` that is not a directory is reached: `--token-file` and TLS trust for
 * http(s)://, the `--s3-*` settings for s3:// (every command that reads a source).
 */
export const REMOTE_SOURCE_OPTIONS = {
  'token-file': { type: 'string' },
  ...TLS_TRUST_OPTIONS,
  ...S3_OPTIONS,
} as const;

/** What a command that opens one snapshot needs besides `--from`: the key and how to reach the source. */
export const SNAPSHOT_SOURCE_OPTIONS = {
  keyfile: { type: 'string' },
  ...REMOTE_SOURCE_OPTIONS,
} as const;

/**
 * The options that name a snapshot store: `--from DIR|URL` (with `--token-file` and TLS
 * trust for https, the `--s3-*` settings for s3://), or `--store DIR`.
 */
export const STORE_SOURCE_OPTIONS = {
  from: { type: 'string' },
  store: { type: 'string' },
  ...REMOTE_SOURCE_OPTIONS,
} as const;

/**
 * Opens the store a command reads: `--from` (a datastore directory or the http(s):// URL of
 * `liverestore serve`, with `--token-file` for a URL, as restore takes it) or `--store`
 * (a directory only, kept as an alias). Both or neither is a usage error.
 */
export async function openStoreSource(
  values: {
    from?: string | undefined;
    store?: string | undefined;
    'token-file'?: string | undefined;
    ca?: string | undefined;
    fingerprint?: string | undefined;
  } & S3OptionValues,
  command: string,
  io: CommandIo,
): Promise<ChunkSource> {
  if (values.from !== undefined && values.store !== undefined)
    throw new UsageError(`${command}: give either --from or --store, not both`);
  if (values.store !== undefined) {
    const dir = required(values.store, '--store', command);
    await httpSourceOptions(values, dir, command, io); // refuses the http(s)-only options
    const s3 = await s3OptionsFromValues(values, dir, command);
    if (isS3Url(dir)) return openChunkSource(dir, {}, s3);
    refuseUnusableUrl(dir, '--store', command, 'a datastore directory or s3://BUCKET/STORE');
    return LocalChunkSource.open(dir);
  }
  // The message names --from first and keeps "--store is required" for scripts that look for it.
  const from = required(values.from, '--from DIR|URL or --store', command);
  const http = await httpSourceOptions(values, from, command, io);
  return openChunkSource(from, http, await s3OptionsFromValues(values, from, command));
}

/**
 * Errors of a source as a whole (unreachable, token refused, closed): they stop a command
 * instead of being reported against one snapshot or chunk.
 */
export function isSourceFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return (
    code === 'ERR_LR_UNAUTHORIZED' ||
    code === 'ERR_LR_TLS_UNTRUSTED' ||
    code === 'ERR_LR_TLS_FINGERPRINT' ||
    code === 'ERR_LR_S3_ACCESS_DENIED' ||
    code === 'ERR_LR_S3_BUCKET_NOT_FOUND' ||
    code === 'ERR_LR_SOURCE_UNAVAILABLE' ||
    code === 'ERR_LR_SOURCE_TIMEOUT' ||
    code === 'ERR_LR_SOURCE_CLOSED' ||
    code === 'ERR_LR_ABORTED'
  );
}

/** `--ns NS`: the PBS namespace (`a/b`) a command works in; the root namespace when absent. */
export const NAMESPACE_OPTION = { ns: { type: 'string' } } as const;

/** The help lines of {@link NAMESPACE_OPTION}, descriptions starting at `column` like the command's other options. */
export function namespaceHelp(column = 22): string {
  const pad = ' '.repeat(column);
  return [
    `${'  --ns NS'.padEnd(column)}PBS namespace of SNAPSHOT, e.g. prod or prod/db (default:`,
    `${pad}the root namespace); SNAPSHOT may also carry its namespace`,
    `${pad}as PBS prints it: ns/prod/vm/100`,
  ].join('\n');
}

/** The help lines of {@link TLS_TRUST_OPTIONS}, descriptions starting at `column`. */
export function tlsTrustHelp(column: number): string {
  const entry = (option: string, lines: readonly string[]): string[] =>
    optionHelpLines(option, lines, column);
  return [
    ...entry('  --ca FILE', [
      'PEM CA certificate an https:// --from must chain to',
      "(instead of the system's; env LIVERESTORE_CA)",
    ]),
    ...entry('  --fingerprint SHA256', [
      'trust exactly the https:// certificate with this SHA-256',
      "fingerprint, e.g. a self-signed serve's (env",
      'LIVERESTORE_FINGERPRINT or PBS_FINGERPRINT)',
    ]),
  ].join('\n');
}

/** How often a command says that its server is not answering, at most. */
const RETRY_NOTICE_INTERVAL_MS = 2_000;

/**
 * Tells stderr that a server does not answer and when the next attempt comes, at most
 * every 2 s however many requests retry at once: with the server down a command says
 * what it waits for instead of waiting in silence.
 */
export function retryNotices(io: CommandIo, command: string): (event: RetryEvent) => void {
  let last = Number.NEGATIVE_INFINITY;
  return (event) => {
    const now = performance.now();
    if (now - last < RETRY_NOTICE_INTERVAL_MS) return;
    last = now;
    io.stderr.write(
      `${command}: ${printableLine(`${event.source} did not answer (${event.error})`)}; attempt ${event.attempt + 1} of ${event.attempts} in ${(event.delayMs / 1000).toFixed(1)} s\n`,
    );
  };
}

/**
 * The settings of an http(s):// source from a command's options and the environment: the
 * token (`--token-file`), the certificate trust (`--ca`, `--fingerprint`, or
 * LIVERESTORE_CA, LIVERESTORE_FINGERPRINT, PBS_FINGERPRINT) and retry notices on stderr.
 * Given with a source that is not http(s), --ca and --fingerprint are usage errors.
 */
export async function httpSourceOptions(
  values: { 'token-file'?: string | undefined; ca?: string | undefined; fingerprint?: string | undefined },
  source: string,
  command: string,
  io: CommandIo,
): Promise<HttpChunkSourceOptions> {
  const token = await loadTokenFile(values['token-file'], source, command);
  if (!isSourceUrl(source)) {
    for (const option of ['ca', 'fingerprint'] as const)
      if (values[option] !== undefined)
        throw new UsageError(`${command}: --${option} needs an https:// --from`);
    return {};
  }
  const env = process.env;
  const caFile = values.ca ?? nonEmpty(env.LIVERESTORE_CA);
  const fingerprint =
    values.fingerprint ?? nonEmpty(env.LIVERESTORE_FINGERPRINT) ?? nonEmpty(env.PBS_FINGERPRINT);
  if (fingerprint !== undefined && normalizeFingerprint(fingerprint) === undefined)
    throw new UsageError(
      `${command}: --fingerprint must be a SHA-256 fingerprint (64 hex digits, colons allowed), got "${fingerprint}"`,
    );
  let ca: Buffer | undefined;
  if (caFile !== undefined) {
    try {
      ca = await readFile(caFile);
    } catch (cause) {
      throw new LiverestoreError(
        'ERR_LR_CA_FILE_UNREADABLE',
        `cannot read CA file ${caFile} (${(cause as { code?: string }).code ?? 'error'})`,
        { cause },
      );
    }
  }
  return {
    ...(token === undefined ? {} : { token }),
    ...(ca === undefined && fingerprint === undefined
      ? {}
      : {
          tls: { ...(ca === undefined ? {} : { ca }), ...(fingerprint === undefined ? {} : { fingerprint }) },
        }),
    onRetry: retryNotices(io, command),
  };
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text.trim() === '' ? undefined : text;
}

/** How a command opens its snapshot: options of openSnapshot (and of openCachedSource). */
export interface SnapshotSourceSettings {
  readonly chunkCache: PersistentChunkCacheOptions | undefined;
  readonly crypt: CryptConfig | undefined;
  readonly http: HttpChunkSourceOptions;
  readonly s3: S3ConnectionOptions;
}

/**
 * The settings of {@link SNAPSHOT_SOURCE_OPTIONS} and `--chunk-cache` for the source `from`,
 * checked in this order: the persistent chunk cache, the key file, the http(s) settings,
 * the S3 settings (each refuses what does not fit `from` as a usage error).
 */
export async function snapshotSourceSettings(
  values: {
    keyfile?: string | undefined;
    'token-file'?: string | undefined;
    ca?: string | undefined;
    fingerprint?: string | undefined;
    'chunk-cache'?: string | undefined;
    'chunk-cache-size'?: string | undefined;
  } & S3OptionValues,
  from: string,
  command: string,
  io: CommandIo,
): Promise<SnapshotSourceSettings> {
  const chunkCache = chunkCacheFromOptions(values, command);
  const crypt = await loadKeyFile(values.keyfile);
  const http = await httpSourceOptions(values, from, command, io);
  const s3 = await s3OptionsFromValues(values, from, command);
  return { chunkCache, crypt, http, s3 };
}

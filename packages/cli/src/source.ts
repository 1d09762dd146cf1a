import { readFile } from 'node:fs/promises';
import { type BackupStore, Datastore, isS3Url, S3Datastore } from '@liverestore/datastore';
import { LiverestoreError } from '@liverestore/format';
import { type ChunkSource, isSourceUrl, LocalChunkSource, openChunkSource } from '@liverestore/reader';
import { required } from './command.js';
import { UsageError } from './errors.js';

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
 * datastore `s3://BUCKET/STORE` (the bucket must exist; connection settings from AWS_*).
 * Any other URL is refused.
 */
export async function openBackupStore(
  store: string,
  command: string,
): Promise<BackupStore & { close?(): Promise<void> }> {
  if (isS3Url(store)) return S3Datastore.open(store, { create: true });
  refuseUnusableUrl(store, '--store', command, 'a datastore directory or s3://BUCKET/STORE');
  return Datastore.create(store);
}

/** The options that name a snapshot store: `--from DIR|URL` (with `--token-file`), or `--store DIR`. */
export const STORE_SOURCE_OPTIONS = {
  from: { type: 'string' },
  store: { type: 'string' },
  'token-file': { type: 'string' },
} as const;

/**
 * Opens the store a command reads: `--from` (a datastore directory or the http(s):// URL of
 * `liverestore serve`, with `--token-file` for a URL, as restore takes it) or `--store`
 * (a directory only, kept as an alias). Both or neither is a usage error.
 */
export async function openStoreSource(
  values: { from?: string | undefined; store?: string | undefined; 'token-file'?: string | undefined },
  command: string,
): Promise<ChunkSource> {
  if (values.from !== undefined && values.store !== undefined)
    throw new UsageError(`${command}: give either --from or --store, not both`);
  if (values.store !== undefined) {
    const dir = required(values.store, '--store', command);
    if (values['token-file'] !== undefined)
      throw new UsageError(`${command}: --token-file needs an http(s):// --from`);
    if (isS3Url(dir)) return openChunkSource(dir);
    refuseUnusableUrl(dir, '--store', command, 'a datastore directory or s3://BUCKET/STORE');
    return LocalChunkSource.open(dir);
  }
  // The message names --from first and keeps "--store is required" for scripts that look for it.
  const from = required(values.from, '--from DIR|URL or --store', command);
  const token = await loadTokenFile(values['token-file'], from, command);
  return openChunkSource(from, token === undefined ? {} : { token });
}

/**
 * Errors of a source as a whole (unreachable, token refused, closed): they stop a command
 * instead of being reported against one snapshot or chunk.
 */
export function isSourceFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return (
    code === 'ERR_LR_UNAUTHORIZED' ||
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

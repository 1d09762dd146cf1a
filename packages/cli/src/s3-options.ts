import { readFile } from 'node:fs/promises';
import { isS3Url, type S3ConnectionOptions } from '@liverestore/datastore';
import { LiverestoreError } from '@liverestore/format';
import { UsageError } from './errors.js';
import { optionHelpLines } from './help-options.js';

/*
 * How a command reaches an S3 datastore (`s3://BUCKET/STORE`), by option; each option left
 * out comes from the environment every S3 tool reads (AWS_ENDPOINT_URL_S3, then
 * AWS_ENDPOINT_URL; AWS_REGION; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). The secret
 * key is read from a file, never from the command line, where `ps` would show it.
 */

/** The S3 connection options of every command that takes an `s3://` store. */
export const S3_OPTIONS = {
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  's3-addressing': { type: 'string' },
  's3-access-key-id': { type: 'string' },
  's3-secret-key-file': { type: 'string' },
} as const;

/** The values of {@link S3_OPTIONS} as parseArgs gives them. */
export interface S3OptionValues {
  's3-endpoint'?: string | undefined;
  's3-region'?: string | undefined;
  's3-addressing'?: string | undefined;
  's3-access-key-id'?: string | undefined;
  's3-secret-key-file'?: string | undefined;
}

/** The help lines of {@link S3_OPTIONS}, descriptions starting at `column` like the command's other options. */
export function s3Help(column: number): string {
  const entry = (option: string, lines: readonly string[]): string[] =>
    optionHelpLines(option, lines, column);
  return [
    ...entry('  --s3-endpoint URL', [
      'S3 endpoint of an s3:// store, http(s)://HOST[:PORT] (else',
      "AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, else AWS's)",
    ]),
    ...entry('  --s3-region REGION', ['region signed for (else AWS_REGION, else us-east-1)']),
    ...entry('  --s3-addressing path|virtual', [
      'https://HOST/BUCKET/… or https://BUCKET.HOST/… (default: path',
      'for an IP address or localhost, else virtual)',
    ]),
    ...entry('  --s3-access-key-id ID', ['access key (with --s3-secret-key-file; else AWS_ACCESS_KEY_ID)']),
    ...entry('  --s3-secret-key-file FILE', [
      'file holding the secret key (never on the command line,',
      'where ps shows it; else AWS_SECRET_ACCESS_KEY)',
    ]),
  ].join('\n');
}

/**
 * The connection options of the S3 store `store` from a command's `--s3-*` options (those
 * given; the rest come from the environment when the store is opened). `--s3-*` with a
 * store that is not `s3://`, a key id without its secret file (or the other way round) and
 * an unknown addressing are usage errors.
 */
export async function s3OptionsFromValues(
  values: S3OptionValues,
  store: string,
  command: string,
): Promise<S3ConnectionOptions> {
  const given = (Object.keys(S3_OPTIONS) as (keyof S3OptionValues)[]).filter((k) => values[k] !== undefined);
  if (given.length === 0) return {};
  if (!isS3Url(store))
    throw new UsageError(`${command}: --${given[0]} needs an s3://BUCKET/STORE store, got "${store}"`);
  const options: S3ConnectionOptions = {};
  const endpoint = values['s3-endpoint'];
  if (endpoint !== undefined) options.endpoint = nonEmpty(endpoint, '--s3-endpoint', command);
  const region = values['s3-region'];
  if (region !== undefined) options.region = nonEmpty(region, '--s3-region', command);
  const addressing = values['s3-addressing'];
  if (addressing !== undefined) {
    if (addressing !== 'path' && addressing !== 'virtual')
      throw new UsageError(`${command}: --s3-addressing must be path or virtual, got "${addressing}"`);
    options.pathStyle = addressing === 'path';
  }
  const keyId = values['s3-access-key-id'];
  const secretFile = values['s3-secret-key-file'];
  if ((keyId === undefined) !== (secretFile === undefined))
    throw new UsageError(`${command}: give both --s3-access-key-id and --s3-secret-key-file, or neither`);
  if (keyId !== undefined && secretFile !== undefined) {
    options.accessKeyId = nonEmpty(keyId, '--s3-access-key-id', command);
    options.secretAccessKey = await readSecretKey(secretFile, command);
  }
  return options;
}

function nonEmpty(value: string, option: string, command: string): string {
  if (value.trim() === '') throw new UsageError(`${command}: ${option} must not be empty`);
  return value.trim();
}

async function readSecretKey(path: string, command: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new LiverestoreError(
      'ERR_LR_S3_SECRET_KEY_FILE_UNREADABLE',
      `cannot read S3 secret key file ${path} (${(cause as { code?: string }).code ?? 'error'})`,
      { cause },
    );
  }
  const secret = text.trim();
  if (secret === '') throw new UsageError(`${command}: S3 secret key file ${path} is empty`);
  return secret;
}

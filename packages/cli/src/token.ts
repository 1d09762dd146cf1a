import { readFile } from 'node:fs/promises';
import { LiverestoreError } from '@liverestore/format';
import { isSourceUrl } from '@liverestore/reader';
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

import { readFile } from 'node:fs/promises';
import { LiverestoreError } from '@liverestore/format';
import { UsageError } from './errors.js';

/** `--tls-cert FILE --tls-key FILE`: the certificate a server (serve, nbd, live-restore) shows. */
export const SERVER_TLS_OPTIONS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const;

/** The help lines of {@link SERVER_TLS_OPTIONS}, descriptions from `column`; `what` says what TLS gives. */
export function serverTlsHelp(column: number, what: string): string {
  return [
    `${'  --tls-cert FILE'.padEnd(column)}PEM certificate (with --tls-key): ${what}`,
    `${'  --tls-key FILE'.padEnd(column)}PEM private key (with --tls-cert)`,
  ].join('\n');
}

/** Reads a file an option names; ERR_LR_SERVE_FILE_UNREADABLE (with `what`) when it cannot. */
export async function readOptionFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (cause) {
    throw new LiverestoreError(
      'ERR_LR_SERVE_FILE_UNREADABLE',
      `cannot read ${what} ${path} (${(cause as { code?: string }).code ?? 'error'})`,
      { cause },
    );
  }
}

/** The certificate and key of `--tls-cert`/`--tls-key`; both or neither, or a usage error. */
export async function serverTlsFromOptions(
  values: { 'tls-cert'?: string | undefined; 'tls-key'?: string | undefined },
  command: string,
): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  const certPath = values['tls-cert'];
  const keyPath = values['tls-key'];
  if ((certPath === undefined) !== (keyPath === undefined))
    throw new UsageError(`${command}: give both --tls-cert and --tls-key, or neither`);
  if (certPath === undefined || keyPath === undefined) return undefined;
  return {
    cert: await readOptionFile(certPath, 'certificate'),
    key: await readOptionFile(keyPath, 'private key'),
  };
}

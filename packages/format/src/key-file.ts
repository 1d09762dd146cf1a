import { CryptConfig, KEY_BYTES } from './crypt-config.js';
import { CryptError } from './errors.js';

/**
 * PBS key files (`KeyConfig`): compact JSON `{kdf, created, modified, data, fingerprint}`,
 * where `data` is the base64 of the raw 32-byte key when `kdf` is null. Using the PBS
 * format means a key made by `proxmox-backup-client key create --kdf none` works here
 * and ours works there.
 */
export interface KeyFileJson {
  kdf: null | Record<string, unknown>;
  created: string;
  modified: string;
  data: string;
  fingerprint?: string;
}

function rfc3339WithOffset(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, '+00:00');
}

/** Serialises a key as an unprotected PBS key file (keep it mode 0600). */
export function encodeKeyFile(crypt: CryptConfig, now = new Date()): string {
  const json: KeyFileJson = {
    kdf: null,
    created: rfc3339WithOffset(now),
    modified: rfc3339WithOffset(now),
    data: crypt.exportKey().toString('base64'),
    fingerprint: crypt.fingerprint(),
  };
  return JSON.stringify(json);
}

function invalid(message: string): CryptError {
  return new CryptError('ERR_LR_KEYFILE_INVALID', `key file: ${message}`);
}

/** Parses a PBS key file and checks its recorded fingerprint against the key. */
export function decodeKeyFile(text: string): CryptConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid('not valid JSON');
  }
  if (json === null || typeof json !== 'object') throw invalid('not a JSON object');
  const { kdf, data, fingerprint } = json as Partial<KeyFileJson>;
  if (kdf !== null && kdf !== undefined) {
    throw new CryptError(
      'ERR_LR_KEYFILE_PASSPHRASE',
      'key file is protected by a passphrase; only unprotected key files (kdf: null) are supported',
    );
  }
  if (typeof data !== 'string') throw invalid('"data" must be a base64 string');
  const key = Buffer.from(data, 'base64');
  if (key.byteLength !== KEY_BYTES) throw invalid(`"data" must hold a ${KEY_BYTES}-byte key`);
  const crypt = new CryptConfig(key);
  if (fingerprint !== undefined && fingerprint !== crypt.fingerprint()) {
    throw invalid(`fingerprint ${fingerprint} does not match the key (${crypt.fingerprint()})`);
  }
  return crypt;
}

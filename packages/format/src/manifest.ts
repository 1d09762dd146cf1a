import { createHmac } from 'node:crypto';
import { decodeBlob, encodeBlob } from './blob.js';
import type { ChunkIndex } from './chunk-index.js';
import type { CryptConfig } from './crypt-config.js';
import { CryptError, FormatError, IntegrityError } from './errors.js';
import { isHexDigest, sha256, toHex } from './hex.js';

/** File name of the manifest in every snapshot directory. */
export const MANIFEST_BLOB_NAME = 'index.json.blob';

/** PBS crypt modes of a manifest file entry. */
export type CryptMode = 'none' | 'encrypt' | 'sign-only';

/** Backup types PBS knows; a snapshot lives at `<type>/<id>/<time>`. */
export type BackupType = 'vm' | 'ct' | 'host';
export const BACKUP_TYPES: readonly BackupType[] = ['vm', 'ct', 'host'];

/** One file of a snapshot as the manifest records it. */
export interface ManifestFile {
  filename: string;
  cryptMode: CryptMode;
  /** Image size for an index archive; byte length for a blob file. */
  size: number;
  /** index_csum for an index archive; SHA-256 of the raw file for a blob. Hex. */
  csum: string;
}

/** The manifest of a snapshot (`index.json.blob`), keys in the PBS kebab-case on disk. */
export interface Manifest {
  backupType: BackupType;
  backupId: string;
  /** Seconds since the epoch. */
  backupTime: number;
  files: ManifestFile[];
  /** Not covered by the signature (PBS puts `key-fingerprint` here). */
  unprotected: Record<string, unknown>;
  signature?: string;
}

function invalid(message: string, cause?: unknown): FormatError {
  return new FormatError('ERR_LR_MANIFEST_INVALID', `manifest: ${message}`, { cause });
}

/** JSON with object keys sorted and no white space: what PBS signs. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function toJson(manifest: Manifest): Record<string, unknown> {
  return {
    'backup-type': manifest.backupType,
    'backup-id': manifest.backupId,
    'backup-time': manifest.backupTime,
    files: manifest.files.map((f) => ({
      filename: f.filename,
      'crypt-mode': f.cryptMode,
      size: f.size,
      csum: f.csum,
    })),
    unprotected: manifest.unprotected,
  };
}

function signatureOf(json: Record<string, unknown>, crypt: CryptConfig): string {
  const { unprotected: _u, signature: _s, ...signed } = json;
  return createHmac('sha256', crypt.idKey).update(canonicalJson(signed)).digest('hex');
}

/**
 * Encodes a manifest as PBS does: pretty JSON in an uncompressed blob; with a key, signed
 * (HMAC-SHA256 with the id key over the canonical JSON) and the key fingerprint recorded.
 */
export function encodeManifest(
  manifest: Manifest,
  options: { crypt?: CryptConfig; fingerprint?: string } = {},
): Buffer {
  const json = toJson(manifest);
  if (options.crypt !== undefined) {
    json.signature = signatureOf(json, options.crypt);
    if (options.fingerprint !== undefined) {
      json.unprotected = { ...manifest.unprotected, 'key-fingerprint': options.fingerprint };
    }
  }
  return encodeBlob(Buffer.from(JSON.stringify(json, null, 2), 'utf8'), { compress: 'none' });
}

function field<T>(obj: Record<string, unknown>, key: string, check: (v: unknown) => v is T, what: string): T {
  const value = obj[key];
  if (!check(value)) throw invalid(`"${key}" must be ${what}`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isSafeUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Decodes and validates a manifest blob. With a key, a signed manifest's signature is
 * checked; an encrypted-file manifest without a signature is refused.
 */
export function decodeManifest(
  blob: Uint8Array,
  options: { crypt?: CryptConfig | undefined } = {},
): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(decodeBlob(blob, { maxBytes: 16 * 1024 * 1024 }).toString('utf8'));
  } catch (cause) {
    if (cause instanceof SyntaxError) throw invalid('not valid JSON', cause);
    throw cause;
  }
  if (!isObject(json)) throw invalid('not a JSON object');
  const backupType = field(json, 'backup-type', isString, 'a string');
  if (!BACKUP_TYPES.includes(backupType as BackupType)) throw invalid(`unknown backup-type "${backupType}"`);
  const files = field(json, 'files', Array.isArray, 'an array').map((entry: unknown, i): ManifestFile => {
    if (!isObject(entry)) throw invalid(`files[${i}] must be an object`);
    const cryptMode = entry['crypt-mode'] ?? 'none';
    if (cryptMode !== 'none' && cryptMode !== 'encrypt' && cryptMode !== 'sign-only') {
      throw invalid(`files[${i}] has unknown crypt-mode ${JSON.stringify(cryptMode)}`);
    }
    const csum = field(entry, 'csum', isString, 'a string');
    if (!isHexDigest(csum)) throw invalid(`files[${i}].csum must be 64 lower-case hex digits`);
    return {
      filename: field(entry, 'filename', isString, 'a string'),
      cryptMode,
      size: field(entry, 'size', isSafeUint, 'a non-negative integer'),
      csum,
    };
  });
  const manifest: Manifest = {
    backupType: backupType as BackupType,
    backupId: field(json, 'backup-id', isString, 'a string'),
    backupTime: field(
      json,
      'backup-time',
      (v): v is number => typeof v === 'number' && Number.isSafeInteger(v),
      'an integer',
    ),
    files,
    unprotected: isObject(json.unprotected) ? json.unprotected : {},
  };
  if (json.signature !== undefined && json.signature !== null) {
    manifest.signature = field(json, 'signature', isString, 'a string');
  }
  if (options.crypt !== undefined) {
    if (manifest.signature === undefined) {
      if (files.some((f) => f.cryptMode !== 'none'))
        throw new CryptError('ERR_LR_MANIFEST_UNSIGNED', 'manifest of an encrypted backup has no signature');
    } else if (signatureOf(json, options.crypt) !== manifest.signature) {
      throw new CryptError(
        'ERR_LR_MANIFEST_SIGNATURE',
        'manifest signature does not match: wrong key or tampered manifest',
      );
    }
  }
  return manifest;
}

/** The entry of `filename`, or an `ERR_LR_ARCHIVE_NOT_FOUND` error listing what exists. */
export function manifestFile(manifest: Manifest, filename: string): ManifestFile {
  const entry = manifest.files.find((f) => f.filename === filename);
  if (entry === undefined) {
    const names = manifest.files.map((f) => f.filename).join(', ');
    throw new FormatError(
      'ERR_LR_ARCHIVE_NOT_FOUND',
      `no archive "${filename}" in this snapshot (it has: ${names})`,
    );
  }
  return entry;
}

/** Checks an opened index against its manifest entry, so a swapped or stale index is caught on open. */
export function checkIndexAgainstManifest(entry: ManifestFile, index: ChunkIndex): void {
  if (entry.size !== index.sizeBytes || entry.csum !== toHex(index.indexCsum)) {
    throw new IntegrityError(
      'ERR_LR_MANIFEST_MISMATCH',
      `${entry.filename}: index (size ${index.sizeBytes}, csum ${toHex(index.indexCsum)}) does not match the manifest (size ${entry.size}, csum ${entry.csum})`,
    );
  }
}

/** Checks a raw blob file (e.g. a config blob) against its manifest entry. */
export function checkBlobAgainstManifest(entry: ManifestFile, raw: Uint8Array): void {
  const csum = toHex(sha256(raw));
  if (entry.size !== raw.byteLength || entry.csum !== csum) {
    throw new IntegrityError(
      'ERR_LR_MANIFEST_MISMATCH',
      `${entry.filename}: file does not match the manifest`,
    );
  }
}

import { createCipheriv, createDecipheriv, createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { CryptError } from './errors.js';

/** AES-256 key length in bytes. */
export const KEY_BYTES = 32;
/** PBS uses a 16-byte IV for AES-256-GCM (not the usual 12). */
export const IV_BYTES = 16;
/** AES-GCM authentication tag length in bytes. */
export const TAG_BYTES = 16;

const FINGERPRINT_INPUT = createHash('sha256').update('Proxmox Backup Encryption Key Fingerprint').digest();

/** Colon-separated lower-case hex, the way PBS prints fingerprints. */
export function formatFingerprint(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * The secret material of an encrypted backup, derived as PBS derives it.
 *
 * The chunk digest of an encrypted backup is keyed (`SHA-256(plaintext || idKey)`), so
 * someone without the key cannot confirm that a backup holds a known plaintext.
 */
export class CryptConfig {
  readonly #encKey: Buffer;
  /** `PBKDF2-HMAC-SHA256(encKey, "_id_key", 10 rounds, 32 bytes)`, the key of digests and signatures. */
  readonly idKey: Buffer;

  constructor(encKey: Uint8Array) {
    if (encKey.byteLength !== KEY_BYTES) {
      throw new CryptError(
        'ERR_LR_KEY_INVALID',
        `encryption key must be ${KEY_BYTES} bytes, got ${encKey.byteLength}`,
      );
    }
    this.#encKey = Buffer.from(encKey);
    this.idKey = pbkdf2Sync(this.#encKey, '_id_key', 10, 32, 'sha256');
  }

  /** A new random key: what `liverestore key create` stores. */
  static generate(): CryptConfig {
    return new CryptConfig(randomBytes(KEY_BYTES));
  }

  /** The raw 32-byte key, for writing a key file. */
  exportKey(): Buffer {
    return Buffer.from(this.#encKey);
  }

  /**
   * PBS key fingerprint: `SHA-256(SHA-256("Proxmox Backup Encryption Key Fingerprint") || idKey)`,
   * as colon-separated hex. Recorded in manifests so a wrong key is named, not just refused.
   */
  fingerprint(): string {
    return formatFingerprint(this.computeDigest(FINGERPRINT_INPUT));
  }

  /** Digest of a chunk in an encrypted backup: `SHA-256(plaintext || idKey)`. */
  computeDigest(...parts: Uint8Array[]): Buffer {
    const hash = createHash('sha256');
    for (const part of parts) hash.update(part);
    hash.update(this.idKey);
    return hash.digest();
  }

  /** AES-256-GCM with a random IV and empty AAD; returns iv, tag and ciphertext. */
  encrypt(plaintext: Uint8Array): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#encKey, iv, { authTagLength: TAG_BYTES });
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { iv, tag: cipher.getAuthTag(), ciphertext };
  }

  /** Decrypts and authenticates; a wrong key and tampered bytes look the same and both fail. */
  decrypt(iv: Uint8Array, tag: Uint8Array, ciphertext: Uint8Array): Buffer {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#encKey, iv, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (cause) {
      throw new CryptError(
        'ERR_LR_DECRYPT_FAILED',
        'decryption failed: wrong key or corrupted encrypted blob',
        { cause },
      );
    }
  }
}

let lastKey: { hex: string; crypt: CryptConfig } | undefined;

/**
 * The CryptConfig of a raw key, remembered for the last key used. Worker threads receive
 * keys as bytes with every task; deriving the id key (PBKDF2) per chunk would be waste.
 */
export function cryptConfigForKey(key: Uint8Array): CryptConfig {
  const hex = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex');
  if (lastKey?.hex !== hex) lastKey = { hex, crypt: new CryptConfig(key) };
  return lastKey.crypt;
}

/*
 * Test helpers built only on Node.js and the formats documented in
 * /work/shared/formats.md, never on the code under test, so a test that compares the two
 * checks an independent construction.
 */
import { createCipheriv, pbkdf2Sync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url);

/** A file of test/fixtures (tests run from dist/test, the fixtures stay in test/fixtures). */
export function readFixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURES));
}

/** The plaintext of fixtures/lines.txt.zst, regenerated (see fixtures/README.md). */
export function fixtureLines(): Buffer {
  let text = '';
  for (let i = 0; i < 1000; i++) text += `liverestore zstd fixture line ${i}\n`;
  return Buffer.from(text, 'utf8');
}

/** Bytes of xorshift32 (13, 17, 5), one low byte per step: the generator of the chunker vectors. */
export function xorshift32Bytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, reflected, as zlib's crc32), table-driven. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** `magic[8] | crc32 u32le | payload`: an unencrypted blob, assembled by hand. */
export function assembleBlob(magic: readonly number[], payload: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.set(magic, 0);
  head.writeUInt32LE(crc32(payload), 8);
  return Buffer.concat([head, payload]);
}

/**
 * `magic[8] | crc32(ciphertext) | iv[16] | tag[16] | ciphertext`: an encrypted blob
 * assembled by hand, AES-256-GCM with a 16-byte IV and empty AAD as PBS does.
 */
export function assembleEncryptedBlob(
  magic: readonly number[],
  key: Uint8Array,
  payload: Uint8Array,
): Buffer {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  const ciphertext = Buffer.concat([cipher.update(payload), cipher.final()]);
  const head = Buffer.alloc(12);
  head.set(magic, 0);
  head.writeUInt32LE(crc32(ciphertext), 8);
  return Buffer.concat([head, iv, cipher.getAuthTag(), ciphertext]);
}

/** `PBKDF2-HMAC-SHA256(key, "_id_key", 10, 32)`: the PBS id key. */
export function idKeyOf(key: Uint8Array): Buffer {
  return pbkdf2Sync(key, '_id_key', 10, 32, 'sha256');
}

/** The fixed 32-byte test key 00 01 02 … 1f. */
export const TEST_KEY: Buffer = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

/** Copies `data` into a larger ArrayBuffer at an odd offset, as a plain Uint8Array view. */
export function atOddOffset(data: Uint8Array): Uint8Array {
  const backing = new Uint8Array(data.byteLength + 7);
  backing.set(data, 5);
  return backing.subarray(5, 5 + data.byteLength);
}

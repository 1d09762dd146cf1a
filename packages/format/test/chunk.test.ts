import { createHash, randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import test from 'ava';
import fc from 'fast-check';
import {
  blobKind,
  CryptConfig,
  chunkDigest,
  decodeBlob,
  decodeChunk,
  encodeBlob,
  encodeChunk,
  verifyBlobCrc,
} from '../src/index.js';
import { decodeChunkWith, KEY_BYTES } from '../src/internal.js';
import { atOddOffset, fixtureLines, idKeyOf, TEST_KEY } from './helpers.js';

const crypt = new CryptConfig(TEST_KEY);
const lines = fixtureLines();

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

test('id key and keyed digest match known answers computed with Python hashlib', (t) => {
  // hashlib.pbkdf2_hmac('sha256', bytes(range(32)), b'_id_key', 10, 32)
  const idKey = '7c2c013efd07f3b25717a485263343cd4d292a4b65c200bb3b18ea227abe225c';
  t.is(idKeyOf(TEST_KEY).toString('hex'), idKey);
  t.is(crypt.idKey.toString('hex'), idKey);
  // hashlib.sha256(b'liverestore' + id_key)
  t.is(
    chunkDigest(Buffer.from('liverestore'), crypt).toString('hex'),
    '4c4b8980c462697535219ce08efc18b201c560e626a4a5087a036fb1c8bf66bb',
  );
});

test('key fingerprint = SHA-256(SHA-256("Proxmox Backup Encryption Key Fingerprint") || idKey), colon hex', (t) => {
  const input = sha256(Buffer.from('Proxmox Backup Encryption Key Fingerprint'));
  t.deepEqual([...input.subarray(0, 8)], [110, 208, 239, 119, 71, 31, 255, 77], 'PBS FINGERPRINT_INPUT');
  const expected = Array.from(sha256(input, idKeyOf(TEST_KEY)), (b) => b.toString(16).padStart(2, '0')).join(
    ':',
  );
  t.is(crypt.fingerprint(), expected);
  // Python: ':'.join('%02x' % b for b in sha256(sha256(b'Proxmox …') + id_key).digest())
  t.is(
    crypt.fingerprint(),
    '0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b',
  );
  t.not(new CryptConfig(Buffer.alloc(32)).fingerprint(), expected);
});

test('unencrypted chunk: digest is SHA-256 of the plaintext; round trip', (t) => {
  const chunk = encodeChunk(lines);
  t.deepEqual(chunk.digest, sha256(lines));
  t.deepEqual(chunkDigest(lines), sha256(lines));
  t.deepEqual(decodeBlob(chunk.blob), lines);
  t.deepEqual(decodeChunk(chunk.blob, chunk.digest), lines);
  t.deepEqual(decodeChunk(atOddOffset(chunk.blob), atOddOffset(chunk.digest)), lines);
});

test('encrypted chunk: digest = SHA-256(plaintext || PBKDF2-HMAC-SHA256(key, "_id_key", 10, 32))', (t) => {
  const chunk = encodeChunk(lines, { crypt });
  const expected = sha256(lines, idKeyOf(TEST_KEY));
  t.deepEqual(chunk.digest, expected);
  t.deepEqual(chunkDigest(lines, crypt), expected);
  t.notDeepEqual(chunk.digest, sha256(lines), 'keyed digest differs from the plain one');
  t.notDeepEqual(chunkDigest(lines, new CryptConfig(Buffer.alloc(32, 7))), expected, 'depends on the key');
  t.deepEqual(decodeChunk(chunk.blob, chunk.digest, { crypt }), lines);
});

test('the compression option reaches the blob', (t) => {
  const none = encodeChunk(lines, { compress: 'none' });
  const deflate = encodeChunk(lines, { compress: 'deflate', level: 9 });
  t.is(none.blob.byteLength, 12 + lines.byteLength);
  t.true(deflate.blob.byteLength < lines.byteLength / 4);
  t.deepEqual(none.digest, deflate.digest, 'the digest is of the plaintext, not the blob');
});

test('wrong expected digest is ERR_LR_DIGEST_MISMATCH naming the expected digest', (t) => {
  const chunk = encodeChunk(lines);
  const expected = Buffer.from(chunk.digest);
  expected[31] = expected[31]! ^ 0x01;
  const error = t.throws(() => decodeChunk(chunk.blob, expected), { code: 'ERR_LR_DIGEST_MISMATCH' });
  t.true(error?.message.includes(expected.toString('hex')));
  t.true(error?.message.includes(chunk.digest.toString('hex')), 'and the actual one');
});

test('a valid blob holding other data is ERR_LR_DIGEST_MISMATCH', (t) => {
  const digest = sha256(lines);
  const other = encodeBlob(Buffer.from('some other chunk'));
  t.throws(() => decodeChunk(other, digest), { code: 'ERR_LR_DIGEST_MISMATCH' });
});

test('an encrypted chunk checked against the unkeyed digest is ERR_LR_DIGEST_MISMATCH', (t) => {
  const chunk = encodeChunk(lines, { crypt });
  t.throws(() => decodeChunk(chunk.blob, sha256(lines), { crypt }), { code: 'ERR_LR_DIGEST_MISMATCH' });
});

test('blob errors keep their code and name the chunk', (t) => {
  const chunk = encodeChunk(lines);
  const bad = Buffer.from(chunk.blob);
  bad[20] = bad[20]! ^ 0x40;
  const hex = chunk.digest.toString('hex');
  const crc = t.throws(() => decodeChunk(bad, chunk.digest), { code: 'ERR_LR_BLOB_CRC_MISMATCH' });
  t.true(crc?.message.startsWith(`chunk ${hex}`));
  const enc = encodeChunk(lines, { crypt });
  t.throws(() => decodeChunk(enc.blob, enc.digest), { code: 'ERR_LR_KEY_REQUIRED' });
  t.throws(() => decodeChunk(enc.blob, enc.digest, { crypt: new CryptConfig(Buffer.alloc(32)) }), {
    code: 'ERR_LR_DECRYPT_FAILED',
  });
  t.throws(() => decodeChunk(chunk.blob, chunk.digest, { maxBytes: lines.byteLength - 1 }), {
    code: 'ERR_LR_BLOB_TOO_LARGE',
  });
  t.is(decodeChunk(chunk.blob, chunk.digest, { maxBytes: lines.byteLength }).byteLength, lines.byteLength);
});

/** `blob` with the byte at `at` flipped. */
function flippedAt(blob: Uint8Array, at: number): Buffer {
  const bad = Buffer.from(blob);
  bad[at]! ^= 0x10;
  return bad;
}

test('the CRC rule of the read path: a damaged uncompressed blob is refused by its digest; a damaged CRC field alone is left to verify', (t) => {
  const data = randomBytes(64 * 1024); // incompressible: stored uncompressed
  const { digest, blob } = encodeChunk(data);
  t.like(blobKind(blob), { compression: 'none', encrypted: false });
  const decoders = {
    decodeChunk: (b: Uint8Array) => decodeChunk(b, digest),
    decodeChunkWith: (b: Uint8Array) => decodeChunkWith(b, digest, {}, (plain) => Buffer.from(plain)),
  };
  for (const [name, decode] of Object.entries(decoders)) {
    // A flipped payload byte: the digest, which covers exactly the bytes the CRC covers, refuses it.
    for (const at of [12, blob.byteLength >> 1, blob.byteLength - 1]) {
      const err = t.throws(
        () => decode(flippedAt(blob, at)),
        { code: 'ERR_LR_DIGEST_MISMATCH' },
        `${name} ${at}`,
      );
      t.true(err?.message.startsWith(`chunk ${digest.toString('hex')}: `));
    }
    // A flipped CRC byte alone: the payload is intact, and the chunk reads as it was stored.
    t.true(decode(flippedAt(blob, 9)).equals(data), name);
  }
  // Verify and every read without a digest still check the CRC of every blob.
  for (const at of [9, 12, blob.byteLength - 1]) {
    t.throws(() => verifyBlobCrc(flippedAt(blob, at)), { code: 'ERR_LR_BLOB_CRC_MISMATCH' });
    t.throws(() => decodeBlob(flippedAt(blob, at)), { code: 'ERR_LR_BLOB_CRC_MISMATCH' });
  }
  // Compressed and encrypted blobs: the CRC is checked before the decompressor or the cipher reads a byte.
  for (const options of [{ compress: 'zstd' as const }, { compress: 'deflate' as const }, { crypt }]) {
    const chunk = encodeChunk(options.crypt === undefined ? lines : data, options);
    for (const at of [9, chunk.blob.byteLength - 1])
      t.throws(() => decodeChunk(flippedAt(chunk.blob, at), chunk.digest, options), {
        code: 'ERR_LR_BLOB_CRC_MISMATCH',
      });
  }
});

test('decodeChunkWith hands over the verified plaintext of every compression; decodeChunk agrees', (t) => {
  for (const compress of ['zstd', 'deflate', 'none'] as const) {
    for (const c of [undefined, crypt]) {
      const { digest, blob } = encodeChunk(lines, { compress, crypt: c });
      const seen = decodeChunkWith(blob, digest, { crypt: c }, (plain) => Buffer.from(plain));
      t.true(seen.equals(lines), `${compress}${c === undefined ? '' : ', encrypted'}`);
      t.true(decodeChunk(blob, digest, { crypt: c }).equals(seen));
    }
  }
});

test('decodeChunkWith calls nothing before the digest matched, and passes errors of its callback unchanged', (t) => {
  const { digest, blob } = encodeChunk(lines);
  let called = false;
  const wrong = Buffer.from(digest);
  wrong[0]! ^= 1;
  t.throws(
    () =>
      decodeChunkWith(blob, wrong, {}, () => {
        called = true;
      }),
    { code: 'ERR_LR_DIGEST_MISMATCH' },
  );
  t.false(called);
  const failure = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  const thrown = t.throws(() =>
    decodeChunkWith(blob, digest, {}, () => {
      throw failure;
    }),
  );
  t.is(thrown, failure);
  t.is(thrown?.message, 'no space left on device', 'not renamed after the chunk');
  t.throws(() => decodeChunkWith(blob.subarray(0, blob.length - 1), digest, {}, () => undefined), {
    code: 'ERR_LR_BLOB_CRC_MISMATCH',
    message: new RegExp(`^chunk ${digest.toString('hex')}: `),
  });
});

test('CryptConfig: keys of the wrong length are ERR_LR_KEY_INVALID; exportKey returns a copy', (t) => {
  t.is(KEY_BYTES, 32);
  for (const length of [0, 16, 31, 33]) {
    t.throws(() => new CryptConfig(Buffer.alloc(length)), { code: 'ERR_LR_KEY_INVALID' });
  }
  const exported = crypt.exportKey();
  t.deepEqual(exported, TEST_KEY);
  exported.fill(0);
  t.deepEqual(crypt.exportKey(), TEST_KEY);
  const generated = CryptConfig.generate();
  t.is(generated.exportKey().byteLength, 32);
  t.notDeepEqual(generated.exportKey(), CryptConfig.generate().exportKey());
});

test('property: decodeChunk(encodeChunk(x)) = x for any bytes, compression, key', (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 8192 }),
      fc.constantFrom('none' as const, 'deflate' as const),
      fc.boolean(),
      (data, compress, encrypted) => {
        const options = encrypted ? { compress, crypt } : { compress };
        const chunk = encodeChunk(data, options);
        const expected = encrypted ? sha256(data, idKeyOf(TEST_KEY)) : sha256(data);
        return chunk.digest.equals(expected) && decodeChunk(chunk.blob, expected, options).equals(data);
      },
    ),
    { numRuns: 100 },
  );
  t.pass();
});

// A zstd frame carries no content checksum, so a decoder may turn damaged compressed bytes
// into other plaintext without an error (zstd-napi does for this damage): with the CRC made
// to match, only the digest check stands between them and the reader.
test('a damaged zstd payload under a matching CRC never decodes: decompress error or ERR_LR_DIGEST_MISMATCH', (t) => {
  const chunk = encodeChunk(lines);
  t.is(blobKind(chunk.blob).compression, 'zstd');
  const bad = Buffer.from(chunk.blob);
  bad.fill(0x55, 40, Math.min(bad.byteLength - 8, 240));
  bad.writeUInt32LE(zlib.crc32(bad.subarray(12)), 8);
  t.is(verifyBlobCrc(bad).compression, 'zstd', 'the CRC matches the damaged payload');
  const error = t.throws(() => decodeChunk(bad, chunk.digest));
  t.true(
    ['ERR_LR_DIGEST_MISMATCH', 'ERR_LR_DECOMPRESS_FAILED'].includes((error as { code?: string }).code ?? ''),
  );
});

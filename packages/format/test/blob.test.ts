import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import test from 'ava';
import fc from 'fast-check';
import {
  blobKind,
  CryptConfig,
  canEncodeZstd,
  decodeBlob,
  encodeBlob,
  MAGIC,
  MAX_BLOB_BYTES,
  verifyBlobCrc,
} from '../src/index.js';
import { BLOB_HEADER_BYTES, ENCRYPTED_BLOB_HEADER_BYTES, MAGIC_SOURCE_STRINGS } from '../src/internal.js';
import {
  assembleBlob,
  assembleEncryptedBlob,
  atOddOffset,
  crc32,
  fixtureLines,
  readFixture,
  TEST_KEY,
} from './helpers.js';

// The decimal table of formats.md, copied literally.
const PBS_UNCOMPRESSED = [66, 171, 56, 7, 190, 131, 112, 161];
const PBS_ZSTD = [49, 185, 88, 66, 111, 182, 163, 127];
const PBS_ENCRYPTED = [123, 103, 133, 190, 34, 45, 76, 240];
const PBS_ENCRYPTED_ZSTD = [230, 89, 27, 191, 11, 191, 216, 11];
const PBS_FIXED_INDEX = [47, 127, 65, 237, 145, 253, 15, 205];
const PBS_DYNAMIC_INDEX = [28, 145, 78, 165, 25, 186, 179, 205];

// The strings of our DEFLATE magics as docs/formats.md documents them; SHA-256 prefixes
// computed with Python's hashlib.
const DEFLATE_STRING = 'liverestore deflate compressed blob v1';
const ENCRYPTED_DEFLATE_STRING = 'liverestore deflate compressed encrypted blob v1';
const LR_DEFLATE = [3, 62, 24, 130, 180, 106, 244, 253];
const LR_ENCRYPTED_DEFLATE = [17, 8, 124, 186, 3, 253, 122, 155];

function sha256Prefix(text: string): number[] {
  return [...createHash('sha256').update(text, 'utf8').digest().subarray(0, 8)];
}

const MiB = 1024 * 1024;
const crypt = new CryptConfig(TEST_KEY);
const otherCrypt = new CryptConfig(Buffer.alloc(32, 0x5a));
const lines = fixtureLines();
const linesZst = readFixture('lines.txt.zst');

function magicOf(blob: Uint8Array): number[] {
  return [...blob.subarray(0, 8)];
}

function flipped(blob: Uint8Array, at: number): Buffer {
  const copy = Buffer.from(blob);
  copy[at] = copy[at]! ^ 0x01;
  return copy;
}

function decipher(blob: Buffer, key: Uint8Array): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, blob.subarray(12, 28), { authTagLength: 16 });
  d.setAuthTag(blob.subarray(28, 44));
  return Buffer.concat([d.update(blob.subarray(44)), d.final()]);
}

test('test helpers: CRC-32 check value and zstd fixture plaintext', (t) => {
  t.is(crc32(Buffer.from('123456789')), 0xcbf43926);
  t.is(
    createHash('sha256').update(lines).digest('hex'),
    '0a657a8bdaaa252997c1eb3b6e2b94be28430a242858aed4ef86b8dcbbc4bc0b',
  );
  t.deepEqual([...linesZst.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], 'fixture is a zstd frame');
});

test('magic numbers equal the decimal table of formats.md', (t) => {
  t.deepEqual([...MAGIC.uncompressedBlob], PBS_UNCOMPRESSED);
  t.deepEqual([...MAGIC.zstdBlob], PBS_ZSTD);
  t.deepEqual([...MAGIC.encryptedBlob], PBS_ENCRYPTED);
  t.deepEqual([...MAGIC.encryptedZstdBlob], PBS_ENCRYPTED_ZSTD);
  t.deepEqual([...MAGIC.fixedIndex], PBS_FIXED_INDEX);
  t.deepEqual([...MAGIC.dynamicIndex], PBS_DYNAMIC_INDEX);
});

test('DEFLATE magics are the first 8 bytes of SHA-256 of the documented strings', (t) => {
  t.is(MAGIC_SOURCE_STRINGS.deflateBlob, DEFLATE_STRING);
  t.is(MAGIC_SOURCE_STRINGS.encryptedDeflateBlob, ENCRYPTED_DEFLATE_STRING);
  t.deepEqual(sha256Prefix(DEFLATE_STRING), LR_DEFLATE);
  t.deepEqual(sha256Prefix(ENCRYPTED_DEFLATE_STRING), LR_ENCRYPTED_DEFLATE);
  t.deepEqual([...MAGIC.deflateBlob], LR_DEFLATE);
  t.deepEqual([...MAGIC.encryptedDeflateBlob], LR_ENCRYPTED_DEFLATE);
});

test('the PBS magics follow the same rule (SHA-256 of the PBS strings)', (t) => {
  t.deepEqual(sha256Prefix('Proxmox Backup uncompressed blob v1.0'), PBS_UNCOMPRESSED);
  t.deepEqual(sha256Prefix('Proxmox Backup zstd compressed blob v1.0'), PBS_ZSTD);
  t.deepEqual(sha256Prefix('Proxmox Backup encrypted blob v1.0'), PBS_ENCRYPTED);
  t.deepEqual(sha256Prefix('Proxmox Backup zstd compressed encrypted blob v1.0'), PBS_ENCRYPTED_ZSTD);
  t.deepEqual(sha256Prefix('Proxmox Backup fixed sized chunk index v1.0'), PBS_FIXED_INDEX);
  t.deepEqual(sha256Prefix('Proxmox Backup dynamic sized chunk index v1.0'), PBS_DYNAMIC_INDEX);
});

test('all eight magics are distinct (no PBS magic reused)', (t) => {
  const all = Object.values(MAGIC).map((m) => Buffer.from(m).toString('hex'));
  t.is(all.length, 8);
  t.is(new Set(all).size, 8);
});

test('header sizes: 12 bytes plain, 44 bytes encrypted', (t) => {
  t.is(BLOB_HEADER_BYTES, 12);
  t.is(ENCRYPTED_BLOB_HEADER_BYTES, 44);
  t.is(MAX_BLOB_BYTES, 128 * MiB);
});

// ---- encode: layout checked byte by byte, payload decoded independently ----

test('encode none: magic | crc32(payload) | payload verbatim', (t) => {
  const blob = encodeBlob(lines, { compress: 'none' });
  t.deepEqual(magicOf(blob), PBS_UNCOMPRESSED);
  t.is(blob.byteLength, 12 + lines.byteLength);
  t.is(blob.readUInt32LE(8), crc32(blob.subarray(12)));
  t.deepEqual(blob.subarray(12), lines);
  t.deepEqual(blobKind(blob), { compression: 'none', encrypted: false });
  t.deepEqual(decodeBlob(blob), lines);
});

for (const level of [1, 6, 9]) {
  test(`encode deflate level ${level}: raw DEFLATE payload that node:zlib inflates`, (t) => {
    const blob = encodeBlob(lines, { compress: 'deflate', level });
    t.deepEqual(magicOf(blob), LR_DEFLATE);
    t.true(blob.byteLength < lines.byteLength / 4, 'the text compresses well');
    t.is(blob.readUInt32LE(8), crc32(blob.subarray(12)));
    t.deepEqual(zlib.inflateRawSync(blob.subarray(12)), lines);
    t.deepEqual(blobKind(blob), { compression: 'deflate', encrypted: false });
    t.deepEqual(decodeBlob(blob), lines);
  });
}

test('zstd (PBS magic) is the default compression, plain and encrypted', (t) => {
  t.deepEqual(magicOf(encodeBlob(lines)), PBS_ZSTD);
  t.deepEqual(magicOf(encodeBlob(lines, { crypt })), PBS_ENCRYPTED_ZSTD);
});

test('encode encrypted: magic | crc32(ciphertext) | iv[16] | tag[16] | ciphertext, AES-256-GCM', (t) => {
  const blob = encodeBlob(lines, { compress: 'none', crypt });
  t.deepEqual(magicOf(blob), PBS_ENCRYPTED);
  t.is(blob.byteLength, 44 + lines.byteLength, 'GCM ciphertext is as long as the plaintext');
  t.is(blob.readUInt32LE(8), crc32(blob.subarray(44)), 'CRC covers the ciphertext only');
  t.notDeepEqual(blob.subarray(44), lines);
  t.deepEqual(decipher(blob, TEST_KEY), lines);
  t.deepEqual(blobKind(blob), { compression: 'none', encrypted: true });
  t.deepEqual(decodeBlob(blob, { crypt }), lines);
});

test('encode encrypted + deflate: compressed first, then encrypted', (t) => {
  const blob = encodeBlob(lines, { compress: 'deflate', crypt });
  t.deepEqual(magicOf(blob), LR_ENCRYPTED_DEFLATE);
  t.is(blob.readUInt32LE(8), crc32(blob.subarray(44)));
  t.true(blob.byteLength < 44 + lines.byteLength / 4);
  t.deepEqual(zlib.inflateRawSync(decipher(blob, TEST_KEY)), lines);
  t.deepEqual(blobKind(blob), { compression: 'deflate', encrypted: true });
  t.deepEqual(decodeBlob(blob, { crypt }), lines);
});

test('every encryption uses a fresh random IV', (t) => {
  const a = encodeBlob(lines, { crypt });
  const b = encodeBlob(lines, { crypt });
  t.notDeepEqual(a.subarray(12, 28), b.subarray(12, 28));
  t.notDeepEqual(a.subarray(44), b.subarray(44));
  t.deepEqual(decodeBlob(a, { crypt }), decodeBlob(b, { crypt }));
});

test('compression is dropped when it does not shrink: random data gets the uncompressed magic', (t) => {
  const random = randomBytes(64 * 1024);
  const plain = encodeBlob(random, { compress: 'deflate', level: 9 });
  t.deepEqual(magicOf(plain), PBS_UNCOMPRESSED);
  t.deepEqual(plain.subarray(12), random);
  const enc = encodeBlob(random, { compress: 'deflate', crypt });
  t.deepEqual(magicOf(enc), PBS_ENCRYPTED);
  t.deepEqual(decipher(enc, TEST_KEY), random);
});

test('empty data round-trips (as an uncompressed blob)', (t) => {
  const blob = encodeBlob(Buffer.alloc(0));
  t.deepEqual(magicOf(blob), PBS_UNCOMPRESSED);
  t.is(blob.byteLength, 12);
  t.is(decodeBlob(blob).byteLength, 0);
  t.is(decodeBlob(encodeBlob(new Uint8Array(0), { crypt }), { crypt }).byteLength, 0);
});

test(`zstd encoding works on this Node.js (${process.version}): round trip, plain and encrypted`, (t) => {
  t.true(canEncodeZstd());
  const blob = encodeBlob(lines, { compress: 'zstd' });
  t.deepEqual(magicOf(blob), PBS_ZSTD);
  t.true(blob.byteLength < lines.byteLength / 4, 'the text compresses well');
  t.is(blob.readUInt32LE(8), crc32(blob.subarray(12)));
  t.deepEqual([...blob.subarray(12, 16)], [0x28, 0xb5, 0x2f, 0xfd], 'the payload is a zstd frame');
  t.deepEqual(decodeBlob(blob), lines);
  const enc = encodeBlob(lines, { compress: 'zstd', crypt });
  t.deepEqual(magicOf(enc), PBS_ENCRYPTED_ZSTD);
  t.deepEqual(decodeBlob(enc, { crypt }), lines);
});

test('zstd is dropped when it does not shrink: random data gets the uncompressed magic', (t) => {
  const random = randomBytes(64 * 1024);
  t.deepEqual(magicOf(encodeBlob(random)), PBS_UNCOMPRESSED);
  t.deepEqual(magicOf(encodeBlob(random, { crypt })), PBS_ENCRYPTED);
});

test('encode rejects a DEFLATE level outside 1…9', (t) => {
  for (const level of [0, 10, 1.5, Number.NaN]) {
    t.throws(() => encodeBlob(lines, { level }), { instanceOf: RangeError }, `level ${level}`);
  }
});

test('property: encode/decode round trip for any bytes, compression and key', (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4096 }),
      fc.constantFrom('none' as const, 'deflate' as const, 'zstd' as const),
      fc.boolean(),
      (data, compress, encrypted) => {
        const options = encrypted ? { compress, crypt } : { compress };
        const blob = encodeBlob(data, options);
        const back = decodeBlob(atOddOffset(blob), encrypted ? { crypt } : {});
        return Buffer.from(data).equals(back);
      },
    ),
    { numRuns: 150 },
  );
  t.pass();
});

// ---- decode of blobs assembled by hand (independent construction per formats.md) ----

interface Assembled {
  readonly name: string;
  readonly blob: Buffer;
  readonly compression: 'none' | 'deflate' | 'zstd';
  readonly encrypted: boolean;
}

function assembledBlobs(): Assembled[] {
  const deflated = zlib.deflateRawSync(lines);
  return [
    { name: 'none', blob: assembleBlob(PBS_UNCOMPRESSED, lines), compression: 'none', encrypted: false },
    { name: 'deflate', blob: assembleBlob(LR_DEFLATE, deflated), compression: 'deflate', encrypted: false },
    { name: 'zstd', blob: assembleBlob(PBS_ZSTD, linesZst), compression: 'zstd', encrypted: false },
    {
      name: 'encrypted',
      blob: assembleEncryptedBlob(PBS_ENCRYPTED, TEST_KEY, lines),
      compression: 'none',
      encrypted: true,
    },
    {
      name: 'encrypted+deflate',
      blob: assembleEncryptedBlob(LR_ENCRYPTED_DEFLATE, TEST_KEY, deflated),
      compression: 'deflate',
      encrypted: true,
    },
    {
      name: 'encrypted+zstd',
      blob: assembleEncryptedBlob(PBS_ENCRYPTED_ZSTD, TEST_KEY, linesZst),
      compression: 'zstd',
      encrypted: true,
    },
  ];
}

for (const { name, blob, compression, encrypted } of assembledBlobs()) {
  const options = encrypted ? { crypt } : {};
  const payloadStart = encrypted ? 44 : 12;

  test(`decode hand-assembled ${name} blob`, (t) => {
    t.deepEqual(blobKind(blob), { compression, encrypted });
    t.deepEqual(verifyBlobCrc(blob), { compression, encrypted });
    t.deepEqual(decodeBlob(blob, options), lines);
    t.deepEqual(decodeBlob(atOddOffset(blob), options), lines, 'a Uint8Array view at an offset');
  });

  test(`${name}: maxBytes is inclusive (exact size decodes, one less is ERR_LR_BLOB_TOO_LARGE)`, (t) => {
    t.is(decodeBlob(blob, { ...options, maxBytes: lines.byteLength }).byteLength, lines.byteLength);
    t.throws(() => decodeBlob(blob, { ...options, maxBytes: lines.byteLength - 1 }), {
      code: 'ERR_LR_BLOB_TOO_LARGE',
    });
  });

  test(`${name}: a flipped payload byte or CRC byte is ERR_LR_BLOB_CRC_MISMATCH`, (t) => {
    for (const at of [payloadStart, blob.byteLength - 1, (payloadStart + blob.byteLength) >> 1, 8, 11]) {
      const bad = flipped(blob, at);
      t.throws(() => verifyBlobCrc(bad), { code: 'ERR_LR_BLOB_CRC_MISMATCH' }, `byte ${at}`);
      t.throws(() => decodeBlob(bad, options), { code: 'ERR_LR_BLOB_CRC_MISMATCH' }, `byte ${at}`);
    }
  });

  if (encrypted) {
    test(`${name}: no key is ERR_LR_KEY_REQUIRED, a wrong key ERR_LR_DECRYPT_FAILED`, (t) => {
      t.throws(() => decodeBlob(blob), { code: 'ERR_LR_KEY_REQUIRED' });
      t.throws(() => decodeBlob(blob, { crypt: otherCrypt }), { code: 'ERR_LR_DECRYPT_FAILED' });
    });

    test(`${name}: IV and tag are outside the CRC; tampering them fails authentication`, (t) => {
      for (const at of [12, 27, 28, 43]) {
        const bad = flipped(blob, at);
        t.notThrows(() => verifyBlobCrc(bad), `byte ${at} is not covered by the CRC`);
        t.throws(() => decodeBlob(bad, { crypt }), { code: 'ERR_LR_DECRYPT_FAILED' }, `byte ${at}`);
      }
    });
  }
}

// ---- malformed headers ----

test('a blob shorter than its header is ERR_LR_BLOB_TRUNCATED', (t) => {
  for (const length of [0, 1, 8, 11]) {
    const blob = Buffer.from(PBS_UNCOMPRESSED.concat([0, 0, 0, 0])).subarray(0, length);
    t.throws(() => decodeBlob(blob), { code: 'ERR_LR_BLOB_TRUNCATED' }, `length ${length}`);
  }
  t.is(decodeBlob(assembleBlob(PBS_UNCOMPRESSED, new Uint8Array(0))).byteLength, 0, '12 bytes suffice');
});

test('an encrypted blob shorter than 44 bytes is ERR_LR_BLOB_TRUNCATED', (t) => {
  const full = assembleEncryptedBlob(PBS_ENCRYPTED, TEST_KEY, new Uint8Array(0));
  t.is(full.byteLength, 44);
  t.deepEqual(decodeBlob(full, { crypt }), Buffer.alloc(0));
  for (const length of [12, 28, 43]) {
    t.throws(() => decodeBlob(full.subarray(0, length), { crypt }), { code: 'ERR_LR_BLOB_TRUNCATED' });
  }
});

test('an unknown magic is ERR_LR_BAD_MAGIC (index magics are not blobs)', (t) => {
  for (const magic of [[0, 0, 0, 0, 0, 0, 0, 0], PBS_FIXED_INDEX, PBS_DYNAMIC_INDEX]) {
    t.throws(() => decodeBlob(assembleBlob(magic, lines)), { code: 'ERR_LR_BAD_MAGIC' });
  }
  const almost = [...PBS_UNCOMPRESSED];
  almost[7] = almost[7]! ^ 0x80;
  t.throws(() => blobKind(assembleBlob(almost, lines)), { code: 'ERR_LR_BAD_MAGIC' });
});

// ---- decompression bombs and corrupt compressed payloads ----

test('DEFLATE bomb: 64 MiB of zeros with maxBytes 1 MiB is ERR_LR_BLOB_TOO_LARGE', (t) => {
  const bomb = assembleBlob(LR_DEFLATE, zlib.deflateRawSync(Buffer.alloc(64 * MiB), { level: 9 }));
  t.true(bomb.byteLength < 128 * 1024);
  const error = t.throws(() => decodeBlob(bomb, { maxBytes: MiB }), { code: 'ERR_LR_BLOB_TOO_LARGE' });
  t.regex(error?.message ?? '', /1048576/);
  const enc = assembleEncryptedBlob(LR_ENCRYPTED_DEFLATE, TEST_KEY, bomb.subarray(12));
  t.throws(() => decodeBlob(enc, { crypt, maxBytes: MiB }), { code: 'ERR_LR_BLOB_TOO_LARGE' });
});

test('zstd bomb: 64 MiB of zeros with maxBytes 1 MiB is ERR_LR_BLOB_TOO_LARGE', (t) => {
  const frame = readFixture('zeros-64mib.zst');
  const bomb = assembleBlob(PBS_ZSTD, frame);
  t.throws(() => decodeBlob(bomb, { maxBytes: MiB }), { code: 'ERR_LR_BLOB_TOO_LARGE' });
  const enc = assembleEncryptedBlob(PBS_ENCRYPTED_ZSTD, TEST_KEY, frame);
  t.throws(() => decodeBlob(enc, { crypt, maxBytes: MiB }), { code: 'ERR_LR_BLOB_TOO_LARGE' });
  // The fixture really is 64 MiB of zeros: under the default limit it decodes.
  const all = decodeBlob(bomb);
  t.is(all.byteLength, 64 * MiB);
  t.is(all.indexOf(1), -1);
});

test('uncompressed blobs obey maxBytes too', (t) => {
  const blob = assembleBlob(PBS_UNCOMPRESSED, Buffer.alloc(2 * MiB));
  t.throws(() => decodeBlob(blob, { maxBytes: MiB }), { code: 'ERR_LR_BLOB_TOO_LARGE' });
});

test('corrupt DEFLATE payload with a correct CRC is ERR_LR_DECOMPRESS_FAILED', (t) => {
  const deflated = zlib.deflateRawSync(lines);
  const cases: Array<[string, Uint8Array]> = [
    ['reserved block type', Buffer.from([0xff, 0xff, 0xff, 0xff])],
    ['truncated stream', deflated.subarray(0, deflated.byteLength >> 1)],
  ];
  for (const [what, payload] of cases) {
    t.throws(() => decodeBlob(assembleBlob(LR_DEFLATE, payload)), { code: 'ERR_LR_DECOMPRESS_FAILED' }, what);
    t.throws(
      () => decodeBlob(assembleEncryptedBlob(LR_ENCRYPTED_DEFLATE, TEST_KEY, payload), { crypt }),
      { code: 'ERR_LR_DECOMPRESS_FAILED' },
      `encrypted, ${what}`,
    );
  }
});

test('corrupt zstd payload with a correct CRC is ERR_LR_DECOMPRESS_FAILED', (t) => {
  const badMagic = Buffer.from(linesZst);
  badMagic[0] = badMagic[0]! ^ 0xff;
  const reservedBit = Buffer.from(linesZst);
  reservedBit[4] = reservedBit[4]! | 0x08;
  const cases: Array<[string, Uint8Array]> = [
    ['bad frame magic', badMagic],
    ['reserved header bit', reservedBit],
    ['truncated frame', linesZst.subarray(0, linesZst.byteLength - 40)],
    ['garbage', Buffer.from('this is not zstd at all')],
  ];
  for (const [what, payload] of cases) {
    t.throws(() => decodeBlob(assembleBlob(PBS_ZSTD, payload)), { code: 'ERR_LR_DECOMPRESS_FAILED' }, what);
    t.throws(
      () => decodeBlob(assembleEncryptedBlob(PBS_ENCRYPTED_ZSTD, TEST_KEY, payload), { crypt }),
      { code: 'ERR_LR_DECOMPRESS_FAILED' },
      `encrypted, ${what}`,
    );
  }
});

// A streaming zstd decoder (node:zlib) allocates the window a frame header declares (up to
// ~2 GiB) before it produces a byte, so a declared window far above maxBytes is refused on
// every backend. Each frame below is ten bytes, declares a 64 MiB window and yields only
// 128 KiB; under maxBytes 1 MiB it is refused.
function hugeWindowFrame(): Buffer {
  const blockHeader = 1 | (1 << 1) | (128 * 1024 * 8); // last block, RLE, 128 KiB
  return Buffer.from([
    0x28,
    0xb5,
    0x2f,
    0xfd,
    0x00, // frame header: not single segment, no checksum, no content size
    16 << 3, // window descriptor: 2^(10+16) = 64 MiB
    blockHeader & 0xff,
    (blockHeader >> 8) & 0xff,
    (blockHeader >> 16) & 0xff,
    0x00, // the byte the RLE block repeats
  ]);
}

// A well-formed one-byte frame: single segment, 1-byte content size, one raw block "x".
const TINY_FRAME = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x09, 0x00, 0x00, 0x78]);

test('zstd test frames are well formed (the window tests below are not vacuous)', (t) => {
  t.deepEqual(decodeBlob(assembleBlob(PBS_ZSTD, TINY_FRAME)), Buffer.from('x'));
  t.deepEqual(decodeBlob(assembleBlob(PBS_ZSTD, hugeWindowFrame())), Buffer.alloc(128 * 1024));
});

test('zstd: a frame declaring a window far above maxBytes is refused', (t) => {
  t.throws(() => decodeBlob(assembleBlob(PBS_ZSTD, hugeWindowFrame()), { maxBytes: MiB }), {
    code: 'ERR_LR_BLOB_TOO_LARGE',
  });
});

test('zstd: a huge window in a second frame is refused too', (t) => {
  const payload = Buffer.concat([TINY_FRAME, hugeWindowFrame()]);
  t.throws(() => decodeBlob(assembleBlob(PBS_ZSTD, payload), { maxBytes: MiB }), {
    code: 'ERR_LR_BLOB_TOO_LARGE',
  });
});

import { createHash, createHmac } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import {
  BACKUP_TYPES,
  CryptConfig,
  canonicalJson,
  checkBlobAgainstManifest,
  checkIndexAgainstManifest,
  decodeBlob,
  decodeManifest,
  encodeBlob,
  encodeManifest,
  MANIFEST_BLOB_NAME,
  type Manifest,
  manifestFile,
  readIndex,
  writeDynamicIndex,
  writeFixedIndex,
} from '../src/index.js';
import { assembleBlob, idKeyOf, TEST_KEY } from './helpers.js';

const UNCOMPRESSED_MAGIC = [66, 171, 56, 7, 190, 131, 112, 161];
const crypt = new CryptConfig(TEST_KEY);
const FINGERPRINT = '0f:1e:2d:3c:4b:5a:69:78';

function sampleManifest(): Manifest {
  return {
    backupType: 'vm',
    backupId: '100',
    backupTime: 1623146298,
    files: [
      { filename: 'drive-scsi0.img.fidx', cryptMode: 'encrypt', size: 4194304, csum: 'ab'.repeat(32) },
      {
        filename: 'qemu-server.conf.blob',
        cryptMode: 'encrypt',
        size: 431,
        csum: '0123456789abcdef'.repeat(4),
      },
    ],
    unprotected: {},
  };
}

/** The raw JSON object inside a manifest blob. */
function rawJson(blob: Uint8Array): Record<string, unknown> {
  return JSON.parse(decodeBlob(blob).toString('utf8')) as Record<string, unknown>;
}

/** A manifest blob holding exactly `json` (an uncompressed blob, assembled by hand). */
function blobOf(json: unknown): Buffer {
  return assembleBlob(UNCOMPRESSED_MAGIC, Buffer.from(JSON.stringify(json), 'utf8'));
}

/** Independent canonical JSON: keys sorted by code unit, no white space. */
function referenceCanonical(value: unknown): string {
  if (Array.isArray(value)) return '[' + value.map(referenceCanonical).join(',') + ']';
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return (
      '{' +
      keys
        .map((k) => JSON.stringify(k) + ':' + referenceCanonical((value as Record<string, unknown>)[k]))
        .join(',') +
      '}'
    );
  }
  return JSON.stringify(value);
}

function referenceSignature(json: Record<string, unknown>, key: Uint8Array): string {
  const signed: Record<string, unknown> = { ...json };
  delete signed.unprotected;
  delete signed.signature;
  return createHmac('sha256', idKeyOf(key)).update(referenceCanonical(signed), 'utf8').digest('hex');
}

test('manifest blob name and backup types', (t) => {
  t.is(MANIFEST_BLOB_NAME, 'index.json.blob');
  t.deepEqual([...BACKUP_TYPES].sort(), ['ct', 'host', 'vm']);
});

test('encode → decode round trip without a key', (t) => {
  const manifest = sampleManifest();
  manifest.unprotected = { note: 'kept', nested: { a: [1, 2] } };
  const blob = encodeManifest(manifest);
  t.deepEqual([...blob.subarray(0, 8)], UNCOMPRESSED_MAGIC, 'an uncompressed, unencrypted blob');
  t.deepEqual(decodeManifest(blob), manifest);
  t.false('signature' in rawJson(blob));
});

test('on-disk JSON uses the PBS kebab-case keys', (t) => {
  const json = rawJson(encodeManifest(sampleManifest()));
  t.deepEqual(Object.keys(json).sort(), ['backup-id', 'backup-time', 'backup-type', 'files', 'unprotected']);
  t.is(json['backup-type'], 'vm');
  t.is(json['backup-id'], '100');
  t.is(json['backup-time'], 1623146298);
  t.deepEqual(json.unprotected, {});
  const files = json.files as Array<Record<string, unknown>>;
  t.is(files.length, 2);
  t.deepEqual(Object.keys(files[0]!).sort(), ['crypt-mode', 'csum', 'filename', 'size']);
  t.deepEqual(files[0], {
    filename: 'drive-scsi0.img.fidx',
    'crypt-mode': 'encrypt',
    size: 4194304,
    csum: 'ab'.repeat(32),
  });
});

test('decode reads a PBS-style manifest written by hand; crypt-mode defaults to none', (t) => {
  const blob = blobOf({
    'backup-type': 'ct',
    'backup-id': 'web',
    'backup-time': 1,
    files: [{ filename: 'root.pxar.didx', size: 10, csum: 'cd'.repeat(32) }],
    unprotected: { chunk_upload_stats: { count: 3 } },
  });
  t.deepEqual(decodeManifest(blob), {
    backupType: 'ct',
    backupId: 'web',
    backupTime: 1,
    files: [{ filename: 'root.pxar.didx', cryptMode: 'none', size: 10, csum: 'cd'.repeat(32) }],
    unprotected: { chunk_upload_stats: { count: 3 } },
  });
  const noUnprotected = blobOf({ 'backup-type': 'host', 'backup-id': 'h', 'backup-time': -1, files: [] });
  t.deepEqual(decodeManifest(noUnprotected).unprotected, {});
});

test('signature = hex HMAC-SHA256(id key, canonical JSON without unprotected and signature)', (t) => {
  const blob = encodeManifest(sampleManifest(), { crypt, fingerprint: FINGERPRINT });
  const json = rawJson(blob);
  t.is(typeof json.signature, 'string');
  t.is(json.signature, referenceSignature(json, TEST_KEY));
  // The same value computed with Python (hmac + json.dumps(sort_keys=True, separators=(',', ':'))).
  t.is(json.signature, '496d2f798192705a1b2f47ab46520d264d6df4dd2a1ea3ad5c12e8338dce595d');
  t.deepEqual(json.unprotected, { 'key-fingerprint': FINGERPRINT });
  const decoded = decodeManifest(blob, { crypt });
  t.is(decoded.signature, json.signature as string);
  t.deepEqual(decoded.unprotected, { 'key-fingerprint': FINGERPRINT });
  t.deepEqual(decoded.files, sampleManifest().files);
  t.is(decodeManifest(blob).signature, json.signature as string, 'readable without the key');
});

test('the signature ignores unprotected, so it may change freely', (t) => {
  const json = rawJson(encodeManifest(sampleManifest(), { crypt, fingerprint: FINGERPRINT }));
  json.unprotected = { 'key-fingerprint': FINGERPRINT, 'verify-state': { state: 'ok' } };
  t.notThrows(() => decodeManifest(blobOf(json), { crypt }));
});

test('a tampered signed manifest is ERR_LR_MANIFEST_SIGNATURE', (t) => {
  const json = rawJson(encodeManifest(sampleManifest(), { crypt }));
  const tamper: Array<[string, (j: Record<string, unknown>) => void]> = [
    [
      'backup-id',
      (j) => {
        j['backup-id'] = '101';
      },
    ],
    [
      'backup-time',
      (j) => {
        j['backup-time'] = 1623146299;
      },
    ],
    [
      'file size',
      (j) => {
        (j.files as Array<Record<string, unknown>>)[0]!.size = 1;
      },
    ],
    [
      'extra field',
      (j) => {
        j.comment = 'x';
      },
    ],
    [
      'signature',
      (j) => {
        j.signature = 'ff'.repeat(32);
      },
    ],
  ];
  for (const [what, change] of tamper) {
    const copy = structuredClone(json);
    change(copy);
    t.throws(() => decodeManifest(blobOf(copy), { crypt }), { code: 'ERR_LR_MANIFEST_SIGNATURE' }, what);
  }
  const otherKey = new CryptConfig(Buffer.alloc(32, 9));
  t.throws(() => decodeManifest(blobOf(json), { crypt: otherKey }), { code: 'ERR_LR_MANIFEST_SIGNATURE' });
  t.notThrows(() => decodeManifest(blobOf(json), { crypt }), 'the untampered copy verifies');
});

test('a null signature counts as no signature', (t) => {
  const json = rawJson(encodeManifest(sampleManifest()));
  json.signature = null;
  t.false('signature' in decodeManifest(blobOf(json)));
  t.throws(() => decodeManifest(blobOf(json), { crypt }), { code: 'ERR_LR_MANIFEST_UNSIGNED' });
});

test('an unsigned manifest of an encrypted backup is refused when a key is given', (t) => {
  const blob = encodeManifest(sampleManifest());
  t.throws(() => decodeManifest(blob, { crypt }), { code: 'ERR_LR_MANIFEST_UNSIGNED' });
  const plain = sampleManifest();
  for (const f of plain.files) f.cryptMode = 'none';
  t.notThrows(() => decodeManifest(encodeManifest(plain), { crypt }));
});

test('a manifest blob that is not JSON is ERR_LR_MANIFEST_INVALID', (t) => {
  const notJson = assembleBlob(UNCOMPRESSED_MAGIC, Buffer.from('{"backup-type": "vm", ', 'utf8'));
  t.throws(() => decodeManifest(notJson), { code: 'ERR_LR_MANIFEST_INVALID' });
  const corrupt = Buffer.from(encodeManifest(sampleManifest()));
  corrupt[20] = corrupt[20]! ^ 1;
  t.throws(() => decodeManifest(corrupt), { code: 'ERR_LR_BLOB_CRC_MISMATCH' }, 'blob errors pass through');
});

const invalidCases: Array<[string, (j: Record<string, unknown>) => unknown]> = [
  ['an array', () => []],
  ['null', () => null],
  ['a string', () => 'manifest'],
  [
    'missing backup-type',
    (j) => {
      delete j['backup-type'];
    },
  ],
  [
    'unknown backup-type',
    (j) => {
      j['backup-type'] = 'lxc';
    },
  ],
  [
    'missing backup-id',
    (j) => {
      delete j['backup-id'];
    },
  ],
  [
    'numeric backup-id',
    (j) => {
      j['backup-id'] = 100;
    },
  ],
  [
    'missing backup-time',
    (j) => {
      delete j['backup-time'];
    },
  ],
  [
    'fractional backup-time',
    (j) => {
      j['backup-time'] = 1.5;
    },
  ],
  [
    'string backup-time',
    (j) => {
      j['backup-time'] = '2021-06-08T09:58:18Z';
    },
  ],
  [
    'missing files',
    (j) => {
      delete j.files;
    },
  ],
  [
    'files not an array',
    (j) => {
      j.files = {};
    },
  ],
  [
    'file entry not an object',
    (j) => {
      j.files = ['drive-scsi0.img.fidx'];
    },
  ],
  [
    'missing filename',
    (j) => {
      delete file0(j).filename;
    },
  ],
  [
    'missing size',
    (j) => {
      delete file0(j).size;
    },
  ],
  [
    'negative size',
    (j) => {
      file0(j).size = -1;
    },
  ],
  [
    'fractional size',
    (j) => {
      file0(j).size = 1.5;
    },
  ],
  [
    'missing csum',
    (j) => {
      delete file0(j).csum;
    },
  ],
  [
    'upper-case csum',
    (j) => {
      file0(j).csum = 'AB'.repeat(32);
    },
  ],
  [
    'short csum',
    (j) => {
      file0(j).csum = 'ab'.repeat(31);
    },
  ],
  [
    'non-hex csum',
    (j) => {
      file0(j).csum = 'zz'.repeat(32);
    },
  ],
  [
    'unknown crypt-mode',
    (j) => {
      file0(j)['crypt-mode'] = 'aes';
    },
  ],
  [
    'non-string signature',
    (j) => {
      j.signature = 42;
    },
  ],
];

function file0(json: Record<string, unknown>): Record<string, unknown> {
  return (json.files as Array<Record<string, unknown>>)[0]!;
}

for (const [what, change] of invalidCases) {
  test(`invalid manifest (${what}) is ERR_LR_MANIFEST_INVALID`, (t) => {
    const json = rawJson(encodeManifest(sampleManifest()));
    const replaced = change(json);
    const blob = blobOf(replaced === undefined ? json : replaced);
    t.throws(() => decodeManifest(blob), { code: 'ERR_LR_MANIFEST_INVALID' });
  });
}

test('the invalid-manifest cases start from a valid manifest', (t) => {
  t.notThrows(() => decodeManifest(blobOf(rawJson(encodeManifest(sampleManifest())))));
});

test('manifestFile finds an archive or throws ERR_LR_ARCHIVE_NOT_FOUND listing what exists', (t) => {
  const manifest = sampleManifest();
  t.is(manifestFile(manifest, 'qemu-server.conf.blob').size, 431);
  t.is(manifestFile(manifest, 'drive-scsi0.img.fidx').csum, 'ab'.repeat(32));
  const error = t.throws(() => manifestFile(manifest, 'drive-scsi1.img.fidx'), {
    code: 'ERR_LR_ARCHIVE_NOT_FOUND',
  });
  t.true(error?.message.includes('drive-scsi1.img.fidx'));
  t.true(error?.message.includes('drive-scsi0.img.fidx, qemu-server.conf.blob'));
});

test('checkIndexAgainstManifest: size and index_csum must both match', (t) => {
  const digests = Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2)]);
  const fixed = readIndex(writeFixedIndex({ sizeBytes: 100_000, chunkSizeBytes: 65536, digests }));
  const csum = createHash('sha256').update(digests).digest('hex');
  const entry = { filename: 'drive-scsi0.img.fidx', cryptMode: 'none' as const, size: 100_000, csum };
  t.notThrows(() => checkIndexAgainstManifest(entry, fixed));
  t.throws(() => checkIndexAgainstManifest({ ...entry, size: 100_001 }, fixed), {
    code: 'ERR_LR_MANIFEST_MISMATCH',
  });
  t.throws(() => checkIndexAgainstManifest({ ...entry, csum: 'ab'.repeat(32) }, fixed), {
    code: 'ERR_LR_MANIFEST_MISMATCH',
  });
  const dynamic = readIndex(
    writeDynamicIndex({ entries: [{ endOffset: 100_000, digest: Buffer.alloc(32, 1) }] }),
  );
  t.throws(() => checkIndexAgainstManifest(entry, dynamic), { code: 'ERR_LR_MANIFEST_MISMATCH' });
  const didxCsum = dynamic.indexCsum.toString('hex');
  t.notThrows(() => checkIndexAgainstManifest({ ...entry, csum: didxCsum }, dynamic));
});

test('checkBlobAgainstManifest: size and SHA-256 of the raw file', (t) => {
  const raw = encodeBlob(Buffer.from('name: vm100\n'));
  const csum = createHash('sha256').update(raw).digest('hex');
  const entry = { filename: 'qemu-server.conf.blob', cryptMode: 'none' as const, size: raw.byteLength, csum };
  t.notThrows(() => checkBlobAgainstManifest(entry, raw));
  const changed = Buffer.from(raw);
  changed[13] = changed[13]! ^ 1;
  t.throws(() => checkBlobAgainstManifest(entry, changed), { code: 'ERR_LR_MANIFEST_MISMATCH' });
  t.throws(() => checkBlobAgainstManifest({ ...entry, size: raw.byteLength + 1 }, raw), {
    code: 'ERR_LR_MANIFEST_MISMATCH',
  });
});

// ---- canonical JSON ----

test('canonicalJson sorts keys at every level and has no white space', (t) => {
  t.is(
    canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 'two words' }], c: 'x' }, 'a-b': true, A: false }),
    '{"A":false,"a":{"c":"x","d":[3,{"y":"two words","z":1}]},"a-b":true,"b":1}',
  );
  t.is(canonicalJson([]), '[]');
  t.is(canonicalJson({}), '{}');
  t.is(canonicalJson('é"\n'), '"é\\"\\n"');
});

/** Strips string literals, so what remains must contain no white space. */
function outsideStrings(json: string): string {
  return json.replace(/"(?:[^"\\]|\\.)*"/g, '""');
}

test('property: canonicalJson = reference model, parses back, no white space outside strings', (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      const canonical = canonicalJson(value);
      if (canonical !== referenceCanonical(value)) throw new Error(`differs from the model: ${canonical}`);
      if (/\s/.test(outsideStrings(canonical))) throw new Error(`white space in ${canonical}`);
      const back = JSON.parse(canonical) as unknown;
      if (canonicalJson(back) !== canonical) throw new Error('not stable under a parse round trip');
    }),
    { numRuns: 200 },
  );
  t.pass();
});

test('property: key order of the input does not matter', (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), (dict) => {
      const reversed = Object.fromEntries(Object.entries(dict).reverse());
      return canonicalJson(dict) === canonicalJson(reversed);
    }),
    { numRuns: 100 },
  );
  t.pass();
});

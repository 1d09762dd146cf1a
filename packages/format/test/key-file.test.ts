import test from 'ava';
import { CryptConfig, decodeKeyFile, encodeKeyFile } from '../src/index.js';
import { TEST_KEY } from './helpers.js';

const crypt = new CryptConfig(TEST_KEY);
// Python: ':'.join('%02x' % b for b in sha256(sha256(b'Proxmox Backup Encryption Key Fingerprint') + id_key))
const FINGERPRINT =
  '0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b';

test('encodeKeyFile writes an unprotected PBS key file', (t) => {
  const text = encodeKeyFile(crypt, new Date('2021-06-08T09:58:18.123Z'));
  const json = JSON.parse(text) as Record<string, unknown>;
  t.deepEqual(Object.keys(json).sort(), ['created', 'data', 'fingerprint', 'kdf', 'modified']);
  t.is(json.kdf, null);
  t.is(json.created, '2021-06-08T09:58:18+00:00');
  t.is(json.modified, '2021-06-08T09:58:18+00:00');
  t.is(json.data, TEST_KEY.toString('base64'));
  t.is(json.fingerprint, FINGERPRINT);
  t.deepEqual(decodeKeyFile(text).exportKey(), TEST_KEY);
});

test('decodeKeyFile reads a PBS key file without fingerprint and with extra fields', (t) => {
  const text = JSON.stringify({
    kdf: null,
    created: '2021-06-08T11:58:18+02:00',
    modified: '2021-06-08T11:58:18+02:00',
    data: TEST_KEY.toString('base64'),
    hint: 'office',
  });
  t.is(decodeKeyFile(text).fingerprint(), FINGERPRINT);
});

test('a fingerprint that does not match the key is ERR_LR_KEYFILE_INVALID', (t) => {
  const json = JSON.parse(encodeKeyFile(crypt)) as Record<string, unknown>;
  json.fingerprint = FINGERPRINT.replace(/^0e/, '0f');
  t.throws(() => decodeKeyFile(JSON.stringify(json)), { code: 'ERR_LR_KEYFILE_INVALID' });
});

test('a passphrase-protected key file is ERR_LR_KEYFILE_PASSPHRASE', (t) => {
  const json = JSON.parse(encodeKeyFile(crypt)) as Record<string, unknown>;
  json.kdf = { Scrypt: { n: 65536, r: 8, p: 1, salt: 'AAAA' } };
  t.throws(() => decodeKeyFile(JSON.stringify(json)), { code: 'ERR_LR_KEYFILE_PASSPHRASE' });
});

test('malformed key files are ERR_LR_KEYFILE_INVALID', (t) => {
  const valid = JSON.parse(encodeKeyFile(crypt)) as Record<string, unknown>;
  const cases: Array<[string, string]> = [
    ['not JSON', '{"kdf": null,'],
    ['null', 'null'],
    ['a number', '42'],
    ['no data', JSON.stringify({ ...valid, data: undefined })],
    ['numeric data', JSON.stringify({ ...valid, data: 42 })],
    ['a 16-byte key', JSON.stringify({ ...valid, data: TEST_KEY.subarray(0, 16).toString('base64') })],
  ];
  for (const [what, text] of cases) {
    t.throws(() => decodeKeyFile(text), { code: 'ERR_LR_KEYFILE_INVALID' }, what);
  }
  t.notThrows(() => decodeKeyFile(JSON.stringify(valid)), 'the cases start from a valid file');
});

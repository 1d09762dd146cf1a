/*
 * `liverestore key` and encrypted backups: PBS key files (checked against an independent
 * computation of the PBS fingerprint), refusing to overwrite a key, bad key files, and
 * what verify does with and without the key.
 */
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import {
  assertCliError,
  backupArgv,
  chunkFiles,
  cli,
  flipByte,
  KiB,
  MiB,
  runIn,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';

/** PBS `crypt_config.rs` FINGERPRINT_INPUT: SHA-256("Proxmox Backup Encryption Key Fingerprint"). */
const FINGERPRINT_INPUT = Buffer.from([
  110, 208, 239, 119, 71, 31, 255, 77, 85, 199, 168, 254, 74, 157, 182, 33, 97, 64, 127, 19, 76, 114, 93, 223,
  48, 153, 45, 37, 236, 69, 237, 38,
]);

/** The PBS fingerprint of a raw key: SHA-256(FINGERPRINT_INPUT ‖ id_key), id_key = PBKDF2(key, "_id_key", 10). */
function pbsFingerprint(key: Buffer): string {
  const idKey = pbkdf2Sync(key, '_id_key', 10, 32, 'sha256');
  const digest = createHash('sha256').update(FINGERPRINT_INPUT).update(idKey).digest();
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const FINGERPRINT = /^(?:[0-9a-f]{2}:){31}[0-9a-f]{2}$/;

test('the PBS fingerprint input constant is SHA-256 of its documented string', (t) => {
  t.deepEqual(
    createHash('sha256').update('Proxmox Backup Encryption Key Fingerprint').digest(),
    FINGERPRINT_INPUT,
  );
});

test('key create writes a 0600 PBS key file, refuses to overwrite it; key show prints the same fingerprint', async (t) => {
  const dir = await testDir(t);
  const keyfile = join(dir, 'my.key');
  const created = await cli(['key', 'create', '--keyfile', keyfile]);
  t.is(created.code, 0, created.stderr);
  t.is((await stat(keyfile)).mode & 0o777, 0o600, 'mode 0600');

  const text = await readFile(keyfile, 'utf8');
  const json = JSON.parse(text) as Record<string, unknown>;
  t.deepEqual(Object.keys(json).sort(), ['created', 'data', 'fingerprint', 'kdf', 'modified']);
  t.is(json.kdf, null);
  for (const field of ['created', 'modified']) {
    t.regex(String(json[field]), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2})$/, field);
    t.true(Math.abs(Date.parse(String(json[field])) - Date.now()) < 5 * 60_000, `${field} is now`);
  }
  const key = Buffer.from(String(json.data), 'base64');
  t.is(key.byteLength, 32);
  t.is(key.toString('base64'), String(json.data), 'canonical base64');
  const fingerprint = pbsFingerprint(key);
  t.regex(fingerprint, FINGERPRINT);
  t.is(json.fingerprint, fingerprint, 'the recorded fingerprint is the PBS fingerprint of the key');
  t.true(created.stdout.includes(keyfile));
  t.true(created.stdout.includes(`fingerprint ${fingerprint}`), created.stdout);

  // Never overwritten, whatever the second call would have written.
  const again = await cli(['key', 'create', '--keyfile', keyfile]);
  const line = assertCliError(t, again, 'ERR_LR_KEYFILE_EXISTS');
  t.true(line.includes(keyfile));
  t.is(await readFile(keyfile, 'utf8'), text, 'the key file is untouched');
  t.is((await stat(keyfile)).mode & 0o777, 0o600);

  const shown = await cli(['key', 'show', '--keyfile', keyfile]);
  t.is(shown.code, 0, shown.stderr);
  t.is(shown.stdout.trim(), `fingerprint ${fingerprint}`);
  const shownJson = await runIn(['key', 'show', '--keyfile', keyfile, '--json']);
  t.deepEqual(JSON.parse(shownJson.stdout), { keyfile, fingerprint });
  const createdJson = await runIn(['key', 'create', '--json', '--keyfile', join(dir, 'second.key')]);
  t.is(createdJson.code, 0);
  const second = JSON.parse(createdJson.stdout) as { fingerprint: string };
  t.regex(second.fingerprint, FINGERPRINT);
  t.not(second.fingerprint, fingerprint, 'a new key each time');
});

test('a key file written by hand in the PBS format (as proxmox-backup-client --kdf none writes it) is accepted', async (t) => {
  const dir = await testDir(t);
  const key = randomBytes(32);
  const keyfile = join(dir, 'pbs.key');
  const pbsJson = {
    kdf: null,
    created: '2021-06-08T11:58:18+02:00',
    modified: '2021-06-08T11:58:18+02:00',
    data: key.toString('base64'),
    fingerprint: pbsFingerprint(key),
    hint: null,
  };
  await writeFile(keyfile, JSON.stringify(pbsJson, null, 2));
  const out = await runIn(['key', 'show', '--keyfile', keyfile]);
  t.is(out.code, 0, out.stderr);
  t.is(out.stdout.trim(), `fingerprint ${pbsFingerprint(key)}`);
  // Without the optional fingerprint field too.
  await writeFile(keyfile, JSON.stringify({ ...pbsJson, fingerprint: undefined }));
  t.is((await runIn(['key', 'show', '--keyfile', keyfile])).code, 0);
});

test('bad key files: ERR_LR_KEYFILE_INVALID / _PASSPHRASE / _UNREADABLE for key show, backup and verify', async (t) => {
  const dir = await testDir(t);
  const input = join(dir, 'in.txt');
  await writeFile(input, 'hello world\n');
  const key = randomBytes(32);
  const files: [string, string, string][] = [
    ['garbage', 'this is not a key\n', 'ERR_LR_KEYFILE_INVALID'],
    ['empty', '', 'ERR_LR_KEYFILE_INVALID'],
    ['array', '[1,2,3]', 'ERR_LR_KEYFILE_INVALID'],
    [
      'short-key',
      JSON.stringify({ kdf: null, data: randomBytes(16).toString('base64') }),
      'ERR_LR_KEYFILE_INVALID',
    ],
    [
      'wrong-fingerprint',
      JSON.stringify({
        kdf: null,
        data: key.toString('base64'),
        fingerprint: pbsFingerprint(randomBytes(32)),
      }),
      'ERR_LR_KEYFILE_INVALID',
    ],
    [
      'passphrase',
      JSON.stringify({
        kdf: { Scrypt: { n: 65536, r: 8, p: 1, salt: 'AAAA' } },
        data: key.toString('base64'),
      }),
      'ERR_LR_KEYFILE_PASSPHRASE',
    ],
  ];
  for (const [name, content, code] of files) {
    const keyfile = join(dir, `${name}.key`);
    await writeFile(keyfile, content);
    const store = join(dir, `store-${name}`);
    const line = assertCliError(t, await runIn(['key', 'show', '--keyfile', keyfile]), code);
    t.true(line.includes(keyfile), `the message names the file: ${line}`);
    assertCliError(
      t,
      await runIn(backupArgv(store, [`notes.txt=${input}`], { json: false, extra: ['--keyfile', keyfile] })),
      code,
    );
    t.false(existsSync(store), `${name}: a backup refused for its key file creates no store`);
  }
  assertCliError(
    t,
    await cli(['key', 'show', '--keyfile', join(dir, 'garbage.key')]),
    'ERR_LR_KEYFILE_INVALID',
  );
  assertCliError(
    t,
    await runIn(['key', 'show', '--keyfile', join(dir, 'missing.key')]),
    'ERR_LR_KEYFILE_UNREADABLE',
  );
  assertCliError(
    t,
    await runIn(['key', 'create', '--keyfile', join(dir, 'no-dir', 'k.key')]),
    'ERR_LR_KEYFILE_UNREADABLE',
  );
  // verify reads the key file only after finding the store: make one.
  const store = join(dir, 'store');
  t.is(
    (await runIn(['backup', '--json', '--store', store, '--snapshot', 'vm/100', `notes.txt=${input}`])).code,
    0,
  );
  assertCliError(
    t,
    await runIn(['verify', '--store', store, '--keyfile', join(dir, 'garbage.key')]),
    'ERR_LR_KEYFILE_INVALID',
  );
});

test('encrypted backup: verify with the key checks everything; without it exits 0 and says the chunks were CRC-checked only', async (t) => {
  const dir = await testDir(t);
  const keyfile = join(dir, 'k.key');
  t.is((await runIn(['key', 'create', '--keyfile', keyfile])).code, 0);
  const fingerprint = (JSON.parse(await readFile(keyfile, 'utf8')) as { fingerprint: string }).fingerprint;
  const vm = await writeVm(dir, { seed: 2216, sizes: [MiB + 77, 256 * KiB + 1] });
  const store = join(dir, 'store');
  const backup = await cli(
    backupArgv(store, vmArgs(vm), { chunkSize: '64KiB', extra: ['--keyfile', keyfile] }),
  );
  t.is(backup.code, 0, backup.stderr);
  const { snapshot, chunksNew } = JSON.parse(backup.stdout) as { snapshot: string; chunksNew: number };

  // Chunk names are keyed digests: none is the plain SHA-256 of the first 64 KiB of a drive.
  const names = new Set((await chunkFiles(store)).map((p) => p.split('/')[1]));
  t.is(names.size, chunksNew);
  const head = (await readFile(vm.drives[0]!.path)).subarray(0, 64 * KiB);
  t.false(
    names.has(createHash('sha256').update(head).digest('hex')),
    'digests are keyed (SHA-256(data ‖ id_key))',
  );

  const list = JSON.parse((await runIn(['snapshots', '--store', store, '--json'])).stdout) as {
    snapshot: string;
    keyFingerprint?: string;
    archives: { cryptMode: string }[];
  }[];
  t.is(list[0]!.snapshot, snapshot);
  t.is(list[0]!.keyFingerprint, fingerprint);
  t.deepEqual(
    list[0]!.archives.map((a) => a.cryptMode),
    ['encrypt', 'encrypt', 'encrypt'],
  );
  t.regex((await runIn(['snapshots', '--store', store])).stdout, /\(encrypted\)/);

  const withKey = await cli(['verify', '--store', store, '--keyfile', keyfile]);
  t.is(withKey.code, 0, withKey.stdout + withKey.stderr);
  t.regex(withKey.stdout, /^OK: 1 snapshot\(s\), 3 archive\(s\)/m);
  t.false(withKey.stdout.includes('CRC-checked only'));
  const withKeyJson = JSON.parse(
    (await runIn(['verify', '--json', '--store', store, '--keyfile', keyfile])).stdout,
  ) as {
    ok: boolean;
    crcOnlyChunks: number;
    chunks: number;
    bytes: number;
  };
  t.true(withKeyJson.ok);
  t.is(withKeyJson.crcOnlyChunks, 0);
  t.is(withKeyJson.chunks, chunksNew);

  const noKey = await cli(['verify', '--store', store]);
  t.is(noKey.code, 0, noKey.stdout + noKey.stderr);
  t.regex(noKey.stdout, /^OK: /m);
  t.regex(noKey.stdout, new RegExp(`${chunksNew} encrypted chunk\\(s\\) CRC-checked only`));
  const noKeyJson = JSON.parse((await runIn(['verify', '--json', '--store', store])).stdout) as {
    ok: boolean;
    crcOnlyChunks: number;
  };
  t.true(noKeyJson.ok);
  t.is(noKeyJson.crcOnlyChunks, chunksNew);

  // Another key: the manifest signature does not match.
  const other = join(dir, 'other.key');
  t.is((await runIn(['key', 'create', '--keyfile', other])).code, 0);
  const wrong = await runIn(['verify', '--store', store, '--keyfile', other]);
  t.is(wrong.code, 1);
  t.regex(
    wrong.stdout,
    new RegExp(`^BAD FILE ${snapshot}/index\\.json\\.blob: ERR_LR_MANIFEST_SIGNATURE: `, 'm'),
  );

  // Bit rot in an encrypted chunk is found even without the key (the CRC covers the ciphertext).
  const victim = [...names][0]!;
  await flipByte(join(store, '.chunks', victim.slice(0, 4), victim), -1);
  const rotten = await runIn(['verify', '--store', store]);
  t.is(rotten.code, 1, rotten.stdout);
  t.regex(rotten.stdout, new RegExp(`^BAD CHUNK ${victim}: ERR_LR_BLOB_CRC_MISMATCH: `, 'm'));
  const rottenWithKey = await runIn(['verify', '--store', store, '--keyfile', keyfile]);
  t.is(rottenWithKey.code, 1);
  t.regex(rottenWithKey.stdout, new RegExp(`^BAD CHUNK ${victim}: `, 'm'));
});

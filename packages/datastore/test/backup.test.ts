import { createHash, createHmac } from 'node:crypto';
import { readdir, readFile, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CryptConfig, decodeBlob, decodeChunk, decodeManifest, type FixedIndex } from '@liverestore/format';
import {
  changedRanges,
  imageBytes,
  mutate,
  randomBytes,
  vmImageSet,
  writeImageFile,
} from '@liverestore/testkit';
import test from 'ava';
import { type BackupProgress, backup, Datastore } from '../src/index.js';
import {
  chunkDigestsOnDisk,
  chunkFilePath,
  chunksTouched,
  fixedChunkDigests,
  indexDigests,
  KiB,
  listChunkFiles,
  MiB,
  magicName,
  readIndexFile,
  readManifestJson,
  reassemble,
  sha256Hex,
  sortedSet,
  testDir,
  writeInput,
} from './helpers.js';

const TIME_DIR = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

async function newStore(dir: string): Promise<Datastore> {
  return Datastore.create(join(dir, 'store'));
}

test('fixed image and dynamic file: snapshot layout, exact reassembly, manifest entries', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const [drive] = vmImageSet(7, { drives: 1, sizeBytes: 3 * MiB + 12_345 });
  const driveSpec = drive!.spec;
  const imagePath = join(dir, 'scsi0.raw');
  await writeImageFile(driveSpec, imagePath);
  const imageData = imageBytes(driveSpec, 0, driveSpec.sizeBytes);
  const notesData = imageBytes({ sizeBytes: 700 * KiB + 3, seed: 11, mix: { text: 1 } }, 0, 700 * KiB + 3);
  const notesPath = await writeInput(dir, 'notes.txt', notesData);
  const progress: BackupProgress[] = [];

  const result = await backup(store, {
    type: 'vm',
    id: '100',
    inputs: [
      { name: 'drive-scsi0', path: imagePath },
      { name: 'notes.txt', path: notesPath },
    ],
    chunkSizeBytes: 64 * KiB,
    dynamicAvgBytes: 64 * KiB,
    onProgress: (p) => progress.push(p),
  });

  // Snapshot directory vm/100/<RFC 3339 Z> with exactly the three files, beside the group's owner file.
  const times = (await readdir(join(store.dir, 'vm', '100'))).filter((name) => name !== 'owner');
  t.is(times.length, 1);
  const timeDir = times[0]!;
  t.regex(timeDir, TIME_DIR);
  t.is(result.snapshot, `vm/100/${timeDir}`);
  t.is(new Date(result.ref.time * 1000).toISOString().replace('.000Z', 'Z'), timeDir);
  const snapDir = join(store.dir, 'vm', '100', timeDir);
  t.deepEqual((await readdir(snapDir)).sort(), ['drive-scsi0.img.fidx', 'index.json.blob', 'notes.txt.didx']);

  // Both indexes reassemble their source byte for byte.
  const fidxRaw = await readFile(join(snapDir, 'drive-scsi0.img.fidx'));
  t.is(magicName(fidxRaw), 'fixedIndex');
  const fidx = (await readIndexFile(snapDir, 'drive-scsi0.img.fidx')) as FixedIndex;
  t.is(fidx.kind, 'fixed');
  t.is(fidx.sizeBytes, driveSpec.sizeBytes);
  t.is(fidx.chunkSizeBytes, 64 * KiB);
  t.is(fidx.chunkCount, Math.ceil(driveSpec.sizeBytes / (64 * KiB)));
  t.is(fidxRaw.byteLength, 4096 + 32 * fidx.chunkCount);
  t.deepEqual(indexDigests(fidx), fixedChunkDigests(imageData, 64 * KiB));
  t.true((await reassemble(store.dir, fidx)).equals(imageData));

  const didxRaw = await readFile(join(snapDir, 'notes.txt.didx'));
  t.is(magicName(didxRaw), 'dynamicIndex');
  const didx = await readIndexFile(snapDir, 'notes.txt.didx');
  t.is(didx.kind, 'dynamic');
  t.is(didx.sizeBytes, notesData.byteLength);
  t.true(didx.chunkCount > 1, 'a 700 KiB file with 64 KiB average chunks has several chunks');
  t.true((await reassemble(store.dir, didx)).equals(notesData));

  // Chunk files: .chunks/<first 4 hex>/<64 hex>, exactly the digests the indexes use.
  const files = await listChunkFiles(store.dir);
  for (const f of files) {
    t.regex(f.name, /^[0-9a-f]{64}$/);
    t.is(f.prefix, f.name.slice(0, 4));
  }
  const used = sortedSet([...indexDigests(fidx), ...indexDigests(didx)]);
  t.deepEqual(sortedSet(files.map((f) => f.name)), used);
  t.is(files.length, used.length);

  // Manifest: kebab-case JSON, size = image size, csum = hex index_csum.
  const json = await readManifestJson(snapDir);
  t.is(json['backup-type'], 'vm');
  t.is(json['backup-id'], '100');
  t.is(json['backup-time'], result.ref.time);
  t.is(json.signature, undefined);
  const entries = json.files as Record<string, unknown>[];
  const byName = new Map(entries.map((e) => [e.filename, e]));
  t.is(entries.length, 2);
  t.deepEqual(byName.get('drive-scsi0.img.fidx'), {
    filename: 'drive-scsi0.img.fidx',
    'crypt-mode': 'none',
    size: driveSpec.sizeBytes,
    csum: sha256Hex(fidxRaw.subarray(4096)),
  });
  t.deepEqual(byName.get('notes.txt.didx'), {
    filename: 'notes.txt.didx',
    'crypt-mode': 'none',
    size: notesData.byteLength,
    csum: sha256Hex(didxRaw.subarray(4096)),
  });
  t.is(sha256Hex(fidxRaw.subarray(4096)), fidx.indexCsum.toString('hex'));

  // Counts add up and match what is on disk.
  const [fixedResult, dynamicResult] = result.archives;
  t.like(fixedResult, {
    name: 'drive-scsi0.img',
    filename: 'drive-scsi0.img.fidx',
    sizeBytes: driveSpec.sizeBytes,
  });
  t.like(dynamicResult, { name: 'notes.txt', filename: 'notes.txt.didx', sizeBytes: notesData.byteLength });
  t.is(fixedResult!.chunks, fidx.chunkCount);
  t.is(dynamicResult!.chunks, didx.chunkCount);
  for (const a of result.archives) t.is(a.chunksNew + a.chunksReused, a.chunks);
  t.is(result.chunksNew, used.length);
  t.is(result.chunksNew + result.chunksReused, fidx.chunkCount + didx.chunkCount);
  t.is(result.bytesRead, driveSpec.sizeBytes + notesData.byteLength);
  const onDisk = await Promise.all(files.map(async (f) => (await stat(f.path)).size));
  t.is(
    result.bytesWritten,
    onDisk.reduce((a, b) => a + b, 0),
  );
  const last = progress.at(-1);
  t.like(last, { archive: 'notes.txt', bytesDone: notesData.byteLength, totalBytesDone: result.bytesRead });
  t.is(last?.totalBytes, result.bytesRead);
});

test('dedup: each distinct chunk is stored once, the zero chunk once and counted', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const cs = 64 * KiB;
  const a = randomBytes(1, cs);
  const b = randomBytes(2, cs);
  const c = randomBytes(3, cs);
  const z = Buffer.alloc(cs);
  const tail = randomBytes(4, 1000);
  const data = Buffer.concat([a, b, a, z, a, b, z, c, tail]);
  const path = await writeInput(dir, 'disk.raw', data);

  const result = await backup(store, {
    type: 'vm',
    id: '101',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: cs,
  });
  const [archive] = result.archives;
  t.like(archive, { chunks: 9, chunksNew: 5, chunksReused: 4, zeroChunks: 2 });
  const expected = sortedSet([a, b, c, z, tail].map((x) => sha256Hex(x)));
  t.deepEqual(await chunkDigestsOnDisk(store.dir), expected);
  const zeroBlob = await readFile(chunkFilePath(store.dir, sha256Hex(z)));
  t.true(decodeBlob(zeroBlob).equals(z));

  // The same content again, under a second archive: nothing new at all.
  const again = await backup(store, {
    type: 'vm',
    id: '101',
    inputs: [
      { name: 'drive-scsi0', path },
      { name: 'drive-scsi1', path },
    ],
    chunkSizeBytes: cs,
  });
  t.is(again.chunksNew, 0);
  t.is(again.chunksReused, 18);
  t.is(again.bytesWritten, 0);
  t.deepEqual(
    again.archives.map((x) => x.zeroChunks),
    [2, 2],
  );
  t.deepEqual(await chunkDigestsOnDisk(store.dir), expected);
});

test('incremental: after mutate() only the touched chunks are new and written', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const cs = 64 * KiB;
  const base = { sizeBytes: 6 * MiB + 777, seed: 21, mix: { zero: 0.2, text: 0.4, random: 0.4 } };
  const path = join(dir, 'disk.raw');
  await writeImageFile(base, path);
  const first = await backup(store, {
    type: 'vm',
    id: '102',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: cs,
  });
  const before = await chunkDigestsOnDisk(store.dir);
  const firstIndex = await readIndexFile(store.snapshotDir(first.ref), 'drive-scsi0.img.fidx');

  const next = mutate(base, { seed: 5, changes: 3 });
  const touched = chunksTouched(changedRanges(next), cs);
  t.true(touched.size >= 3);
  await writeImageFile(next, path);
  const second = await backup(store, {
    type: 'vm',
    id: '102',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: cs,
  });
  const total = Math.ceil(base.sizeBytes / cs);
  const [archive] = second.archives;
  t.is(archive!.chunks, total);
  t.true(archive!.chunksNew >= 1 && archive!.chunksNew <= touched.size);
  t.is(archive!.chunksReused, total - archive!.chunksNew);

  // Exactly the touched chunks changed their digest, and only their files were added.
  const secondIndex = await readIndexFile(store.snapshotDir(second.ref), 'drive-scsi0.img.fidx');
  const oldDigests = indexDigests(firstIndex);
  const newDigests = indexDigests(secondIndex);
  const changed = newDigests.flatMap((d, i) => (d === oldDigests[i] ? [] : [i]));
  t.deepEqual(
    changed,
    [...touched].sort((x, y) => x - y),
  );
  const after = await chunkDigestsOnDisk(store.dir);
  const added = after.filter((d) => !before.includes(d));
  t.is(added.length, archive!.chunksNew);
  t.deepEqual(added, sortedSet([...touched].map((i) => newDigests[i]!).filter((d) => !before.includes(d))));
  t.true((await reassemble(store.dir, secondIndex)).equals(imageBytes(next, 0, next.sizeBytes)));
});

test('two backups in the same second get distinct, increasing snapshot times', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const path = await writeInput(dir, 'disk.raw', randomBytes(9, 100 * KiB));
  const options = {
    type: 'vm' as const,
    id: '103',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: 64 * KiB,
  };
  const fixedTime = 1_800_000_000;
  const a = await backup(store, { ...options, backupTime: fixedTime });
  const b = await backup(store, { ...options, backupTime: fixedTime });
  t.is(a.ref.time, fixedTime);
  t.is(b.ref.time, fixedTime + 1);
  t.is(a.snapshot, 'vm/103/2027-01-15T08:00:00Z');
  t.is(b.snapshot, 'vm/103/2027-01-15T08:00:01Z');
  // Without a time: back to back, as fast as they go (usually within one second).
  const c = await backup(store, { ...options, id: '103b' });
  const d = await backup(store, { ...options, id: '103b' });
  t.true(d.ref.time > c.ref.time);
  t.true(Math.abs(c.ref.time - Date.now() / 1000) < 60);
  t.deepEqual(
    (await store.listSnapshotRefs()).map((r) => `${r.id}@${r.time}`),
    [a, b, c, d].map((r) => `${r.ref.id}@${r.ref.time}`),
  );
});

test('compress none / deflate / zstd (default): chunk blobs carry the matching magics', async (t) => {
  const dir = await testDir(t);
  const cs = 64 * KiB;
  const text = imageBytes({ sizeBytes: cs, seed: 2, mix: { text: 1 } }, 0, cs);
  const noise = randomBytes(31, cs);
  const path = await writeInput(dir, 'disk.raw', Buffer.concat([text, noise]));
  const magicsOf = async (compress: 'none' | 'deflate' | undefined, encodeThreads?: number) => {
    const store = await Datastore.create(join(dir, `store-${compress}-${encodeThreads ?? 'd'}`));
    await backup(store, {
      type: 'vm',
      id: '104',
      inputs: [{ name: 'drive-scsi0', path }],
      chunkSizeBytes: cs,
      ...(compress === undefined ? {} : { compress }),
      ...(encodeThreads === undefined ? {} : { encodeThreads }),
    });
    const textBlob = await readFile(chunkFilePath(store.dir, sha256Hex(text)));
    const noiseBlob = await readFile(chunkFilePath(store.dir, sha256Hex(noise)));
    t.true(decodeBlob(textBlob).equals(text));
    t.true(decodeBlob(noiseBlob).equals(noise));
    return [magicName(textBlob), magicName(noiseBlob), textBlob.byteLength];
  };
  t.deepEqual(await magicsOf('none'), ['uncompressed', 'uncompressed', 12 + cs]);
  const [textMagic, noiseMagic, textSize] = await magicsOf('deflate');
  t.is(textMagic, 'deflate');
  t.true((textSize as number) < cs / 2, 'text compresses');
  // Compression is kept only when smaller: noise stays uncompressed.
  t.is(noiseMagic, 'uncompressed');
  // The inline encoder (no worker threads) writes the same kinds.
  t.deepEqual((await magicsOf('deflate', 0)).slice(0, 2), ['deflate', 'uncompressed']);
  // The default is PBS's zstd, on every Node.js: from the encode pool and inline.
  const [zstdText, zstdNoise, zstdSize] = await magicsOf(undefined);
  t.deepEqual([zstdText, zstdNoise], ['zstd', 'uncompressed']);
  t.true((zstdSize as number) < cs / 2, 'text compresses');
  t.deepEqual((await magicsOf(undefined, 0)).slice(0, 2), ['zstd', 'uncompressed']);
});

test('encryption: encrypted magics, keyed digests, signed manifest with key fingerprint', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const cs = 64 * KiB;
  const text = imageBytes({ sizeBytes: cs, seed: 3, mix: { text: 1 } }, 0, cs);
  const noise = randomBytes(32, cs);
  const data = Buffer.concat([text, noise, Buffer.alloc(cs), noise.subarray(0, 999)]);
  const path = await writeInput(dir, 'disk.raw', data);
  const crypt = CryptConfig.generate();
  const result = await backup(store, {
    type: 'vm',
    id: '105',
    inputs: [{ name: 'drive-scsi0', path }],
    chunkSizeBytes: cs,
    crypt,
  });
  t.is(result.archives[0]!.zeroChunks, 1);
  const snapDir = store.snapshotDir(result.ref);
  const index = await readIndexFile(snapDir, 'drive-scsi0.img.fidx');

  // Digests are SHA-256(plaintext || id_key), never the plain SHA-256.
  const keyedDigests = fixedChunkDigests(data, cs).map((_, i) =>
    createHash('sha256')
      .update(data.subarray(i * cs, Math.min((i + 1) * cs, data.byteLength)))
      .update(crypt.idKey)
      .digest('hex'),
  );
  t.deepEqual(indexDigests(index), keyedDigests);
  const plainDigests = new Set(fixedChunkDigests(data, cs));
  for (const d of indexDigests(index)) t.false(plainDigests.has(d));

  // Every chunk blob is encrypted; it decodes only with the key.
  const files = await listChunkFiles(store.dir);
  t.is(files.length, 4);
  const kinds = new Set<string>();
  for (const f of files) {
    const blob = await readFile(f.path);
    const kind = magicName(blob);
    kinds.add(kind);
    t.true(kind === 'encrypted' || kind === 'encryptedZstd', `chunk magic ${kind}`);
    decodeChunk(blob, Buffer.from(f.name, 'hex'), { crypt });
    t.throws(() => decodeBlob(blob), { code: 'ERR_LR_KEY_REQUIRED' });
    t.throws(() => decodeChunk(blob, Buffer.from(f.name, 'hex'), { crypt: CryptConfig.generate() }), {
      code: 'ERR_LR_DECRYPT_FAILED',
    });
  }
  t.true(
    kinds.has('encryptedZstd'),
    'text and zero chunks are compressed (zstd, the default) before encryption',
  );
  t.true(kinds.has('encrypted'), 'noise stays uncompressed');
  t.true((await reassemble(store.dir, index, crypt)).equals(data));

  // The manifest stays a plain blob, signed with HMAC-SHA256(id_key, canonical JSON).
  const json = await readManifestJson(snapDir);
  const files0 = (json.files as Record<string, unknown>[])[0];
  t.is(files0?.['crypt-mode'], 'encrypt');
  t.deepEqual(json.unprotected, { 'key-fingerprint': crypt.fingerprint() });
  t.regex(crypt.fingerprint(), /^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
  const { unprotected: _u, signature, ...signed } = json;
  const canonical = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map(canonical).join(',')}]`
      : v !== null && typeof v === 'object'
        ? `{${Object.keys(v)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
            .join(',')}}`
        : JSON.stringify(v);
  t.is(signature, createHmac('sha256', crypt.idKey).update(canonical(signed)).digest('hex'));
  const raw = await readFile(join(snapDir, 'index.json.blob'));
  t.is(decodeManifest(raw, { crypt }).signature, signature as string);
  t.throws(() => decodeManifest(raw, { crypt: CryptConfig.generate() }), {
    code: 'ERR_LR_MANIFEST_SIGNATURE',
  });
  t.is((await store.snapshotInfo(result.ref)).keyFingerprint, crypt.fingerprint());
});

test('backup refuses a duplicate archive before writing anything', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const path = await writeInput(dir, 'disk.raw', randomBytes(1, 70 * KiB));
  for (const names of [
    ['drive-scsi0', 'drive-scsi0'],
    ['drive-scsi0', 'drive-scsi0.img'],
    ['drive-scsi0.img.fidx', 'drive-scsi0'],
    ['notes.txt', 'notes.txt.didx'],
  ]) {
    await t.throwsAsync(
      backup(store, {
        type: 'vm',
        id: '107',
        inputs: names.map((name) => ({ name, path })),
        chunkSizeBytes: 64 * KiB,
      }),
      { code: 'ERR_LR_ARCHIVE_NAME_INVALID', message: /twice/ },
      names.join(' + '),
    );
  }
  await t.throwsAsync(
    backup(store, { type: 'vm', id: '107', inputs: [{ name: 'bad/name', path }], chunkSizeBytes: 64 * KiB }),
    { code: 'ERR_LR_ARCHIVE_NAME_INVALID' },
  );
  t.deepEqual(await readdir(store.dir), ['.chunks']);
  t.deepEqual(await readdir(join(store.dir, '.chunks')), []);
  // Different names for different archives are fine.
  const ok = await backup(store, {
    type: 'vm',
    id: '107',
    inputs: [
      { name: 'drive-scsi0', path },
      { name: 'drive-scsi0.txt', path },
    ],
    chunkSizeBytes: 64 * KiB,
    dynamicAvgBytes: 64 * KiB,
  });
  t.deepEqual(
    ok.archives.map((a) => a.filename),
    ['drive-scsi0.img.fidx', 'drive-scsi0.txt.didx'],
  );
});

test('a failing chunk write fails the backup: no snapshot, no temp dir', async (t) => {
  const dir = await testDir(t);
  const store = await newStore(dir);
  const cs = 64 * KiB;
  const data = randomBytes(61, 5 * cs + 100);
  const path = await writeInput(dir, 'disk.raw', data);
  // The last chunk's prefix folder is a dangling symlink: the chunk looks absent (stat
  // says ENOENT), so only its write fails, after every read, in the background.
  const lastDigest = sha256Hex(data.subarray(5 * cs));
  await symlink(join(dir, 'nowhere'), join(store.dir, '.chunks', lastDigest.slice(0, 4)));
  for (const encodeThreads of [0, 1]) {
    const err = await t.throwsAsync(
      backup(store, {
        type: 'vm',
        id: '108',
        inputs: [{ name: 'drive-scsi0', path }],
        chunkSizeBytes: cs,
        encodeThreads,
      }),
    );
    t.is((err as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
    t.deepEqual(await store.listSnapshotRefs(), []);
    // The group keeps only the owner file PBS writes when a group is created.
    t.deepEqual(await readdir(join(store.dir, 'vm', '108')), ['owner']);
  }
});

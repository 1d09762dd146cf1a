import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from '@liverestore/testkit';
import test from 'ava';
import {
  backup,
  Datastore,
  formatSnapshot,
  MAX_NAMESPACE_DEPTH,
  namespacePath,
  parseNamespace,
  parseSnapshotSpec,
  verifySnapshots,
} from '../src/index.js';
import { KiB, testDir, writeInput } from './helpers.js';

const SEVEN = 'a/b/c/d/e/f/g';

test('namespace names follow PBS: PROXMOX_SAFE_ID components, 7 levels, 256 characters', (t) => {
  for (const good of [
    '',
    'prod',
    'prod/db',
    'A_1.x-y',
    '_x',
    SEVEN,
    `${'x'.repeat(127)}/${'y'.repeat(128)}`,
  ]) {
    t.is(parseNamespace(good), good, good);
  }
  const bad = [
    'a//b',
    'a/',
    '/a',
    '-a',
    '.a',
    'a b',
    'ns/ä',
    'a/../b',
    `${SEVEN}/h`,
    `${'x'.repeat(128)}/${'y'.repeat(128)}`,
  ];
  for (const text of bad) t.throws(() => parseNamespace(text), { code: 'ERR_LR_NAMESPACE_INVALID' }, text);
  t.is(MAX_NAMESPACE_DEPTH, 7);
  t.is(namespacePath('prod/db'), 'ns/prod/ns/db');
  t.is(namespacePath(''), '');
});

test('snapshot names carry their namespace as PBS prints it, or take it from --ns', (t) => {
  t.deepEqual(parseSnapshotSpec('ns/prod/ns/db/vm/100'), { namespace: 'prod/db', type: 'vm', id: '100' });
  t.deepEqual(parseSnapshotSpec('vm/100', 'prod'), { namespace: 'prod', type: 'vm', id: '100' });
  t.deepEqual(parseSnapshotSpec('ns/prod/vm/100', 'prod'), { namespace: 'prod', type: 'vm', id: '100' });
  // The root namespace leaves no field behind: a root ref is the same object as before namespaces.
  t.deepEqual(parseSnapshotSpec('vm/100/2026-11-26T10:00:00Z', ''), {
    type: 'vm',
    id: '100',
    time: 1795687200,
  });
  t.is(
    formatSnapshot({ namespace: 'prod/db', type: 'ct', id: 'x', time: 0 }),
    'ns/prod/ns/db/ct/x/1970-01-01T00:00:00Z',
  );
  t.throws(() => parseSnapshotSpec('ns/prod/vm/100', 'test'), { code: 'ERR_LR_SNAPSHOT_INVALID' });
  t.throws(() => parseSnapshotSpec('vm/100', 'a//b'), { code: 'ERR_LR_NAMESPACE_INVALID' });
  t.throws(() => parseSnapshotSpec('ns/a b/vm/100'), { code: 'ERR_LR_NAMESPACE_INVALID' });
});

test('backup into nested namespaces: PBS layout, owner file, listing by scope, lookups name the namespace', async (t) => {
  const dir = await testDir(t);
  const store = await Datastore.create(join(dir, 'store'));
  const path = await writeInput(dir, 'disk.raw', randomBytes(1, 200 * KiB));
  const inputs = [{ name: 'drive-scsi0', path }];
  const deep = await backup(store, { namespace: 'prod/db', type: 'vm', id: '100', inputs, backupTime: 1000 });
  const mid = await backup(store, { namespace: 'prod', type: 'vm', id: '100', inputs, backupTime: 2000 });
  const seven = await backup(store, { namespace: SEVEN, type: 'ct', id: '7', inputs, backupTime: 3000 });

  t.is(deep.snapshot, 'ns/prod/ns/db/vm/100/1970-01-01T00:16:40Z');
  t.deepEqual(deep.ref, { namespace: 'prod/db', type: 'vm', id: '100', time: 1000 });
  const group = join(store.dir, 'ns', 'prod', 'ns', 'db', 'vm', '100');
  t.deepEqual((await readdir(group)).sort(), ['1970-01-01T00:16:40Z', 'owner']);
  t.is(await readFile(join(group, 'owner'), 'utf8'), 'root@pam\n');
  t.deepEqual((await readdir(join(group, '1970-01-01T00:16:40Z'))).sort(), [
    'drive-scsi0.img.fidx',
    'index.json.blob',
  ]);

  t.deepEqual(await store.listSnapshotRefs(), [], 'the root namespace alone has nothing');
  t.deepEqual(await store.listSnapshotRefs({ namespace: 'prod' }), [mid.ref]);
  t.deepEqual(await store.listSnapshotRefs({ namespace: 'prod', maxDepth: 1 }), [mid.ref, deep.ref]);
  t.deepEqual(await store.listSnapshotRefs({ maxDepth: MAX_NAMESPACE_DEPTH }), [
    seven.ref,
    mid.ref,
    deep.ref,
  ]);
  t.deepEqual(await store.listNamespaces(), [
    '',
    'a',
    'a/b',
    'a/b/c',
    'a/b/c/d',
    'a/b/c/d/e',
    'a/b/c/d/e/f',
    SEVEN,
    'prod',
    'prod/db',
  ]);
  t.deepEqual(await store.listNamespaces({ namespace: 'prod', maxDepth: 0 }), ['prod']);
  await t.throwsAsync(store.listSnapshotRefs({ maxDepth: 8 }), { instanceOf: RangeError });

  t.deepEqual(await store.resolveSnapshot({ namespace: 'prod/db', type: 'vm', id: '100' }), deep.ref);
  await t.throwsAsync(store.resolveSnapshot({ namespace: 'prod/db', type: 'vm', id: '101' }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
    message: /ns\/prod\/ns\/db\/vm\/101 in namespace 'prod\/db'/,
  });
  await t.throwsAsync(store.resolveSnapshot({ type: 'vm', id: '100' }), {
    code: 'ERR_LR_SNAPSHOT_NOT_FOUND',
    message: /in the root namespace/,
  });
  await t.throwsAsync(store.listSnapshotRefs({ namespace: 'test' }), { code: 'ERR_LR_NAMESPACE_NOT_FOUND' });
  await t.throwsAsync(backup(store, { namespace: `${SEVEN}/h`, type: 'vm', id: '1', inputs }), {
    code: 'ERR_LR_NAMESPACE_INVALID',
  });
  await t.throwsAsync(backup(store, { owner: 'root', type: 'vm', id: '1', inputs }), {
    code: 'ERR_LR_OWNER_INVALID',
  });

  const report = await verifySnapshots(store, await store.listSnapshotRefs({ maxDepth: 7 }));
  t.like(report, { ok: true, archives: 3 });
  t.deepEqual(report.snapshots, [seven.snapshot, mid.snapshot, deep.snapshot]);
  t.deepEqual(
    (await store.readManifest(deep.ref)).files.map((f) => f.filename),
    ['drive-scsi0.img.fidx'],
  );
});

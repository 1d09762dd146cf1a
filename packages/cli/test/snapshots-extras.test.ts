/*
 * `snapshots` shows what PBS keeps beside a snapshot's manifest: the group's owner,
 * `.protected`, whether the group has notes (text and --json).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { runIn } from './helpers.js';
import { storeWithSnapshot } from './store-fixture.js';

test('snapshots shows the group owner, protection and group notes (text and --json)', async (t) => {
  const f = await storeWithSnapshot(t);
  const plain = await runIn(['snapshots', '--store', f.store]);
  t.is(plain.code, 0, plain.stderr);
  t.true(plain.stdout.startsWith(`${f.snapshot} owner root@pam\n`), plain.stdout);
  const plainJson = JSON.parse(
    (await runIn(['snapshots', '--store', f.store, '--json'])).stdout,
  ) as unknown[];
  t.like(plainJson[0], { snapshot: f.snapshot, owner: 'root@pam', protected: false, groupNotes: false });

  const group = join(f.store, 'vm', '100');
  await writeFile(join(group, 'owner'), 'backup@pbs!nightly\n');
  await writeFile(join(group, 'notes'), 'database server\n');
  await writeFile(join(f.store, f.snapshot, '.protected'), '');
  const text = await runIn(['snapshots', '--store', f.store]);
  t.is(text.code, 0, text.stderr);
  t.true(
    text.stdout.startsWith(`${f.snapshot} (protected) owner backup@pbs!nightly, group notes\n`),
    text.stdout,
  );
  const json = await runIn(['snapshots', '--store', f.store, '--json']);
  t.is(json.code, 0, json.stderr);
  t.like((JSON.parse(json.stdout) as unknown[])[0], {
    snapshot: f.snapshot,
    owner: 'backup@pbs!nightly',
    protected: true,
    groupNotes: true,
  });
});

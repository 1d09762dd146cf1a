import test from 'ava';
import { collectSnapshotRefs, type SnapshotEntry } from '../src/snapshot-listing.js';

test('collectSnapshotRefs: namespaces as given, types in BACKUP_TYPES order, then id (as text), then time', async (t) => {
  const entries: Record<string, SnapshotEntry[]> = {
    '/vm': [
      { id: '20', time: 5 },
      { id: '100', time: 9 },
      { id: '100', time: 3 },
    ],
    '/ct': [{ id: '7', time: 1 }],
    'a/host': [{ id: 'db', time: 2 }],
  };
  const refs = await collectSnapshotRefs(
    ['', 'a'],
    async (ns, type) => entries[`${ns === '' ? '' : ns}/${type}`] ?? [],
  );
  t.deepEqual(
    refs.map((r) => `${r.namespace ?? ''}:${r.type}/${r.id}/${r.time}`),
    [':vm/100/3', ':vm/100/9', ':vm/20/5', ':ct/7/1', 'a:host/db/2'],
  );
});

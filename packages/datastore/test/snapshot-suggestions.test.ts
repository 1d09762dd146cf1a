import test from 'ava';
import { closestNames, type SnapshotRef, snapshotHint } from '../src/internal.js';

const T = Date.UTC(2026, 10, 26, 10, 0, 0) / 1000;
const refs: SnapshotRef[] = [
  { type: 'vm', id: '100', time: T },
  { type: 'vm', id: '100', time: T + 3600 },
  { type: 'vm', id: '101', time: T },
  { type: 'ct', id: 'web', time: T },
];

test('closestNames: typos within a third of the length, nearest first, nothing when far', (t) => {
  t.deepEqual(closestNames('resotre', ['restore', 'serve', 'snapshots']), ['restore']);
  t.deepEqual(closestNames('vm/1000', ['vm/100', 'vm/101', 'ct/web']), ['vm/100', 'vm/101']);
  t.deepEqual(closestNames('xyzzy', ['restore', 'serve']), []);
});

test('snapshotHint: the nearest times of an existing group, close groups, or the groups there are', (t) => {
  t.is(
    snapshotHint({ type: 'vm', id: '100', time: T + 3000 }, refs),
    'did you mean vm/100/2026-11-26T11:00:00Z or vm/100/2026-11-26T10:00:00Z?',
  );
  t.is(snapshotHint({ type: 'vm', id: '10' }, refs), 'did you mean vm/100 or vm/101?');
  t.is(snapshotHint({ type: 'host', id: 'backup-server' }, refs), 'its groups: ct/web, vm/100, vm/101');
  t.is(snapshotHint({ type: 'vm', id: '100' }, []), 'it has no snapshots');
});

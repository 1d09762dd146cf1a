import test from 'ava';
import {
  listingQuery,
  parseListing,
  parseListingEntries,
  parseNamespaceListing,
  snapshotFilePath,
} from '../src/http-listing.js';

const body = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));
const entry = (ns: string | undefined, id: string, time: number) => ({
  ...(ns === undefined ? {} : { ns }),
  snapshot: 'ignored',
  type: 'vm',
  id,
  time,
  archives: [],
});

test('listing requests name the namespace in the query and snapshot files by their on-disk path', (t) => {
  t.is(listingQuery(), '');
  t.is(listingQuery({ namespace: '', maxDepth: 0 }), '');
  t.is(listingQuery({ namespace: 'prod/db' }), '?ns=prod%2Fdb');
  t.is(listingQuery({ namespace: 'prod', maxDepth: 7 }), '?ns=prod&max-depth=7');
  t.throws(() => listingQuery({ namespace: 'a//b' }), { code: 'ERR_LR_NAMESPACE_INVALID' });
  t.is(
    snapshotFilePath({ type: 'vm', id: '100', time: 0 }, 'index.json.blob'),
    '/snapshots/vm/100/1970-01-01T00%3A00%3A00Z/index.json.blob',
  );
  t.is(
    snapshotFilePath({ namespace: 'prod/db', type: 'vm', id: '100', time: 0 }, 'a.fidx'),
    '/snapshots/ns/prod/ns/db/vm/100/1970-01-01T00%3A00%3A00Z/a.fidx',
  );
});

test('a listing is checked against the namespaces asked for: a server that ignored ?ns= is refused', (t) => {
  // A server from before namespaces answers every ?ns= with its root listing (no "ns" fields).
  t.throws(() => parseListing(body([entry(undefined, '100', 1)]), 'old', { namespace: 'prod' }), {
    code: 'ERR_LR_SOURCE_BAD_RESPONSE',
    message: /outside the one asked for/,
  });
  t.deepEqual(parseListing(body([entry(undefined, '100', 1)]), 'old'), [{ type: 'vm', id: '100', time: 1 }]);
  const scope = { namespace: 'prod', maxDepth: 1 };
  t.deepEqual(
    parseListing(body([entry('prod/db', '1', 5), entry('prod', '2', 3), entry('prod', '1', 9)]), 's', scope),
    [
      { namespace: 'prod', type: 'vm', id: '1', time: 9 },
      { namespace: 'prod', type: 'vm', id: '2', time: 3 },
      { namespace: 'prod/db', type: 'vm', id: '1', time: 5 },
    ],
  );
  for (const ns of ['prod/db/x', 'other', '', 'prod//db', 7]) {
    t.throws(
      () => parseListing(body([entry(ns as string, '1', 1)]), 's', scope),
      { code: 'ERR_LR_SOURCE_BAD_RESPONSE' },
      String(ns),
    );
  }
  // An unreadable snapshot is listed by its path, namespace included.
  t.deepEqual(
    parseListing(body([{ snapshot: 'ns/prod/vm/1/1970-01-01T00:00:09Z', error: { code: 'X' } }]), 's', scope),
    [{ namespace: 'prod', type: 'vm', id: '1', time: 9 }],
  );
  t.deepEqual(parseNamespaceListing(body([{ ns: 'prod/db' }, { ns: 'prod' }]), 's', { namespace: 'prod' }), [
    'prod',
    'prod/db',
  ]);
  t.throws(() => parseNamespaceListing(body([{ ns: 'x' }]), 's', { namespace: 'prod' }), {
    code: 'ERR_LR_SOURCE_BAD_RESPONSE',
  });
  t.throws(() => parseNamespaceListing(body([{}]), 's'), { code: 'ERR_LR_SOURCE_BAD_RESPONSE' });
});

test("a listing entry's owner, protected and groupNotes are kept, checked, and absent from an older server", (t) => {
  const listed = parseListingEntries(
    body([
      { ...entry(undefined, '101', 2), owner: 'backup@pbs!job', protected: true, groupNotes: false },
      { ...entry(undefined, '102', 3), protected: false, groupNotes: true },
      entry(undefined, '100', 1),
    ]),
    's',
  );
  t.deepEqual(listed, [
    { ref: { type: 'vm', id: '100', time: 1 } },
    {
      ref: { type: 'vm', id: '101', time: 2 },
      extras: { owner: 'backup@pbs!job', protected: true, groupNotes: false },
    },
    { ref: { type: 'vm', id: '102', time: 3 }, extras: { protected: false, groupNotes: true } },
  ]);
  for (const bad of [
    { owner: 'not an auth id', protected: false, groupNotes: false },
    { owner: 7, protected: false, groupNotes: false },
    { protected: 'yes', groupNotes: false },
    { owner: 'root@pam' },
  ]) {
    t.throws(
      () => parseListingEntries(body([{ ...entry(undefined, '1', 1), ...bad }]), 's'),
      { code: 'ERR_LR_SOURCE_BAD_RESPONSE' },
      JSON.stringify(bad),
    );
  }
});

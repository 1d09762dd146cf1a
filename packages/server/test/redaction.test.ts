/*
 * Error messages sent to clients name no server path: the store directory is shown as
 * `<store>`, and only where it is a path prefix (issue 15: `--store .` turned
 * `drive-scsi7.img.fidx` into `drive-scsi7<store>img<store>fidx`).
 */
import { DatastoreError } from '@liverestore/datastore';
import test from 'ava';
import { describeError } from '../src/errors.js';

const cases: readonly (readonly [storeDir: string, message: string, expected: string])[] = [
  ['.', 'the snapshot has no file drive-scsi7.img.fidx', 'the snapshot has no file drive-scsi7.img.fidx'],
  ['.', 'no datastore at . (missing .chunks/)', 'no datastore at <store> (missing .chunks/)'],
  ['./', 'cannot read ./vm/100/x.img.fidx.', 'cannot read <store>/vm/100/x.img.fidx.'],
  ['/srv/store', '/srv/store/.chunks/abcd/abcd is a FIFO', '<store>/.chunks/abcd/abcd is a FIFO'],
  [
    '/srv/store/',
    'at "/srv/store": x, /srv/store/a and /srv/store2/b',
    'at "<store>": x, <store>/a and /srv/store2/b',
  ],
  ['/srv/st.re', 'in /srv/stare/x and /srv/st.re/x', 'in /srv/stare/x and <store>/x'],
];

for (const [storeDir, message, expected] of cases) {
  test(`--store ${storeDir}: "${message}"`, (t) => {
    t.is(
      describeError(new DatastoreError('ERR_LR_SNAPSHOT_FILE_NOT_FOUND', message), storeDir).message,
      expected,
    );
  });
}

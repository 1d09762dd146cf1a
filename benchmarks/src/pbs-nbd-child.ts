/**
 * The NBD server of A and C in its own process, as `liverestore nbd` is B's: the PBS
 * read path's readers (A: old-reader.ts, C: pbs-today-reader.ts) behind @liverestore/nbd's
 * server, so all three systems speak the same NBD code to the same client and differ only
 * in the read path.
 *
 *   node pbs-nbd-child.js A|C DECODE_THREADS SOURCE_URL SNAPSHOT DRIVE…
 *
 * DECODE_THREADS: C's decode threads (0: inline on the event loop; A ignores it).
 *
 * Prints HOST:PORT once listening; stops on SIGTERM.
 */

import { type NbdExport, startNbdServer } from '@liverestore/nbd';
import { openPbsReadPath } from './live-systems.js';

const [which = '', threads = '0', url = '', snapshot = '', ...names] = process.argv.slice(2);
if (which !== 'A' && which !== 'C') throw new TypeError(`system must be A or C, got "${which}"`);
const system = await openPbsReadPath(which, url, snapshot, names, Number(threads));
const exports: NbdExport[] = system.drives.map((drive) => ({
  name: drive.name,
  size: drive.size,
  read: (buffer, offset) => drive.read(buffer, offset),
  // The old design knew nothing of holes; the workload never asks, so C says the same.
  blockStatus: (_offset, length) => [{ length, hole: false, zero: false }],
}));
const server = await startNbdServer({ exports, listen: { host: '127.0.0.1', port: 0 } });
process.stdout.write(`${server.address}\n`);
process.once('SIGTERM', () => {
  void server
    .close()
    .then(() => system.close())
    .then(() => process.exit(0));
});

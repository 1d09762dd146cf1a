/**
 * A's NBD server in its own process, as `liverestore nbd` is B's: the old-design readers
 * (old-reader.ts) behind @liverestore/nbd's server, so both systems speak the same NBD
 * code to the same client and differ only in the read path.
 *
 *   node old-nbd-child.js SOURCE_URL SNAPSHOT DRIVE…
 *
 * Prints HOST:PORT once listening; stops on SIGTERM.
 */

import { type NbdExport, startNbdServer } from '@liverestore/nbd';
import { openOldSystem } from './live-systems.js';

const [url = '', snapshot = '', ...names] = process.argv.slice(2);
const system = await openOldSystem(url, snapshot, names);
const exports: NbdExport[] = system.drives.map((drive) => ({
  name: drive.name,
  size: drive.size,
  read: (buffer, offset) => drive.read(buffer, offset),
  // The old design knew nothing of holes: every extent is data.
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

/**
 * A measurement script (not a registered benchmark, no timing): the peak RSS of a
 * `liverestore nbd` process while N clients each ask for 32 MiB reads and never read a
 * reply — the probe of issue 15 that reached 4 GB with 40 clients. Each N gets a fresh
 * server process; the script reads its VmHWM after the clients have sent everything and
 * the server has had time to answer what its budget allows, then its VmRSS once they are
 * gone.
 *
 *   node benchmarks/dist/src/nbd-slow-readers.js [N ...]   (default 1 8 20 40)
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import * as W from '@liverestore/nbd/internal';
import { vmImageSet, writeImageFile } from '@liverestore/testkit';
import { startLiverestoreProcess } from './liverestore-process.js';
import { peakRssBytes } from './proc-stats.js';

const MiB = 1024 * 1024;
const READS_PER_CLIENT = 8;
const READ_BYTES = 32 * MiB;
const SETTLE_MS = 8000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Client flags, NBD_OPT_GO of the default export, then the reads: all sent at once. */
function handshakeAndReads(exportSize: number): Buffer {
  const parts = [
    W.encodeClientFlags(W.NBD_FLAG_C_FIXED_NEWSTYLE | W.NBD_FLAG_C_NO_ZEROES),
    W.encodeOption(W.NBD_OPT_GO, W.encodeGoRequest('')),
  ];
  for (let k = 0; k < READS_PER_CLIENT; k++) {
    const offset = (k * READ_BYTES) % (exportSize - READ_BYTES);
    parts.push(
      W.encodeRequestHeader({
        flags: 0,
        type: W.NBD_CMD_READ,
        handle: BigInt(k + 1),
        offset,
        length: READ_BYTES,
      }),
    );
  }
  return Buffer.concat(parts);
}

async function measure(storeDir: string, clients: number, exportSize: number): Promise<void> {
  const server = await startLiverestoreProcess([
    'nbd',
    '--from',
    storeDir,
    'vm/100',
    '--listen',
    '127.0.0.1:0',
  ]);
  try {
    const [host, port] = server.address.split(':');
    const sockets: Socket[] = [];
    for (let k = 0; k < clients; k++) {
      const s = connect({ host: host!, port: Number(port) });
      s.on('error', () => {});
      s.pause(); // never reads: replies pile up on the server side
      s.write(handshakeAndReads(exportSize));
      sockets.push(s);
    }
    await sleep(SETTLE_MS);
    const peak = (await peakRssBytes(server.pid)) ?? Number.NaN;
    for (const s of sockets) s.destroy();
    await sleep(3000);
    const after = await rssBytes(server.pid);
    console.log(
      `${String(clients).padStart(3)} clients × ${READS_PER_CLIENT} reads of 32 MiB: peak RSS ${(peak / MiB).toFixed(0)} MiB, ` +
        `RSS 3 s after they left ${(after / MiB).toFixed(0)} MiB`,
    );
  } finally {
    server.stop();
    await server.exited;
  }
}

const counts = process.argv.slice(2).map(Number);
const scratch = await mkdtemp(join(tmpdir(), 'lr-slow-readers-'));
try {
  const sizeBytes = 512 * MiB;
  const [drive] = vmImageSet(3, { drives: 1, sizeBytes });
  const imagePath = join(scratch, 'drive-scsi0.raw');
  await writeImageFile(drive!.spec, imagePath);
  const store = await Datastore.create(join(scratch, 'store'));
  await backup(store, { type: 'vm', id: '100', inputs: [{ name: 'drive-scsi0', path: imagePath }] });
  await rm(imagePath);
  for (const n of counts.length > 0 ? counts : [1, 8, 20, 40])
    await measure(join(scratch, 'store'), n, sizeBytes);
} finally {
  await rm(scratch, { recursive: true, force: true });
}

/**
 * Two probes of issue 15 against a real `liverestore nbd` process (scripts, not registered
 * benchmarks: they measure memory and correctness, not speed).
 *
 * - `slow-readers [N ...]` (default 1 8 20 40): the server's peak RSS while N clients each
 *   ask for 32 MiB reads and never read a reply (it reached 4 GB with 40 clients). Each N
 *   gets a fresh server; its VmHWM is read after the clients have sent everything and the
 *   server has answered what its budget allows, then its VmRSS once they are gone.
 * - `idle-flood [N]` (default 20000): a client opens the export, then two child processes
 *   open N connections in all and keep them (testkit's connection flood); the first client
 *   then reads 64 MiB that are not cached and compares them with the source (with 19,970
 *   idle connections this failed with EIO once the descriptors were gone). The CLI test
 *   nbd-connection-flood.test.ts checks the same at this scale in CI.
 *
 *   node benchmarks/dist/src/nbd-hostile-clients.js slow-readers|idle-flood [N ...]
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { backup, Datastore } from '@liverestore/datastore';
import { NbdClient } from '@liverestore/nbd';
import * as W from '@liverestore/nbd/internal';
import {
  type ConnectionFlood,
  type ImageSpec,
  imageBytes,
  startConnectionFlood,
  vmImageSet,
  writeImageFile,
} from '@liverestore/testkit';
import { type LiverestoreProcess, startLiverestoreProcess } from './liverestore-process.js';
import { peakRssBytes } from './proc-stats.js';

const MiB = 1024 * 1024;
const READS_PER_CLIENT = 8;
const READ_BYTES = 32 * MiB;
const SETTLE_MS = 8000;

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Client flags, NBD_OPT_GO of the default export, then the reads: all sent at once. */
function handshakeAndReads(exportSize: number): Buffer {
  const parts = [W.encodeClientOpening('')];
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

/** `liverestore nbd` over the store's one snapshot, default limits, on a free loopback port. */
function startNbd(storeDir: string): Promise<LiverestoreProcess> {
  return startLiverestoreProcess(['nbd', '--from', storeDir, 'vm/100', '--listen', '127.0.0.1:0']);
}

async function measure(storeDir: string, clients: number, exportSize: number): Promise<void> {
  const server = await startNbd(storeDir);
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

async function idleFlood(storeDir: string, total: number, spec: ImageSpec): Promise<void> {
  const server = await startNbd(storeDir);
  let flood: ConnectionFlood | undefined;
  try {
    const [host, port] = server.address.split(':');
    const client = await NbdClient.connect({ host: host!, port: Number(port) });
    flood = await startConnectionFlood({
      host: host!,
      port: Number(port),
      connections: total,
      processes: 2,
      greetingBytes: W.GREETING_BYTES,
      opening: W.encodeClientOpening(''),
    });
    const { kept, refused, failed } = flood.counts;
    const offset = 256 * MiB;
    const buffer = Buffer.alloc(64 * MiB);
    let outcome: string;
    try {
      for (let at = 0; at < buffer.length; at += 4 * MiB)
        await client.read(buffer.subarray(at, at + 4 * MiB), offset + at);
      outcome = buffer.equals(imageBytes(spec, offset, buffer.length))
        ? 'equal to the source'
        : 'WRONG BYTES';
    } catch (err) {
      outcome = `failed: ${(err as Error).message}`;
    }
    console.log(
      `${total} connection attempts while one client is open: ${kept} kept, ${refused} refused, ${failed} failed; ` +
        `that client's 64 MiB uncached read: ${outcome}`,
    );
    await client.close();
  } finally {
    await flood?.close();
    server.stop();
    await server.exited;
  }
}

const [mode, ...args] = process.argv.slice(2);
const scratch = await mkdtemp(join(tmpdir(), 'lr-hostile-clients-'));
try {
  const sizeBytes = 512 * MiB;
  const [drive] = vmImageSet(3, { drives: 1, sizeBytes });
  const imagePath = join(scratch, 'drive-scsi0.raw');
  await writeImageFile(drive!.spec, imagePath);
  const store = await Datastore.create(join(scratch, 'store'));
  await backup(store, { type: 'vm', id: '100', inputs: [{ name: 'drive-scsi0', path: imagePath }] });
  await rm(imagePath);
  const storeDir = join(scratch, 'store');
  const numbers = args.map(Number);
  if (mode === 'idle-flood') await idleFlood(storeDir, numbers[0] ?? 20_000, drive!.spec);
  else if (mode === 'slow-readers')
    for (const n of numbers.length > 0 ? numbers : [1, 8, 20, 40]) await measure(storeDir, n, sizeBytes);
  else throw new Error('usage: nbd-hostile-clients.js slow-readers|idle-flood [N ...]');
} finally {
  await rm(scratch, { recursive: true, force: true });
}

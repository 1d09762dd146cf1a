/**
 * One process of a connection flood (see connection-flood.ts). Arguments: HOST PORT COUNT
 * GREETING_BYTES OPENING_HEX. Opens COUNT connections to HOST:PORT, 200 at a time. A
 * connection that receives GREETING_BYTES answers with the OPENING bytes and is then kept,
 * idle (what the server sends later is read and dropped); one the server closes before its
 * greeting is refused; one that never connects (a local error) is failed. Prints one JSON
 * line of {@link FloodCounts} once every attempt has settled, keeps the kept connections
 * until its stdin ends, then prints `{"closedByServer": N}` (kept connections the server
 * closed meanwhile), closes them and exits.
 */

import { connect, type Socket } from 'node:net';
import type { FloodCounts } from './connection-flood.js';

const BATCH = 200;

const [host, port, count, greetingBytes, openingHex] = process.argv.slice(2);
const opening = Buffer.from(openingHex ?? '', 'hex');
const counts: FloodCounts = { kept: 0, refused: 0, failed: 0, errors: [] };
const kept: Socket[] = [];
let closedByServer = 0;
let ending = false;

/** One attempt; resolves once it is kept, refused or failed. */
function attempt(): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: host!, port: Number(port) });
    let connected = false;
    let received = 0;
    let error: string | undefined;
    socket.once('connect', () => {
      connected = true;
    });
    socket.on('data', (data: Buffer) => {
      const before = received;
      received += data.length;
      if (before < Number(greetingBytes) && received >= Number(greetingBytes)) {
        socket.write(opening);
        kept.push(socket);
        counts.kept++;
        resolve();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
    });
    socket.on('close', () => {
      if (received >= Number(greetingBytes)) {
        if (!ending) closedByServer++;
      } else if (connected) {
        counts.refused++;
        resolve();
      } else {
        counts.failed++;
        if (counts.errors.length < 5) counts.errors.push(error ?? 'closed before connecting');
        resolve();
      }
    });
  });
}

for (let done = 0; done < Number(count); done += BATCH)
  await Promise.all(Array.from({ length: Math.min(BATCH, Number(count) - done) }, attempt));
process.stdout.write(`${JSON.stringify(counts)}\n`);
process.stdin.resume();
await new Promise((resolve) => process.stdin.once('end', resolve));
ending = true;
process.stdout.write(`${JSON.stringify({ closedByServer })}\n`);
for (const socket of kept) socket.destroy();

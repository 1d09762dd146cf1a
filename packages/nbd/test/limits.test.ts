/*
 * Server-wide limits with real sockets: the reply budget shared by all connections, the
 * cut of clients that never read their replies, the connection limit, the opt-in idle
 * timeout. Each test waits for the event it is about (a connection blocked, closed,
 * refused) and bounds the wait with t.timeout, so a broken limit fails with a message.
 */

import { connect, type Socket } from 'node:net';
import { imageBytes } from '@liverestore/testkit';
import { NBD_SERVER_DEFAULTS } from '../src/index.js';
import * as P from '../src/wire.js';
import { fixtureTest, MiB, MiniClient, serve, until, WireReader } from './helpers.js';

const test = fixtureTest();

/** A client past its handshake that asks for `reads` reads of 1 MiB and never reads a reply. */
async function neverReader(port: number, reads: number): Promise<MiniClient> {
  const c = await MiniClient.connect(port);
  await c.greet();
  await c.go('');
  c.socket.pause();
  for (let k = 0; k < reads; k++)
    c.socket.write(
      P.encodeRequestHeader({ flags: 0, type: P.NBD_CMD_READ, handle: BigInt(k), offset: 0, length: MiB }),
    );
  return c;
}

test.serial('40 never-reading clients together stay within maxServerQueuedBytes', async (t) => {
  const f = t.context.fixture;
  const budget = 8 * MiB;
  // Each connection alone may queue 4 MiB: the 40 clients of issue 15's probe would hold
  // 160 MiB without the budget (checked: 167,776,640 bytes held with the budget off).
  const { server } = await serve(t, f, { maxQueuedBytes: 4 * MiB, maxServerQueuedBytes: budget });
  t.timeout(90_000, 'the connections never all stopped reading requests');
  const clients: MiniClient[] = [];
  for (let k = 0; k < 40; k++) clients.push(await neverReader(server.port!, 48));
  t.teardown(() => {
    for (const c of clients) c.socket.destroy();
  });
  // More is asked (1,920 MiB) than the kernel's socket buffers take, so every connection ends
  // up waiting: at its own bound or for the shared budget.
  await until(() => server.stats().blockedConnections === clients.length);
  const stats = server.stats();
  t.log(stats);
  t.true(stats.queuedBytes <= budget, `${stats.queuedBytes} bytes held, budget ${budget}`);
  t.is(stats.connections, clients.length);
});

test.serial(
  'replies written from the cache pin whole chunks: the budget counts them, never-reading clients pin at most its worth',
  async (t) => {
    const f = t.context.fixture;
    const budget = 4 * MiB;
    // 64 KiB replies each pin a 1 MiB chunk: charged by their length alone, the 4 MiB budget
    // would let 64 of them pin 16 chunks (the cache lends 8 MiB of its 16).
    const { server, cache } = await serve(t, f, { maxQueuedBytes: 2 * MiB, maxServerQueuedBytes: budget });
    t.timeout(90_000, 'the connections never all stopped reading requests');
    const size = f.drives[0]!.spec.sizeBytes;
    const clients: MiniClient[] = [];
    t.teardown(() => {
      for (const c of clients) c.socket.destroy();
    });
    let mostLent = 0;
    const sampler = setInterval(() => {
      mostLent = Math.max(mostLent, cache.stats().lentBytes);
    }, 1);
    t.teardown(() => clearInterval(sampler));
    for (let n = 0; n < 4; n++) {
      const c = await MiniClient.connect(server.port!);
      clients.push(c);
      await c.greet();
      await c.go('');
      c.socket.pause();
      for (let k = 0; k < 600; k++) {
        const offset = (((k + n * 5) * MiB + (k % 16) * 65536) % (size - 65536)) & ~4095;
        c.socket.write(
          P.encodeRequestHeader({ flags: 0, type: P.NBD_CMD_READ, handle: BigInt(k), offset, length: 65536 }),
        );
      }
    }
    await until(() => server.stats().blockedConnections === clients.length);
    mostLent = Math.max(mostLent, cache.stats().lentBytes);
    const stats = server.stats();
    t.log(stats, `most lent ${mostLent}`);
    t.true(stats.queuedBytes <= budget, `${stats.queuedBytes} bytes held, budget ${budget}`);
    t.true(mostLent > 0, 'replies were written from the cache');
    t.true(mostLent <= budget, `${mostLent} bytes of cache pinned by replies, budget ${budget}`);
    for (const c of clients) c.socket.destroy();
    await until(() => server.stats().connections === 0 && cache.stats().inFlight === 0);
    t.is(cache.stats().lentBytes, 0);
    t.is(server.stats().queuedBytes, 0);
  },
);

test.serial(
  'clients that never read are cut after replyStallTimeoutMs; what they held is released',
  async (t) => {
    const f = t.context.fixture;
    const { server } = await serve(t, f, { maxServerQueuedBytes: 8 * MiB, replyStallTimeoutMs: 300 });
    t.timeout(90_000, 'the never-reading clients were not cut');
    const stuck: MiniClient[] = [];
    for (let k = 0; k < 5; k++) stuck.push(await neverReader(server.port!, 48));
    // The budget is spent by the never-readers (the first ones may already be cut when the
    // last arrive): a good client gets its read, at the latest once they are all cut.
    const good = await MiniClient.connect(server.port!);
    await good.greet();
    await good.go('drive-scsi1.img');
    const r = await good.request(P.NBD_CMD_READ, MiB, 2 * MiB);
    t.is(r.error, 0);
    t.true(r.data.equals(imageBytes(f.drives[1]!.spec, MiB, 2 * MiB)));
    // The stuck clients are paused, so they would not notice the close: the server's count shows it.
    await until(() => server.stats().stalledConnections === stuck.length);
    await good.disconnect();
    await until(() => server.stats().connections === 0);
    const stats = server.stats();
    t.is(stats.stalledConnections, stuck.length);
    t.is(stats.queuedBytes, 0, 'every byte the cut connections held went back to the budget');
  },
);

/** Connects; resolves 'greeted' when the greeting arrives, 'refused' when closed without one. */
function attempt(port: number, sockets: Socket[]): Promise<'greeted' | 'refused'> {
  const s = connect({ host: '127.0.0.1', port });
  sockets.push(s);
  const w = new WireReader(s);
  return w.read(P.GREETING_BYTES).then(
    () => 'greeted' as const,
    () => 'refused' as const,
  );
}

test.serial(
  'maxConnections: connections over the limit are closed at once; a connected client still reads',
  async (t) => {
    const f = t.context.fixture;
    const lines: string[] = [];
    const { server } = await serve(t, f, { maxConnections: 50, log: (line) => lines.push(line) });
    t.timeout(90_000, 'a connection attempt got neither a greeting nor a close');
    const good = await MiniClient.connect(server.port!);
    await good.greet();
    await good.go('drive-scsi1.img');
    const sockets: Socket[] = [];
    t.teardown(() => {
      for (const s of sockets) s.destroy();
    });
    const outcomes: string[] = [];
    for (let k = 0; k < 200; k++) outcomes.push(await attempt(server.port!, sockets));
    t.is(outcomes.filter((o) => o === 'greeted').length, 49);
    t.is(outcomes.filter((o) => o === 'refused').length, 151);
    t.is(server.stats().refusedConnections, 151);
    t.is(server.stats().connections, 50);
    t.is(lines.length, 1, 'one log line for the burst, not one per refusal');
    t.regex(lines[0]!, /maxConnections/);
    // An uncached read (the cache is empty for drive-scsi1) still works for the connected client.
    const r = await good.request(P.NBD_CMD_READ, 5 * MiB, 3 * MiB);
    t.is(r.error, 0);
    t.true(r.data.equals(imageBytes(f.drives[1]!.spec, 5 * MiB, 3 * MiB)));
    await good.disconnect();
  },
);

test.serial(
  'idleTimeoutMs (opt-in) closes a connection with nothing in flight; off by default',
  async (t) => {
    const f = t.context.fixture;
    // Off by default: QEMU keeps its connection open while the guest is idle.
    t.is(NBD_SERVER_DEFAULTS.idleTimeoutMs, 0);
    const { server } = await serve(t, f, { idleTimeoutMs: 200 });
    t.timeout(60_000, 'the idle connection was not closed');
    const c = await MiniClient.connect(server.port!);
    await c.greet();
    await c.go('');
    const r = await c.request(P.NBD_CMD_READ, 0, 4096);
    t.is(r.error, 0);
    await c.wire.closedByPeer();
    t.is(server.stats().idleConnections, 1);
  },
);

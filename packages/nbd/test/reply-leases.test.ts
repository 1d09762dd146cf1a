/*
 * Read replies written from the cache's pages (ReadLease): the bytes are right, and every
 * pin a reply holds is dropped exactly once, after the socket took the reply, when the
 * client goes away in the middle of replies, and when reads are cut before their chunk
 * arrived. "Pins" are the cache's slot pins and its lent bytes, both back to zero.
 */

import type { ChunkCache } from '@liverestore/reader';
import { chunkCacheInternals } from '@liverestore/reader/internal';
import { imageBytes } from '@liverestore/testkit';
import * as P from '../src/wire.js';
import { CHUNK_BYTES, fixtureTest, MiB, MiniClient, prng, serve, until, zeroChunks } from './helpers.js';

const test = fixtureTest();

function noPins(cache: ChunkCache): boolean {
  return chunkCacheInternals(cache).table.totalPins() === 0 && cache.stats().lentBytes === 0;
}

test.serial('reads of every size are right; once their replies left, no pin is held', async (t) => {
  const f = t.context.fixture;
  const { server, cache } = await serve(t, f);
  t.timeout(60_000, 'a reply did not arrive, or pins stayed');
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  await c.go('');
  const spec = f.drives[0]!.spec;
  const random = prng(3);
  const reads: Promise<void>[] = [];
  for (let k = 0; k < 120; k++) {
    const length = [4096, 64 * 1024, 512 * 1024, 3 * MiB + 100][k % 4]!;
    const offset = Math.floor(random() * (spec.sizeBytes - length));
    reads.push(
      c.request(P.NBD_CMD_READ, offset, length).then((r) => {
        t.is(r.error, 0);
        if (!r.data.equals(imageBytes(spec, offset, length))) t.fail(`bytes of ${length} at ${offset}`);
      }),
    );
  }
  await Promise.all(reads);
  await until(() => server.stats().queuedBytes === 0);
  t.true(
    noPins(cache),
    `${chunkCacheInternals(cache).table.totalPins()} pins, ${cache.stats().lentBytes} bytes lent`,
  );
  await c.disconnect();
});

test.serial('a client that goes away in the middle of its replies leaves no pin behind', async (t) => {
  const f = t.context.fixture;
  const { server, cache } = await serve(t, f, { maxQueuedBytes: 64 * MiB, maxServerQueuedBytes: 64 * MiB });
  t.timeout(60_000, 'the replies never queued up, or pins stayed');
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  await c.go('');
  c.socket.pause();
  // Whole-chunk reads of six data chunks (the cache lends them all): every reply is a
  // lease, and many more are asked than the socket buffers take, so leases wait unsent.
  const zero = new Set(zeroChunks(f.drives[0]!.spec));
  const chunks = [...Array(20).keys()].filter((i) => !zero.has(i)).slice(0, 6);
  for (let k = 0; k < 400; k++) {
    const offset = chunks[k % chunks.length]! * CHUNK_BYTES;
    c.socket.write(
      P.encodeRequestHeader({
        flags: 0,
        type: P.NBD_CMD_READ,
        handle: BigInt(k),
        offset,
        length: CHUNK_BYTES,
      }),
    );
  }
  // Blocked with nothing in flight: its replies are written, most of them waiting unsent.
  await until(() => server.stats().blockedConnections === 1 && server.stats().inFlight === 0);
  t.true(cache.stats().lentBytes > 0, 'unsent replies hold their chunks lent');
  t.log(server.stats(), cache.stats().lentBytes);
  c.socket.destroy();
  await until(() => server.stats().connections === 0);
  await until(() => cache.stats().inFlight === 0);
  t.true(
    noPins(cache),
    `${chunkCacheInternals(cache).table.totalPins()} pins, ${cache.stats().lentBytes} bytes lent`,
  );
  t.is(server.stats().queuedBytes, 0);
  cache.checkInvariants();
});

test.serial(
  'reads cut before their chunks arrived (the client left) hold no pin once the loads end',
  async (t) => {
    const f = t.context.fixture;
    const { server, cache } = await serve(t, f);
    t.timeout(60_000, 'pins stayed after the loads ended');
    const c = await MiniClient.connect(server.port!);
    await c.greet();
    await c.go('drive-scsi1.img');
    const size = f.drives[1]!.spec.sizeBytes;
    for (let k = 0; k * CHUNK_BYTES + 2 * MiB <= size; k++) {
      c.socket.write(
        P.encodeRequestHeader({
          flags: 0,
          type: P.NBD_CMD_READ,
          handle: BigInt(k),
          offset: k * CHUNK_BYTES + 4096,
          length: 2 * MiB,
        }),
      );
    }
    await until(() => server.stats().inFlight > 0);
    c.socket.destroy();
    await until(() => server.stats().connections === 0 && cache.stats().inFlight === 0);
    t.true(
      noPins(cache),
      `${chunkCacheInternals(cache).table.totalPins()} pins, ${cache.stats().lentBytes} bytes lent`,
    );
    t.is(server.stats().queuedBytes, 0);
    cache.checkInvariants();
  },
);

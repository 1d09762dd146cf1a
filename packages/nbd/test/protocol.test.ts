import { connect } from 'node:net';
import { join } from 'node:path';
import { imageBytes } from '@liverestore/testkit';
import * as P from '../src/wire.js';
import {
  DRIVE_SIZES,
  fixtureTest,
  MiB,
  MiniClient,
  prng,
  serve,
  until,
  WireReader,
  zeroChunks,
} from './helpers.js';

const test = fixtureTest();

test('handshake, OPT_LIST, OPT_GO, concurrent reads, EINVAL, EPERM, FLUSH, DISC', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  t.deepEqual(server.exports, ['drive-scsi0.img', 'drive-scsi1.img']);
  const c = await MiniClient.connect(server.port!);
  const hflags = await c.greet();
  t.is(hflags, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
  t.deepEqual(await c.list(), ['drive-scsi0.img', 'drive-scsi1.img']);
  const unknown = await c.option(P.NBD_OPT_GO, MiniClient.goData('nope'));
  t.is(unknown[0]!.type, P.NBD_REP_ERR_UNKNOWN);
  const unsup = await c.option(99);
  t.is(unsup[0]!.type, P.NBD_REP_ERR_UNSUP);
  const meta = await c.option(P.NBD_OPT_LIST_META_CONTEXT, Buffer.alloc(8));
  t.is(meta[0]!.type, P.NBD_REP_ERR_INVALID, 'meta contexts need structured replies first');
  const info = await c.go('drive-scsi1.img');
  t.is(info.size, BigInt(DRIVE_SIZES[1]!));
  t.is(
    info.flags,
    P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_READ_ONLY | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_CAN_MULTI_CONN,
  );
  t.deepEqual(info.blockSize, [1, 4096, 32 * MiB]);
  const spec = f.drives[1]!.spec;
  const rnd = prng(5);
  const reads = Array.from({ length: 64 }, () => {
    const length = 1 + Math.floor(rnd() * 3 * MiB);
    const offset = Math.floor(rnd() * (spec.sizeBytes - length));
    return { offset, length };
  });
  reads.push({ offset: spec.sizeBytes - 4096, length: 4096 }, { offset: 0, length: spec.sizeBytes });
  const replies = await Promise.all(reads.map((r) => c.request(P.NBD_CMD_READ, r.offset, r.length)));
  reads.forEach((r, k) => {
    t.is(replies[k]!.error, 0);
    t.true(replies[k]!.data.equals(imageBytes(spec, r.offset, r.length)), `read ${r.offset}+${r.length}`);
  });
  t.is((await c.request(P.NBD_CMD_READ, spec.sizeBytes - 10, 11)).error, P.NBD_EINVAL);
  t.is((await c.request(P.NBD_CMD_READ, 0, 32 * MiB + 1)).error, P.NBD_EOVERFLOW);
  t.is((await c.request(P.NBD_CMD_WRITE, 0, 4096, Buffer.alloc(4096, 1))).error, P.NBD_EPERM);
  t.is((await c.request(P.NBD_CMD_TRIM, 0, 4096)).error, P.NBD_EPERM);
  t.is((await c.request(P.NBD_CMD_FLUSH, 0, 0)).error, 0);
  t.is((await c.request(77, 0, 0)).error, P.NBD_EINVAL);
  t.is((await c.request(P.NBD_CMD_BLOCK_STATUS, 0, 4096)).error, P.NBD_EINVAL, 'no meta context');
  // Still in sync after the refused write payload:
  const after = await c.request(P.NBD_CMD_READ, 1000, 5000);
  t.true(after.data.equals(imageBytes(spec, 1000, 5000)));
  await c.disconnect();
});

test('structured replies and base:allocation block status', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const spec = f.drives[0]!.spec;
  const zeros = zeroChunks(spec);
  t.true(zeros.length > 0, 'the fixture has zero chunks');
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  t.is((await c.option(P.NBD_OPT_STRUCTURED_REPLY))[0]!.type, P.NBD_REP_ACK);
  const metaData = P.encodeMetaContextRequest('drive-scsi0.img', [P.BASE_ALLOCATION]);
  const set = await c.option(P.NBD_OPT_SET_META_CONTEXT, metaData);
  t.is(set[0]!.type, P.NBD_REP_META_CONTEXT);
  t.is(set[0]!.data.readUInt32BE(0), P.BASE_ALLOCATION_ID);
  t.is(set[1]!.type, P.NBD_REP_ACK);
  await c.go('drive-scsi0.img');
  const r = await c.request(P.NBD_CMD_READ, 123, 2 * MiB);
  t.is(r.chunks[0]!.type, P.NBD_REPLY_TYPE_OFFSET_DATA);
  t.true(r.data.equals(imageBytes(spec, 123, 2 * MiB)));
  const bad = await c.request(P.NBD_CMD_READ, spec.sizeBytes, 1);
  t.is(bad.error, P.NBD_EINVAL);
  t.is(bad.chunks[0]!.type, P.NBD_REPLY_TYPE_ERROR);
  const bs = await c.request(P.NBD_CMD_BLOCK_STATUS, 0, spec.sizeBytes);
  t.is(bs.chunks.length, 1);
  const payload = bs.chunks[0]!.payload;
  t.is(payload.readUInt32BE(0), P.BASE_ALLOCATION_ID);
  const holes = new Set<number>();
  let pos = 0;
  for (let k = 4; k < payload.length; k += 8) {
    const len = payload.readUInt32BE(k);
    const state = payload.readUInt32BE(k + 4);
    if (state === 3) for (let i = pos / MiB; i < (pos + len) / MiB; i++) holes.add(Math.floor(i));
    pos += len;
  }
  t.is(pos, spec.sizeBytes);
  t.deepEqual(
    [...holes].sort((a, b) => a - b),
    zeros,
  );
  await c.disconnect();
});

test('garbage, truncated and oversized handshakes close the connection; the next client works', async (t) => {
  const f = t.context.fixture;
  // The handshake timer must not be what closes them: only the protocol checks may.
  const { server } = await serve(t, f, { handshakeTimeoutMs: 600_000 });
  t.timeout(60_000, 'the server kept a connection that broke the protocol');
  const port = server.port!;
  const attempts: ((c: MiniClient) => Promise<void>)[] = [
    async (c) => {
      c.socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    },
    async (c) => {
      await c.greet();
      c.socket.write(Buffer.from('garbage-garbage-garbage'));
    },
    async (c) => {
      await c.greet();
      // Only the header of an oversized option: the server must not wait for its data.
      c.socket.write(P.encodeOption(P.NBD_OPT_GO, Buffer.alloc(1 << 20)).subarray(0, P.OPTION_HEADER_BYTES));
    },
    async (c) => {
      await c.greet();
      // 10 of the 100 data bytes the header announces, then the end of the stream.
      c.socket.write(P.encodeOption(P.NBD_OPT_GO, Buffer.alloc(100)).subarray(0, P.OPTION_HEADER_BYTES + 10));
      c.socket.end();
    },
    async (c) => {
      await c.greet();
      await c.go('');
      c.socket.write(Buffer.alloc(28, 0xee)); // bad request magic
    },
  ];
  for (const attempt of attempts) {
    const c = await MiniClient.connect(port);
    await attempt(c);
    await c.wire.closedByPeer();
    t.pass();
  }
  const good = await MiniClient.connect(port);
  await good.greet();
  const info = await good.go('');
  t.is(info.size, BigInt(DRIVE_SIZES[0]!));
  const r = await good.request(P.NBD_CMD_READ, 5 * MiB, 4096);
  t.true(r.data.equals(imageBytes(f.drives[0]!.spec, 5 * MiB, 4096)));
  await good.disconnect();
});

test('NBD_OPT_EXPORT_NAME, Unix socket, and close() with a connected client', async (t) => {
  const f = t.context.fixture;
  const path = join(f.dir, 'nbd.sock');
  const { server } = await serve(t, f, { listen: { socket: path } });
  t.is(server.address, path);
  t.is(server.port, undefined);
  const c = await MiniClient.connect(path);
  await c.greet();
  c.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('drive-scsi1.img'));
  const reply = await c.wire.read(10);
  t.is(reply.readBigUInt64BE(0), BigInt(DRIVE_SIZES[1]!));
  await server.close();
  await c.wire.closedByPeer();
  t.pass();
});

test('a client that never reads does not make the server buffer without bound', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f, { maxQueuedBytes: 8 * MiB });
  t.timeout(60_000, 'the connection never stopped reading requests');
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  await c.go('');
  c.socket.pause();
  // 200 reads of 1 MiB requested; the client reads nothing.
  for (let k = 0; k < 200; k++)
    c.socket.write(
      P.encodeRequestHeader({ flags: 0, type: P.NBD_CMD_READ, handle: BigInt(k), offset: 0, length: MiB }),
    );
  // Once the kernel's socket buffers are full, the connection stops at its bound.
  await until(() => server.stats().blockedConnections === 1);
  const stats = server.stats();
  t.log(stats);
  // Bounded: the limit plus the one request admitted before the limit was seen.
  t.true(stats.queuedBytes <= 9 * MiB + 64);
  t.true(stats.queuedBytes > 8 * MiB, 'the server did answer until the limit');
  // Another client is served meanwhile.
  const other = await MiniClient.connect(server.port!);
  await other.greet();
  await other.go('drive-scsi1.img');
  const r = await other.request(P.NBD_CMD_READ, 0, 4096);
  t.true(r.data.equals(imageBytes(f.drives[1]!.spec, 0, 4096)));
  await other.disconnect();
  c.socket.destroy();
});

test('a raw socket that sends nothing is closed on server close', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const s = connect({ host: '127.0.0.1', port: server.port! });
  const w = new WireReader(s);
  await w.read(18);
  await server.close();
  await w.closedByPeer();
  t.pass();
});

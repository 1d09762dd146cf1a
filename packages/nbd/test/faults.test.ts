import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { Datastore } from '@liverestore/datastore';
import { toHex } from '@liverestore/format';
import { imageBytes } from '@liverestore/testkit';
import * as P from '../src/wire.js';
import { fixtureTest, MiB, MiniClient, prng, serve, until, zeroChunks } from './helpers.js';

const test = fixtureTest();

test.serial('hostile clients (random bytes) never disturb a well-behaved client', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const port = server.port!;
  const rnd = prng(99);
  const spec = f.drives[0]!.spec;
  const good = await MiniClient.connect(port);
  await good.greet();
  await good.go('');
  const deadline = Date.now() + 3000;
  let hostile = 0;
  const fuzz = (async () => {
    while (Date.now() < deadline) {
      const c = await MiniClient.connect(port);
      hostile++;
      const phase = Math.floor(rnd() * 3);
      try {
        if (phase >= 1) await c.greet();
        if (phase === 2) await c.go('drive-scsi1.img');
      } catch {}
      const junk = Buffer.alloc(1 + Math.floor(rnd() * 200));
      for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rnd() * 256);
      // Half the time, a well-formed header with random fields.
      if (rnd() < 0.5 && junk.length >= 28) junk.writeUInt32BE(P.NBD_REQUEST_MAGIC, 0);
      c.socket.write(junk);
      if (rnd() < 0.5) c.socket.destroy();
      else setTimeout(() => c.socket.destroy(), 50);
    }
  })();
  let reads = 0;
  while (Date.now() < deadline) {
    const offset = Math.floor(rnd() * (spec.sizeBytes - 65536));
    const r = await good.request(P.NBD_CMD_READ, offset, 65536);
    t.is(r.error, 0);
    if (!r.data.equals(imageBytes(spec, offset, 65536))) t.fail(`wrong data at ${offset}`);
    reads++;
  }
  await fuzz;
  t.log(`${hostile} hostile connections, ${reads} good reads`);
  await good.disconnect();
  // Every connection is gone once its client closed it: none is left behind in the server.
  t.timeout(20_000, 'hostile connections stayed open');
  await until(() => server.stats().connections === 0);
});

test.serial('a corrupt chunk fails only the requests touching it (EIO)', async (t) => {
  const f = t.context.fixture;
  const { server, snapshot } = await serve(t, f);
  const reader = await snapshot.openArchive('drive-scsi1.img');
  const zeros = new Set(zeroChunks(f.drives[1]!.spec));
  let bad = 0;
  while (zeros.has(bad)) bad++;
  const store = await Datastore.open(f.storeDir);
  await writeFile(store.chunkPath(toHex(reader.index.digestAt(bad))), Buffer.from('not a blob'));
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  t.is((await c.option(P.NBD_OPT_STRUCTURED_REPLY))[0]!.type, P.NBD_REP_ACK);
  await c.go('drive-scsi1.img');
  const spec = f.drives[1]!.spec;
  const good = 11 * MiB;
  const [r1, r2] = await Promise.all([
    c.request(P.NBD_CMD_READ, bad * MiB + 100, 4096),
    c.request(P.NBD_CMD_READ, good, 4096),
  ]);
  t.is(r1!.error, P.NBD_EIO);
  t.is(r1!.chunks[0]!.type, P.NBD_REPLY_TYPE_ERROR);
  t.is(r2!.error, 0);
  t.true(r2!.data.equals(imageBytes(spec, good, 4096)));
  await c.disconnect();
});

test.serial('close() lets in-flight reads finish', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  await c.go('');
  const spec = f.drives[0]!.spec;
  let answered = 0;
  const pending = Array.from({ length: 8 }, (_, k) =>
    c.request(P.NBD_CMD_READ, k * 2 * MiB, 2 * MiB).then((r) => {
      answered++;
      return r;
    }),
  );
  // Close once the server has every request (in flight or answered): a request still in
  // the socket when close() stops reading is not in flight, and a loaded machine can take
  // longer than any fixed pause to deliver eight.
  while (server.stats().inFlight + answered < pending.length) await new Promise((r) => setTimeout(r, 1));
  const closing = server.close();
  const replies = await Promise.all(pending);
  replies.forEach((r, k) => {
    t.is(r.error, 0);
    t.true(r.data.equals(imageBytes(spec, k * 2 * MiB, 2 * MiB)));
  });
  await closing;
  await c.wire.closedByPeer();
  await t.throwsAsync(
    new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: server.port! });
      s.on('connect', () => resolve(s));
      s.on('error', reject);
    }),
  );
});

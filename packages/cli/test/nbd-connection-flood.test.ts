/*
 * Issue 15, defect 2, at the scale: `liverestore nbd` in its own process with its
 * default limits and 20,000 file descriptors (the limit of the probe that found the
 * defect: 19,970 idle connections took every descriptor, the connected client's uncached
 * reads failed with EIO, new clients were refused, nothing was logged). 20,000 connection
 * attempts come from four child processes (5,000 each, within their own 20,000) and stay
 * idle past their handshake. The server's limit is set by the test (ulimit -n, as root in
 * CI): where it cannot be, the server does not start and the test fails.
 */
import { readFile } from 'node:fs/promises';
import { NBD_SERVER_DEFAULTS, NbdClient } from '@liverestore/nbd';
import { encodeClientOpening, GREETING_BYTES } from '@liverestore/nbd/internal';
import { startConnectionFlood } from '@liverestore/testkit';
import test from 'ava';
import { KiB, MiB, startServing } from './helpers.js';
import { storeWithSnapshot } from './store-fixture.js';

const DESCRIPTORS = 20_000;
const ATTEMPTS = 20_000;

test('nbd: 20,000 idle connections are refused past maxConnections, logged; a connected client keeps reading', async (t) => {
  t.timeout(150_000, 'the flood never settled, a read never returned, or no refusal was logged');
  const { store, vm } = await storeWithSnapshot(t, { seed: 1, sizes: [8 * MiB, 64 * KiB] });
  const source = await readFile(vm.drives[0]!.path);
  const server = await startServing(['nbd', '--listen', '127.0.0.1:0', '--from', store, 'vm/100'], {
    descriptorLimit: DESCRIPTORS,
  });
  t.teardown(() => server.stop());
  const [host, port] = server.address.split(':') as [string, string];
  const open = (): Promise<NbdClient> =>
    NbdClient.connect({ host, port: Number(port), exportName: 'drive-scsi0.img' });
  /** Reads [offset, offset + length) of drive-scsi0 through `client`: equal to the source, not all zeros (a chunk file was read). */
  const readsSource = async (client: NbdClient, offset: number, length: number): Promise<void> => {
    const data = Buffer.alloc(length);
    await client.read(data, offset);
    t.true(data.equals(source.subarray(offset, offset + length)), `bytes at ${offset}`);
    t.true(
      data.some((b) => b !== 0),
      `the test reads data at ${offset}, not a hole`,
    );
  };

  const early = await open();
  t.teardown(() => early.close());
  await readsSource(early, 0, 512 * KiB); // now cached

  const flood = await startConnectionFlood({
    host,
    port: Number(port),
    connections: ATTEMPTS,
    processes: 4,
    greetingBytes: GREETING_BYTES,
    opening: encodeClientOpening('drive-scsi0.img'),
    descriptorLimit: DESCRIPTORS,
  });
  t.teardown(() => flood.close());
  t.log(flood.counts);
  // The early client, with the flood held open: cached and uncached chunks.
  await readsSource(early, 0, 512 * KiB);
  await readsSource(early, 4 * MiB, 2 * MiB);
  const kept = NBD_SERVER_DEFAULTS.maxConnections - 1; // the early client holds one
  t.deepEqual(flood.counts, { kept, refused: ATTEMPTS - kept, failed: 0, errors: [] });
  // One more client is refused cleanly: closed before the greeting, not left hanging.
  await t.throwsAsync(open(), { code: 'ERR_LR_NBD_CONNECTION' });
  const refusal = await server.stderrLine(/maxConnections/);
  t.true(
    refusal.startsWith(
      `nbd: ${NBD_SERVER_DEFAULTS.maxConnections} connections open (maxConnections): refused one from 127.0.0.1`,
    ),
    refusal,
  );
  const refusalLines = server
    .stderr()
    .split('\n')
    .filter((l) => l.includes('maxConnections'));
  t.true(refusalLines.length < flood.counts.refused / 100, 'rate-limited: not a line per refusal');

  t.is(await flood.close(), 0, 'the server kept every idle connection it had accepted');
  // Once the server has seen the flood's connections close, a new client is let in.
  let late: NbdClient | undefined;
  let refusedAfter = 0;
  while (late === undefined) late = await open().catch(() => void refusedAfter++);
  t.log(`refused ${refusedAfter} times while the server saw the flood go`);
  t.teardown(() => late.close());
  await readsSource(late, 6 * MiB, MiB);
  await readsSource(early, 7 * MiB, MiB);
  t.is(await server.stop(), 0);
});

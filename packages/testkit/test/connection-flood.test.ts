/**
 * The connection flood and the descriptor limit of its processes, against a small TCP
 * server that greets the first connections and closes the others at once.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import test from 'ava';
import { startConnectionFlood, withDescriptorLimit } from '../src/index.js';

const run = promisify(execFile);
const GREETING = Buffer.from('helo');
const OPENING = Buffer.from('opening bytes');

/** Greets `greeted` connections; closes every later one before a byte. Counts the opening bytes it receives. */
async function greetingServer(
  greeted: number,
): Promise<{ server: Server; port: number; openings: Promise<void> }> {
  let accepted = 0;
  let received = 0;
  let allOpenings: () => void = () => {};
  const openings = new Promise<void>((resolve) => {
    allOpenings = resolve;
  });
  const server = createServer((socket) => {
    socket.on('error', () => {});
    if (++accepted > greeted) {
      socket.destroy();
      return;
    }
    socket.write(GREETING);
    socket.on('data', (data: Buffer) => {
      received += data.length;
      if (received === greeted * OPENING.length) allOpenings();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, openings };
}

test('withDescriptorLimit runs the command with that soft and hard limit', async (t) => {
  const [command, args] = withDescriptorLimit(1234, 'cat', ['/proc/self/limits']);
  const { stdout } = await run(command, args);
  t.regex(stdout, /^Max open files\s+1234\s+1234\s+files/m);
});

test('withDescriptorLimit: a limit the process may not set stops it before the command runs', async (t) => {
  // Over fs.nr_open even root may not go.
  const tooMany = Number(await readFile('/proc/sys/fs/nr_open', 'utf8')) + 1;
  const [command, args] = withDescriptorLimit(tooMany, 'cat', ['/proc/self/limits']);
  const err = await t.throwsAsync(run(command, args));
  t.not((err as { code?: number }).code, 0);
  t.notRegex((err as { stdout?: string }).stdout ?? '', /Max open files/);
});

test('a flood over two processes: greeted connections kept and sent the opening, the others refused', async (t) => {
  const { server, port, openings } = await greetingServer(3);
  t.teardown(() => server.close());
  const flood = await startConnectionFlood({
    host: '127.0.0.1',
    port,
    connections: 10,
    processes: 2,
    greetingBytes: GREETING.length,
    opening: OPENING,
    descriptorLimit: 256,
  });
  t.teardown(() => flood.close());
  t.deepEqual(flood.counts, { kept: 3, refused: 7, failed: 0, errors: [] });
  await openings;
  t.is(await flood.close(), 0, 'the server closed none of the kept connections');
});

test('a flood that cannot connect counts failed attempts with their error', async (t) => {
  const { server, port } = await greetingServer(0);
  await new Promise((resolve) => server.close(resolve));
  const flood = await startConnectionFlood({
    host: '127.0.0.1',
    port,
    connections: 4,
    processes: 1,
    greetingBytes: GREETING.length,
    opening: OPENING,
  });
  t.teardown(() => flood.close());
  t.deepEqual(flood.counts, { kept: 0, refused: 0, failed: 4, errors: Array(4).fill('ECONNREFUSED') });
});

test('a flood whose processes may not take their descriptor limit rejects, saying why', async (t) => {
  const tooMany = Number(await readFile('/proc/sys/fs/nr_open', 'utf8')) + 1;
  await t.throwsAsync(
    startConnectionFlood({
      host: '127.0.0.1',
      port: 9,
      connections: 1,
      processes: 2,
      greetingBytes: 1,
      opening: OPENING,
      descriptorLimit: tooMany,
    }),
    { message: /connection-flood process ended early .*ulimit/s },
  );
});

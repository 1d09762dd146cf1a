/*
 * Daemon conventions of the servers: --fork returns once the server listens (and fails
 * before printing anything when it cannot), --pid-file holds the server's pid while it
 * runs, and systemd's NOTIFY_SOCKET gets READY=1 from the server's own pid.
 */
import { execFile, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { assertCliError, BIN, cli, MiB, nbdArgv } from './helpers.js';
import { storeWithSnapshot } from './store-fixture.js';

const run = promisify(execFile);
const requireTools = process.env.LIVERESTORE_REQUIRE_TOOLS === '1';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `check` holds, polling: the observed event a test waits for. */
async function until(check: () => boolean | Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('nbd --fork --pid-file: returns once listening with the address; the pid file holds the running server', async (t) => {
  const { dir, store } = await storeWithSnapshot(t, { sizes: [1 * MiB, 1 * MiB] });
  const pidFile = join(dir, 'nbd.pid');
  const out = await cli(nbdArgv(store, ['--fork', '--pid-file', pidFile]));
  t.is(out.code, 0, out.stderr);
  const address = out.stdout.split('\n')[0]!;
  t.regex(address, /^127\.0\.0\.1:\d+$/);
  t.regex(out.stdout, /^ {2}export drive-scsi0\.img$/m);
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  t.teardown(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  t.true(alive(pid), 'the server runs on after the command returned');
  try {
    const { stdout } = await run('nbdinfo', ['--size', `nbd://${address}/drive-scsi0.img`]);
    t.is(stdout.trim(), String(1 * MiB), 'a client reads the export at the printed address');
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT' || requireTools) throw err;
    t.log('nbdinfo is not installed: the connection is not checked');
  }

  const second = await cli(nbdArgv(store, ['--pid-file', pidFile]));
  t.regex(assertCliError(t, second, 'ERR_LR_PID_FILE'), new RegExp(`names process ${pid}, which is running`));

  process.kill(pid, 'SIGTERM');
  await until(() => !alive(pid), 'the server to exit');
  await t.throwsAsync(readFile(pidFile), { code: 'ENOENT' }, 'the pid file is removed on exit');
});

test('--fork on a busy port: the error and a non-zero status, nothing on stdout', async (t) => {
  const { store } = await storeWithSnapshot(t, { sizes: [1 * MiB, 1 * MiB] });
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  for (const argv of [
    ['nbd', '--from', store, 'vm/100', '--listen', `127.0.0.1:${port}`, '--fork'],
    ['serve', '--store', store, '--listen', `127.0.0.1:${port}`, '--fork'],
  ]) {
    const out = await cli(argv);
    t.regex(assertCliError(t, out, 'ERR_LR_LISTEN'), /EADDRINUSE/, argv[0]);
  }
});

test('serve under systemd (NOTIFY_SOCKET): READY=1 with the server as MAINPID, after it listens', async (t) => {
  const { dir, store } = await storeWithSnapshot(t, { sizes: [1 * MiB, 1 * MiB] });
  const socket = join(dir, 'notify.sock');
  const receiver = join(dir, 'receive.py');
  // Node has no Unix datagram sockets: python3 plays systemd's side.
  await writeFile(
    receiver,
    [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      's.bind(sys.argv[1])',
      'print("bound", flush=True)',
      's.settimeout(20)',
      'print(s.recv(4096).decode(), flush=True)',
    ].join('\n'),
  );
  const python = spawn('python3', [receiver, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  let received = '';
  python.stdout.setEncoding('utf8').on('data', (text: string) => {
    received += text;
  });
  const pythonExited = new Promise<void>((resolve) => python.once('exit', () => resolve()));
  await until(() => received.startsWith('bound'), 'the notify socket');
  const child = spawn(process.execPath, [BIN, 'serve', '--store', store, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, NOTIFY_SOCKET: socket },
  });
  t.teardown(() => child.kill('SIGKILL'));
  let url = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    url += text;
  });
  await pythonExited;
  t.regex(received, /READY=1/);
  t.regex(received, new RegExp(`MAINPID=${child.pid}\\b`));
  t.regex(received, /STATUS=serving .* on http:\/\/127\.0\.0\.1:\d+/);
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\n/, 'the URL was printed before readiness was sent');
});

test('systemd socket activation (LISTEN_FDS): serve answers on the socket it was handed', async (t) => {
  const found = await run('sh', ['-c', 'command -v systemd-socket-activate']).then(
    () => true,
    () => false,
  );
  if (!found) {
    if (requireTools) throw new Error('systemd-socket-activate is required (Debian: systemd)');
    return void t.log('systemd-socket-activate is not installed: not run');
  }
  const { store } = await storeWithSnapshot(t, { sizes: [1 * MiB, 1 * MiB] });
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  // The activator listens, and starts serve with the socket as fd 3 at the first connection.
  const activator = spawn(
    'systemd-socket-activate',
    ['-l', `127.0.0.1:${port}`, process.execPath, BIN, 'serve', '--store', store],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  let log = '';
  activator.stderr.setEncoding('utf8').on('data', (text: string) => {
    log += text;
  });
  t.teardown(() => {
    try {
      process.kill(-activator.pid!, 'SIGKILL');
    } catch {}
  });
  await until(() => log.includes('Listening on'), 'the activator to listen');
  const response = await fetch(`http://127.0.0.1:${port}/snapshots`);
  t.is(response.status, 200);
  const listing = (await response.json()) as { snapshot: string }[];
  t.regex(listing[0]?.snapshot ?? '', /^vm\/100\//);
  t.regex(log, /Communication attempt on fd 3/, 'serve was started with the socket, not on its own port');
});

test('stopSignal: a cancelled wait leaves no SIGINT/SIGTERM handler behind; a signal still ends an uncancelled one', async (t) => {
  const { stopSignal } = await import('../src/command.js');
  const before = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
  const ended = new AbortController();
  void stopSignal(ended.signal);
  t.deepEqual(
    [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')],
    [before[0]! + 1, before[1]! + 1],
  );
  ended.abort();
  t.deepEqual(
    [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')],
    before,
    'removed on cancel',
  );
  const stopped = stopSignal();
  process.emit('SIGTERM', 'SIGTERM');
  await stopped;
  t.deepEqual(
    [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')],
    before,
    'removed on the signal',
  );
});

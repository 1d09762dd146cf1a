/*
 * Hardening of the command line against hostile or absurd input (issue 15): unbounded
 * --workers, a --rate-limit too slow for Node's timers, a negative size, and error text
 * from a malicious server printed raw (terminal escapes, forged lines).
 */
import { readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { NbdClient } from '@liverestore/nbd';
import { mountSmallTmpfs } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import { MAX_WORKERS } from '../src/option-values.js';
import { printableLine } from '../src/terminal-text.js';
import {
  assertCliError,
  chunkPath,
  flipByte,
  indexDigests,
  KiB,
  lines,
  runIn,
  startServing,
  tempLeftovers,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';
import { storeWithSnapshot } from './store-fixture.js';

const workersCases: readonly (readonly string[])[] = [
  ['restore', '--from', '/nonexistent', 'vm/100', 'drive-scsi0', '--out', '/nonexistent/x.img'],
  ['nbd', '--from', '/nonexistent', 'vm/100'],
  ['live-restore', '--from', '/nonexistent', '--target-dir', '/nonexistent/t', 'vm/100'],
];

for (const argv of workersCases) {
  test(`${argv[0]} --workers 100000: ERR_LR_USAGE naming the bound, exit 2`, async (t) => {
    const out = await runIn([...argv, '--workers', '100000']);
    const line = assertCliError(t, out, 'ERR_LR_USAGE', 2);
    t.true(line.includes(`from 0 to ${MAX_WORKERS}`), line);
    t.true(line.includes('100000'), line);
  });
}

test('--rate-limit 1B/s (live-restore, demo): ERR_LR_USAGE naming the 4KiB/s minimum, exit 2', async (t) => {
  const live = await runIn([
    'live-restore',
    '--from',
    '/nonexistent',
    '--target-dir',
    '/nonexistent/t',
    'vm/100',
    '--rate-limit',
    '1B/s',
  ]);
  t.true(assertCliError(t, live, 'ERR_LR_USAGE', 2).includes('at least 4KiB/s'));
  const demo = await runIn(['demo', '--rate-limit', '4095']);
  t.true(assertCliError(t, demo, 'ERR_LR_USAGE', 2).includes('at least 4KiB/s'));
});

test('--cache-size -1 and --workers -1: the value is refused by its own check, not as "ambiguous"', async (t) => {
  const size = await runIn([
    'restore',
    '--from',
    '/nonexistent',
    'vm/100',
    'd',
    '--out',
    '/x',
    '--cache-size',
    '-1',
  ]);
  const line = assertCliError(t, size, 'ERR_LR_USAGE', 2);
  t.true(line.includes('--cache-size must be a size'), line);
  t.false(line.includes('ambiguous'), line);
  const workers = await runIn(['nbd', '--from', '/nonexistent', 'vm/100', '--workers', '-1']);
  t.true(assertCliError(t, workers, 'ERR_LR_USAGE', 2).includes('--workers must be an integer from 0'));
});

test('printableLine escapes C0, DEL, C1 and line separators and keeps other text', (t) => {
  t.is(
    printableLine('a\u001b[2Jb\r\nc\u0000\u007f\u009b\u2028 ünï ✓'),
    'a\\x1b[2Jb\\r\\nc\\x00\\x7f\\x9b\\u2028 ünï ✓',
  );
});

async function maliciousServer(message: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'ERR_LR_SNAPSHOT_NOT_FOUND', message } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test("a malicious server's error text reaches stderr as one line with its control characters escaped", async (t) => {
  const evil = 'gone\u001b]0;pwned\u0007\u001b[2J\r\nliverestore: ERR_LR_FAKE: forged line';
  const { url, server } = await maliciousServer(evil);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const out = await runIn(['restore', '--from', url, 'vm/100', 'drive-scsi0', '--out', '/nonexistent/x.img']);
  const line = assertCliError(t, out, 'ERR_LR_SNAPSHOT_NOT_FOUND');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
  t.false(/[\u0000-\u001f\u007f-\u009f]/.test(out.stderr.slice(0, -1)), JSON.stringify(out.stderr));
  t.true(line.includes('\\x1b[2J\\r\\nliverestore: ERR_LR_FAKE: forged line'), line);
});

test('a busy port is ERR_LR_LISTEN in serve and in nbd alike', async (t) => {
  const { store } = await storeWithSnapshot(t);
  const busy = createNetServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const listen = `127.0.0.1:${(busy.address() as AddressInfo).port}`;
  const serve = await runIn(['serve', '--store', store, '--listen', listen]);
  t.true(assertCliError(t, serve, 'ERR_LR_LISTEN').includes(listen));
  const nbd = await runIn(['nbd', '--from', store, 'vm/100', '--listen', listen, '--workers', '0']);
  assertCliError(t, nbd, 'ERR_LR_LISTEN');
});

test('restore --all --out-dir on a file: ERR_LR_OUTPUT_INVALID naming it (was ERR_LR_SYSTEM: EEXIST)', async (t) => {
  const { dir, store } = await storeWithSnapshot(t);
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const out = await runIn(['restore', '--from', store, 'vm/100', '--all', '--out-dir', file]);
  t.true(assertCliError(t, out, 'ERR_LR_OUTPUT_INVALID').includes(file));
});

test('a deleted manifest is ERR_LR_SNAPSHOT_NOT_FOUND in verify and in restore alike', async (t) => {
  const { dir, store, snapshot } = await storeWithSnapshot(t);
  await rm(join(store, snapshot, 'index.json.blob'));
  const verify = await runIn(['verify', '--json', '--store', store, snapshot]);
  t.is(verify.code, 1);
  t.is(
    (JSON.parse(verify.stdout) as { badFiles: { code: string }[] }).badFiles[0]?.code,
    'ERR_LR_SNAPSHOT_NOT_FOUND',
  );
  const restore = await runIn([
    'restore',
    '--from',
    store,
    snapshot,
    'drive-scsi0',
    '--out',
    join(dir, 'x.img'),
  ]);
  assertCliError(t, restore, 'ERR_LR_SNAPSHOT_NOT_FOUND');
});

test('nbd logs one line with the code and digest when a corrupt chunk makes a read fail with EIO', async (t) => {
  const { store, snapshot } = await storeWithSnapshot(t);
  // Every chunk of the drive damaged: whichever the read needs (an all-zero chunk is never read).
  const digests = await indexDigests(join(store, snapshot, 'drive-scsi0.img.fidx'));
  for (const digest of new Set(digests)) await flipByte(chunkPath(store, digest), 20);
  const server = await startServing(['nbd', '--listen', '127.0.0.1:0', '--from', store, 'vm/100']);
  t.teardown(() => server.stop());
  const [host, port] = server.address.split(':');
  const client = await NbdClient.connect({ host, port: Number(port), exportName: 'drive-scsi0.img' });
  t.teardown(() => client.close());
  let err: { errnoName?: string } | undefined;
  for (let offset = 0; err === undefined && offset + 4096 <= 1024 * KiB; offset += 4096) {
    err = await client.read(Buffer.alloc(4096), offset).then(
      () => undefined,
      (e: unknown) => e as { errnoName?: string },
    );
  }
  t.is(err?.errnoName, 'EIO');
  await server.stderrLine(/./);
  const logLines = lines(server.stderr());
  t.is(logLines.length, 1, server.stderr());
  t.regex(
    logLines[0] ?? '',
    /read of drive-scsi0\.img at \d+ failed .*ERR_LR_(BLOB_CRC_MISMATCH|DIGEST_MISMATCH|DECOMPRESS_FAILED)/,
  );
  t.true(
    digests.some((d) => logLines[0]?.includes(d)),
    'the line names the chunk',
  );
});

/** A 512 KiB tmpfs at a fresh directory, unmounted after the test (tests run as root, as in CI). */
async function smallFileSystem(t: ExecutionContext): Promise<string> {
  const dir = join(await testDir(t), 'full');
  await mountSmallTmpfs(t, dir, 512 * KiB);
  return dir;
}

test('a full file system is ERR_LR_NO_SPACE naming the file, in restore and backup, nothing left behind', async (t) => {
  const { dir, store } = await storeWithSnapshot(t);
  const full = await smallFileSystem(t);
  const out = join(full, 'disk.img');
  // --json: no progress line on stderr when a loaded machine makes the restore take > 5 s.
  const restore = await runIn(['restore', '--json', '--from', store, 'vm/100', 'drive-scsi0', '--out', out]);
  t.true(assertCliError(t, restore, 'ERR_LR_NO_SPACE').includes(out));
  t.deepEqual(await readdir(full), [], 'the temp image is removed');
  const vm = await writeVm(dir, { seed: 1, sizes: [1024 * KiB + 5, 64 * KiB] });
  const backup = await runIn([
    'backup',
    '--json',
    // Stored as it is, 1 MiB cannot fit in the 512 KiB file system (zstd may shrink it enough).
    '--compress',
    'none',
    '--store',
    join(full, 'store'),
    '--snapshot',
    'vm/1',
    ...vmArgs(vm),
  ]);
  t.true(assertCliError(t, backup, 'ERR_LR_NO_SPACE').includes(join(full, 'store')));
  t.deepEqual(await tempLeftovers(full), [], 'no temp file left in the store');
});

test('serve --max-per-client and --min-rate: bad values are usage errors', async (t) => {
  const perClient = await runIn(['serve', '--store', '/nonexistent', '--max-per-client', '0']);
  t.true(
    assertCliError(t, perClient, 'ERR_LR_USAGE', 2).includes('--max-per-client must be a positive integer'),
  );
  const rate = await runIn(['serve', '--store', '/nonexistent', '--min-rate', 'slow']);
  t.true(assertCliError(t, rate, 'ERR_LR_USAGE', 2).includes('--min-rate must be a size'));
});

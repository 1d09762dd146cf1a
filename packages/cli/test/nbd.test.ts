import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startChunkServer } from '@liverestore/server';
import test, { type ExecutionContext } from 'ava';
import {
  assertCliError,
  backupArgv,
  cli,
  exec,
  type ServingProcess,
  sha256File,
  silentServerLogger,
  startServing,
  testDir,
  vmArgs,
  writeVm,
} from './helpers.js';
import { requireTool } from './tools.js';

/** Starts `liverestore nbd` on an ephemeral port; resolves with its address and a stop function. */
function startNbd(args: readonly string[]): Promise<ServingProcess> {
  return startServing(['nbd', '--listen', '127.0.0.1:0', ...args]);
}

/** qemu-img copies an NBD export to a raw file; the test fails with qemu-img's stderr otherwise. */
async function convertExport(t: ExecutionContext, url: string, out: string): Promise<void> {
  const convert = await exec('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url, out]);
  t.is(convert.code, 0, convert.stderr);
}

test('liverestore nbd exports every drive; qemu-img reads the source image; SIGTERM stops it', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const dir = await testDir(t);
  // QEMU's block layer counts 512-byte sectors: give it sizes it can copy exactly.
  const vm = await writeVm(dir, { sizes: [3 * 1024 * 1024 + 7 * 512, 2 * 1024 * 1024 + 3 * 512] });
  const store = join(dir, 'store');
  t.is((await cli(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const server = await startNbd(['--from', store, 'vm/100']);
  t.teardown(() => server.stop());
  t.regex(server.address, /^127\.0\.0\.1:\d+$/);
  const out = join(dir, 'nbd.raw');
  await convertExport(t, `nbd://${server.address}/drive-scsi1.img`, out);
  t.is(await sha256File(out), vm.sha256['drive-scsi1.img']!);
  t.is(await server.stop(), 0, 'nbd exits 0 on SIGTERM');
});

test('liverestore nbd --ns exports the drives of a snapshot in a PBS namespace', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [1024 * 1024 + 5 * 512, 512 * 1024] });
  const store = join(dir, 'store');
  const backup = await cli(backupArgv(store, vmArgs(vm), { json: false, ns: 'prod/db' }));
  t.is(backup.code, 0, backup.stderr);
  const server = await startNbd(['--from', store, '--ns', 'prod/db', 'vm/100']);
  t.teardown(() => server.stop());
  const out = join(dir, 'nbd.raw');
  await convertExport(t, `nbd://${server.address}/drive-scsi0.img`, out);
  t.is(await sha256File(out), vm.sha256['drive-scsi0.img']!);
  t.is(await server.stop(), 0);
});

test('nbd --trace-loads writes one JSON line per chunk load, with its phases', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [3 * 1024 * 1024 + 7 * 512, 512 * 1024] });
  const store = join(dir, 'store');
  t.is((await cli(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const trace = join(dir, 'loads.jsonl');
  const server = await startNbd(['--from', store, '--trace-loads', trace, 'vm/100']);
  t.teardown(() => server.stop());
  await convertExport(t, `nbd://${server.address}/drive-scsi0.img`, join(dir, 'nbd.raw'));
  t.is(await server.stop(), 0);
  const records = (await readFile(trace, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  t.true(records.length > 0, 'the copy loaded chunks');
  for (const record of records) {
    t.like(record, { ok: true, from: 'source' });
    t.regex(String(record.digestHex), /^[0-9a-f]{64}$/);
    for (const phase of ['memoryWaitMs', 'blobMs', 'decodeWaitMs', 'decodeMs', 'totalMs'])
      t.true(typeof record[phase] === 'number' && record[phase] >= 0, phase);
  }
  t.is(new Set(records.map((r) => r.digestHex)).size, records.length, 'each chunk loaded once');
});

test('nbd: a --trace-loads file that cannot be written is ERR_LR_TRACE_FILE', async (t) => {
  const dir = await testDir(t);
  assertCliError(
    t,
    await cli(['nbd', '--from', dir, 'vm/1', '--trace-loads', join(dir, 'missing', 'loads.jsonl')]),
    'ERR_LR_TRACE_FILE',
    1,
  );
});

test('nbd: bad options are usage errors', async (t) => {
  assertCliError(t, await cli(['nbd', 'vm/100']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['nbd', '--from', '.']), 'ERR_LR_USAGE', 2);
  assertCliError(
    t,
    await cli(['nbd', '--from', '.', 'vm/1', '--listen', ':1', '--socket', '/tmp/x']),
    'ERR_LR_USAGE',
    2,
  );
  assertCliError(t, await cli(['nbd', '--from', '.', 'vm/1', '--readahead', '-1']), 'ERR_LR_USAGE', 2);
});

test('nbd --from URL: with a cache smaller than the disk, a second full read fetches nothing (spill file), and leaves nothing behind', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const dir = await testDir(t);
  const vm = await writeVm(dir, { sizes: [24 * 1024 * 1024, 512 * 1024] });
  const store = join(dir, 'store');
  t.is((await cli(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const server = await startChunkServer({
    store,
    listen: { host: '127.0.0.1', port: 0 },
    logger: silentServerLogger,
  });
  t.teardown(() => server.close());
  const chunkFetches = async (): Promise<number> => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    return Number(/^liverestore_http_chunk_fetches_total (\d+)/m.exec(text)![1]);
  };
  const spillDir = join(dir, 'spill');
  await mkdir(spillDir);
  // 8 MiB of cache for a 24 MiB disk of 4 MiB chunks: the first pass evicts what it read.
  const nbd = await startNbd([
    '--from',
    server.url,
    '--cache-size',
    '8MiB',
    '--spill-dir',
    spillDir,
    'vm/100',
  ]);
  t.teardown(() => nbd.stop());
  const fetched: number[] = [];
  for (const pass of [1, 2]) {
    const out = join(dir, `pass${pass}.raw`);
    await convertExport(t, `nbd://${nbd.address}/drive-scsi0.img`, out);
    t.is(await sha256File(out), vm.sha256['drive-scsi0.img']!, `pass ${pass} reads the image`);
    fetched.push(await chunkFetches());
  }
  t.true(fetched[0]! > 2, 'the first pass fetched the chunks');
  t.is(fetched[1], fetched[0], 'the second pass fetched nothing');
  t.deepEqual(await readdir(spillDir), [], 'the spill file is never visible in the directory');
  t.is(await nbd.stop(), 0);
});

test('nbd: bad spill options are clear errors', async (t) => {
  assertCliError(t, await cli(['nbd', '--from', '.', 'vm/1', '--spill-size', 'lots']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await cli(['nbd', '--from', '.', 'vm/1', '--spill-size', '1k']), 'ERR_LR_USAGE', 2);
  assertCliError(
    t,
    await cli(['nbd', '--from', '.', 'vm/1', '--spill-dir', '/nonexistent/dir']),
    'ERR_LR_SPILL_DIR',
    1,
  );
});

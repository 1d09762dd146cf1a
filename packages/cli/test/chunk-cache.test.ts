/*
 * --chunk-cache DIR on restore and live-restore --from the URL of a real, in-process
 * `liverestore serve`: a second run fetches no chunk from the server (its own metrics
 * say so), every byte is right, and the options' mistakes are usage errors.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startChunkServer } from '@liverestore/server';
import test, { type ExecutionContext } from 'ava';
import {
  assertCliError,
  backupArgv,
  cli,
  KiB,
  MiB,
  onlySnapshot,
  runIn,
  sha256File,
  silentServerLogger,
  testDir,
  untilDoneArgv,
  type VmFiles,
  vmArgs,
  writeVm,
} from './helpers.js';

interface Served {
  readonly dir: string;
  readonly vm: VmFiles;
  readonly snapshot: string;
  readonly url: string;
  /** Chunk blobs the server sent so far (liverestore_http_chunk_fetches_total). */
  chunkFetches(): Promise<number>;
}

async function served(t: ExecutionContext): Promise<Served> {
  const dir = await testDir(t, 'lr-chunk-cache-');
  const vm = await writeVm(dir, { seed: 77, sizes: [MiB + 321, 512 * KiB + 9] });
  const store = join(dir, 'store');
  const out = await runIn(backupArgv(store, vmArgs(vm), { chunkSize: '64KiB', json: false }));
  t.is(out.code, 0, out.stderr);
  const snapshot = await onlySnapshot(t, store);
  const server = await startChunkServer({
    store,
    listen: { host: '127.0.0.1', port: 0 },
    logger: silentServerLogger,
  });
  t.teardown(() => server.close());
  return {
    dir,
    vm,
    snapshot,
    url: server.url,
    async chunkFetches() {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(/^liverestore_http_chunk_fetches_total (\d+)$/m.exec(text)![1]);
    },
  };
}

interface RestoreJson {
  chunkCache: { hits: number; misses: number; stored: number; entries: number };
}

test('restore --chunk-cache: the second restore of a snapshot fetches nothing from the server', async (t) => {
  const s = await served(t);
  const cacheDir = join(s.dir, 'chunk-cache');
  const restore = async (name: string): Promise<RestoreJson> => {
    const out = join(s.dir, name);
    const args = ['restore', '--from', s.url, s.snapshot, '--all', '--out-dir', out, '--json'];
    const res = await runIn([...args, '--chunk-cache', cacheDir, '--chunk-cache-size', '64MiB']);
    t.is(res.code, 0, res.stderr);
    for (const archive of ['drive-scsi0.img', 'drive-scsi1.img', 'notes.txt'])
      t.is(await sha256File(join(out, archive)), s.vm.sha256[archive]!, `${name}/${archive}`);
    return JSON.parse(res.stdout) as RestoreJson;
  };
  const first = await restore('first');
  const fetched = await s.chunkFetches();
  t.true(fetched > 0);
  // The server may count a chunk twice: a background fetch cut short by an urgent one is asked again.
  const { misses } = first.chunkCache;
  t.true(misses > 0 && misses <= fetched);
  t.like(first.chunkCache, { hits: 0, stored: misses, entries: misses });
  const second = await restore('second');
  t.is(await s.chunkFetches(), fetched, 'no chunk fetched from the server again');
  t.like(second.chunkCache, { hits: misses, misses: 0, stored: 0 });

  const text = await runIn([
    'restore',
    '--from',
    s.url,
    s.snapshot,
    'drive-scsi1.img',
    '--out',
    join(s.dir, 'one.img'),
    '--chunk-cache',
    cacheDir,
  ]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /^chunk cache: \d+ read there, 0 fetched, 0 stored, 0 evicted, .* used$/m);
});

test('live-restore --chunk-cache fills the cache a later restore reads from', async (t) => {
  const s = await served(t);
  const cacheDir = join(s.dir, 'chunk-cache');
  const live = await cli(
    untilDoneArgv(s.url, join(s.dir, 'targets'), s.snapshot, '--chunk-cache', cacheDir),
    {
      timeoutMs: 60_000,
    },
  );
  t.is(live.code, 0, live.stderr);
  for (const archive of ['drive-scsi0.img', 'drive-scsi1.img'])
    t.is(await sha256File(join(s.dir, 'targets', archive)), s.vm.sha256[archive]!);
  const fetched = await s.chunkFetches();
  const res = await runIn([
    'restore',
    '--from',
    s.url,
    s.snapshot,
    'drive-scsi0.img',
    '--out',
    join(s.dir, 'r.img'),
    '--chunk-cache',
    cacheDir,
  ]);
  t.is(res.code, 0, res.stderr);
  t.is(await s.chunkFetches(), fetched, 'every chunk of the drive came from the cache');
  t.is(await sha256File(join(s.dir, 'r.img')), s.vm.sha256['drive-scsi0.img']!);
});

test('--chunk-cache mistakes are clear errors', async (t) => {
  const s = await served(t);
  const dir = await testDir(t);
  const base = ['restore', '--from', s.url, s.snapshot, 'drive-scsi0.img', '--out', join(dir, 'x')];
  assertCliError(t, await runIn([...base, '--chunk-cache-size', '1GiB']), 'ERR_LR_USAGE', 2);
  assertCliError(
    t,
    await runIn([...base, '--chunk-cache', join(dir, 'c'), '--chunk-cache-size', '0']),
    'ERR_LR_USAGE',
    2,
  );
  assertCliError(
    t,
    await runIn([...base, '--chunk-cache', join(dir, 'c'), '--chunk-cache-size', 'lots']),
    'ERR_LR_USAGE',
    2,
  );
  await writeFile(join(dir, 'a-file'), 'x');
  const line = assertCliError(t, await runIn([...base, '--chunk-cache', dir]), 'ERR_LR_CHUNK_CACHE_DIR');
  t.regex(line, /not empty and is not a chunk cache/);
  t.is(await readFile(join(dir, 'a-file'), 'utf8'), 'x', 'the directory is left alone');
  // nbd and live-restore open the same cache (and refuse the same directory).
  const nbd = ['nbd', '--from', s.url, s.snapshot, '--listen', '127.0.0.1:0'];
  assertCliError(t, await runIn([...nbd, '--chunk-cache-size', '1GiB']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await runIn([...nbd, '--chunk-cache', dir]), 'ERR_LR_CHUNK_CACHE_DIR');
  const live = [
    'live-restore',
    '--from',
    s.url,
    s.snapshot,
    '--target-dir',
    join(dir, 't'),
    '--listen',
    '127.0.0.1:0',
  ];
  assertCliError(t, await runIn([...live, '--chunk-cache-size', '1GiB']), 'ERR_LR_USAGE', 2);
  assertCliError(t, await runIn([...live, '--chunk-cache', dir]), 'ERR_LR_CHUNK_CACHE_DIR');
});

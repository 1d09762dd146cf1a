import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from '@liverestore/testkit';
import { DRIVE_SIZES, fixtureTest, MiB, serve, zeroChunks } from './helpers.js';

const run = promisify(execFile);
const test = fixtureTest();

test('nbdinfo --list shows every drive with its size', async (t) => {
  if (!requireTool(t, 'nbdinfo')) return;
  const { server } = await serve(t, t.context.fixture);
  const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${server.port}`]);
  const listed = (JSON.parse(stdout) as { exports: { 'export-name': string; 'export-size': number }[] })
    .exports;
  t.deepEqual(
    listed.map((e) => [e['export-name'], e['export-size']]),
    [
      ['drive-scsi0.img', DRIVE_SIZES[0]],
      ['drive-scsi1.img', DRIVE_SIZES[1]],
    ],
  );
});

test('qemu-img convert and nbdcopy give images equal to the sources', async (t) => {
  if (!requireTool(t, 'qemu-img') || !requireTool(t, 'nbdcopy')) return;
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const out1 = join(f.dir, 'out1.raw');
  const out2 = join(f.dir, 'out2.raw');
  await Promise.all([
    run('qemu-img', [
      'convert',
      '-f',
      'raw',
      '-O',
      'raw',
      `nbd://127.0.0.1:${server.port}/drive-scsi0.img`,
      out1,
    ]),
    run('nbdcopy', [`nbd://127.0.0.1:${server.port}/drive-scsi1.img`, out2]),
  ]);
  t.true((await readFile(out1)).equals(await readFile(f.drives[0]!.path)));
  t.true((await readFile(out2)).equals(await readFile(f.drives[1]!.path)));
});

test('over a Unix socket: nbdcopy and nbdinfo --map (zero chunks are holes)', async (t) => {
  if (!requireTool(t, 'nbdinfo') || !requireTool(t, 'nbdcopy')) return;
  const f = t.context.fixture;
  const sock = join(f.dir, 'tools.sock');
  await serve(t, f, { listen: { socket: sock } });
  const uri = `nbd+unix:///drive-scsi0.img?socket=${sock}`;
  const out = join(f.dir, 'out-unix.raw');
  await run('nbdcopy', [uri, out]);
  t.true((await readFile(out)).equals(await readFile(f.drives[0]!.path)));
  const { stdout } = await run('nbdinfo', ['--map', '--json', uri]);
  const map = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
  const holes: number[] = [];
  let end = 0;
  for (const e of map) {
    if (e.type === 3)
      for (let i = e.offset / MiB; i < (e.offset + e.length) / MiB; i++) holes.push(Math.floor(i));
    end = Math.max(end, e.offset + e.length);
  }
  t.is(end, DRIVE_SIZES[0]!);
  const zeros = zeroChunks(f.drives[0]!.spec);
  t.true(zeros.length > 0);
  t.deepEqual(holes, zeros);
});

test('a qcow2 overlay backed by the NBD export compares equal to the source (qemu-img)', async (t) => {
  if (!requireTool(t, 'qemu-img')) return;
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  const overlay = join(f.dir, 'overlay.qcow2');
  const backing = `nbd://127.0.0.1:${server.port}/drive-scsi0.img`;
  await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', backing, overlay]);
  const { stdout } = await run('qemu-img', [
    'compare',
    '-f',
    'qcow2',
    '-F',
    'raw',
    overlay,
    f.drives[0]!.path,
  ]);
  t.regex(stdout, /Images are identical/);
});

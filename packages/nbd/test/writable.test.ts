/*
 * Writable exports: the server's side of NBD_CMD_WRITE, WRITE_ZEROES, TRIM, FLUSH and FUA
 * against a memory-backed export (the live-restore export is tested in @liverestore/live).
 * Checks the wire (flags, replies, payloads kept in sync after a refused write, errno
 * mapping) with the hand-written client, and qemu-io as a real writer.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { type AllocationExtent, type NbdExport, startNbdServer } from '../src/index.js';
import * as P from '../src/wire.js';
import { MiB, MiniClient } from './helpers.js';

const run = promisify(execFile);

interface MemoryExport extends NbdExport {
  readonly bytes: Buffer;
  readonly calls: string[];
  /** Makes the next write fail with this code (e.g. ENOSPC). */
  failNext?: string | undefined;
}

/** A RAM disk implementing the export interface; every call is logged for the test. */
function memoryExport(name: string, size: number): MemoryExport {
  const bytes = Buffer.alloc(size);
  const calls: string[] = [];
  const self: MemoryExport = {
    name,
    size,
    bytes,
    calls,
    async read(buffer, offset) {
      bytes.copy(buffer, 0, offset, offset + buffer.length);
    },
    blockStatus(offset, length): AllocationExtent[] {
      return [{ length, hole: false, zero: bytes.subarray(offset, offset + length).every((b) => b === 0) }];
    },
    writer: {
      async write(data, offset, fua) {
        calls.push(`write ${offset}+${data.length}${fua ? ' fua' : ''}`);
        const code = self.failNext;
        if (code !== undefined) {
          self.failNext = undefined;
          throw Object.assign(new Error(code), { code });
        }
        data.copy(bytes, offset);
      },
      async writeZeroes(offset, length, fua, noHole) {
        calls.push(`zero ${offset}+${length}${fua ? ' fua' : ''}${noHole ? ' nohole' : ''}`);
        bytes.fill(0, offset, offset + length);
      },
      async trim(offset, length) {
        calls.push(`trim ${offset}+${length}`);
        bytes.fill(0, offset, offset + length);
      },
      async flush() {
        calls.push('flush');
      },
    },
  };
  return self;
}

async function serveMemory(t: ExecutionContext, exports: NbdExport[]) {
  const server = await startNbdServer({ exports, listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => server.close());
  return server;
}

test('a writable export: flags, write/read back, FUA, zeroes, trim, flush, errors', async (t) => {
  const disk = memoryExport('disk0.img', 4 * MiB);
  const { writer: _, ...ro } = memoryExport('ro.img', MiB);
  const server = await serveMemory(t, [disk, ro]);
  t.deepEqual(server.exports, ['disk0.img', 'ro.img']);

  const c = await MiniClient.connect(server.port!);
  await c.greet();
  const { size, flags } = await c.go('disk0.img');
  t.is(size, BigInt(4 * MiB));
  t.is(flags & P.NBD_FLAG_READ_ONLY, 0, 'not read-only');
  for (const f of [
    P.NBD_FLAG_SEND_FLUSH,
    P.NBD_FLAG_SEND_FUA,
    P.NBD_FLAG_SEND_TRIM,
    P.NBD_FLAG_SEND_WRITE_ZEROES,
  ]) {
    t.not(flags & f, 0);
  }

  const data = Buffer.alloc(8192, 0xab);
  t.is((await c.request(P.NBD_CMD_WRITE, 4096, data.length, data)).error, 0);
  t.is((await c.request(P.NBD_CMD_WRITE, 65536, 512, Buffer.alloc(512, 1), P.NBD_CMD_FLAG_FUA)).error, 0);
  t.true((await c.request(P.NBD_CMD_READ, 4096, 8192)).data.equals(data));
  // A write past the end is refused, and its payload is still consumed: the next request works.
  t.is((await c.request(P.NBD_CMD_WRITE, 4 * MiB - 100, 200, Buffer.alloc(200, 2))).error, P.NBD_EINVAL);
  t.is((await c.request(P.NBD_CMD_WRITE_ZEROES, 4096, 4096, undefined, P.NBD_CMD_FLAG_NO_HOLE)).error, 0);
  t.true(
    (await c.request(P.NBD_CMD_READ, 4096, 8192)).data.equals(
      Buffer.concat([Buffer.alloc(4096), data.subarray(4096)]),
    ),
  );
  t.is((await c.request(P.NBD_CMD_TRIM, 8192, 4096)).error, 0);
  t.is((await c.request(P.NBD_CMD_FLUSH, 0, 0)).error, 0);
  disk.failNext = 'ENOSPC';
  t.is((await c.request(P.NBD_CMD_WRITE, 0, 512, Buffer.alloc(512, 3))).error, P.NBD_ENOSPC);
  disk.failNext = 'EBADF';
  t.is((await c.request(P.NBD_CMD_WRITE, 0, 512, Buffer.alloc(512, 3))).error, P.NBD_EIO);
  t.deepEqual(disk.calls, [
    'write 4096+8192',
    'write 65536+512 fua',
    'zero 4096+4096 nohole',
    'trim 8192+4096',
    'flush',
    'write 0+512',
    'write 0+512',
  ]);
  t.true(
    disk.bytes.subarray(0, 512).every((b) => b === 0),
    'failed writes changed nothing',
  );
  await c.disconnect();

  const r = await MiniClient.connect(server.port!);
  await r.greet();
  t.not((await r.go('ro.img')).flags & P.NBD_FLAG_READ_ONLY, 0);
  t.is((await r.request(P.NBD_CMD_WRITE, 0, 4096, Buffer.alloc(4096, 1))).error, P.NBD_EPERM);
  t.is((await r.request(P.NBD_CMD_WRITE_ZEROES, 0, 4096)).error, P.NBD_EPERM);
  t.is((await r.request(P.NBD_CMD_FLUSH, 0, 0)).error, 0);
  await r.disconnect();
});

test('exports: exactly one of snapshot and exports; names are unique', async (t) => {
  await t.throwsAsync(startNbdServer({ listen: { port: 0 } }), { instanceOf: TypeError });
  const a = memoryExport('a.img', MiB);
  await t.throwsAsync(startNbdServer({ exports: [a, memoryExport('a.img', MiB)], listen: { port: 0 } }), {
    message: /two exports are named "a.img"/,
  });
  await t.throwsAsync(startNbdServer({ exports: [], listen: { port: 0 } }), {
    code: 'ERR_LR_NBD_NO_EXPORTS',
  } as never);
});

test('qemu-io writes through a writable export; the bytes land where it said', async (t) => {
  try {
    await run('qemu-io', ['--version']);
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1') throw new Error('qemu-io is required but not on PATH');
    t.log('skipped: qemu-io is not on PATH');
    t.pass();
    return;
  }
  const disk = memoryExport('disk0.img', 4 * MiB);
  const server = await serveMemory(t, [disk]);
  const uri = `nbd://127.0.0.1:${server.port}/disk0.img`;
  await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1048576 65536', '-c', 'flush', uri]);
  await run('qemu-io', ['-f', 'raw', '-c', 'write -z 1056768 4096', uri]);
  const expected = Buffer.alloc(4 * MiB);
  expected.fill(0xab, MiB, MiB + 65536);
  expected.fill(0, MiB + 8192, MiB + 12288);
  t.true(disk.bytes.equals(expected));
  const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 1048576 8192', uri]);
  t.regex(stdout, /read 8192\/8192 bytes/);
  t.true(disk.calls.includes('flush'));
});

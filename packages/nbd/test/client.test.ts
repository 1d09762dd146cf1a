/*
 * NbdClient against two servers: liverestore's own (read-only snapshot exports: data and
 * holes, errors) and qemu-nbd serving a raw file (an independent implementation: reads,
 * writes, zeroing, trim, flush, many requests in flight), compared byte for byte.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, imageBytes, tempDir } from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import { NbdClient } from '../src/index.js';
import { fixtureTest, MiB, prng, serve } from './helpers.js';

const run = promisify(execFile);
const test = fixtureTest();

test('reads of a snapshot export, in flight together, equal the source; errors are coded', async (t) => {
  const f = t.context.fixture;
  const { server } = await serve(t, f);
  for (const structuredReplies of [true, false]) {
    const client = await NbdClient.connect({
      port: server.port!,
      exportName: 'drive-scsi1.img',
      structuredReplies,
    });
    const spec = f.drives[1]!.spec;
    t.is(client.size, spec.sizeBytes);
    t.false(client.writable);
    t.is(client.structured, structuredReplies);
    const random = prng(3);
    const reads = Array.from({ length: 64 }, () => {
      const length = 1 + Math.floor(random() * 300_000);
      const offset = Math.floor(random() * (spec.sizeBytes - length));
      return { offset, buffer: Buffer.alloc(length, 0x55) };
    });
    await Promise.all(reads.map((r) => client.read(r.buffer, r.offset)));
    for (const r of reads) t.true(r.buffer.equals(imageBytes(spec, r.offset, r.buffer.length)));
    const big = Buffer.alloc(5 * MiB + 512);
    await client.read(big, 4096);
    t.true(big.equals(imageBytes(spec, 4096, big.length)), 'a read much larger than a socket buffer');
    // The receive queue grew for that reply and shrank after it; reads go on as before.
    const after = reads
      .slice(0, 16)
      .map((r) => ({ offset: r.offset, buffer: Buffer.alloc(r.buffer.length) }));
    await Promise.all(after.map((r) => client.read(r.buffer, r.offset)));
    for (const r of after) t.true(r.buffer.equals(imageBytes(spec, r.offset, r.buffer.length)));
    await t.throwsAsync(client.write(Buffer.alloc(512), 0), {
      code: 'ERR_LR_NBD_REQUEST_FAILED',
      message: /EPERM/,
    } as never);
    await t.throwsAsync(client.read(Buffer.alloc(10), spec.sizeBytes - 5), { instanceOf: RangeError });
    await client.close();
  }
  await t.throwsAsync(NbdClient.connect({ port: server.port!, exportName: 'nope' }), {
    code: 'ERR_LR_NBD_NO_SUCH_EXPORT',
  } as never);
});

async function haveQemuNbd(t: ExecutionContext): Promise<boolean> {
  try {
    await run('qemu-nbd', ['--version']);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ENOENT') throw err;
    if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1')
      throw new Error('qemu-nbd is required but not on PATH');
    t.log('skipped: qemu-nbd is not on PATH');
    t.pass();
    return false;
  }
}

test('writes, zeroes and flush through qemu-nbd land in its file exactly', async (t) => {
  if (!(await haveQemuNbd(t))) return;
  const dir = await tempDir('lr-nbd-client-');
  t.teardown(() => dir.cleanup());
  const file = join(dir.path, 'disk.raw');
  const expected = Buffer.alloc(8 * MiB, 7);
  await writeFile(file, expected);
  const port = await freePort();
  const child: ChildProcess = spawn(
    'qemu-nbd',
    ['-f', 'raw', '-b', '127.0.0.1', '-p', String(port), '--persistent', '-x', 'disk', file],
    {
      stdio: 'ignore',
    },
  );
  t.teardown(() => {
    child.kill();
  });
  let client: NbdClient | undefined;
  for (let attempt = 0; client === undefined; attempt++) {
    try {
      client = await NbdClient.connect({ port, exportName: 'disk' });
    } catch (err) {
      if (attempt > 100) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  t.true(client.writable);
  t.is(client.size, 8 * MiB);
  const random = prng(9);
  const ops: Promise<void>[] = [];
  for (let k = 0; k < 40; k++) {
    // Disjoint 64 KiB slots, so requests in flight together never overlap.
    const offset = k * 196_608 + Math.floor(random() * 1000);
    const length = 1 + Math.floor(random() * 65_536);
    if (k % 5 === 4) {
      expected.fill(0, offset, offset + length);
      ops.push(client.writeZeroes(offset, length, { fua: k % 2 === 0 }));
    } else {
      const data = Buffer.alloc(length, k);
      data.copy(expected, offset);
      ops.push(client.write(data, offset, { fua: k % 3 === 0 }));
    }
  }
  await Promise.all(ops);
  await client.flush();
  const back = Buffer.alloc(8 * MiB);
  await client.read(back, 0);
  t.true(back.equals(expected), 'read back through NBD');
  await client.close();
  child.kill();
  await new Promise((r) => child.once('exit', r));
  t.true((await readFile(file)).equals(expected), 'the file qemu-nbd wrote');
});

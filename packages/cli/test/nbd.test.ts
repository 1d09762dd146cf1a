import { spawn } from 'node:child_process';
import { join } from 'node:path';
import test from 'ava';
import { assertCliError, BIN, cli, exec, sha256File, testDir, vmArgs, writeVm } from './helpers.js';
import { requireTool } from './tools.js';

/** Starts `liverestore nbd` on an ephemeral port; resolves with its address and a stop function. */
async function startNbd(
  args: readonly string[],
): Promise<{ address: string; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'nbd', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.resume();
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
    });
    child.once('exit', (code) => reject(new Error(`nbd exited early with ${code}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    address,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
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
  const convert = await exec('qemu-img', [
    'convert',
    '-f',
    'raw',
    '-O',
    'raw',
    `nbd://${server.address}/drive-scsi1.img`,
    out,
  ]);
  t.is(convert.code, 0, convert.stderr);
  t.is(await sha256File(out), vm.sha256['drive-scsi1.img']!);
  t.is(await server.stop(), 0, 'nbd exits 0 on SIGTERM');
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

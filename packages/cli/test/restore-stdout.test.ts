/*
 * `restore --out -`: the archive on stdout, as proxmox-backup-client restores with `-`;
 * a consumer that stops reading early is an output error, not a hang or a stack trace.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import test from 'ava';
import { assertCliError, BIN, cli, MiB, runIn, testDir, vmArgs, writeVm } from './helpers.js';

/** Runs the binary; hashes stdout (or takes only `limit` bytes of it, then closes the pipe). */
function restoreToPipe(
  args: readonly string[],
  limit = Number.POSITIVE_INFINITY,
): Promise<{ code: number | null; sha256: string; bytes: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (piece: Buffer) => {
      if (bytes >= limit) return;
      const take = piece.subarray(0, Math.min(piece.byteLength, limit - bytes));
      hash.update(take);
      bytes += take.byteLength;
      if (bytes >= limit) child.stdout.destroy();
    });
    child.stderr.on('data', (piece: Buffer) => {
      stderr += piece.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, sha256: hash.digest('hex'), bytes, stderr }));
  });
}

test('restore --out - writes the whole archive, zeros included, to stdout', async (t) => {
  const dir = await testDir(t);
  const store = join(dir, 'store');
  const vm = await writeVm(dir, { sizes: [6 * MiB + 4321, 1 * MiB] });
  t.is((await runIn(['backup', '--store', store, '--snapshot', 'vm/100', ...vmArgs(vm)])).code, 0);
  const out = await restoreToPipe(['restore', '--from', store, 'vm/100', 'drive-scsi0.img', '--out', '-']);
  t.is(out.code, 0, out.stderr);
  t.is(out.bytes, vm.drives[0]!.sizeBytes);
  t.is(out.sha256, vm.sha256['drive-scsi0.img'] ?? '');
  t.regex(out.stderr, /drive-scsi0\.img -> stdout: /, 'the summary goes to stderr');

  const closed = await restoreToPipe(
    ['restore', '--from', store, 'vm/100', 'drive-scsi0.img', '--out', '-'],
    1000,
  );
  t.is(closed.code, 1, closed.stderr);
  t.regex(
    closed.stderr,
    /^liverestore: ERR_LR_OUTPUT_INVALID: the output stream closed after \d+ of \d+ bytes/m,
  );
  t.notRegex(closed.stderr, /^\s+at /m, 'no stack trace');

  const json = await cli(['restore', '--from', store, 'vm/100', 'drive-scsi0.img', '--out', '-', '--json']);
  t.regex(assertCliError(t, json, 'ERR_LR_USAGE', 2), /--json prints to stdout/);
});

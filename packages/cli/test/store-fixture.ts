/** One small backed-up VM for the hardening tests (cli-hardening, interrupted). */
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { KiB, runIn, testDir, vmArgs, writeVm } from './helpers.js';

/**
 * A store with one snapshot of vm/100 (64 KiB chunks): drive-scsi0 of 1 MiB + 5 bytes of
 * text (seed 1: no zero chunk, so every read goes to the store) and a 64 KiB drive-scsi1.
 */
export async function storeWithSnapshot(
  t: ExecutionContext,
): Promise<{ dir: string; store: string; snapshot: string }> {
  const dir = await testDir(t);
  const vm = await writeVm(dir, { seed: 1, sizes: [1024 * KiB + 5, 64 * KiB] });
  const store = join(dir, 'store');
  const argv = ['backup', '--json', '--store', store, '--snapshot', 'vm/100', '--chunk-size', '64KiB'];
  const out = await runIn([...argv, ...vmArgs(vm)]);
  t.is(out.code, 0, out.stderr);
  return { dir, store, snapshot: (JSON.parse(out.stdout) as { snapshot: string }).snapshot };
}

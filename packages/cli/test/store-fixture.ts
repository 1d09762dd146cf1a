/** One small backed-up VM for the CLI tests that need a store with a snapshot. */
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { backupArgv, KiB, runIn, testDir, type VmFiles, vmArgs, writeVm } from './helpers.js';

/** A store with one snapshot of vm/100, its directory and the VM's files. */
export interface StoreFixture {
  readonly dir: string;
  readonly store: string;
  readonly snapshot: string;
  readonly vm: VmFiles;
}

/**
 * A store with one snapshot of vm/100 (64 KiB chunks) of a VM written with `vm` (default:
 * drive-scsi0 of 1 MiB + 5 bytes of text, seed 1: no zero chunk, so every read goes to the
 * store, and a 64 KiB drive-scsi1).
 */
export async function storeWithSnapshot(
  t: ExecutionContext,
  vm: Parameters<typeof writeVm>[1] = { seed: 1, sizes: [1024 * KiB + 5, 64 * KiB] },
): Promise<StoreFixture> {
  const dir = await testDir(t);
  const files = await writeVm(dir, vm);
  const store = join(dir, 'store');
  const out = await runIn(backupArgv(store, vmArgs(files), { chunkSize: '64KiB' }));
  t.is(out.code, 0, out.stderr);
  return { dir, store, vm: files, snapshot: (JSON.parse(out.stdout) as { snapshot: string }).snapshot };
}

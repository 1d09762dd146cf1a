import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { LiverestoreError } from '@liverestore/format';
import { defineCommand } from '../command.js';

/**
 * The benchmarks' entry point in the workspace, found from this file
 * (packages/cli/dist/src/commands/). The CLI does not depend on the benchmarks package
 * (no project reference, no import): it runs it as a child process, so the dependency
 * arrow stays benchmarks → cli.
 */
export const BENCHMARKS_MAIN = fileURLToPath(
  new URL('../../../../../benchmarks/dist/src/main.js', import.meta.url),
);

export const benchCommand = defineCommand({
  name: 'bench',
  summary:
    'run a benchmark of the workspace (pnpm bench): qemu, live-restore, restore, s3, scale, nbd, codecs, backup, testkit',
  help: `Usage: liverestore bench NAME [options]
       liverestore bench NAME --help       (the options of benchmark NAME)

Runs benchmark NAME of the benchmarks package, exactly as "pnpm bench NAME [options]"
does: every argument is passed on unchanged, the benchmark's output goes to this
terminal, and its exit status is this command's (0 ok, 1 failed, 2 usage error).
Results are written under --out DIR (default bench-results/ at the repository root):
NAME.json, NAME.md, NAME.svg and NAME.png (and NAME-GOAL.svg/.png per goal figure).

Benchmarks:
  qemu          QEMU live restore (overlay + qemu-storage-daemon block-stream, or
                live-restore's own copy) with fio reading during the copy: liverestore
                nbd and live-restore vs nbdkit curl + cache and nbdkit file
  live-restore  PBS's old (A) and current (C) read paths vs liverestore (B): QEMU-like
                copy job and a booting guest over NBD, injected RTT and bandwidth,
                scaling to 8 drives
  restore       cold full restore vs the decode limit, warm random 4 KiB reads
  scale         40 restores at once from serve, serve behind nginx, Ceph RGW and RGW
                behind nginx: total time vs one restore × 40, origin GETs, read p99,
                memory per process, every byte checked
  nbd           warm random 4 KiB reads over NBD with fio, vs nbdkit
  codecs        single-thread MB/s of the codecs and hashes on 4 MiB chunks
  backup        backup MB/s: encoder inline, 1 and N threads, incremental

Needs a built workspace checkout (pnpm build): the benchmarks are not part of the
installed CLI; without them this fails with ERR_LR_BENCH_NOT_BUILT.`,
  options: {},
  rawArgs: true,
  actions: ['qemu', 'live-restore', 'restore', 'scale', 'nbd', 'codecs', 'backup'],
  async run({ positionals }, io) {
    const [first] = positionals;
    if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
      io.stdout.write(`${benchCommand.help}\n`);
      return first === undefined ? 2 : 0;
    }
    try {
      await access(BENCHMARKS_MAIN);
    } catch {
      throw new LiverestoreError(
        'ERR_LR_BENCH_NOT_BUILT',
        `the benchmarks are not built or not present (no ${BENCHMARKS_MAIN}): run "pnpm build" in a workspace checkout`,
      );
    }
    const child = spawn(process.execPath, [BENCHMARKS_MAIN, ...positionals], { stdio: 'inherit' });
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => resolve(code ?? 1));
    });
  },
});

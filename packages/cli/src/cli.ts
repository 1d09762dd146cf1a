import { closestNames } from '@liverestore/datastore/internal';
import { LiverestoreError, zstdCodecInfo } from '@liverestore/format';
import { type Command, type CommandIo, parseCommandArgs } from './command.js';
import { backupCommand } from './commands/backup.js';
import { benchCommand } from './commands/bench.js';
import { completionCommand } from './commands/completion.js';
import { demoCommand } from './commands/demo.js';
import { keyCommand } from './commands/key.js';
import { liveRestoreCommand } from './commands/live-restore.js';
import { nbdCommand } from './commands/nbd.js';
import { restoreCommand } from './commands/restore.js';
import { serveCommand } from './commands/serve.js';
import { snapshotsCommand } from './commands/snapshots.js';
import { verifyCommand } from './commands/verify.js';
import { daemonIo, runForked } from './daemon.js';
import { UsageError } from './errors.js';
import { removeTempsOnSignal, TEMP_WRITING_COMMANDS } from './signal-cleanup.js';
import { printableLine } from './terminal-text.js';

/** Every sub-command, in the order `--help` lists them. */
export const COMMANDS: readonly Command[] = [
  demoCommand,
  backupCommand,
  snapshotsCommand,
  verifyCommand,
  restoreCommand,
  serveCommand,
  nbdCommand,
  liveRestoreCommand,
  keyCommand,
  benchCommand,
  completionCommand(() => COMMANDS),
] as Command[];

/** The version of the CLI (its package.json's). */
export const VERSION = '0.1.0';

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `liverestore ${VERSION}: restore VMs live from deduplicated chunk backups (Proxmox Backup Server format)

Usage: liverestore COMMAND [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Options:
  -h, --help     this overview ("liverestore COMMAND --help": the options of a command)
  -V, --version  the version, and which zstd implementation this Node.js runs

Run "liverestore COMMAND --help" for the options of a command.
Errors are printed as "liverestore: CODE: message"; docs/errors.md lists every code.`;
}

/** Exit statuses: 0 ok, 1 the work failed (e.g. verify found bad chunks), 2 usage error. */
export async function run(argv: string[], processIo: CommandIo): Promise<number> {
  // A server started by --fork prints through its readiness channel (daemon.ts).
  const io = daemonIo(processIo);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic =
      name === 'help' && rest[0] !== undefined ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (name === 'help' && rest[0] !== undefined && topic === undefined) {
      return report(new UsageError(`help: unknown command "${rest[0]}"`), io);
    }
    io.stdout.write(`${topic?.help ?? overview()}\n`);
    return 0;
  }
  if (name === '--version' || name === '-V') {
    // Second line: which zstd implementation this Node.js runs (docs/formats.md, "zstd codec").
    io.stdout.write(
      `${VERSION}\nzstd: encode ${zstdCodecInfo.encoder}, decode ${zstdCodecInfo.decoder} ` +
        `(${[`Node.js ${process.version}`, ...zstdCodecInfo.notes].join('; ')})\n`,
    );
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  try {
    if (command === undefined) {
      const close = closestNames(
        name,
        COMMANDS.map((c) => c.name),
      );
      const hint = close.length > 0 ? `did you mean ${close.join(' or ')}? ` : '';
      throw new UsageError(
        `unknown command "${name}"; ${hint}(commands: ${COMMANDS.map((c) => c.name).join(', ')})`,
      );
    }
    const args =
      command.rawArgs === true
        ? ({ values: {}, positionals: rest } as unknown as ReturnType<typeof parseCommandArgs>)
        : parseCommandArgs(command, rest);
    if (args.values.help === true) {
      io.stdout.write(`${command.help}\n`);
      return 0;
    }
    if ((args.values as { fork?: unknown }).fork === true) return await runForked(argv, io);
    const release = TEMP_WRITING_COMMANDS.has(command.name) ? removeTempsOnSignal() : undefined;
    try {
      return await command.run(args, io);
    } finally {
      release?.();
    }
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: CommandIo): number {
  if (err instanceof LiverestoreError) {
    const code = err.code === 'ERR_LR_NBD_LISTEN' ? 'ERR_LR_LISTEN' : err.code; // one code for every front end
    io.stderr.write(`liverestore: ${printableLine(`${code}: ${err.message}`)}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
  if (err instanceof RangeError) {
    // Option values checked by the library (e.g. a cache size of 0); a TypeError is a bug
    // and falls through to the internal-error report with its stack.
    io.stderr.write(`liverestore: ERR_LR_INVALID_ARGUMENT: ${printableLine(err.message)}\n`);
    return 2;
  }
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    // A system error (EACCES, ENOSPC, …) that no layer translated: still no stack trace.
    io.stderr.write(`liverestore: ERR_LR_SYSTEM: ${printableLine((err as Error).message)}\n`);
    return 1;
  }
  throw err;
}

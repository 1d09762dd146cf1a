import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { closestNames } from '@liverestore/datastore/internal';
import { type CryptConfig, decodeKeyFile, LiverestoreError } from '@liverestore/format';
import { UsageError } from './errors.js';
import { Progress } from './progress.js';

/** What a command may write to: stdout for results, stderr for progress and diagnostics. */
export interface CommandIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** One `liverestore` sub-command. */
export interface Command<O extends Options = Options> {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Full `--help` text. */
  readonly help: string;
  readonly options: O;
  /**
   * The command takes its arguments unparsed (all in `positionals`, `--help` included):
   * `bench` hands them on to another program that has its own options.
   */
  readonly rawArgs?: boolean;
  /** The words its first positional argument is one of (`key`: create, show), for completion. */
  readonly actions?: readonly string[];
  /** Returns the exit status. */
  run(args: ParsedArgs<O>, io: CommandIo): Promise<number>;
}

/** The values and positionals parseArgs returns for a command's options. */
export type ParsedArgs<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O; allowPositionals: true; strict: true }>
>;

/** Options every command understands. */
export const COMMON_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
} as const satisfies Options;

/** Parses argv for a command; parseArgs' own errors become a {@link UsageError} naming the command. */
export function parseCommandArgs<O extends Options>(command: Command<O>, argv: string[]): ParsedArgs<O> {
  try {
    const args = withNegativeValuesJoined(argv, command.options);
    return parseArgs({ args, options: command.options, allowPositionals: true, strict: true });
  } catch (err) {
    const unknown = unknownOption(err);
    if (unknown !== undefined) {
      const close = closestNames(
        unknown,
        Object.keys(command.options).map((name) => `--${name}`),
      );
      const hint = close.length > 0 ? `; did you mean ${close.join(' or ')}?` : '';
      throw new UsageError(
        `${command.name}: unknown option ${unknown}${hint} (see liverestore ${command.name} --help)`,
      );
    }
    throw new UsageError(`${command.name}: ${(err as Error).message.split('\n')[0]}`);
  }
}

/** The option parseArgs did not know (`--frmo`), if that is what `err` says. */
function unknownOption(err: unknown): string | undefined {
  if ((err as { code?: unknown }).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return undefined;
  return /^Unknown option '([^']+)'/.exec((err as Error).message)?.[1];
}

/**
 * `--cache-size -1` → `--cache-size=-1`: parseArgs refuses a value that starts with a dash
 * as "ambiguous", which hides the real problem; joined, the option's own check reports
 * the bad value (e.g. "--cache-size must be a size like 4MiB").
 */
function withNegativeValuesJoined(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return [...out, ...argv.slice(i)];
    const next = argv[i + 1];
    const option = arg.startsWith('--') ? options[arg.slice(2)] : undefined;
    if (option?.type === 'string' && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** Typed helper so each command keeps its option types. */
export function defineCommand<O extends Options>(command: Command<O>): Command<O> {
  return command;
}

/** The value of a required option, or a usage error. */
export function required(value: string | undefined, option: string, command: string): string {
  if (value === undefined || value === '')
    throw new UsageError(`${command}: ${option} is required (see liverestore ${command} --help)`);
  return value;
}

/** Loads a PBS key file, with an error that names the file. */
export async function loadKeyFile(path: string | undefined): Promise<CryptConfig | undefined> {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new LiverestoreError(
      'ERR_LR_KEYFILE_UNREADABLE',
      `cannot read key file ${path} (${(cause as { code?: string }).code ?? 'error'})`,
      {
        cause,
      },
    );
  }
  try {
    return decodeKeyFile(text);
  } catch (err) {
    if (err instanceof Error) err.message = `${path}: ${err.message}`;
    throw err;
  }
}

/**
 * Progress for a command: on the command's stderr; silent under `--json` unless stderr is
 * a terminal (a person watching still sees the bar, a script gets clean output).
 */
export function commandProgress(
  io: CommandIo,
  label: string,
  total: number,
  json: boolean | undefined,
  unit: 'bytes' | 'items' = 'bytes',
): Progress {
  return new Progress(label, total, {
    unit,
    out: io.stderr as Writable,
    quiet: json === true && io.stderr.isTTY !== true,
  });
}

/**
 * Resolves on the first SIGINT or SIGTERM: how the long-running commands (serve, nbd)
 * stop gracefully. A command that can also end another way (live-restore
 * --exit-when-done) passes `cancel`: when it fires, the handlers are removed and the
 * promise never settles, so no handler outlives the command (an in-process `run()`
 * would otherwise collect them).
 */
export function stopSignal(cancel?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const remove = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      cancel?.removeEventListener('abort', remove);
    };
    const stop = (): void => {
      remove();
      resolve();
    };
    if (cancel?.aborted === true) return;
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    cancel?.addEventListener('abort', remove, { once: true });
  });
}

/** Writes one JSON document to stdout (the `--json` contract: one object per command). */
export function printJson(io: CommandIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

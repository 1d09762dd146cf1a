/*
 * Helpers of the CLI tests: run `liverestore` as a real process or in-process through
 * run(argv, io), make small deterministic VM images, and look at a datastore's files
 * directly (never through the Datastore class), so a test checks an independent view.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { ChunkServerOptions } from '@liverestore/server';
import {
  imageBytes,
  imageRegions,
  tempDir,
  vmImageSet,
  withDescriptorLimit,
  writeImageFile,
} from '@liverestore/testkit';
import type { ExecutionContext } from 'ava';
import { run } from '../src/index.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** Repository root (tests run from packages/cli/dist/test/). */
export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
/** The real `liverestore` binary of this checkout. */
export const BIN = fileURLToPath(new URL('../../bin/liverestore.js', import.meta.url));
export const PBS_READER = join(ROOT, 'conformance', 'pbs_reader.py');
export const PBS_WRITER = join(ROOT, 'conformance', 'pbs_writer.py');

/** What a process (or an in-process run) printed and how it ended. */
/** A `liverestore` process that serves until stopped (serve, nbd), and the address it printed. */
export interface ServingProcess {
  readonly address: string;
  /** What it has printed on stderr so far. */
  stderr(): string;
  /** Resolves with the first stderr line that `pattern` matches, printed already or later. */
  stderrLine(pattern: RegExp): Promise<string>;
  /** Sends SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `liverestore ARGS` and resolves once it printed its address: the first whole stdout
 * line `isAddress` accepts (default: the first line). Rejects with its stderr when it exits
 * before that. `descriptorLimit`: the process's own `ulimit -n`.
 */
export async function startServing(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; isAddress?: (line: string) => boolean; descriptorLimit?: number } = {},
): Promise<ServingProcess> {
  const [command, argv] =
    options.descriptorLimit === undefined
      ? [process.execPath, [BIN, ...args]]
      : withDescriptorLimit(options.descriptorLimit, process.execPath, [BIN, ...args]);
  const child = spawn(command, argv, {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    for (const watch of watchers) watch();
  });
  const stderrLine = (pattern: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const watch = (): void => {
        const line = stderr
          .split('\n')
          .slice(0, -1)
          .find((l) => pattern.test(l));
        if (line === undefined) return;
        watchers.delete(watch);
        resolve(line);
      };
      watchers.add(watch);
      watch();
      // 'close': its stderr has been read to the end.
      child.once('close', (code) =>
        reject(new Error(`liverestore ${args[0]} exited (${code}) before printing ${pattern}: ${stderr}`)),
      );
    });
  const isAddress = options.isAddress ?? (() => true);
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      const line = out.split('\n').slice(0, -1).find(isAddress);
      if (line !== undefined) resolve(line.trim());
    });
    child.once('exit', (code) =>
      reject(new Error(`liverestore ${args[0]} exited early with ${code}: ${stderr}`)),
    );
  });
  return {
    address,
    stderr: () => stderr,
    stderrLine,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface Outcome {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end; never rejects on a non-zero exit (the test looks at `code`). */
export function exec(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      stderr += `\n[test helper: killed after ${options.timeoutMs} ms]`;
    }, options.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `node bin/liverestore.js …`: the binary as a user runs it (non-TTY stdout/stderr). */
export function cli(
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<Outcome> {
  return exec(process.execPath, [BIN, ...args], options);
}

/** A stream that keeps what is written to it; `isTTY` makes it look like a terminal. */
export class Capture extends Writable {
  text = '';
  readonly isTTY: boolean;
  readonly columns = 80;
  constructor(isTTY = false) {
    super();
    this.isTTY = isTTY;
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** run(argv, io) with captured streams: the fast way to test a command. */
export async function runIn(
  argv: readonly string[],
  options: { stderrIsTTY?: boolean } = {},
): Promise<Outcome> {
  const stdout = new Capture();
  const stderr = new Capture(options.stderrIsTTY ?? false);
  const code = await run([...argv], { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** Non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

/**
 * The error contract of the CLI: exit status `status`, stderr is exactly one line
 * `liverestore: CODE: message`, nothing looks like a stack trace, nothing on stdout.
 */
export function assertCliError(t: ExecutionContext, out: Outcome, code: string, status = 1): string {
  const errLines = lines(out.stderr);
  t.is(out.code, status, `exit status (stderr: ${out.stderr})`);
  t.is(errLines.length, 1, `one line on stderr, got: ${JSON.stringify(out.stderr)}`);
  const line = errLines[0] ?? '';
  t.true(line.startsWith(`liverestore: ${code}: `), `stderr starts with "liverestore: ${code}: ": ${line}`);
  t.true(line.length > `liverestore: ${code}: `.length + 5, 'the line carries a message');
  t.false(/^\s+at /m.test(out.stderr + out.stdout), 'no stack trace');
  t.is(out.stdout, '', 'nothing on stdout');
  return line;
}

/** A fresh directory removed when the test ends. */
export async function testDir(t: ExecutionContext, prefix = 'lr-cli-'): Promise<string> {
  const dir = await tempDir(prefix);
  t.teardown(() => dir.cleanup());
  return dir.path;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  return sha256Hex(await readFile(path));
}

/** The inputs of a small VM backup: two raw drives and a text file. */
export interface VmFiles {
  /** `kinds`: the content kinds of the drive (zero, text, random, repeat), in order of first appearance. */
  readonly drives: readonly { name: string; path: string; sizeBytes: number; kinds: readonly string[] }[];
  readonly notesPath: string;
  /** sha256 of each file by archive name (`drive-scsi0.img`, `drive-scsi1.img`, `notes.txt`). */
  readonly sha256: Readonly<Record<string, string>>;
}

/**
 * Writes a deterministic two-drive VM to `dir`: drive sizes that are not multiples of
 * any chunk size (they end in a partial chunk), and a text file for a dynamic archive.
 * The testkit's content regions are 256 KiB to 8 MiB long, so a small drive can be a
 * single region (all zeros, say): the default seed and sizes give a system disk of
 * zeros, random and text and a data disk of text and zeros (see `kinds`).
 */
export async function writeVm(
  dir: string,
  options: { seed?: number; sizes?: readonly [number, number]; notesBytes?: number } = {},
): Promise<VmFiles> {
  const seed = options.seed ?? 1397;
  const sizes = options.sizes ?? [3 * MiB + 12_345, 2 * MiB + 777];
  const set = vmImageSet(seed, { drives: 2, sizeBytes: [...sizes] });
  const drives = [];
  const sha256: Record<string, string> = {};
  for (const drive of set) {
    const path = join(dir, `${drive.name}.raw`);
    await writeImageFile(drive.spec, path);
    const kinds = [...new Set(imageRegions(drive.spec).map((r) => r.kind))];
    drives.push({ name: drive.name, path, sizeBytes: drive.spec.sizeBytes, kinds });
    sha256[`${drive.name}.img`] = await sha256File(path);
  }
  const notesBytes = options.notesBytes ?? 300 * KiB + 11;
  const notesPath = join(dir, 'notes.txt');
  await writeFile(
    notesPath,
    imageBytes({ sizeBytes: notesBytes, seed: seed + 100, mix: { text: 1 } }, 0, notesBytes),
  );
  sha256['notes.txt'] = await sha256File(notesPath);
  return { drives, notesPath, sha256 };
}

/** The `ARCHIVE=PATH` arguments of a {@link writeVm} VM, as the README writes them. */
export function vmArgs(vm: VmFiles): string[] {
  return [
    `drive-scsi0=${vm.drives[0]!.path}`,
    `drive-scsi1.img=${vm.drives[1]!.path}`,
    `notes.txt=${vm.notesPath}`,
  ];
}

/** Options of {@link backupArgv}. */
export interface BackupArgvOptions {
  /** Default `vm/100`. */
  readonly snapshot?: string;
  readonly ns?: string;
  readonly chunkSize?: string;
  /** `--json` unless false. */
  readonly json?: boolean;
  /** More options (`--keyfile`, K). */
  readonly extra?: readonly string[];
}

/**
 * `backup [--json] --store STORE [--ns NS] --snapshot SNAPSHOT [--chunk-size SIZE] EXTRA…
 * INPUTS…`: the command line the tests back up with (`inputs`: `vmArgs(vm)` or NAME=PATH).
 */
export function backupArgv(
  store: string,
  inputs: readonly string[],
  options: BackupArgvOptions = {},
): string[] {
  return [
    'backup',
    ...(options.json === false ? [] : ['--json']),
    '--store',
    store,
    ...(options.ns === undefined ? [] : ['--ns', options.ns]),
    '--snapshot',
    options.snapshot ?? 'vm/100',
    ...(options.chunkSize === undefined ? [] : ['--chunk-size', options.chunkSize]),
    ...(options.extra ?? []),
    ...inputs,
  ];
}

/** `live-restore --from STORE SNAPSHOT --target-dir TARGET --listen 127.0.0.1:0 --exit-when-done EXTRA…`. */
export function untilDoneArgv(
  store: string,
  target: string,
  snapshot = 'vm/100',
  ...extra: string[]
): string[] {
  return [
    'live-restore',
    '--from',
    store,
    snapshot,
    '--target-dir',
    target,
    '--listen',
    '127.0.0.1:0',
    '--exit-when-done',
    ...extra,
  ];
}

/** `nbd --from FROM SNAPSHOT --listen 127.0.0.1:0 EXTRA…`: an NBD server on a free loopback port. */
export function nbdArgv(from: string, extra: readonly string[] = [], snapshot = 'vm/100'): string[] {
  return ['nbd', '--from', from, snapshot, '--listen', '127.0.0.1:0', ...extra];
}

/** Snapshot directories `TYPE/ID/NAME` under a store (root namespace), temp directories included, sorted. */
export async function snapshotDirs(storeDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const type of ['vm', 'ct', 'host']) {
    const ids = await readdir(join(storeDir, type)).catch(() => [] as string[]);
    for (const id of ids) {
      const entries = await readdir(join(storeDir, type, id), { withFileTypes: true }).catch(() => []);
      // Directories only: the group's owner file (and PBS's notes) are no snapshots.
      for (const entry of entries) if (entry.isDirectory()) out.push(`${type}/${id}/${entry.name}`);
    }
  }
  return out.sort();
}

/** Every path under `dir` whose name starts with `.tmp-` (left-overs of an unfinished write). */
export async function tempLeftovers(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((p) => p.split('/').some((part) => part.startsWith('.tmp-'))).sort();
}

/** Every file of the store's chunk folder, as `XXXX/<digest>`, sorted. */
export async function chunkFiles(storeDir: string): Promise<string[]> {
  const root = join(storeDir, '.chunks');
  const out: string[] = [];
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const name of await readdir(join(root, prefix))) out.push(`${prefix}/${name}`);
  }
  return out.sort();
}

/** The path of a chunk file (`.chunks/<4 hex>/<64 hex>`), as formats.md gives it. */
export function chunkPath(storeDir: string, digest: string): string {
  return join(storeDir, '.chunks', digest.slice(0, 4), digest);
}

/** Hex digests of a `.fidx` or `.didx` file, parsed from formats.md (4096-byte header, 32- or 40-byte entries). */
export async function indexDigests(path: string): Promise<string[]> {
  const raw = await readFile(path);
  const entry = path.endsWith('.fidx') ? 32 : 40;
  const skip = path.endsWith('.fidx') ? 0 : 8;
  const out: string[] = [];
  for (let at = 4096; at + entry <= raw.byteLength; at += entry) {
    out.push(raw.subarray(at + skip, at + entry).toString('hex'));
  }
  return out;
}

/** XORs one byte of a file (in place). */
export async function flipByte(path: string, offset: number, mask = 0x01): Promise<void> {
  const data = await readFile(path);
  const at = offset < 0 ? data.byteLength + offset : offset;
  data[at] = (data[at] as number) ^ mask;
  await writeFile(path, data);
}

/** The one snapshot directory name (`TIME`) of `TYPE/ID`, failing the test if there is not exactly one. */
export async function onlySnapshot(t: ExecutionContext, storeDir: string, group = 'vm/100'): Promise<string> {
  // Hidden names and the group's owner file (PBS) are no snapshots.
  const names = (await readdir(join(storeDir, group))).filter((n) => !n.startsWith('.') && n !== 'owner');
  t.is(names.length, 1, `one snapshot in ${group}: ${names.join(', ')}`);
  return `${group}/${names[0]}`;
}

/** A ChunkServer logger that drops everything (the server's access log would flood the test output). */
export const silentServerLogger = {
  info: () => {},
  error: () => {},
  warn: () => {},
  debug: () => {},
  trace: () => {},
  fatal: () => {},
} as unknown as NonNullable<ChunkServerOptions['logger']>;

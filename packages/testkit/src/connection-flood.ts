/**
 * Many idle connections to a server from several child processes (issue 15: 20,000 idle
 * NBD connections took every descriptor of the server). One process may hold only as
 * many sockets as its descriptor limit, so the connections are spread over `processes`
 * children (connection-flood-child.ts), each with `descriptorLimit` descriptors when given.
 * The flood is protocol-neutral: a connection counts as kept once the server has sent
 * `greetingBytes`, and then sends `opening` (the rest of its handshake) and stays idle.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withDescriptorLimit } from './descriptor-limit.js';

const CHILD = fileURLToPath(new URL('./connection-flood-child.js', import.meta.url));

/** Options of {@link startConnectionFlood}. */
export interface ConnectionFloodOptions {
  readonly host: string;
  readonly port: number;
  /** Connection attempts in all, spread evenly over the processes. */
  readonly connections: number;
  readonly processes: number;
  /** Bytes the server sends first; a connection closed before them is refused. */
  readonly greetingBytes: number;
  /** What a connection sends once greeted, before it falls idle. */
  readonly opening: Uint8Array;
  /** Each process's file-descriptor limit (`ulimit -n`); default: inherited. */
  readonly descriptorLimit?: number | undefined;
}

/** What the attempts came to, once each of them has settled. */
export interface FloodCounts {
  /** Greeted by the server and held open, idle. */
  kept: number;
  /** Closed by the server before its greeting. */
  refused: number;
  /** Never connected (a local error such as EMFILE, or a refused TCP connect). */
  failed: number;
  /** The first few errors of the failed attempts. */
  errors: string[];
}

/** A flood whose attempts have all settled; its kept connections are open until {@link close}. */
export interface ConnectionFlood {
  /** Summed over the processes. */
  readonly counts: FloodCounts;
  /**
   * Ends the flood: every process closes its connections and exits. Resolves with how
   * many kept connections the server had closed before that.
   */
  close(): Promise<number>;
}

/** One child and its stdout lines; rejects a line it never printed with its stderr. */
class FloodProcess {
  readonly #child: ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #exited: Promise<unknown>;
  #stderr = '';

  constructor(options: ConnectionFloodOptions, count: number) {
    const args = [
      CHILD,
      options.host,
      String(options.port),
      String(count),
      String(options.greetingBytes),
      Buffer.from(options.opening).toString('hex'),
    ];
    const [command, argv] =
      options.descriptorLimit === undefined
        ? [process.execPath, args]
        : withDescriptorLimit(options.descriptorLimit, process.execPath, args);
    this.#child = spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    // 'close', not 'exit': by then all its stderr has been read, for the error message.
    this.#exited = once(this.#child, 'close');
    this.#child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.#stderr += text;
    });
    const lines: Interface = createInterface({ input: this.#child.stdout! });
    this.#lines = lines[Symbol.asyncIterator]();
  }

  async line<T>(): Promise<T> {
    const next = await this.#lines.next();
    if (next.done === true) {
      await this.#exited;
      throw new Error(
        `a connection-flood process ended early (${this.#child.exitCode ?? this.#child.signalCode}): ${this.#stderr.trim()}`,
      );
    }
    return JSON.parse(next.value) as T;
  }

  /** Lets the child print what the server closed and exit. */
  async end(): Promise<number> {
    this.#child.stdin!.end();
    const { closedByServer } = await this.line<{ closedByServer: number }>();
    await this.#exited;
    return closedByServer;
  }

  kill(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill('SIGKILL');
  }
}

/**
 * Starts `processes` children that open `connections` connections in all; resolves once
 * every attempt has been kept, refused or failed. Rejects (and stops every child) when a
 * child cannot run, e.g. when it may not raise its descriptor limit.
 */
export async function startConnectionFlood(options: ConnectionFloodOptions): Promise<ConnectionFlood> {
  const { connections, processes } = options;
  if (!Number.isSafeInteger(processes) || processes < 1)
    throw new RangeError('processes must be a positive integer');
  const children = Array.from(
    { length: processes },
    (_, k) =>
      new FloodProcess(options, Math.floor(connections / processes) + (k < connections % processes ? 1 : 0)),
  );
  let parts: FloodCounts[];
  try {
    parts = await Promise.all(children.map((c) => c.line<FloodCounts>()));
  } catch (err) {
    for (const c of children) c.kill();
    throw err;
  }
  const counts: FloodCounts = { kept: 0, refused: 0, failed: 0, errors: [] };
  for (const p of parts) {
    counts.kept += p.kept;
    counts.refused += p.refused;
    counts.failed += p.failed;
    counts.errors.push(...p.errors);
  }
  let closing: Promise<number> | undefined;
  return {
    counts,
    close() {
      closing ??= Promise.all(children.map((c) => c.end())).then((closed) =>
        closed.reduce((a, b) => a + b, 0),
      );
      return closing;
    },
  };
}

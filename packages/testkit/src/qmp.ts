/**
 * `qemu-storage-daemon` for the tests and benchmarks that run the live-restore recipe
 * (docs/live-restore.md): its command line, and a minimal QMP client (QEMU Machine
 * Protocol: JSON lines over a Unix socket), one command at a time, events collected in
 * arrival order so a caller can wait for `BLOCK_JOB_COMPLETED` whether it came before or
 * after it asked.
 */

import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** One message from the monitor: the greeting, a reply (`return` or `error`) or an event. */
export interface QmpMessage {
  readonly QMP?: unknown;
  readonly return?: unknown;
  readonly error?: { readonly class: string; readonly desc: string };
  readonly event?: string;
  readonly data?: Record<string, unknown>;
  /** Event time as QEMU stamps it: seconds and microseconds since the epoch. */
  readonly timestamp?: { readonly seconds: number; readonly microseconds: number };
}

const RETRY_MS = 20;
const DEFAULT_COMMAND_TIMEOUT_MS = 20_000;

/** `p`, or a rejection naming `what` once `ms` have passed. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Paths of a {@link storageDaemonArgs} daemon. */
export interface StorageDaemonPaths {
  /** The qcow2 overlay it opens as node `disk`. */
  readonly overlay: string;
  /** Its QMP monitor socket (created by the daemon). */
  readonly qmpSocket: string;
  /** The Unix socket of its writable NBD export `disk` (the guest's disk). */
  readonly exportSocket: string;
}

/**
 * The arguments of `qemu-storage-daemon` in docs/live-restore.md's recipe (4b): the
 * overlay as node `disk`, a QMP monitor, and a writable NBD export `disk` of it.
 */
export function storageDaemonArgs(paths: StorageDaemonPaths): string[] {
  return [
    '--chardev',
    `socket,id=qmp,path=${paths.qmpSocket},server=on,wait=off`,
    '--monitor',
    'chardev=qmp',
    '--blockdev',
    JSON.stringify({
      driver: 'qcow2',
      'node-name': 'disk',
      file: { driver: 'file', filename: paths.overlay },
    }),
    '--nbd-server',
    `addr.type=unix,addr.path=${paths.exportSocket}`,
    '--export',
    'type=nbd,id=exp,node-name=disk,name=disk,writable=on',
  ];
}

/** A QMP connection in command mode (capabilities negotiated). */
export class Qmp {
  /** Every event received so far, oldest first. */
  readonly events: QmpMessage[] = [];
  #buf = '';
  #waiters: (() => void)[] = [];
  #replies: QmpMessage[] = [];
  #closed = false;
  readonly #commandTimeoutMs: number;

  private constructor(
    readonly socket: Socket,
    commandTimeoutMs: number,
  ) {
    this.#commandTimeoutMs = commandTimeoutMs;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buf += d;
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (line === '') continue;
        const msg = JSON.parse(line) as QmpMessage;
        if (msg.event !== undefined) this.events.push(msg);
        else this.#replies.push(msg);
      }
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  async #until<T>(get: () => T | undefined): Promise<T> {
    for (;;) {
      const v = get();
      if (v !== undefined) return v;
      if (this.#closed) throw new Error('QMP connection closed');
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /**
   * Connects to the monitor socket at `path`, retrying until the daemon has created it
   * or `deadline` (a `Date.now()` value) has passed, and negotiates capabilities.
   * `alive`, when given, is checked between retries: a daemon that has exited will
   * never create the socket, so its error comes at once instead of at the deadline.
   */
  static async open(
    path: string,
    deadline: number,
    options: { readonly commandTimeoutMs?: number; readonly alive?: () => void } = {},
  ): Promise<Qmp> {
    for (;;) {
      try {
        const socket = connect({ path });
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        });
        const qmp = new Qmp(socket, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
        await qmp.#until(() => qmp.#replies.shift()); // greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        options.alive?.();
        if (Date.now() > deadline) throw err;
        await sleep(RETRY_MS);
      }
    }
  }

  /** Runs one command and returns its `return` value; a QMP error rejects with its class and text. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    const reply = await withTimeout(
      this.#until(() => this.#replies.shift()),
      this.#commandTimeoutMs,
      `QMP ${command}`,
    );
    if (reply.error !== undefined)
      throw new Error(`QMP ${command}: ${reply.error.class}: ${reply.error.desc}`);
    return reply.return;
  }

  /** The first event named `name` (already received or still to come). */
  event(name: string): Promise<QmpMessage> {
    return this.#until(() => this.events.find((e) => e.event === name));
  }

  close(): void {
    this.socket.destroy();
  }
}

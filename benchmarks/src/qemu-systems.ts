/**
 * The four ways `bench qemu` live-restores one disk, each started fresh for one
 * iteration in its own {@link CleanupScope} (so every process and the scratch of one
 * iteration are gone before the next starts):
 *
 *   lr-nbd       serve ─(proxy)─ liverestore nbd ─ overlay.qcow2 + qsd block-stream ─ guest
 *   lr-live      serve ─(proxy)─ liverestore live-restore (own copy) ─────────────── guest
 *   nbdkit-curl  lighttpd ─(proxy)─ nbdkit curl + cache ─ overlay + qsd block-stream ─ guest
 *   nbdkit-file  nbdkit file (raw image) ─ overlay + qsd block-stream ──────────────── guest
 *
 * The proxy (net-proxy.ts) is there only with an RTT. Every NBD hop is a Unix socket,
 * the same for all systems; HTTP is TCP on 127.0.0.1.
 */

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTimeout } from '@liverestore/testkit';
import type { CleanupScope } from './children.js';
import {
  asStoppable,
  type LiverestoreProcess,
  notInfoLog,
  startLiverestoreProcess,
  startNodeProcess,
} from './liverestore-process.js';
import { startNbdkit } from './nbdkit.js';
import { serveChunkCounters } from './proc-stats.js';
import { COPY_TIMEOUT_MS, startOverlayDaemon } from './qemu-stream.js';
import { accessTotals, startStaticHttp } from './static-http.js';

/** The systems `--systems` accepts, in report order. */
export const SYSTEMS = ['lr-nbd', 'lr-live', 'nbdkit-curl', 'nbdkit-file'] as const;
export type SystemName = (typeof SYSTEMS)[number];

/** What each system is, for tables and notes. */
export const SYSTEM_LABELS: Readonly<Record<SystemName, string>> = {
  'lr-nbd': 'liverestore nbd --from URL + overlay + qsd block-stream',
  'lr-live': 'liverestore live-restore --from URL (own copy)',
  'nbdkit-curl': 'nbdkit curl + cache over lighttpd + overlay + qsd block-stream',
  'nbdkit-file': 'nbdkit file on the raw image + overlay + qsd block-stream',
};

/** The processes of a system whose CPU and peak RSS are reported (fio is counted apart). */
export const ROLES = ['http', 'proxy', 'nbd', 'qsd'] as const;
export type Role = (typeof ROLES)[number];

/** What each role is, for the CPU table. */
export const ROLE_LABELS: Readonly<Record<Role, string>> = {
  http: 'HTTP server (liverestore serve, lighttpd)',
  proxy: 'RTT proxy',
  nbd: 'NBD server (liverestore nbd / live-restore, nbdkit)',
  qsd: 'qemu-storage-daemon',
};

/** The backup and the raw image every system restores from (made once per run). */
export interface RestoreSource {
  readonly storeDir: string;
  /** `vm/100` */
  readonly snapshot: string;
  /** The archive and export name, `drive-scsi0.img`. */
  readonly archive: string;
  /** Directory holding the raw image, lighttpd's document root. */
  readonly imageDir: string;
  /** File name of the raw image in {@link imageDir}. */
  readonly imageName: string;
  readonly cacheBytes: number;
  /** Round trip added by a proxy in front of the HTTP server. */
  readonly rttMs: number;
  /** Bandwidth cap of that proxy per direction; 0 = none (no proxy when both are 0). */
  readonly bitsPerSecond: number;
  /** `liverestore nbd` and `live-restore` get `--decode-as-arriving`. */
  readonly decodeAsArriving: boolean;
}

/** Requests the HTTP server answered for the disk's data, and their body bytes. */
export interface FetchTotals {
  readonly requests: number;
  readonly bytes: number;
}

/** A system ready for the guest. */
export interface StartedSystem {
  /** NBD URI the guest stand-in reads. */
  readonly guestUri: string;
  readonly pids: Partial<Record<Role, number>>;
  /** Starts (or, for lr-live, joins) the copy; resolves with its seconds when it is complete. */
  copy(): Promise<number>;
  /**
   * Chunk fetches (serve) or HTTP requests (lighttpd) of the iteration; call once the
   * work is done and the processes are measured (it may stop the HTTP server to flush
   * its log). Undefined for nbdkit-file, which fetches nothing.
   */
  fetches(): Promise<FetchTotals | undefined>;
  /** The liverestore NBD process's `--trace-loads` file (liverestore systems only). */
  readonly loadTrace?: string;
}

const PROXY_CHILD = fileURLToPath(new URL('./net-proxy-child.js', import.meta.url));

/** A proxy with the source's round trip and bandwidth cap in front of `host` (HOST:PORT), or nothing without either. */
async function proxied(
  scope: CleanupScope,
  host: string,
  src: RestoreSource,
): Promise<{ host: string; pid?: number }> {
  if (src.rttMs <= 0 && src.bitsPerSecond <= 0) return { host };
  const proxy = await startNodeProcess(
    PROXY_CHILD,
    [host, String(src.rttMs), String(src.bitsPerSecond)],
    'network proxy',
  );
  scope.add(asStoppable(proxy));
  return { host: proxy.address, pid: proxy.pid };
}

async function startLiverestore(
  scope: CleanupScope,
  args: readonly string[],
  onStdoutLine?: (line: string) => void,
): Promise<LiverestoreProcess> {
  const p = await startLiverestoreProcess(args, [], {
    keepStderrLine: notInfoLog,
    ...(onStdoutLine === undefined ? {} : { onStdoutLine }),
  });
  scope.add(asStoppable(p));
  return p;
}

/** `liverestore serve` of the store (and the proxy): the source URL and the pids. */
async function startServe(scope: CleanupScope, src: RestoreSource) {
  const serve = await startLiverestore(scope, ['serve', '--store', src.storeDir, '--listen', '127.0.0.1:0']);
  const proxy = await proxied(scope, new URL(serve.address).host, src);
  return {
    sourceUrl: `http://${proxy.host}`,
    pids: { http: serve.pid, ...(proxy.pid === undefined ? {} : { proxy: proxy.pid }) },
    fetches: () => serveChunkCounters(serve.address),
  };
}

async function startLrNbd(scope: CleanupScope, src: RestoreSource, dir: string): Promise<StartedSystem> {
  const serve = await startServe(scope, src);
  const socket = join(dir, 'lr.sock');
  const loadTrace = join(dir, 'loads.jsonl');
  const nbd = await startLiverestore(scope, [
    'nbd',
    '--trace-loads',
    loadTrace,
    '--from',
    serve.sourceUrl,
    src.snapshot,
    '--socket',
    socket,
    '--cache-size',
    String(src.cacheBytes),
    ...(src.decodeAsArriving ? ['--decode-as-arriving'] : []),
  ]);
  const daemon = await startOverlayDaemon(scope, dir, `nbd+unix:///${src.archive}?socket=${socket}`);
  return {
    guestUri: daemon.guestUri,
    pids: { ...serve.pids, nbd: nbd.pid, qsd: daemon.process.pid },
    copy: () => daemon.stream(),
    fetches: serve.fetches,
    loadTrace,
  };
}

async function startLrLive(scope: CleanupScope, src: RestoreSource, dir: string): Promise<StartedSystem> {
  const serve = await startServe(scope, src);
  const socket = join(dir, 'lr.sock');
  const loadTrace = join(dir, 'loads.jsonl');
  // The copy starts with the restore; its "done" event says how long it took since then.
  let resolveDone: (seconds: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    resolveDone = resolve;
  });
  const live = await startLiverestore(
    scope,
    [
      'live-restore',
      '--from',
      serve.sourceUrl,
      src.snapshot,
      '--target-dir',
      join(dir, 'target'),
      '--socket',
      socket,
      '--cache-size',
      String(src.cacheBytes),
      '--trace-loads',
      loadTrace,
      '--json',
      ...(src.decodeAsArriving ? ['--decode-as-arriving'] : []),
    ],
    (line) => {
      if (line.startsWith('{"event":"done"')) resolveDone((JSON.parse(line) as { seconds: number }).seconds);
    },
  );
  const copy = Promise.race([
    withTimeout(done, COPY_TIMEOUT_MS, 'live-restore copy'),
    live.exited.then(() => {
      throw new Error('liverestore live-restore exited before its copy was done');
    }),
  ]);
  copy.catch(() => {});
  return {
    guestUri: `nbd+unix:///${src.archive}?socket=${socket}`,
    pids: { ...serve.pids, nbd: live.pid },
    copy: () => copy,
    fetches: serve.fetches,
    loadTrace,
  };
}

async function startNbdkitCurl(scope: CleanupScope, src: RestoreSource, dir: string): Promise<StartedSystem> {
  const http = await startStaticHttp(scope, src.imageDir, dir);
  const proxy = await proxied(scope, http.host, src);
  const kit = await startNbdkit(scope, {
    plugin: 'curl',
    filters: ['cache'],
    params: [
      `url=http://${proxy.host}/${src.imageName}`,
      `cache-max-size=${src.cacheBytes}`,
      'cache-on-read=true',
    ],
    listen: { socket: join(dir, 'nbdkit.sock') },
    pidFile: join(dir, 'nbdkit.pid'),
    // The cache filter keeps its blocks in a file under TMPDIR: the iteration's scratch.
    env: { ...process.env, TMPDIR: dir },
  });
  const daemon = await startOverlayDaemon(scope, dir, kit.uri);
  return {
    guestUri: daemon.guestUri,
    pids: {
      http: http.process.pid,
      ...(proxy.pid === undefined ? {} : { proxy: proxy.pid }),
      nbd: kit.pid,
      qsd: daemon.process.pid,
    },
    copy: () => daemon.stream(),
    fetches: async () => {
      await http.process.stop();
      return accessTotals(http, `/${src.imageName}`);
    },
  };
}

async function startNbdkitFile(scope: CleanupScope, src: RestoreSource, dir: string): Promise<StartedSystem> {
  const kit = await startNbdkit(scope, {
    plugin: 'file',
    params: [join(src.imageDir, src.imageName)],
    listen: { socket: join(dir, 'nbdkit.sock') },
    pidFile: join(dir, 'nbdkit.pid'),
  });
  const daemon = await startOverlayDaemon(scope, dir, kit.uri);
  return {
    guestUri: daemon.guestUri,
    pids: { nbd: kit.pid, qsd: daemon.process.pid },
    copy: () => daemon.stream(),
    fetches: async () => undefined,
  };
}

/** Starts `system` on `src` with its sockets and scratch in `dir`, everything registered in `scope`. */
export function startSystem(
  system: SystemName,
  scope: CleanupScope,
  src: RestoreSource,
  dir: string,
): Promise<StartedSystem> {
  switch (system) {
    case 'lr-nbd':
      return startLrNbd(scope, src, dir);
    case 'lr-live':
      return startLrLive(scope, src, dir);
    case 'nbdkit-curl':
      return startNbdkitCurl(scope, src, dir);
    case 'nbdkit-file':
      return startNbdkitFile(scope, src, dir);
  }
}

/**
 * The origins `bench scale` restores from, each started fresh for one run so that every
 * run begins cold at every tier it has:
 *
 *   serve      one `liverestore serve` of the local datastore over loopback
 *   nginx      the same behind nginx (proxy_cache + proxy_cache_lock, docs/scale-out.md)
 *   rgw        the S3 datastore in Ceph RGW (started once per benchmark)
 *   rgw-nginx  RGW behind nginx (the S3 block of docs/scale-out.md)
 *
 * Each says how many chunk GETs reached the origin: serve's
 * `liverestore_http_chunk_fetches_total`, or RGW's own `rgw.get` perf counter (every
 * GET it answered, manifests and indexes included).
 */

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CleanupScope } from './children.js';
import { asStoppable, notInfoLog, startLiverestoreProcess } from './liverestore-process.js';
import { type AccessCounts, type NginxCache, nginxAccessCounts, startNginxCache } from './nginx-cache.js';
import { serveChunkCounters } from './proc-stats.js';

export const ORIGIN_NAMES = ['serve', 'nginx', 'rgw', 'rgw-nginx'] as const;
export type OriginName = (typeof ORIGIN_NAMES)[number];

/** The S3 gateway the rgw origins use. */
export interface RgwGateway {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** `s3://BUCKET/STORE` holding the same snapshots as the local store. */
  readonly storeUrl: string;
  /** radosgw's admin socket, for its GET counter; undefined when not ours (--endpoint). */
  readonly adminSocket: string | undefined;
}

/** Where the backed-up snapshots are. */
export interface OriginStores {
  readonly localDir: string;
  readonly rgw: RgwGateway | undefined;
}

/** A process of an origin whose memory counts against the goal. */
export interface OriginProcess {
  readonly name: string;
  readonly pid: number;
  readonly budgetBytes: number;
}

/** One origin, running. */
export interface RunningOrigin {
  readonly name: OriginName;
  /** What the readers open: an http:// URL or s3://BUCKET/STORE. */
  readonly from: string;
  /** Environment of the reader processes (AWS_* for S3). */
  readonly env: NodeJS.ProcessEnv;
  readonly processes: readonly OriginProcess[];
  /** Chunk GETs (serve) or GETs (RGW) the origin answered since it started; NaN when it cannot say. */
  originGets(): Promise<number>;
  /** Chunk requests the nginx tier saw, by cache status; undefined without nginx. */
  cacheCounts(): Promise<AccessCounts | undefined>;
}

/** serve's image-download cache: its configured memory budget in this benchmark. */
export const SERVE_CACHE_BYTES = 64 * 1024 ** 2;

/** Every GET radosgw answered so far (its `rgw.get` perf counter). */
export async function rgwGetCount(adminSocket: string): Promise<number> {
  const { stdout } = await promisify(execFile)(
    'ceph',
    ['--admin-daemon', adminSocket, 'perf', 'dump', 'rgw'],
    {
      timeout: 30_000,
    },
  );
  const get = (JSON.parse(stdout) as { rgw?: { get?: unknown } }).rgw?.get;
  if (typeof get !== 'number') throw new Error(`no rgw.get in radosgw's perf dump: ${stdout.slice(0, 200)}`);
  return get;
}

async function startServe(scope: CleanupScope, storeDir: string): Promise<{ url: string; pid: number }> {
  const serve = await startLiverestoreProcess(
    [
      'serve',
      '--store',
      storeDir,
      '--listen',
      '127.0.0.1:0',
      // Every reader (and nginx) comes from 127.0.0.1: one client address may use it all.
      '--max-per-client',
      '256',
      '--cache-size',
      `${SERVE_CACHE_BYTES}`,
    ],
    [],
    { keepStderrLine: notInfoLog },
  );
  scope.add(asStoppable(serve));
  return { url: serve.address, pid: serve.pid };
}

function s3Env(rgw: RgwGateway, endpoint: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_ENDPOINT_URL: endpoint,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: rgw.accessKeyId,
    AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey,
  };
}

/** Starts origin `name` in `scope` (closing the scope stops it); scratch goes under `dir`. */
export async function startOrigin(
  name: OriginName,
  scope: CleanupScope,
  stores: OriginStores,
  dir: string,
): Promise<RunningOrigin> {
  const noCache = async (): Promise<undefined> => undefined;
  const counts = (cache: NginxCache, pathPart: string) => () => nginxAccessCounts(cache, pathPart);
  if (name === 'serve' || name === 'nginx') {
    const serve = await startServe(scope, stores.localDir);
    const processes = [{ name: 'serve', pid: serve.pid, budgetBytes: SERVE_CACHE_BYTES }];
    const originGets = async () => (await serveChunkCounters(serve.url)).requests;
    if (name === 'serve')
      return { name, from: serve.url, env: process.env, processes, originGets, cacheCounts: noCache };
    const cache = await startNginxCache(scope, 'serve', new URL(serve.url).host, dir);
    return {
      name,
      from: cache.url,
      env: process.env,
      processes,
      originGets,
      cacheCounts: counts(cache, '/chunks/'),
    };
  }
  const rgw = stores.rgw;
  if (rgw === undefined) throw new Error(`origin ${name} needs an RGW`);
  const socket = rgw.adminSocket;
  const before = socket === undefined ? Number.NaN : await rgwGetCount(socket);
  const originGets = async () => (socket === undefined ? Number.NaN : (await rgwGetCount(socket)) - before);
  if (name === 'rgw')
    return {
      name,
      from: rgw.storeUrl,
      env: s3Env(rgw, rgw.endpoint),
      processes: [],
      originGets,
      cacheCounts: noCache,
    };
  const cache = await startNginxCache(scope, 's3', new URL(rgw.endpoint).host, dir);
  return {
    name,
    from: rgw.storeUrl,
    env: s3Env(rgw, cache.url),
    processes: [],
    originGets,
    cacheCounts: counts(cache, '/.chunks/'),
  };
}

/** Where a radosgw started by scripts/rgw-up.sh in `dir` has its admin socket. */
export function rgwAdminSocket(dir: string): string {
  return join(dir, 'run', 'client.rgw.a.asok');
}

/**
 * The origins `bench scale` restores from, each started fresh for one run so that every
 * run begins cold at every tier it has:
 *
 *   serve      one `liverestore serve` of the local datastore over loopback
 *   nginx      the same behind nginx (proxy_cache + proxy_cache_lock, docs/scale-out.md)
 *   rgw        the S3 datastore in Ceph RGW (started once per benchmark)
 *   rgw-nginx  RGW behind nginx (the S3 block of docs/scale-out.md)
 *   rgw-serve  `liverestore serve --store s3://…` in front of RGW (readers need no S3 keys)
 *   rgw-serve-nginx  that serve behind nginx: nginx → serve → RGW (docs/scale-out.md)
 *
 * Each says how many chunk GETs reached the origin: serve's
 * `liverestore_http_chunk_fetches_total`, or the `GET …/.chunks/…` lines of radosgw's
 * own access log (its beast frontend logs every request; flushed through the admin
 * socket before it is read).
 */

import { execFile } from 'node:child_process';
import { open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CleanupScope } from './children.js';
import { asStoppable, notInfoLog, startLiverestoreProcess } from './liverestore-process.js';
import { type AccessCounts, type NginxCache, nginxAccessCounts, startNginxCache } from './nginx-cache.js';
import { serveChunkCounters } from './proc-stats.js';

export const ORIGIN_NAMES = ['serve', 'nginx', 'rgw', 'rgw-nginx', 'rgw-serve', 'rgw-serve-nginx'] as const;
export type OriginName = (typeof ORIGIN_NAMES)[number];

/** The S3 gateway the rgw origins use. */
export interface RgwGateway {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** `s3://BUCKET/STORE` holding the same snapshots as the local store. */
  readonly storeUrl: string;
  /** The Ceph directory of scripts/rgw-up.sh (its log and admin socket); undefined when not ours (--endpoint). */
  readonly dir: string | undefined;
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

/**
 * radosgw's access log (`DIR/client.rgw.a.log`, beast frontend lines such as
 * `"GET /BUCKET/store/.chunks/0123/0123… HTTP/1.1" 200`), read from a mark on.
 */
export class RgwAccessLog {
  constructor(readonly dir: string) {}

  get #log(): string {
    return join(this.dir, 'client.rgw.a.log');
  }

  /** Writes out what radosgw has buffered (`ceph --admin-daemon … log flush`). */
  async #flush(): Promise<void> {
    await promisify(execFile)(
      'ceph',
      ['--admin-daemon', join(this.dir, 'run', 'client.rgw.a.asok'), 'log', 'flush'],
      {
        timeout: 30_000,
      },
    );
  }

  /** The log's length now: where {@link chunkGetsSince} starts counting. */
  async mark(): Promise<number> {
    await this.#flush();
    return (await stat(this.#log)).size;
  }

  /** GETs of chunk objects under `storePath` (`/BUCKET/STORE`) logged since `mark`. */
  async chunkGetsSince(mark: number, storePath: string): Promise<number> {
    await this.#flush();
    const file = await open(this.#log, 'r');
    try {
      const size = (await file.stat()).size;
      const buffer = Buffer.alloc(Math.max(0, size - mark));
      await file.read(buffer, 0, buffer.length, mark);
      return countChunkGets(buffer.toString('utf8'), storePath);
    } finally {
      await file.close();
    }
  }
}

/** Access-log lines of GETs of chunk objects under `storePath`. */
export function countChunkGets(log: string, storePath: string): number {
  const needle = `"GET ${storePath}/.chunks/`;
  let n = 0;
  for (const line of log.split('\n')) if (line.includes(needle)) n++;
  return n;
}

async function startServe(
  scope: CleanupScope,
  store: string,
  s3Args: readonly string[] = [],
): Promise<{ url: string; pid: number }> {
  const serve = await startLiverestoreProcess(
    [
      'serve',
      '--store',
      store,
      ...s3Args,
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

/** The `--s3-*` options that point serve at the gateway (the secret key in a file under `dir`). */
async function serveS3Args(rgw: RgwGateway, dir: string): Promise<string[]> {
  const secretFile = join(dir, 'rgw-secret-key');
  await writeFile(secretFile, `${rgw.secretAccessKey}\n`, { mode: 0o600 });
  return [
    '--s3-endpoint',
    rgw.endpoint,
    '--s3-access-key-id',
    rgw.accessKeyId,
    '--s3-secret-key-file',
    secretFile,
  ];
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
  /**
   * `liverestore serve` over `store`, read directly or (`nginx`) through an nginx cache in
   * front of it; `gets(serveUrl)` counts the chunk GETs its origin answered.
   */
  const serveOrigin = async (
    store: string,
    args: readonly string[],
    gets: (serveUrl: string) => Promise<number>,
    nginx: boolean,
  ): Promise<RunningOrigin> => {
    const serve = await startServe(scope, store, args);
    const processes = [{ name: 'serve', pid: serve.pid, budgetBytes: SERVE_CACHE_BYTES }];
    const originGets = () => gets(serve.url);
    if (!nginx)
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
  };
  if (name === 'serve' || name === 'nginx') {
    const serveGets = async (url: string) => (await serveChunkCounters(url)).requests;
    return serveOrigin(stores.localDir, [], serveGets, name === 'nginx');
  }
  const rgw = stores.rgw;
  if (rgw === undefined) throw new Error(`origin ${name} needs an RGW`);
  const log = rgw.dir === undefined ? undefined : new RgwAccessLog(rgw.dir);
  const mark = log === undefined ? 0 : await log.mark();
  // s3://BUCKET/STORE is requested as /BUCKET/STORE/… (path style on loopback).
  const storePath = `/${rgw.storeUrl.slice('s3://'.length)}`;
  const originGets = async () => (log === undefined ? Number.NaN : log.chunkGetsSince(mark, storePath));
  if (name === 'rgw-serve' || name === 'rgw-serve-nginx')
    return serveOrigin(rgw.storeUrl, await serveS3Args(rgw, dir), originGets, name === 'rgw-serve-nginx');
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

import type { ChunkCache, ChunkCacheStats } from '@liverestore/reader';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RouteLabel } from './routes.js';

/** The numeric counters of {@link ChunkCacheStats} (the spill file's own stats are an object). */
type NumericCacheStat = {
  [K in keyof ChunkCacheStats]: ChunkCacheStats[K] extends number ? K : never;
}[keyof ChunkCacheStats];

/** Cache statistics exported as gauges, read from `cache.stats()` at scrape time. */
const CACHE_GAUGES: readonly NumericCacheStat[] = [
  'hits',
  'misses',
  'dedupJoins',
  'bytesDecoded',
  'evictions',
  'inFlight',
  'usedBytes',
  'capacityBytes',
];

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The server's Prometheus metrics, in a registry of its own (never prom-client's global
 * one), so two servers in one process, or a host application, do not collide.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'status'>;
  readonly #bytes: Counter<'route'>;
  readonly #latency: Histogram<'route'>;
  readonly #errors: Counter<'code'>;
  readonly #chunkFetches: Counter;

  constructor(cache: ChunkCache) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'liverestore_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#bytes = new Counter({
      name: 'liverestore_http_sent_bytes_total',
      help: 'Response body bytes sent, by route',
      labelNames: ['route'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'liverestore_http_request_duration_seconds',
      help: 'Time from request to the end of the response, by route',
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers,
    });
    this.#errors = new Counter({
      name: 'liverestore_http_errors_total',
      help: 'Requests that failed, by error code',
      labelNames: ['code'],
      registers,
    });
    this.#chunkFetches = new Counter({
      name: 'liverestore_http_chunk_fetches_total',
      help: 'Chunk blobs asked for: whole, or from byte 0 (the first piece of a ranged fetch)',
      registers,
    });
    for (const key of CACHE_GAUGES) {
      new Gauge({
        name: `liverestore_cache_${snakeCase(key)}`,
        help: `ChunkCache stats().${key}, read at scrape time`,
        registers,
        collect() {
          this.set(cache.stats()[key]);
        },
      });
    }
  }

  /** Counts a chunk blob being asked for (not each piece of it). */
  chunkFetch(): void {
    this.#chunkFetches.inc();
  }

  /** Records one finished (or abandoned) response. */
  observe(route: RouteLabel, status: number, bytes: number, seconds: number, code: string | undefined): void {
    this.#requests.inc({ route, status: String(status) });
    if (bytes > 0) this.#bytes.inc({ route }, bytes);
    this.#latency.observe({ route }, seconds);
    if (code !== undefined) this.#errors.inc({ code });
  }
}

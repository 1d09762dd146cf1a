import type { RouteLabel } from './routes.js';

/*
 * What the server tells caches in front of it (nginx's proxy_cache, a CDN, a browser)
 * about each response, so that a cache tier can stand between many readers and one
 * `serve` (docs/scale-out.md).
 */

/**
 * A chunk blob never changes: its name is the SHA-256 of its content. Any cache may keep it
 * for a year and never revalidate; `public` also lets a shared cache store it when the
 * request carried a token.
 */
export const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Listings, snapshot files and images can change (a new snapshot, a verify's result in a manifest): ask each time. */
export const REVALIDATE = 'no-cache';
/** Errors (a 404 of a chunk not uploaded yet, a 503) and metrics: never stored. */
export const NO_STORE = 'no-store';

/** The Cache-Control of a successful (2xx or 304) response of a route. */
export function cacheControlOf(route: RouteLabel): string {
  switch (route) {
    case 'chunk':
      return IMMUTABLE;
    case 'snapshots':
    case 'namespaces':
    case 'snapshot-file':
    case 'image':
      return REVALIDATE;
    case 'metrics':
    case 'unknown':
      return NO_STORE;
  }
}

/** True when an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks for it) or is `*`. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}

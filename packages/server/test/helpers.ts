/*
 * Test helpers for @liverestore/server: one small datastore per test file (built with the
 * real backup writer from deterministic testkit images), servers on 127.0.0.1 with an
 * ephemeral port, and a raw HTTP client that sends paths exactly as written (fetch would
 * normalise `..` away before the server sees it).
 */

import { writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { backup, Datastore } from '@liverestore/datastore';
import { ChunkCache } from '@liverestore/reader';
import { type ImageSpec, shareFixture, tempDir, vmImageSet, writeImageFile } from '@liverestore/testkit';

export { prng } from '@liverestore/testkit';

import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { pino } from 'pino';
import { type ChunkServer, type ChunkServerOptions, startChunkServer } from '../src/index.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const CHUNK_BYTES = MiB;

/** Sizes deliberately not multiples of the chunk size: the last chunk is partial. */
export const DRIVE_SIZES = [9 * MiB + 12_345, 12 * MiB + 777];

export interface Fixture {
  readonly storeDir: string;
  /** `vm/100/2026-…Z`. */
  readonly snapshot: string;
  readonly drives: readonly { readonly name: string; readonly spec: ImageSpec }[];
  readonly notes: Buffer;
  cleanup(): Promise<void>;
}

/**
 * A datastore with one snapshot vm/100: two disk images (1 MiB chunks) and a small text archive.
 * `sizes` overrides the two drives' sizes (default {@link DRIVE_SIZES}).
 */
export async function makeFixture(sizes: readonly number[] = DRIVE_SIZES): Promise<Fixture> {
  const work = await tempDir('lr-server-');
  try {
    const storeDir = join(work.path, 'store');
    const store = await Datastore.create(storeDir);
    const drives = vmImageSet(42, { drives: sizes.length, sizeBytes: [...sizes] });
    const inputs: { name: string; path: string }[] = [];
    for (const drive of drives) {
      const path = join(work.path, `${drive.name}.raw`);
      await writeImageFile(drive.spec, path);
      inputs.push({ name: drive.name, path });
    }
    const notes = Buffer.from('liverestore server test notes\n'.repeat(100));
    await writeFile(join(work.path, 'notes.txt'), notes);
    inputs.push({ name: 'notes.txt', path: join(work.path, 'notes.txt') });
    const result = await backup(store, {
      type: 'vm',
      id: '100',
      inputs,
      chunkSizeBytes: CHUNK_BYTES,
      encodeThreads: 0,
    });
    return { storeDir, snapshot: result.snapshot, drives, notes, cleanup: () => work.cleanup() };
  } catch (err) {
    await work.cleanup();
    throw err;
  }
}

/**
 * The ava `test` of a file whose tests share one {@link Fixture}: made before the first
 * test, cleaned up after the last. Call once, at the top of the file.
 */
export function fixtureTest(): TestFn<{ fixture: Fixture }> {
  return shareFixture(anyTest as TestFn<{ fixture: Fixture }>, 'fixture', makeFixture);
}

/** A server over the fixture on 127.0.0.1:0 with a silent logger and a small inline-decoding cache. */
export async function serve(
  t: ExecutionContext,
  fixture: Fixture,
  options: Partial<ChunkServerOptions> = {},
): Promise<ChunkServer> {
  let cache = options.cache;
  if (cache === undefined) {
    const own = new ChunkCache({ cacheBytes: 32 * MiB, workers: 0 });
    cache = own;
    t.teardown(() => own.close());
  }
  const server = await startChunkServer({
    store: fixture.storeDir,
    listen: { host: '127.0.0.1', port: 0 },
    logger: pino({ level: 'silent' }),
    cache,
    ...options,
  });
  t.teardown(() => server.close());
  return server;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** Sends `path` byte for byte (no URL normalisation) and collects the answer. */
export function rawRequest(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; rejectUnauthorized?: boolean } = {},
): Promise<RawResponse> {
  const url = new URL(base);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers ?? {},
        agent: false,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (p: Buffer) => parts.push(p));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** GET with fetch; the body as a Buffer. */
export async function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { headers, method });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

/** The `error` object of a JSON error body. */
export function errorOf(body: Buffer): { code: string; message: string } {
  return (JSON.parse(body.toString('utf8')) as { error: { code: string; message: string } }).error;
}

/** Whether a tool test should be skipped (false) or must run (throws) when `tool` is missing. */
export function toolMissing(t: ExecutionContext, tool: string): boolean {
  if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1') {
    throw new Error(`${tool} is required (LIVERESTORE_REQUIRE_TOOLS=1) but not on PATH`);
  }
  t.log(`skipped: ${tool} is not on PATH`);
  t.pass();
  return true;
}

import { execFileSync } from 'node:child_process';
import * as zlib from 'node:zlib';
import { imageBytes, requireTool } from '@liverestore/testkit';
import test from 'ava';
import { decodeBlob, MAGIC, MAX_BLOB_BYTES, zstdCodecInfo } from '../src/index.js';
import { napiZstd, wasmZstd, type ZstdDecoderBackend } from '../src/zstd-backends.js';
import {
  selectZstdCodec,
  type ZstdCodec,
  type ZstdLoaders,
  zstdCompress,
  zstdDecompress,
  zstdDecompressWith,
} from '../src/zstd-codec.js';
import { zstdPayloadBounds } from '../src/zstd-frame.js';
import { assembleBlob, fixtureLines, readFixture } from './helpers.js';

const MiB = 1024 * 1024;
const CHUNK_BYTES = 4 * MiB;
/** A 4 MiB chunk like the VM mix: 1 MiB zeros, 2 MiB text, 1 MiB random (testkit content). */
const chunk = Buffer.concat([
  Buffer.alloc(MiB),
  imageBytes({ sizeBytes: 2 * MiB, seed: 3, mix: { text: 1 } }, 0, 2 * MiB),
  imageBytes({ sizeBytes: MiB, seed: 3, mix: { random: 1 } }, 0, MiB),
]);
const hasNodeZstd = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';

/** The real loaders, with the native ones hidden: the rule of Node < 22.15 without zstd-napi, on any machine. */
const WASM_ONLY: ZstdLoaders = { napi: () => undefined, nodeZlib: () => undefined, wasm: () => wasmZstd() };
/** zstd-napi, where its optional addon built here. */
const napi = napiZstd();
/** CI installs everything (LIVERESTORE_REQUIRE_TOOLS=1): there the native addon must have built. */
const requireAll = process.env.LIVERESTORE_REQUIRE_TOOLS === '1';

/** Decodes with the `zstd` CLI: an implementation that shares nothing with ours. */
function zstdCli(frame: Uint8Array): Buffer {
  return execFileSync('zstd', ['-d', '-q', '-c'], { input: frame, maxBuffer: 64 * MiB });
}

/** node:zlib has zstd from Node.js 23.8 and 22.15 (the backport), by version rather than by probing. */
function versionHasZstd(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 8) || (major === 22 && minor >= 15);
}

test(`the selected codec follows the rule on this Node.js (${process.version})`, (t) => {
  t.log(zstdCodecInfo);
  // CI runs this file under Node 20 and Node 22: each time the version says which backend must run.
  t.is(hasNodeZstd, versionHasZstd(process.versions.node), 'node:zlib has zstd exactly from 22.15 / 23.8');
  const preference = process.env.LIVERESTORE_ZSTD ?? 'auto';
  if (requireAll) t.not(napi, undefined, 'zstd-napi built at install (CI has a compiler)');
  if (napi !== undefined && preference === 'auto') {
    t.regex(zstdCodecInfo.encoder, /^zstd-napi /);
    t.regex(zstdCodecInfo.decoder, /^zstd-napi /);
    t.deepEqual(zstdCodecInfo.notes, []);
    t.true(zstdDecompress(zstdCompress(chunk, 1), CHUNK_BYTES).equals(chunk));
  } else if (versionHasZstd(process.versions.node) && preference !== 'wasm') {
    t.regex(zstdCodecInfo.encoder, /^node:zlib /);
    t.regex(zstdCodecInfo.decoder, /^node:zlib /);
    const frame = zstdCompress(chunk, 1);
    t.true(zstdDecompress(frame, CHUNK_BYTES).equals(chunk));
  } else {
    t.regex(zstdCodecInfo.encoder, /^@foxglove\/wasm-zstd /);
    t.regex(zstdCodecInfo.decoder, /^@foxglove\/wasm-zstd /, 'decoding is bounded WebAssembly');
  }
});

test('node:zlib zstd is recognised by version: 22.15 and 23.8 on, not before', (t) => {
  for (const v of ['22.15.0', '22.23.3', '23.8.0', '24.1.0', '30.0.0']) t.true(versionHasZstd(v), v);
  for (const v of ['20.19.0', '20.20.2', '22.14.9', '23.7.0']) t.false(versionHasZstd(v), v);
});

test('without node:zlib zstd: WebAssembly both ways, writing frames the zstd CLI reads', async (t) => {
  const codec = selectZstdCodec('auto', WASM_ONLY);
  t.regex(codec.info.encoder, /^@foxglove\/wasm-zstd /);
  t.regex(codec.info.decoder, /^@foxglove\/wasm-zstd /);
  t.true(codec.info.notes.some((n) => n.includes('has no zstd')));
  const frame = zstdCompress(chunk, 1, codec);
  t.true(frame.byteLength < chunk.byteLength, 'the mix compresses');
  t.is(zstdPayloadBounds(frame).declaredBytes, CHUNK_BYTES, 'frames declare their content size');
  t.true(zstdDecompress(frame, CHUNK_BYTES, codec).equals(chunk));
  if (!requireTool(t, 'zstd')) return;
  t.true(zstdCli(frame).equals(chunk));
});

test('the WebAssembly decoder hands its plaintext over in place: the same memory chunk after chunk', async (t) => {
  const codec = await selectZstdCodec('auto', WASM_ONLY);
  const other = Buffer.from(chunk).reverse();
  const views = [chunk, other, chunk].map((plain) =>
    zstdDecompressWith(
      zstdCompress(plain, 1, codec),
      CHUNK_BYTES,
      (view) => {
        t.true(Buffer.from(view).equals(plain));
        return { buffer: view.buffer, byteOffset: view.byteOffset };
      },
      codec,
    ),
  );
  t.false(views[0]!.buffer instanceof SharedArrayBuffer);
  t.is(views[1]!.buffer, views[0]!.buffer, 'no new buffer per chunk');
  t.is(views[2]!.buffer, views[0]!.buffer);
  t.is(views[1]!.byteOffset, views[0]!.byteOffset);
});

test('LIVERESTORE_ZSTD=wasm (preference "wasm") uses WebAssembly for both directions', async (t) => {
  const codec = selectZstdCodec('wasm');
  t.regex(codec.info.encoder, /^@foxglove\/wasm-zstd /);
  t.regex(codec.info.decoder, /^@foxglove\/wasm-zstd /);
  t.true(zstdDecompress(zstdCompress(chunk, 1, codec), CHUNK_BYTES, codec).equals(chunk));
});

test('LIVERESTORE_ZSTD=node (preference "node") passes over zstd-napi: node:zlib where Node has zstd, else WebAssembly', (t) => {
  const codec = selectZstdCodec('node');
  t.regex(codec.info.decoder, hasNodeZstd ? /^node:zlib / : /^@foxglove\/wasm-zstd /);
  t.true(codec.info.notes.some((n) => n.includes('passes over zstd-napi')));
  t.true(zstdDecompress(zstdCompress(chunk, 1, codec), CHUNK_BYTES, codec).equals(chunk));
});

test('zstd-napi: frames WebAssembly and the zstd CLI read, bounded output, corrupt input refused, plaintext in place', (t) => {
  if (napi === undefined) {
    t.false(requireAll, 'zstd-napi must load in CI');
    t.log('zstd-napi is not installed here (optional dependency): nothing to test');
    t.pass();
    return;
  }
  const codec = selectZstdCodec('auto', { ...WASM_ONLY, napi: () => napi });
  t.regex(codec.info.decoder, /^zstd-napi \S+ \(libzstd \d/);
  const wasm = selectZstdCodec('wasm');
  const frame = zstdCompress(chunk, 1, codec);
  t.is(zstdPayloadBounds(frame).declaredBytes, CHUNK_BYTES, 'one-shot frames declare their content size');
  t.true(zstdDecompress(frame, CHUNK_BYTES, wasm).equals(chunk), 'WebAssembly reads native frames');
  t.true(zstdDecompress(zstdCompress(chunk, 1, wasm), CHUNK_BYTES, codec).equals(chunk), 'and the reverse');
  // Beyond its output the decoder fails instead of growing (a frame that declares no size).
  const undeclared = napi.decoder.decompress(frame, CHUNK_BYTES);
  t.true(undeclared.equals(chunk));
  t.throws(() => napi.decoder.decompress(frame, CHUNK_BYTES - 1));
  // A frame without a content checksum may decode damaged bytes to other bytes instead of
  // failing (the WebAssembly build refuses this one): never to the chunk, and the chunk's
  // digest refuses what comes out (chunk.test.ts); what the decoder notices is
  // ERR_LR_DECOMPRESS_FAILED.
  const corrupt = Buffer.from(frame);
  corrupt.fill(0x55, 200, 400);
  try {
    t.false(zstdDecompress(corrupt, CHUNK_BYTES, codec).equals(chunk));
  } catch (err) {
    t.is((err as { code?: string }).code, 'ERR_LR_DECOMPRESS_FAILED');
  }
  t.throws(() => zstdDecompress(corrupt.subarray(0, 40), CHUNK_BYTES, codec), {
    code: 'ERR_LR_DECOMPRESS_FAILED',
  });
  // The plaintext is handed over where the decoder wrote it: one region, chunk after chunk.
  const other = Buffer.from(chunk).reverse();
  const views = [chunk, other].map((plain) =>
    zstdDecompressWith(
      zstdCompress(plain, 1, codec),
      CHUNK_BYTES,
      (view) => {
        t.true(Buffer.from(view.buffer, view.byteOffset, view.byteLength).equals(plain));
        return view;
      },
      codec,
    ),
  );
  t.is(views[0]!.buffer, views[1]!.buffer, 'the same output region');
  if (!requireTool(t, 'zstd')) return;
  t.true(zstdCli(frame).equals(chunk), 'the zstd CLI reads native frames');
});

test('a codec with no backend at all says why: ERR_LR_ZSTD_UNAVAILABLE', async (t) => {
  const codec = selectZstdCodec('auto', {
    napi: () => undefined,
    nodeZlib: () => undefined,
    wasm: () => {
      throw new Error('WebAssembly is disabled (forced by the test)');
    },
  });
  t.is(codec.encoder, undefined);
  const error = t.throws(() => zstdCompress(chunk, 1, codec), { code: 'ERR_LR_ZSTD_UNAVAILABLE' });
  t.regex(error?.message ?? '', /WebAssembly is disabled/);
  t.throws(() => zstdDecompress(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), MiB, codec), {
    code: 'ERR_LR_ZSTD_UNAVAILABLE',
  });
});

test('the encoder in use writes level-1 frames that the zstd CLI decodes', (t) => {
  if (!requireTool(t, 'zstd')) return;
  const frame = zstdCompress(chunk, 1);
  t.true(zstdCli(frame).equals(chunk));
});

test('zstd CLI frames (no content size, from stdin) decode within the exact chunk length', (t) => {
  if (!requireTool(t, 'zstd')) return;
  const frame = execFileSync('zstd', ['-1', '-q', '-c'], { input: chunk, maxBuffer: 64 * MiB });
  t.is(zstdPayloadBounds(frame).declaredBytes, undefined, 'stdin frames do not declare their size');
  t.true(zstdDecompress(frame, CHUNK_BYTES).equals(chunk));
  const blob = assembleBlob([...MAGIC.zstdBlob], frame);
  t.true(decodeBlob(blob, { maxBytes: CHUNK_BYTES }).equals(chunk));
});

/** The real decoder of `codec`, recording the output capacity it is given. */
function recordingCodec(): { codec: ZstdCodec; capacities: number[] } {
  const capacities: number[] = [];
  const codec = selectZstdCodec('auto', {
    ...WASM_ONLY,
    wasm: () => {
      const real = wasmZstd();
      const decoder: ZstdDecoderBackend = {
        ...real.decoder,
        decompress: (payload, capacityBytes) => {
          capacities.push(capacityBytes);
          return real.decoder.decompress(payload, capacityBytes);
        },
      };
      return { encoder: real.encoder, decoder };
    },
  });
  return { codec, capacities };
}

test('the decoder gets an output as small as the headers allow, not the 128 MiB limit', async (t) => {
  const { codec, capacities } = recordingCodec();
  const declared = zstdCompress(chunk, 1, codec); // one-shot: declares its content size
  t.true(zstdDecompress(declared, MAX_BLOB_BYTES, codec).equals(chunk));
  t.deepEqual(capacities, [CHUNK_BYTES]);
  if (!requireTool(t, 'zstd')) return;
  // The zstd CLI reading a pipe declares no size: the block headers bound the output.
  const undeclared = execFileSync('zstd', ['-1', '-q', '-c'], { input: chunk, maxBuffer: 64 * MiB });
  t.true(zstdDecompress(undeclared, MAX_BLOB_BYTES, codec).equals(chunk));
  t.deepEqual(capacities, [CHUNK_BYTES, CHUNK_BYTES]);
});

test('header bounds: declared size, exact RLE sizes, block maxima', (t) => {
  const lines = readFixture('lines.txt.zst');
  t.like(zstdPayloadBounds(lines), { declaredBytes: fixtureLines().byteLength });
  const zeros = zstdPayloadBounds(readFixture('zeros-64mib.zst'));
  t.is(zeros.declaredBytes, undefined);
  t.true(zeros.minBytes > 32 * MiB, `RLE blocks alone give ${zeros.minBytes}`);
  t.is(zeros.maxBytes, 64 * MiB);
  t.is(zeros.maxWindowBytes, 512 * 1024);
});

test('a truncated payload is refused before decoding on every backend: ERR_LR_DECOMPRESS_FAILED', async (t) => {
  // node:zlib (Node >= 22.15) decodes a truncated frame to what it holds without an error;
  // the header walk sees that the last block or the checksum is missing.
  const { codec, capacities } = await recordingCodec();
  const frame = zstdCompress(chunk, 1, codec);
  t.true(zstdPayloadBounds(frame).complete);
  const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb]);
  t.true(zstdPayloadBounds(Buffer.concat([skippable, frame, frame])).complete, 'frames in a row');
  for (const [what, payload] of [
    ['the last 40 bytes cut', frame.subarray(0, frame.byteLength - 40)],
    ['the checksum or last block cut by one byte', frame.subarray(0, frame.byteLength - 1)],
    ['trailing bytes that are no frame', Buffer.concat([frame, Buffer.from([1, 2, 3])])],
    ['a skippable frame longer than the payload', skippable.subarray(0, 9)],
  ] as const) {
    t.false(zstdPayloadBounds(payload).complete, what);
    t.throws(
      () => zstdDecompress(payload, MAX_BLOB_BYTES, codec),
      { code: 'ERR_LR_DECOMPRESS_FAILED' },
      what,
    );
  }
  t.deepEqual(capacities, [], 'the decoder never ran');
});

test('a frame declaring more than maxBytes is refused before decoding: ERR_LR_BLOB_TOO_LARGE', async (t) => {
  const { codec, capacities } = recordingCodec();
  const frame = wasmZstd().encoder.compress(Buffer.alloc(2 * MiB), 1);
  const error = t.throws(() => zstdDecompress(frame, MiB, codec), { code: 'ERR_LR_BLOB_TOO_LARGE' });
  t.regex(error?.message ?? '', /declare 2097152/);
  t.deepEqual(capacities, [], 'the decoder never ran');
});

test('a frame whose blocks hold more than it declares is ERR_LR_DECOMPRESS_FAILED', (t) => {
  // single segment, content size 1, one last raw block of 2 bytes "xy"
  const lying = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x01, 0x11, 0x00, 0x00, 0x78, 0x79]);
  t.throws(() => zstdDecompress(lying, MiB), { code: 'ERR_LR_DECOMPRESS_FAILED' });
});

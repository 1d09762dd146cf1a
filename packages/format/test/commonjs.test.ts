/**
 * CommonJS programs can require() @liverestore/format: the package has no top-level await
 * (the WebAssembly zstd build is instantiated synchronously), which Node.js's require() of
 * an ES module needs — with it, Node 20 failed with ERR_REQUIRE_ASYNC_MODULE or aborted
 * ("IsGraphAsync"), as piscina's require() of a worker did.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';

/** packages/format, from dist/test/: a script there resolves the package by its own name. */
const PACKAGE_DIR = fileURLToPath(new URL('../../', import.meta.url));

const CONSUMER = `
const format = require('@liverestore/format');
const data = Buffer.from('liverestore '.repeat(4096));
const blob = format.encodeBlob(data, { compress: 'zstd' });
const back = format.decodeBlob(blob, { maxBytes: data.byteLength });
process.stdout.write(JSON.stringify({
  kind: format.blobKind(blob),
  roundTrip: Buffer.compare(back, data) === 0,
  compressed: blob.byteLength < data.byteLength,
  encoder: format.zstdCodecInfo.encoder,
}));
`;

/** Node.js versions whose require() loads ES modules without a flag (20.19+, 22.12+). */
function requireLoadsEsm(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19);
}

test('a CommonJS program require()s @liverestore/format and round-trips a zstd blob', (t) => {
  if (!requireLoadsEsm()) {
    t.pass(`require() of ES modules needs Node.js 20.19 or 22.12; this is ${process.version}`);
    return;
  }
  for (const zstd of ['auto', 'wasm']) {
    const child = spawnSync(process.execPath, ['--input-type=commonjs', '-e', CONSUMER], {
      cwd: PACKAGE_DIR,
      encoding: 'utf8',
      env: { ...process.env, LIVERESTORE_ZSTD: zstd },
    });
    t.is(
      child.status,
      0,
      `LIVERESTORE_ZSTD=${zstd}: exit ${child.status} ${child.signal ?? ''}\n${child.stderr}`,
    );
    const report = JSON.parse(child.stdout) as {
      kind: string;
      roundTrip: boolean;
      compressed: boolean;
      encoder: string;
    };
    t.true(report.roundTrip, `LIVERESTORE_ZSTD=${zstd}`);
    t.true(report.compressed);
    if (zstd === 'wasm') t.regex(report.encoder, /^@foxglove\/wasm-zstd /);
  }
});

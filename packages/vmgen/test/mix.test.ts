import { createHash } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import test from 'ava';
import {
  BLOCK_BYTES,
  CONTENT_KIND_NAMES,
  type ContentKindName,
  DEFAULT_MIX,
  fillImage,
  type ImageSpec,
  imageBytes,
  imageRegions,
  vmImageSet,
} from '../src/index.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CHUNK_BYTES = 4 * MiB;

function kindFractions(spec: ImageSpec): Record<ContentKindName, number> {
  const bytes: Record<ContentKindName, number> = { zero: 0, text: 0, random: 0, repeat: 0 };
  for (const r of imageRegions(spec)) bytes[r.kind] += r.lengthBytes;
  for (const kind of CONTENT_KIND_NAMES) bytes[kind] /= spec.sizeBytes;
  return bytes;
}

test('the layout honours the default mix over 4 GiB', (t) => {
  const fractions = kindFractions({ sizeBytes: 4 * GiB, seed: 77 });
  t.log(fractions);
  for (const kind of CONTENT_KIND_NAMES) t.true(Math.abs(fractions[kind] - DEFAULT_MIX[kind]) < 0.05, kind);
});

test('a custom mix is honoured, and missing kinds never appear', (t) => {
  const fractions = kindFractions({ sizeBytes: 2 * GiB, seed: 3, mix: { zero: 1, random: 3 } });
  t.true(Math.abs(fractions.zero - 0.25) < 0.05);
  t.true(Math.abs(fractions.random - 0.75) < 0.05);
  t.is(fractions.text, 0);
  t.is(fractions.repeat, 0);
});

test('the fraction of zero 64 KiB blocks in real bytes matches the mix', (t) => {
  const spec: ImageSpec = { sizeBytes: 512 * MiB, seed: 31 };
  const piece = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const zero = Buffer.alloc(BLOCK_BYTES);
  let zeroBlocks = 0;
  for (let pos = 0; pos < spec.sizeBytes; pos += piece.length) {
    fillImage(spec, piece, pos);
    for (let b = 0; b < piece.length; b += BLOCK_BYTES)
      if (piece.subarray(b, b + BLOCK_BYTES).equals(zero)) zeroBlocks++;
  }
  const measured = (zeroBlocks * BLOCK_BYTES) / spec.sizeBytes;
  t.log(`zero blocks: ${(measured * 100).toFixed(1)}% (mix ${DEFAULT_MIX.zero * 100}%)`);
  t.true(Math.abs(measured - DEFAULT_MIX.zero) < 0.1);
  // Exactly the blocks the layout calls zero: no other content is ever all-zero.
  t.is(measured, kindFractions(spec).zero);
});

test('4 MiB chunks come all-zero, all-random and mixed', (t) => {
  const spec: ImageSpec = { sizeBytes: GiB, seed: 8 };
  const counts = { zero: 0, random: 0, mixed: 0 };
  for (let pos = 0; pos < spec.sizeBytes; pos += CHUNK_BYTES) {
    const regions = imageRegions(spec, pos, CHUNK_BYTES);
    const only = regions.length === 1 ? regions[0]?.kind : undefined;
    if (only === 'zero') counts.zero++;
    else if (only === 'random') counts.random++;
    else if (regions.length > 1) counts.mixed++;
  }
  t.log(counts);
  t.true(counts.zero > 5);
  t.true(counts.random > 5);
  t.true(counts.mixed > 50);
});

test('text compresses about 3-4x with DEFLATE, random not at all', (t) => {
  const text = imageBytes({ sizeBytes: 64 * MiB, seed: 5, mix: { text: 1 } }, 8 * MiB, CHUNK_BYTES);
  const textRatio = text.length / deflateRawSync(text).length;
  const random = imageBytes({ sizeBytes: 64 * MiB, seed: 5, mix: { random: 1 } }, 8 * MiB, CHUNK_BYTES);
  const randomRatio = random.length / deflateRawSync(random).length;
  t.log(`DEFLATE ratio: text ${textRatio.toFixed(2)}x, random ${randomRatio.toFixed(3)}x`);
  t.true(textRatio > 2.8 && textRatio < 4.5);
  t.true(randomRatio < 1.001);
});

function chunkDigests(spec: ImageSpec): Set<string> {
  const out = new Set<string>();
  const piece = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  for (let pos = 0; pos + CHUNK_BYTES <= spec.sizeBytes; pos += CHUNK_BYTES) {
    if (imageRegions(spec, pos, CHUNK_BYTES).every((r) => r.kind === 'zero')) continue;
    fillImage(spec, piece, pos);
    out.add(createHash('sha256').update(piece).digest('hex'));
  }
  return out;
}

test('repeat blocks dedup within an image and across a family, not across families', (t) => {
  const a = imageBytes({ sizeBytes: 16 * MiB, seed: 1, family: 9, mix: { repeat: 1 } }, 0, 16 * MiB);
  const b = imageBytes({ sizeBytes: 16 * MiB, seed: 2, family: 9, mix: { repeat: 1 } }, 0, 16 * MiB);
  const c = imageBytes({ sizeBytes: 16 * MiB, seed: 2, family: 10, mix: { repeat: 1 } }, 0, 16 * MiB);
  const blocks = (buf: Buffer) => {
    const set = new Set<string>();
    for (let p = 0; p < buf.length; p += BLOCK_BYTES)
      set.add(buf.subarray(p, p + BLOCK_BYTES).toString('base64'));
    return set;
  };
  const [ba, bb, bc] = [blocks(a), blocks(b), blocks(c)];
  t.true(ba.size < a.length / BLOCK_BYTES, 'blocks repeat within one image');
  t.true(
    [...ba].some((x) => bb.has(x)),
    'same family shares blocks',
  );
  t.false(
    [...ba].some((x) => bc.has(x)),
    'other family shares none',
  );
});

test('drives of a VM share whole non-zero 4 MiB chunks', (t) => {
  const [system, data] = vmImageSet(12, { sizeBytes: 384 * MiB });
  if (system === undefined || data === undefined) throw new Error('expected two drives');
  const s = chunkDigests(system.spec);
  const d = chunkDigests(data.spec);
  const shared = [...s].filter((x) => d.has(x)).length;
  t.log(`${s.size} + ${d.size} distinct non-zero chunks, ${shared} shared`);
  t.true(shared > 0);
});

/*
 * decodeInto (decode-worker.ts): a chunk decoded into the pages of its slot, in place when
 * the pages lie in one run and the zstd decoder writes where it is told, else copied there
 * after the digest check. Either way the pages hold the chunk, byte for byte.
 */
import { encodeChunk, toHex, zstdCodecInfo } from '@liverestore/format';
import test from 'ava';
import { decodeInto } from '../src/decode-worker.js';
import { SlotTable } from '../src/slot-table.js';

const PAGE = 4096;

/** A slot table that counts copies into its pages (the path that is not in place). */
class CountingTable extends SlotTable {
  copies = 0;
  override copyIn(pages: Int32Array, data: Uint8Array): void {
    this.copies++;
    super.copyIn(pages, data);
  }
}

/** Text-like bytes that zstd compresses (so the blob holds a zstd frame). */
function chunkData(length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => 97 + ((i * 7 + (i >> 9)) % 23)));
}

function pagesBytes(table: SlotTable, pages: readonly number[], length: number): Buffer {
  const arena = Buffer.from(table.memory.arena);
  return Buffer.concat(pages.map((p) => arena.subarray(p * PAGE, (p + 1) * PAGE))).subarray(0, length);
}

const cases = [
  { name: 'pages in one run', pages: [3, 4, 5, 6] },
  { name: 'pages apart', pages: [6, 2, 9, 4] },
];

for (const { name, pages } of cases) {
  test(`a zstd chunk decodes into its slot's pages, ${name}`, (t) => {
    const table = new CountingTable(SlotTable.allocate(12, PAGE));
    const data = chunkData(4 * PAGE - 100);
    const { digest, blob } = encodeChunk(data, { compress: 'zstd' });
    const result = decodeInto(table, {
      blob,
      digestHex: toHex(digest),
      length: data.byteLength,
      pages: Int32Array.from(pages),
    });
    t.deepEqual(result, { ok: true });
    t.true(pagesBytes(table, pages, data.byteLength).equals(data));
    // In place only where the decoder can write where it is told (zstd-napi).
    const inPlace = name === 'pages in one run' && zstdCodecInfo.decoder.startsWith('zstd-napi');
    t.is(table.copies, inPlace ? 0 : 1);
  });
}

test('an uncompressed chunk is copied into pages in one run (its plaintext is the blob itself)', (t) => {
  const table = new CountingTable(SlotTable.allocate(8, PAGE));
  const data = Buffer.from(Array.from({ length: 2 * PAGE }, (_, i) => (i * 2654435761) >>> 24));
  const { digest, blob } = encodeChunk(data, { compress: 'none' });
  const pages = [1, 2];
  t.deepEqual(
    decodeInto(table, {
      blob,
      digestHex: toHex(digest),
      length: data.byteLength,
      pages: Int32Array.from(pages),
    }),
    { ok: true },
  );
  t.true(pagesBytes(table, pages, data.byteLength).equals(data));
  t.is(table.copies, 1);
});

test('a chunk whose digest does not match fails, decoded in place or not', (t) => {
  for (const pages of [
    [0, 1, 2, 3],
    [3, 0, 2, 1],
  ]) {
    const table = new CountingTable(SlotTable.allocate(4, PAGE));
    const data = chunkData(4 * PAGE);
    const { blob } = encodeChunk(data, { compress: 'zstd' });
    const wrong = toHex(encodeChunk(chunkData(100)).digest);
    const result = decodeInto(table, {
      blob,
      digestHex: wrong,
      length: data.byteLength,
      pages: Int32Array.from(pages),
    });
    t.like(result, { ok: false, error: { code: 'ERR_LR_DIGEST_MISMATCH' } });
    t.is(table.copies, 0, 'nothing copied for a chunk that failed');
  }
});

test('loadingView is one view of a run of pages, and none for pages apart or a length beyond them', (t) => {
  const table = new SlotTable(SlotTable.allocate(8, PAGE));
  const view = table.loadingView(Int32Array.from([2, 3, 4]), 3 * PAGE - 1);
  t.is(view?.byteLength, 3 * PAGE - 1);
  t.is(view?.byteOffset, 2 * PAGE);
  t.is(table.loadingView(Int32Array.from([2, 4, 5]), 3 * PAGE), undefined);
  t.is(table.loadingView(Int32Array.from([2, 3]), 2 * PAGE + 1), undefined);
  t.is(table.loadingView(Int32Array.from([]), 0), undefined);
});

/**
 * `pnpm bench codecs`: single-thread throughput of every codec on the chunk read and
 * write paths, on 4 MiB chunks of three content mixes. Decides which DEFLATE
 * implementation encodes (fflate or node:zlib) and which decodes, and gives the
 * ceiling each step puts on a decode worker.
 */

import { createDecipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as zlib from 'node:zlib';
import { decodeChunk } from '@liverestore/format';
import { deflateSync as fflateDeflate, inflateSync as fflateInflate } from 'fflate';
import { decompress as fzstdDecompress } from 'fzstd';
import type { BenchContext, Benchmark } from './benchmark.js';
import {
  AES_IV_BYTES,
  AES_KEY,
  CHUNK_BYTES,
  type ChunkInputs,
  compressedBlobCount,
  DEFLATE_LEVEL,
  findZstdEncoder,
  MIXES,
  type MixInputs,
  prepareMix,
  type ZstdEncoder,
} from './codec-inputs.js';
import { UsageError } from './errors.js';
import { machineBusySeconds, machineInfo } from './machine.js';
import { measureInterleaved } from './measure.js';
import {
  type BenchResult,
  type CaseResult,
  measuredCase,
  type PlainTable,
  type Section,
  skippedCase,
} from './result.js';
import {
  formatBytes,
  formatNumber,
  formatPercent,
  formatRate,
  parseList,
  parseNonNegativeInt,
  parsePositiveInt,
} from './units.js';

/**
 * Seed of the images. With 3, the 8 sampled chunks of the vm mix hold 26 % zero, 41 %
 * text, 21 % random and 13 % repeat bytes, close to the mix's 30/40/20/10; seed 1 gives
 * 53 % zero and no repeat. The report prints the composition of whatever seed is used.
 */
const DEFAULT_SEED = 3;

/** One measured operation: `run` processes every chunk once and returns something derived from the work. */
interface CodecCase {
  readonly name: string;
  /** Set when the case cannot run here; the row shows the reason. */
  readonly skip?: string;
  readonly run: (chunks: readonly ChunkInputs[]) => number;
}

function crc32Available(): boolean {
  return typeof (zlib as { crc32?: unknown }).crc32 === 'function';
}

/** The cases, in table order: write path, DEFLATE decoders, zstd, verification, decrypt, copy, full decode. */
function codecCases(zstd: ZstdEncoder): CodecCase[] {
  const noZstd = zstd.kind === 'none' ? zstd.reason : undefined;
  const out = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  return [
    {
      name: 'DEFLATE L1 encode: fflate deflateSync',
      run: (chunks) =>
        chunks.reduce((n, c) => n + fflateDeflate(c.plain, { level: DEFLATE_LEVEL }).length, 0),
    },
    {
      name: 'DEFLATE L1 encode: node:zlib deflateRawSync',
      run: (chunks) =>
        chunks.reduce((n, c) => n + zlib.deflateRawSync(c.plain, { level: DEFLATE_LEVEL }).length, 0),
    },
    {
      name: 'DEFLATE decode: node:zlib inflateRawSync',
      run: (chunks) => chunks.reduce((n, c) => n + zlib.inflateRawSync(c.deflated).length, 0),
    },
    {
      name: 'DEFLATE decode: node:zlib inflateRawSync, chunkSize 4 MiB',
      run: (chunks) =>
        chunks.reduce((n, c) => n + zlib.inflateRawSync(c.deflated, { chunkSize: CHUNK_BYTES }).length, 0),
    },
    {
      name: 'DEFLATE decode: fflate inflateSync',
      run: (chunks) => chunks.reduce((n, c) => n + fflateInflate(c.deflated).length, 0),
    },
    {
      name: 'DEFLATE decode: fflate inflateSync, preallocated out',
      run: (chunks) => chunks.reduce((n, c) => n + fflateInflate(c.deflated, { out }).length, 0),
    },
    {
      name: 'zstd decode: fzstd decompress',
      ...(noZstd === undefined ? {} : { skip: noZstd }),
      run: (chunks) => chunks.reduce((n, c) => n + fzstdDecompress(c.zstd!).length, 0),
    },
    {
      name: 'SHA-256: node:crypto',
      run: (chunks) => chunks.reduce((n, c) => n + createHash('sha256').update(c.plain).digest()[0]!, 0),
    },
    {
      name: 'CRC-32: node:zlib crc32',
      ...(crc32Available() ? {} : { skip: `node:zlib of Node ${process.version} has no crc32` }),
      run: (chunks) => chunks.reduce((n, c) => n ^ zlib.crc32(c.plain), 0),
    },
    {
      name: `AES-256-GCM decrypt: node:crypto, ${AES_IV_BYTES}-byte IV`,
      run: (chunks) =>
        chunks.reduce((n, c) => {
          const decipher = createDecipheriv('aes-256-gcm', AES_KEY, c.iv, { authTagLength: 16 });
          decipher.setAuthTag(c.tag);
          const plain = decipher.update(c.ciphertext);
          decipher.final();
          return n + plain.length;
        }, 0),
    },
    {
      name: 'memcpy: Buffer.copy (ceiling)',
      run: (chunks) => chunks.reduce((n, c) => n + c.plain.copy(out), 0),
    },
    {
      name: 'decodeChunk (format), deflate blob',
      run: (chunks) => chunks.reduce((n, c) => n + decodeChunk(c.deflateBlob, c.digest).length, 0),
    },
    {
      name: 'decodeChunk (format), zstd blob',
      ...(noZstd === undefined ? {} : { skip: noZstd }),
      run: (chunks) => chunks.reduce((n, c) => n + decodeChunk(c.zstdBlob!, c.digest).length, 0),
    },
  ];
}

/** Checks each decoder returns the chunk before timing it, so a broken case cannot look fast. */
function checkOutputs(inputs: MixInputs): void {
  for (const c of inputs.chunks) {
    const checks: [string, Uint8Array][] = [
      ['node:zlib inflateRawSync', zlib.inflateRawSync(c.deflated)],
      ['fflate inflateSync', fflateInflate(c.deflated)],
      ['decodeChunk deflate blob', decodeChunk(c.deflateBlob, c.digest)],
    ];
    if (c.zstd !== undefined) checks.push(['fzstd decompress', fzstdDecompress(c.zstd)]);
    for (const [name, output] of checks) {
      if (!c.plain.equals(output))
        throw new Error(`${name} returned wrong bytes on the ${inputs.choice.name} mix`);
    }
  }
}

function packageVersion(name: string): string {
  try {
    const url = new URL(`../../node_modules/${name}/package.json`, import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function compositionText(composition: Readonly<Record<string, number>>): string {
  return Object.entries(composition)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, fraction]) => `${kind} ${Math.round(fraction * 100)} %`)
    .join(', ');
}

function sumBytes(chunks: readonly ChunkInputs[], pick: (c: ChunkInputs) => Uint8Array | undefined): number {
  return chunks.reduce((n, c) => n + (pick(c)?.byteLength ?? 0), 0);
}

function ratioCell(plainBytes: number, compressedBytes: number): string {
  return compressedBytes === 0
    ? 'n/a'
    : `${formatNumber(plainBytes / compressedBytes)}× (${formatBytes(compressedBytes)})`;
}

/** Cores other processes kept busy since the given moment; undefined off Linux. */
function otherCores(
  busyBefore: number | undefined,
  cpuBefore: NodeJS.CpuUsage,
  wallBefore: number,
): number | undefined {
  const busyAfter = machineBusySeconds();
  if (busyBefore === undefined || busyAfter === undefined) return undefined;
  const cpu = process.cpuUsage(cpuBefore);
  const ours = (cpu.user + cpu.system) / 1e6;
  return Math.max(0, busyAfter - busyBefore - ours) / ((performance.now() - wallBefore) / 1000);
}

interface Settings {
  readonly samples: number;
  readonly chunks: number;
  readonly seed: number;
  readonly minSampleMs: number;
  readonly warmupMs: number;
  readonly mixes: readonly string[];
}

function readSettings(context: BenchContext): Settings {
  const o = context.options;
  const mixes = typeof o.mix === 'string' ? parseList(o.mix) : MIXES.map((m) => m.name);
  for (const name of mixes) {
    if (!MIXES.some((m) => m.name === name)) {
      throw new UsageError(`--mix: unknown mix "${name}" (one of: ${MIXES.map((m) => m.name).join(', ')})`);
    }
  }
  if (mixes.length === 0) throw new UsageError('--mix must name at least one mix');
  return {
    samples: context.samples,
    chunks: typeof o.chunks === 'string' ? parsePositiveInt(o.chunks, '--chunks') : 8,
    seed: typeof o.seed === 'string' ? parseNonNegativeInt(o.seed, '--seed') : DEFAULT_SEED,
    minSampleMs:
      typeof o['min-sample-ms'] === 'string' ? parsePositiveInt(o['min-sample-ms'], '--min-sample-ms') : 200,
    warmupMs: typeof o['warmup-ms'] === 'string' ? parseNonNegativeInt(o['warmup-ms'], '--warmup-ms') : 300,
    mixes,
  };
}

async function runCodecs(context: BenchContext): Promise<BenchResult> {
  const started = performance.now();
  const machine = machineInfo();
  const settings = readSettings(context);
  const zstd = await findZstdEncoder();
  const cases = codecCases(zstd);
  const sections: Section[] = [];
  const ratioRows: string[][] = [];
  for (const mixName of settings.mixes) {
    const choice = MIXES.find((m) => m.name === mixName)!;
    context.progress(`preparing ${settings.chunks} × 4 MiB chunks of the ${choice.name} mix`);
    const inputs = await prepareMix(choice, settings.seed, settings.chunks, zstd);
    checkOutputs(inputs);
    const runnable = cases.filter((c) => c.skip === undefined);
    context.progress(`[${choice.name}] warming up and calibrating ${runnable.length} cases`);
    const busyBefore = machineBusySeconds();
    const cpuBefore = process.cpuUsage();
    const wallBefore = performance.now();
    const measurements = measureInterleaved(
      runnable.map((c) => () => c.run(inputs.chunks)),
      {
        samples: settings.samples,
        minSampleMs: settings.minSampleMs,
        warmupMs: settings.warmupMs,
        chunksPerCall: inputs.chunks.length,
      },
      (round) => context.progress(`[${choice.name}] round ${round}/${settings.samples} done`),
    );
    const others = otherCores(busyBefore, cpuBefore, wallBefore);
    const results: CaseResult[] = cases.map((c) => {
      if (c.skip !== undefined) {
        context.progress(`[${choice.name}] ${c.name}: skipped (${c.skip})`);
        return skippedCase(c.name, c.skip, CHUNK_BYTES);
      }
      const m = measurements[runnable.indexOf(c)]!;
      const result = measuredCase(c.name, CHUNK_BYTES, m.secondsPerChunk, {
        callsPerSample: m.callsPerSample,
      });
      context.progress(
        `[${choice.name}] ${c.name}: ${formatRate(result.throughputMBps!)} ` +
          `${formatPercent(result.stats!.ci95Percent, '±')} (${settings.samples} samples × ${m.callsPerSample} passes)`,
      );
      return result;
    });
    const chunks = inputs.chunks;
    const plainBytes = sumBytes(chunks, (c) => c.plain);
    const kept = compressedBlobCount(inputs);
    const notes = [`Content: ${compositionText(inputs.composition)} (of ${formatBytes(plainBytes)}).`];
    if (others !== undefined) {
      notes.push(
        `Other processes used ${formatNumber(others)} of ${machine.cores} cores on average while this mix was ` +
          'measured (machine busy time from /proc/stat minus ours).',
      );
    }
    if (kept < chunks.length) {
      notes.push(
        `encodeBlob kept ${kept} of ${chunks.length} chunks DEFLATE-compressed and stored the rest uncompressed ` +
          '(compression did not shrink them, as PBS does), so "decodeChunk, deflate blob" measures CRC-32 + SHA-256 ' +
          'for those; the zstd blobs always hold the zstd frame.',
      );
    }
    sections.push({
      title: `${choice.name} mix: ${choice.description}`,
      meanLabel: 'mean / 4 MiB chunk',
      cases: results,
      notes,
    });
    ratioRows.push([
      choice.name,
      formatBytes(plainBytes),
      ratioCell(
        plainBytes,
        sumBytes(chunks, (c) => c.deflated),
      ),
      ratioCell(
        plainBytes,
        sumBytes(chunks, (c) => c.zlibDeflated),
      ),
      zstd.kind === 'none'
        ? 'skipped'
        : ratioCell(
            plainBytes,
            sumBytes(chunks, (c) => c.zstd),
          ),
      `${kept} / ${chunks.length}`,
      ratioCell(
        plainBytes,
        sumBytes(chunks, (c) => c.deflateBlob),
      ),
    ]);
  }
  const ratios: PlainTable = {
    title: 'Compression ratio (plaintext / compressed; compressed size in brackets)',
    columns: [
      'mix',
      'plaintext',
      'fflate DEFLATE L1',
      'node:zlib DEFLATE L1',
      'zstd -1',
      'chunks kept compressed by encodeBlob',
      'encodeBlob blobs (as stored)',
    ],
    rows: ratioRows,
  };
  return {
    benchmark: 'codecs',
    title: 'Codec throughput, single thread, 4 MiB chunks',
    machine,
    settings: {
      samples: settings.samples,
      chunks: settings.chunks,
      chunkBytes: CHUNK_BYTES,
      seed: settings.seed,
      mixes: settings.mixes.join(','),
      minSampleMs: settings.minSampleMs,
      warmupMs: settings.warmupMs,
      deflateLevel: DEFLATE_LEVEL,
      zstdInput: zstd.kind === 'none' ? `none (${zstd.reason})` : zstd.label,
      fflate: packageVersion('fflate'),
      fzstd: packageVersion('fzstd'),
      threads: 1,
    },
    sections,
    tables: [ratios],
    notes: [
      'Throughput is plaintext bytes per second: input of encoders, hashes and copies; output of decoders.',
      'A sample is one or more passes over all chunks of the mix, lasting at least minSampleMs; mean and ± are per 4 MiB chunk. ' +
        'Cases are sampled round-robin, so a burst of other load on the machine widens every ± instead of skewing a few cases.',
      'Decode inputs are fflate level-1 DEFLATE streams (what backups write) and zstd frames from the encoder in zstdInput.',
      '"decodeChunk" is the whole read path of one chunk as @liverestore/format gives it: CRC-32, decompress, SHA-256 check.',
    ],
    durationSeconds: (performance.now() - started) / 1000,
  };
}

export const codecsBenchmark: Benchmark = {
  name: 'codecs',
  summary:
    'single-thread MB/s of DEFLATE, zstd, SHA-256, CRC-32, AES-GCM, memcpy and decodeChunk on 4 MiB chunks',
  description: `
Measures, on one thread, each codec of the chunk read and write paths on 4 MiB chunks
of deterministic synthetic data (@liverestore/testkit) for three mixes: "text"
(compressible, file-system-like), "random" (incompressible) and "vm" (the default VM
mix). Cases: DEFLATE level-1 encode (fflate, node:zlib), DEFLATE decode (node:zlib,
fflate), zstd decode (fzstd; input from the zstd CLI or node:zlib, else skipped),
SHA-256, CRC-32, AES-256-GCM decrypt, memcpy, and decodeChunk of @liverestore/format
on a deflate and a zstd blob. Also prints compression ratios. Takes about 2.5 minutes
with the defaults.`,
  defaultSamples: 10,
  options: [
    {
      name: 'mix',
      type: 'string',
      valueName: 'LIST',
      description: 'mixes to run, comma-separated',
      defaultText: 'text,random,vm',
    },
    { name: 'chunks', type: 'string', valueName: 'N', description: '4 MiB chunks per mix', defaultText: '8' },
    {
      name: 'seed',
      type: 'string',
      valueName: 'N',
      description: 'testkit image seed',
      defaultText: String(DEFAULT_SEED),
    },
    {
      name: 'min-sample-ms',
      type: 'string',
      valueName: 'MS',
      description: 'shortest duration of one sample',
      defaultText: '200',
    },
    {
      name: 'warmup-ms',
      type: 'string',
      valueName: 'MS',
      description: 'warm-up per case before sampling',
      defaultText: '300',
    },
  ],
  run: runCodecs,
};

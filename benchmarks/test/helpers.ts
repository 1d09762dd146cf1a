import { spawn } from 'node:child_process';
import { type BenchResult, type MachineInfo, measuredCase, skippedCase } from '../src/index.js';

/** A fixed machine, so rendered text does not depend on where the tests run. */
export const MACHINE: MachineInfo = {
  cpuModel: 'Test CPU <model> & "co"',
  cores: 2,
  parallelism: 2,
  totalMemoryBytes: 24 * 1024 ** 3,
  nodeVersion: 'v20.19.0',
  zlibVersion: '1.3.1',
  opensslVersion: '3.0.0',
  zstdDecoder: 'zstd-napi 0.0.13 (libzstd 1.5.7)',
  os: 'Linux 6.0 (linux x64)',
  date: '2026-01-02T03:04:05.000Z',
  loadAverage1mStart: 0.25,
};

/** A small result with a measured, a skipped and a detail-carrying case. */
export function fakeResult(): BenchResult {
  const mib4 = 4 * 1024 * 1024;
  return {
    benchmark: 'fake',
    title: 'Fake benchmark',
    machine: MACHINE,
    code: 'abc1234',
    settings: { samples: 3, chunks: 2 },
    sections: [
      {
        title: 'first section',
        meanLabel: 'mean / 4 MiB chunk',
        cases: [
          measuredCase('slow codec', mib4, [0.1, 0.11, 0.09]),
          measuredCase('fast | codec', mib4, [0.001, 0.001, 0.001]),
          skippedCase('zstd <missing>', 'no zstd encoder', mib4),
        ],
        notes: ['a note'],
      },
      {
        title: 'second section',
        meanLabel: 'mean / backup',
        cases: [
          measuredCase('backup & co', 2 * 1024 ** 3, [20, 22], {
            chunksNew: 400,
            peakRssBytes: 250 * 1024 ** 2,
          }),
        ],
        columns: [
          { key: 'chunksNew', label: 'chunks new', format: 'integer' },
          { key: 'peakRssBytes', label: 'peak RSS', format: 'bytes' },
        ],
      },
    ],
    tables: [{ title: 'ratios', columns: ['mix', 'ratio'], rows: [['text', '2.85×']] }],
    durationSeconds: 12.5,
  };
}

/** Runs `node ARGS…` (a benchmark's main.js, the liverestore CLI) to its end, collecting its output. */
export function runNode(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

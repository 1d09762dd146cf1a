/**
 * What a liverestore process's `--trace-loads` file says about its guest's slowest misses:
 * of the loads a guest waited for (urgent by their end), the tenth a guest waited longest
 * for (from the moment it became urgent), with the mean milliseconds of each phase from
 * the load's start. The phases of these loads are what its p99 is made of.
 */
import { readFile } from 'node:fs/promises';

/** Mean phases of the slowest tenth of the urgent loads of one process. */
export interface SlowLoadPhases {
  /**
   * Loads that fetched and decoded a chunk (from the source, ended well), and how many
   * distinct chunks they were: the difference is chunks decoded twice (an HTTP request
   * count also has the resumed requests of background fetches that made way).
   */
  readonly sourceLoads: number;
  readonly distinctSourceChunks: number;
  /** Urgent loads in the trace, and how many of them are the slowest tenth. */
  readonly urgentLoads: number;
  readonly slowLoads: number;
  /** Urgent loads a decode thread read as their blob arrived (--decode-as-arriving). */
  readonly arrivingLoads: number;
  /** The mean wait of a guest for them (see ChunkLoadRecord.urgentWaitMs). */
  readonly urgentWaitMs: number;
  readonly totalMs: number;
  readonly memoryWaitMs: number;
  /** Of the memory wait, the part waiting for cache pages (the rest: blob-budget bytes). */
  readonly pagesWaitMs: number;
  readonly blobMs: number;
  readonly decodeWaitMs: number;
  readonly decodeMs: number;
}

interface TracedLoad {
  readonly digestHex: string;
  readonly from: 'source' | 'spill';
  readonly urgent: boolean;
  readonly ok: boolean;
  readonly totalMs: number;
  readonly urgentWaitMs: number;
  readonly memoryWaitMs: number;
  readonly pagesWaitMs: number;
  readonly blobMs: number;
  readonly decodeWaitMs: number;
  readonly decodeMs: number;
  readonly decodedArriving?: boolean;
}

/** The summary of a trace's JSON lines; undefined when no urgent load ended well. */
export function slowLoadPhases(lines: string): SlowLoadPhases | undefined {
  const loads = lines
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as TracedLoad);
  const fromSource = loads.filter((load) => load.ok && load.from === 'source');
  const urgent = loads
    .filter((load) => load.urgent && load.ok)
    .sort((a, b) => b.urgentWaitMs - a.urgentWaitMs);
  if (urgent.length === 0) return undefined;
  const slow = urgent.slice(0, Math.max(1, Math.ceil(urgent.length / 10)));
  const mean = (
    phase: Exclude<keyof TracedLoad, 'digestHex' | 'from' | 'urgent' | 'ok' | 'decodedArriving'>,
  ): number => slow.reduce((sum, load) => sum + load[phase], 0) / slow.length;
  return {
    sourceLoads: fromSource.length,
    distinctSourceChunks: new Set(fromSource.map((load) => load.digestHex)).size,
    urgentLoads: urgent.length,
    slowLoads: slow.length,
    arrivingLoads: urgent.filter((load) => load.decodedArriving === true).length,
    urgentWaitMs: mean('urgentWaitMs'),
    totalMs: mean('totalMs'),
    memoryWaitMs: mean('memoryWaitMs'),
    pagesWaitMs: mean('pagesWaitMs'),
    blobMs: mean('blobMs'),
    decodeWaitMs: mean('decodeWaitMs'),
    decodeMs: mean('decodeMs'),
  };
}

/** {@link slowLoadPhases} of a trace file. */
export async function slowLoadPhasesOf(path: string): Promise<SlowLoadPhases | undefined> {
  return slowLoadPhases(await readFile(path, 'utf8'));
}

/**
 * File-system-like text: log lines, paths, config entries, CSV and JSON records.
 *
 * Real disks compress about 3–4× because files repeat words, keys and whole lines
 * with small differences (timestamps, ids). This module builds, once per seed, a
 * pool of such lines in one Buffer, and fills a block by copying runs of
 * consecutive pool lines (one memcpy per run, not per byte) and then overwriting
 * their id fields with random hex digits, which keeps DEFLATE from matching whole
 * runs. The constants below are tuned so DEFLATE level 6 reaches ~3.3× on a 4 MiB chunk.
 */

import { Domain, highWord, lowWord } from './hash.js';
import { Xoshiro128 } from './prng.js';

/** Number of distinct words in a dictionary. */
const WORD_COUNT = 2048;
/** Number of lines in the pool: fewer lines, more repetition (512 gives ~3.9x, 1024 ~3.0x). */
const LINE_COUNT = 768;
/** A run copies 1..RUN_LINES_MASK+1 consecutive lines. */
const RUN_LINES_MASK = 15;
/** Placeholder for a per-use random hex digit while the pool is built. */
const SLOT_CHAR = '\u0001';
const HEX_DIGITS = new Uint8Array(Buffer.from('0123456789abcdef', 'latin1'));

/** A per-seed pool of lines, with the positions of its id fields. */
export interface TextDictionary {
  /** All lines, concatenated. */
  readonly pool: Buffer;
  /** `lineStarts[i]` is the pool offset of line i; `lineStarts[LINE_COUNT]` is the pool length. */
  readonly lineStarts: Int32Array;
  /** Pool offsets of the bytes that get a fresh hex digit at every use, ascending. */
  readonly slotPositions: Int32Array;
  /** `lineSlotStarts[i]` is the index in `slotPositions` of line i's first slot. */
  readonly lineSlotStarts: Int32Array;
}

const CONSONANTS = 'bcdfghklmnprstvwz';
const VOWELS = 'aeiou';
const EXTENSIONS = ['so', 'conf', 'log', 'txt', 'json', 'xml', 'py', 'js', 'h', 'c', 'service', 'gz'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

class Builder {
  readonly rng: Xoshiro128;
  readonly words: string[] = [];
  readonly hosts: string[] = [];

  constructor(rng: Xoshiro128) {
    this.rng = rng;
    for (let i = 0; i < WORD_COUNT; i++) this.words.push(this.makeWord());
    for (let i = 0; i < 4; i++) this.hosts.push(`${this.makeWord()}-${this.int(100)}`);
  }

  int(n: number): number {
    return this.rng.nextUint32() % n;
  }

  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)] as T;
  }

  makeWord(): string {
    let w = '';
    const syllables = 1 + this.int(3);
    for (let i = 0; i < syllables; i++) w += this.pick([...CONSONANTS]) + this.pick([...VOWELS]);
    if (this.int(2) === 0) w += this.pick([...CONSONANTS]);
    return w;
  }

  /** A Zipf-like pick: a few words are very common, as in real text. */
  word(): string {
    const u = this.rng.nextUint32() / 4294967296;
    return this.words[Math.floor(u * u * u * WORD_COUNT)] as string;
  }

  phrase(min: number, max: number): string {
    const n = min + this.int(max - min + 1);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(this.word());
    return parts.join(' ');
  }

  slots(n: number): string {
    return SLOT_CHAR.repeat(n);
  }

  pad2(n: number): string {
    return String(n).padStart(2, '0');
  }

  line(): string {
    switch (this.int(7)) {
      case 0:
        return `${this.pick(MONTHS)} ${this.pad2(1 + this.int(28))} ${this.pad2(this.int(24))}:${this.pad2(this.int(60))}:${this.slots(2)} ${this.pick(this.hosts)} ${this.word()}[${this.slots(5)}]: ${this.phrase(3, 10)}\n`;
      case 1:
        return `/${this.word()}/${this.word()}/${this.word()}_${this.word()}.${this.pick(EXTENSIONS)} ${this.slots(8)} ${this.int(1 << 20)}\n`;
      case 2:
        return `${this.word()}.${this.word()} = "${this.phrase(1, 4)}"\n`;
      case 3:
        return `${this.slots(8)},${this.word()},${this.word()},${this.int(10000)},${this.phrase(1, 3)}\n`;
      case 4:
        return `{"${this.word()}":"${this.phrase(1, 3)}","id":"${this.slots(12)}","${this.word()}":${this.int(1000)}}\n`;
      case 5:
        return `<${this.word()} ${this.word()}="${this.word()}">${this.phrase(2, 6)}</${this.word()}>\n`;
      default: {
        // A fixed-size binary record, like an inode or directory entry.
        const name = `${this.word()}.${this.pick(EXTENSIONS)}`.slice(0, 24).padEnd(24, '\0');
        return `\u0081\u00ed\0\0${this.slots(8)}\0\0\u0010\0${name}${'\0'.repeat(4)}${this.slots(4)}\0\0\0\0`;
      }
    }
  }
}

function buildDictionary(seed: number): TextDictionary {
  const rng = new Xoshiro128(0, 0, 0, 0);
  rng.seedFromWords(Domain.dictionary, lowWord(seed), highWord(seed), 0, 0, 0);
  const builder = new Builder(rng);
  const lines: string[] = [];
  for (let i = 0; i < LINE_COUNT; i++) lines.push(builder.line());
  const text = lines.join('');
  const pool = Buffer.from(text, 'latin1');
  const lineStarts = new Int32Array(LINE_COUNT + 1);
  const lineSlotStarts = new Int32Array(LINE_COUNT + 1);
  const slots: number[] = [];
  let offset = 0;
  for (let i = 0; i < LINE_COUNT; i++) {
    lineStarts[i] = offset;
    lineSlotStarts[i] = slots.length;
    const line = lines[i] as string;
    for (let j = 0; j < line.length; j++) {
      if (line.charCodeAt(j) === 1) {
        slots.push(offset + j);
        pool[offset + j] = 0x30;
      }
    }
    offset += line.length;
  }
  lineStarts[LINE_COUNT] = offset;
  lineSlotStarts[LINE_COUNT] = slots.length;
  return { pool, lineStarts, slotPositions: Int32Array.from(slots), lineSlotStarts };
}

const DICTIONARY_CACHE_ENTRIES = 8;
const dictionaryCache = new Map<number, TextDictionary>();

/**
 * The dictionary of a seed, built on first use (about a millisecond) and kept in a
 * small LRU so a handful of images in one process never rebuild theirs.
 */
export function textDictionary(seed: number): TextDictionary {
  const hit = dictionaryCache.get(seed);
  if (hit !== undefined) {
    dictionaryCache.delete(seed);
    dictionaryCache.set(seed, hit);
    return hit;
  }
  const built = buildDictionary(seed);
  dictionaryCache.set(seed, built);
  if (dictionaryCache.size > DICTIONARY_CACHE_ENTRIES) {
    const oldest = dictionaryCache.keys().next();
    if (oldest.done !== true) dictionaryCache.delete(oldest.value);
  }
  return built;
}

/**
 * Fills `target[start, start + lengthBytes)` with text drawn from `dict`, consuming
 * `rng`. The result depends only on the dictionary and the rng state.
 */
export function fillText(
  dict: TextDictionary,
  rng: Xoshiro128,
  target: Uint8Array,
  start: number,
  lengthBytes: number,
): void {
  const { pool, lineStarts, slotPositions, lineSlotStarts } = dict;
  let pos = 0;
  let bits = 0;
  let nibbles = 0;
  while (pos < lengthBytes) {
    const r = rng.nextUint32();
    const first = (r & 0xffffff) % LINE_COUNT;
    const last = Math.min(first + 1 + ((r >>> 24) & RUN_LINES_MASK), LINE_COUNT);
    const a = lineStarts[first] as number;
    const n = Math.min((lineStarts[last] as number) - a, lengthBytes - pos);
    pool.copy(target, start + pos, a, a + n);
    const base = start + pos - a;
    const limit = a + n;
    const slotEnd = lineSlotStarts[last] as number;
    for (let s = lineSlotStarts[first] as number; s < slotEnd; s++) {
      const p = slotPositions[s] as number;
      if (p >= limit) break;
      if (nibbles === 0) {
        bits = rng.nextUint32();
        nibbles = 8;
      }
      target[base + p] = HEX_DIGITS[bits & 15] as number;
      bits >>>= 4;
      nibbles--;
    }
    pos += n;
  }
}

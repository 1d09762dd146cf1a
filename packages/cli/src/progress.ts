import type { Writable } from 'node:stream';
import { formatBytes, formatRate } from './units.js';

/**
 * Shows long work on stderr: a redrawn bar on a terminal, a plain line every few seconds
 * otherwise (logs and CI), nothing when `quiet` (e.g. `--json` output to a pipe stays clean
 * on stdout either way; progress never goes to stdout).
 */
export class Progress {
  readonly #out: Writable & { isTTY?: boolean; columns?: number };
  readonly #label: string;
  readonly #total: number;
  readonly #unit: 'bytes' | 'items';
  readonly #quiet: boolean;
  readonly #now: () => number;
  readonly #started: number;
  #lastDraw: number;
  #done = 0;

  /** `now` is the clock in milliseconds (default `performance.now`); tests drive a fake one. */
  constructor(
    label: string,
    total: number,
    options: { unit?: 'bytes' | 'items'; quiet?: boolean; out?: Writable; now?: () => number } = {},
  ) {
    this.#label = label;
    this.#total = total;
    this.#unit = options.unit ?? 'bytes';
    this.#quiet = options.quiet ?? false;
    this.#out = (options.out ?? process.stderr) as Writable & { isTTY?: boolean; columns?: number };
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
    this.#lastDraw = this.#started;
  }

  get #tty(): boolean {
    return this.#out.isTTY === true;
  }

  /** Records progress; draws at most 10 times a second on a TTY, every 5 s otherwise (counted from the start). */
  update(done: number): void {
    this.#done = done;
    if (this.#quiet) return;
    const now = this.#now();
    const interval = this.#tty ? 100 : 5000;
    if (now - this.#lastDraw < interval || done >= this.#total) return;
    this.#lastDraw = now;
    this.#draw(false);
  }

  /** Final line (always drawn once unless quiet). */
  finish(): void {
    if (this.#quiet) return;
    this.#draw(true);
  }

  #text(): string {
    const seconds = (this.#now() - this.#started) / 1000;
    const pct = this.#total === 0 ? 100 : (100 * this.#done) / this.#total;
    if (this.#unit === 'items') return `${this.#label} ${this.#done}/${this.#total} (${pct.toFixed(0)}%)`;
    const rate = formatRate(this.#done, seconds);
    const eta =
      this.#done > 0 && this.#done < this.#total
        ? ` ETA ${Math.ceil(((this.#total - this.#done) * seconds) / this.#done)}s`
        : '';
    return `${this.#label} ${formatBytes(this.#done)}/${formatBytes(this.#total)} (${pct.toFixed(0)}%) ${rate}${eta}`;
  }

  #draw(final: boolean): void {
    const text = this.#text();
    if (!this.#tty) {
      this.#out.write(`${text}\n`);
      return;
    }
    const width = Math.max(10, Math.min(40, (this.#out.columns ?? 80) - text.length - 4));
    const ratio = this.#total === 0 ? 1 : Math.min(1, this.#done / this.#total);
    const filled = Math.round(ratio * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    this.#out.write(`\r\x1b[2K${bar} ${text}${final ? '\n' : ''}`);
  }
}

const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * The size notation of every command line in this project (the CLI's and the
 * benchmarks'): `4MiB`, `512k`, `1.5G`, `4194304`. Bare letters and `KiB`, `MiB`, … are
 * binary units, as in qemu-img; `kB`, `MB`, `GB`, `TB` decimal; case does not matter.
 * Returns the bytes, or undefined when `text` is not a size. The caller decides what a
 * fraction of a byte or an unsafe integer means (both command lines refuse them).
 */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = match === null ? undefined : UNITS[match[2]!.toLowerCase()];
  return match === null || unit === undefined ? undefined : Number(match[1]) * unit;
}

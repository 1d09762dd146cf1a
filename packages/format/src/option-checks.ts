/** Checks of numeric options shared by the packages: a RangeError naming the option, as the API promises. */

/** Throws `RangeError: NAME must be a positive integer` unless `value` is a safe integer > 0. */
export function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
}

/** Throws `RangeError: NAME must be a non-negative integer` unless `value` is a safe integer ≥ 0. */
export function checkNonNegativeInteger(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`${name} must be a non-negative integer`);
}

/**
 * Bytes given as views taken back to back (a lease's pages, a fill's runs): a leading or
 * trailing part of them as views again, without a copy.
 */

/** True when `a` and `b` are views of the same bytes (one buffer, one offset, one length). */
export function sameView(a: Uint8Array, b: Uint8Array): boolean {
  return a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

/** The first `length` bytes of `views` (all of them when they hold fewer), the last view cut. */
export function viewsUpTo(views: readonly Uint8Array[], length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = length;
  for (const view of views) {
    if (left <= 0) break;
    const part = view.byteLength <= left ? view : view.subarray(0, left);
    out.push(part);
    left -= part.byteLength;
  }
  return out;
}

/** What follows the first `skip` bytes of `views`, the first view cut. */
export function viewsAfter(views: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = skip;
  for (const view of views) {
    if (left >= view.byteLength) left -= view.byteLength;
    else {
      out.push(left === 0 ? view : view.subarray(left));
      left = 0;
    }
  }
  return out;
}

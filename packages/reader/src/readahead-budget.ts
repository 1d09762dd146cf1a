/**
 * Bytes held by prefetched chunks nobody has read yet (loading or ready), across all
 * readers: readahead may hold at most `limitBytes` of the cache, so the rest is for
 * chunks someone asked for.
 */
export class ReadaheadBudget {
  readonly #unread = new Map<string, number>();
  #unreadBytes = 0;

  constructor(readonly limitBytes: number) {}

  /** Counts a prefetch of `bytes` against the budget; false (nothing counted) when it does not fit. */
  admit(key: string, bytes: number): boolean {
    if (this.#unreadBytes + bytes > this.limitBytes) return false;
    this.#unread.set(key, bytes);
    this.#unreadBytes += bytes;
    return true;
  }

  /** The prefetched chunk was asked for (or is gone): it no longer counts. True when it counted. */
  markRead(key: string): boolean {
    const bytes = this.#unread.get(key);
    if (bytes === undefined) return false;
    this.#unread.delete(key);
    this.#unreadBytes -= bytes;
    return true;
  }

  get unreadBytes(): number {
    return this.#unreadBytes;
  }
}

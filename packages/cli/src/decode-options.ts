/** `--decode-as-arriving` as it reads in every command that serves a guest from a chunk cache. */
export const DECODE_AS_ARRIVING_OPTIONS = {
  'decode-as-arriving': { type: 'boolean' },
} as const;

/** The help lines of {@link DECODE_AS_ARRIVING_OPTIONS}, aligned like the other option lines. */
export const DECODE_AS_ARRIVING_HELP = `  --decode-as-arriving
                       decode a guest's miss while its blob arrives from --from (HTTP
                       or S3), on an idle decode thread, outside bursts of misses: for
                       guests that read one block at a time behind a slow link; it costs
                       6-10 % more CPU per chunk, so it is off by default
                       (ChunkCacheOptions.decodeAsArriving in docs/api.md)`;

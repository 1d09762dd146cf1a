/**
 * Every constant of the NBD protocol this project uses, named as in the NBD project's
 * proto.md, so the wire code reads like the specification and values are checked in one
 * place. Import them through wire.ts, which re-exports this file with the encoders.
 */

/** Server greeting: "NBDMAGIC". */
export const NBDMAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle greeting and the magic of every option request. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply. */
export const NBD_REP_MAGIC = 0x3e889045565a9n;
/** First field of every request header. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** First field of a simple reply. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
/** First field of every structured reply chunk. */
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** Client flags. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

/** Options. */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 2 ** 31;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

/** Information types of NBD_REP_INFO. */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Commands. */
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

/** Command flags: FUA (durable before the reply; any command once SEND_FUA is advertised), NO_HOLE
 * (WRITE_ZEROES only), DF (READ only, with SEND_DF), REQ_ONE (BLOCK_STATUS only), FAST_ZERO
 * (WRITE_ZEROES only, with SEND_FAST_ZERO, which this server does not advertise). */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Structured reply flags and types. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = 2 ** 15 + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = 2 ** 15 + 2;

/** Error values on the wire (Linux errno numbers, as proto.md fixes them). */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** base:allocation states. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** The one metadata context served. */
export const BASE_ALLOCATION = 'base:allocation';
/** Its context id (any stable non-zero number works). */
export const BASE_ALLOCATION_ID = 1;

/** Sizes of fixed wire structures. */
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_BYTES = 20;
export const OPTION_HEADER_BYTES = 16;

/** Block size constraints advertised in NBD_INFO_BLOCK_SIZE. */
export const MIN_BLOCK_BYTES = 1;
export const PREFERRED_BLOCK_BYTES = 4096;
/** Largest read (and largest write payload accepted to be skipped): 32 MiB. */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Largest option payload; anything bigger closes the connection. */
export const MAX_OPTION_BYTES = 64 * 1024;
/** Default TCP port of NBD. */
export const NBD_DEFAULT_PORT = 10809;

/*
 * The head of an HTTP/1.1 answer (RFC 9112): status line and header fields, parsed from
 * bytes, and how its body is framed. Strict where a lenient reading would let a broken or
 * hostile answer through: a bad status line, a folded or nameless header, a Content-Length
 * that is not one number, or Content-Length beside Transfer-Encoding fail the answer.
 */

/** A parsed answer head. Field names are lower case; a repeated field's values are joined with ", ". */
export interface Http1Head {
  readonly status: number;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  readonly version: '1.0' | '1.1';
  readonly headers: Readonly<Record<string, string>>;
}

/** How the body of an answer ends. */
export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly bytes: number }
  | { readonly kind: 'chunked' }
  /** Until the server closes the connection (no length, HTTP/1.0 style). */
  | { readonly kind: 'close' };

/** An answer that is not HTTP/1.1 as it must be; its code is llhttp's name for the same fault. */
export class Http1ParseError extends Error {
  constructor(
    readonly code: `HPE_${string}`,
    message: string,
  ) {
    super(message);
    this.name = 'Http1ParseError';
  }
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/;
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const DIGITS = /^\d{1,15}$/;

/** Parses a head from its text: status line, then fields, without the empty line that ends it. */
export function parseHead(text: string): Http1Head {
  const lines = text.split('\r\n');
  const match = STATUS_LINE.exec(lines[0] ?? '');
  if (match === null)
    throw new Http1ParseError(
      'HPE_INVALID_STATUS',
      `not an HTTP/1.x status line: ${JSON.stringify(lines[0]?.slice(0, 80))}`,
    );
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !FIELD_NAME.test(name))
      throw new Http1ParseError(
        'HPE_INVALID_HEADER_TOKEN',
        `not a header field: ${JSON.stringify(line.slice(0, 80))}`,
      );
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    const earlier = headers[key];
    headers[key] = earlier === undefined ? value : `${earlier}, ${value}`;
  }
  return { status: Number(match[2]), version: match[1] === '0' ? '1.0' : '1.1', headers };
}

/** How the body of `head` (the answer to a request of `method`) is framed. */
export function bodyFraming(head: Http1Head, method: string): BodyFraming {
  const { status, headers } = head;
  if (method === 'HEAD' || status === 204 || status === 304 || status < 200) return { kind: 'none' };
  const encoding = headers['transfer-encoding'];
  const length = headers['content-length'];
  if (encoding !== undefined) {
    if (length !== undefined)
      throw new Http1ParseError(
        'HPE_UNEXPECTED_CONTENT_LENGTH',
        'the answer has both Transfer-Encoding and Content-Length',
      );
    const codings = encoding
      .toLowerCase()
      .split(',')
      .map((coding) => coding.trim());
    return codings.at(-1) === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  if (length === undefined) return { kind: 'close' };
  // A repeated field ("5, 5") is one length said twice; two different ones are an error.
  const values = new Set(length.split(',').map((value) => value.trim()));
  const [only] = values;
  if (values.size !== 1 || only === undefined || !DIGITS.test(only))
    throw new Http1ParseError(
      'HPE_INVALID_CONTENT_LENGTH',
      `Content-Length ${JSON.stringify(length)} is not one length`,
    );
  return { kind: 'length', bytes: Number(only) };
}

/** Whether the connection may carry another request after this answer. */
export function keepsAlive(head: Http1Head): boolean {
  const tokens = (head.headers.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((token) => token.trim());
  if (tokens.includes('close')) return false;
  return head.version === '1.1' || tokens.includes('keep-alive');
}

/** The server's idle timeout from `Keep-Alive: timeout=N`, in ms, if it names one. */
export function keepAliveTimeoutMs(head: Http1Head): number | undefined {
  const match = /(?:^|[,\s])timeout=(\d{1,6})\b/i.exec(head.headers['keep-alive'] ?? '');
  return match === null ? undefined : Number(match[1]) * 1000;
}

/*
 * The HTTP/1.1 client of `@liverestore/format/internal` (Http1Client over Http1Connection)
 * against real servers on 127.0.0.1 that write hand-made answers, so the framing, the
 * splits across reads and the faults are the test's own. Over 400 lines with a reason: one
 * client, one file (the server helper first, then the tests by topic: bodies into a target,
 * heads, chunked, collect, framing by close, keep-alive and its retry, errors, abort, the
 * pool's limit, https, request checks). No test waits for time to pass or checks that
 * nothing happened: each waits for an event the server or the client shows (a request
 * seen, a connection closed, a cursor moved).
 */
import { getEventListeners, once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { requireTool, selfSignedCertificate, tempDir } from '@liverestore/testkit';
import test, { type ExecutionContext } from 'ava';
import {
  type BodySink,
  Http1Client,
  type Http1ClientOptions,
  type Http1Head,
  type Http1Request,
  MAX_HEAD_BYTES,
} from '../src/internal.js';
import { xorshift32Bytes } from './helpers.js';

const MiB = 1024 * 1024;

/** What the server saw of one request. */
interface SeenRequest {
  /** The server's side of the connection the request came on. */
  readonly socket: Socket;
  /** Which connection: 1 for the first the server accepted. */
  readonly connection: number;
  /** The request line and fields, without the empty line. */
  readonly head: string;
}

/** Answers a request with any bytes at any time; `n` counts the server's requests from 0. */
type Answerer = (request: SeenRequest, n: number) => void | Promise<void>;

interface Deferred {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** A server on 127.0.0.1 (plain or TLS) that cuts requests out of what arrives and lets `answer` write raw bytes. */
class RawServer {
  readonly requests: SeenRequest[] = [];
  /** TCP connections accepted so far, open now, most open at once. */
  accepted = 0;
  open = 0;
  maxOpen = 0;
  /** Bytes received on each connection (index: connection - 1). */
  readonly bytesReceived: number[] = [];
  readonly #closed = new Map<number, Deferred>();
  readonly #requestWaits: { count: number; resolve: () => void }[] = [];
  readonly #sockets = new Set<Socket>();

  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  /** Listens on a free port until the test ends; `tls` makes it an https: server. */
  static async start(t: ExecutionContext, answer: Answerer, tls?: TlsOptions): Promise<RawServer> {
    const server = tls === undefined ? createNetServer() : createTlsServer(tls);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const raw = new RawServer(server, `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`);
    // Connections are counted as TCP ones (a TLS handshake may never finish); a TLS
    // connection's plaintext is found by the client's port.
    const byPort = new Map<number, number>();
    server.on('connection', (socket: Socket) => {
      const connection = raw.#accept(socket);
      if (tls === undefined) raw.#read(socket, connection, answer);
      else byPort.set(socket.remotePort!, connection);
    });
    server.on('secureConnection', (socket: Socket) =>
      raw.#read(socket, byPort.get(socket.remotePort!)!, answer),
    );
    server.on('tlsClientError', () => {});
    t.teardown(() => {
      for (const socket of raw.#sockets) socket.destroy();
      server.close();
    });
    return raw;
  }

  /** Resolves once the server has seen `count` requests in all. */
  requestsSeen(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#requestWaits.push({ count, resolve }));
  }

  /** Resolves once connection `connection` (1 = the first) has closed. */
  closed(connection: number): Promise<void> {
    return this.#closedOf(connection).promise;
  }

  #closedOf(connection: number): Deferred {
    let closed = this.#closed.get(connection);
    if (closed === undefined) {
      closed = deferred();
      this.#closed.set(connection, closed);
    }
    return closed;
  }

  #accept(socket: Socket): number {
    const connection = ++this.accepted;
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    this.bytesReceived.push(0);
    this.#sockets.add(socket);
    // Small writes go out as they are made (no Nagle wait for the client's delayed ACK), so they arrive apart.
    socket.setNoDelay(true);
    // A client that resets the connection is part of some tests.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.open--;
      this.#sockets.delete(socket);
      this.#closedOf(connection).resolve();
    });
    return connection;
  }

  /** Cuts requests out of what arrives on `socket` (plain, or a TLS connection's plaintext) and answers them. */
  #read(socket: Socket, connection: number, answer: Answerer): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    let unparsed = '';
    socket.on('data', (data: Buffer) => {
      this.bytesReceived[connection - 1]! += data.byteLength;
      unparsed += data.toString('latin1');
      for (let end = unparsed.indexOf('\r\n\r\n'); end >= 0; end = unparsed.indexOf('\r\n\r\n')) {
        const request = { socket, connection, head: unparsed.slice(0, end) };
        unparsed = unparsed.slice(end + 4);
        const n = this.requests.push(request) - 1;
        void answer(request, n);
        for (const wait of this.#requestWaits.filter((w) => w.count <= this.requests.length)) wait.resolve();
      }
    });
  }
}

/** An answer's bytes: `head` (status line and fields, CRLF between) and then `body`. */
function answerBytes(head: string, body: Uint8Array = new Uint8Array()): Buffer {
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]);
}

/** `200 OK` with a Content-Length `body` (and more fields, if given). */
function ok(body: Uint8Array, ...fields: string[]): Buffer {
  return answerBytes(['HTTP/1.1 200 OK', `Content-Length: ${body.byteLength}`, ...fields].join('\r\n'), body);
}

/** Writes `bytes` in pieces of `pieceBytes`, letting the event loop turn between them (so the client reads them apart). */
async function writeInPieces(socket: Socket, bytes: Uint8Array, pieceBytes: number): Promise<void> {
  for (let at = 0; at < bytes.byteLength && !socket.destroyed; at += pieceBytes) {
    socket.write(bytes.subarray(at, at + pieceBytes));
    await tick();
    await tick();
  }
}

/** `body` in the chunked coding: one chunk per size in `chunkBytes` (repeated), an extension on each, and trailer fields. */
function chunked(body: Uint8Array, chunkBytes: readonly number[], trailers: readonly string[] = []): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < body.byteLength; i++) {
    const size = Math.min(chunkBytes[i % chunkBytes.length]!, body.byteLength - at);
    const extension = i % 2 === 0 ? `;n=${i}` : ` ; name="a value"`;
    parts.push(Buffer.from(`${size.toString(16)}${extension}\r\n`, 'latin1'));
    parts.push(Buffer.from(body.subarray(at, at + size)), Buffer.from('\r\n', 'latin1'));
    at += size;
  }
  parts.push(Buffer.from(`0\r\n${trailers.map((field) => `${field}\r\n`).join('')}\r\n`, 'latin1'));
  return Buffer.concat(parts);
}

/** Test bytes that hold CR, LF and CRLFCRLF, so a body mistaken for framing shows. */
function bodyBytes(length: number, seed: number): Buffer {
  const bytes = xorshift32Bytes(length, seed);
  if (length >= 8) bytes.write('\r\n\r\n0\r\n', length >> 1, 'latin1');
  return bytes;
}

/** The error an `into` sink's `bad` makes, so a test can tell it from every other. */
class BadBody extends Error {}

type IntoSink = Extract<BodySink, { kind: 'into' }>;

function intoSink(target: Uint8Array, start = 0): IntoSink {
  return { kind: 'into', target, cursor: { start }, bad: (why) => new BadBody(why) };
}

/**
 * Kept idle longer than ava's timeout: a test waiting for the client to close a connection
 * fails unless the behaviour under test closes it (not the default 4 s idle timer).
 */
const LONG_IDLE_MS = 10 * 60_000;

/** A client of `server` closed when the test ends. */
function clientOf(
  t: ExecutionContext,
  server: RawServer,
  options: Partial<Http1ClientOptions> = {},
): Http1Client {
  const client = new Http1Client(server.url, { connections: 1, idleTimeoutMs: LONG_IDLE_MS, ...options });
  t.teardown(() => client.close());
  return client;
}

/** GET / into `sink`; the heads `onHead` saw are pushed to `heads`. */
function get(
  client: Http1Client,
  sink: BodySink,
  more: Partial<Http1Request> & { heads?: Http1Head[] } = {},
): ReturnType<Http1Client['request']> {
  const { heads, ...request } = more;
  return client.request({
    method: 'GET',
    path: '/',
    headers: {},
    onHead: (head) => {
      heads?.push(head);
      return sink;
    },
    ...request,
  });
}

/** Checks that `sink` holds `body` from `start`, its cursor at the end. */
function assertFilled(t: ExecutionContext, sink: IntoSink, body: Uint8Array, start = 0): void {
  t.is(sink.cursor.start, sink.target.byteLength);
  t.true(Buffer.from(body).equals(sink.target.subarray(start)), 'the body, byte for byte');
}

// --- Content-Length bodies into a target ---

const intoPieces = test.macro(async (t, bodyLength: number, pieceBytes: number | 'one write') => {
  const body = bodyBytes(bodyLength, bodyLength);
  const server = await RawServer.start(t, ({ socket }) => {
    const bytes = ok(body, 'X-Test: pieces');
    return pieceBytes === 'one write' ? void socket.write(bytes) : writeInPieces(socket, bytes, pieceBytes);
  });
  const client = clientOf(t, server);
  const sink = intoSink(new Uint8Array(bodyLength));
  const heads: Http1Head[] = [];
  const answer = await get(client, sink, { heads });
  assertFilled(t, sink, body);
  t.is(answer.collected, undefined);
  t.deepEqual(heads, [
    { status: 200, version: '1.1', headers: { 'content-length': String(bodyLength), 'x-test': 'pieces' } },
  ]);
  t.is(answer.head, heads[0]!);
  t.true(server.requests[0]!.head.startsWith('GET / HTTP/1.1\r\n'));
  t.regex(
    server.requests[0]!.head,
    new RegExp(`\r\nhost: 127\\.0\\.0\\.1:${new URL(server.url).port}(\r\n|$)`),
  );
});

test('a Content-Length body goes into the target, head and body in one write', intoPieces, 3000, 'one write');
test('a Content-Length body goes into the target, written a byte at a time', intoPieces, 300, 1);
test('a Content-Length body goes into the target, written in 7-byte pieces', intoPieces, 3000, 7);
test('a Content-Length body goes into the target, written in 1000-byte pieces', intoPieces, 200_000, 1000);
test('a body of several MiB goes into the target', intoPieces, 9 * MiB, 'one write');

test('a large body of known length is read by the kernel straight into the target, not through the scratch buffer', async (t) => {
  const body = bodyBytes(8 * MiB, 21);
  const server = await RawServer.start(t, ({ socket }) => void socket.write(ok(body)));
  const client = clientOf(t, server);
  const sink = intoSink(new Uint8Array(body.byteLength));
  await get(client, sink);
  assertFilled(t, sink, body);
  const { answers, bodyBytesDirect, bodyBytesCopied } = client.stats;
  t.is(answers, 1);
  t.is(bodyBytesDirect + bodyBytesCopied, body.byteLength);
  // At most the body bytes that came in the head's read (one scratch buffer) are copied.
  t.true(bodyBytesCopied <= 64 * 1024, `${bodyBytesCopied} bytes copied`);
});

test('an into sink fills its target from cursor.start, leaving the bytes before it alone', async (t) => {
  const body = bodyBytes(600, 6);
  const server = await RawServer.start(t, ({ socket }) => void socket.write(ok(body)));
  const target = new Uint8Array(1000).fill(0xee);
  const sink = intoSink(target, 400);
  await get(clientOf(t, server), sink);
  assertFilled(t, sink, body, 400);
  t.true(target.subarray(0, 400).every((byte) => byte === 0xee));
});

// --- Heads ---

test('a head split across reads at every position of its CRLFCRLF, or byte by byte, is read', async (t) => {
  const body = bodyBytes(500, 2);
  const answer = ok(body);
  const headEnd = answer.indexOf('\r\n\r\n') + 4;
  const splits = [headEnd - 4, headEnd - 3, headEnd - 2, headEnd - 1, headEnd];
  const server = await RawServer.start(t, async ({ socket }, n) => {
    const split = splits[n];
    if (split === undefined) return writeInPieces(socket, answer, 1);
    socket.write(answer.subarray(0, split));
    await tick();
    await tick();
    socket.write(answer.subarray(split));
  });
  const client = clientOf(t, server);
  for (let n = 0; n <= splits.length; n++) {
    const sink = intoSink(new Uint8Array(body.byteLength));
    const { head } = await get(client, sink);
    t.is(head.status, 200);
    assertFilled(t, sink, body);
  }
  t.is(server.accepted, 1, 'every answer left the connection for the next request');
});

test('interim answers (100 Continue, 103 Early Hints) before the real one are passed over', async (t) => {
  const body = bodyBytes(100, 3);
  const server = await RawServer.start(t, async ({ socket }) => {
    socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    await tick();
    socket.write(
      Buffer.concat([answerBytes('HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload'), ok(body)]),
    );
  });
  const sink = intoSink(new Uint8Array(body.byteLength));
  const heads: Http1Head[] = [];
  await get(clientOf(t, server), sink, { heads });
  t.deepEqual(
    heads.map((head) => head.status),
    [200],
  );
  assertFilled(t, sink, body);
});

test('HEAD and 204/304 answers have no body whatever their Content-Length; the connection goes on', async (t) => {
  const answers = [
    'HTTP/1.1 200 OK\r\nContent-Length: 5000',
    'HTTP/1.1 204 No Content',
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 12',
  ];
  const server = await RawServer.start(t, ({ socket }, n) => void socket.write(answerBytes(answers[n]!)));
  const client = clientOf(t, server);
  const sink = intoSink(new Uint8Array(0));
  const answer = await client.request({ method: 'HEAD', path: '/x', headers: {}, onHead: () => sink });
  t.is(answer.head.headers['content-length'], '5000');
  t.true(server.requests[0]!.head.startsWith('HEAD /x HTTP/1.1\r\n'));
  t.deepEqual((await get(client, { kind: 'collect', maxBytes: 10 })).collected, new Uint8Array(0));
  t.is((await get(client, { kind: 'collect', maxBytes: 10 })).head.status, 304);
  t.is(server.accepted, 1);
});

// --- Chunked bodies ---

const chunkedBody = test.macro(async (t, sinkKind: 'into' | 'collect', pieceBytes: number | 'one write') => {
  const body = bodyBytes(pieceBytes === 1 ? 300 : 70_000, 7);
  const bytes = answerBytes(
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked',
    chunked(body, [1, 17, 0x1000, 5], ['X-Checksum: abc', 'X-Other: two']),
  );
  const server = await RawServer.start(t, ({ socket }) =>
    pieceBytes === 'one write' ? void socket.write(bytes) : writeInPieces(socket, bytes, pieceBytes),
  );
  const client = clientOf(t, server);
  for (let round = 0; round < 2; round++) {
    if (sinkKind === 'into') {
      const sink = intoSink(new Uint8Array(body.byteLength));
      await get(client, sink);
      assertFilled(t, sink, body);
    } else {
      const { collected } = await get(client, { kind: 'collect', maxBytes: body.byteLength });
      t.true(Buffer.from(body).equals(collected!));
    }
  }
  t.is(server.accepted, 1, 'the trailers ended the body; the connection was reused');
});

test(
  'a chunked body with extensions and trailers, into a target, in one write',
  chunkedBody,
  'into',
  'one write',
);
test('a chunked body into a target, every framing line split across reads', chunkedBody, 'into', 1);
test('a chunked body collected, in 3-byte pieces', chunkedBody, 'collect', 3);
test('a chunked body collected, in one write', chunkedBody, 'collect', 'one write');

const badChunked = test.macro(async (t, chunks: string, code: string) => {
  const server = await RawServer.start(t, ({ socket }) => {
    socket.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}`);
  });
  await t.throwsAsync(get(clientOf(t, server), { kind: 'collect', maxBytes: 100 }), { code });
  await server.closed(1);
});

test(
  'a chunk size that is not hex fails with HPE_INVALID_CHUNK_SIZE',
  badChunked,
  '5\r\nhello\r\nzz\r\n',
  'HPE_INVALID_CHUNK_SIZE',
);
test(
  'a chunk longer than its size fails with HPE_STRICT',
  badChunked,
  '5\r\nhello!\r\n0\r\n\r\n',
  'HPE_STRICT',
);
test(
  'a framing line over 4 KiB fails with HPE_CHUNK_EXTENSIONS_OVERFLOW',
  badChunked,
  `5;${'x'.repeat(5000)}`,
  'HPE_CHUNK_EXTENSIONS_OVERFLOW',
);

// --- Collected bodies ---

test('collect: a body over maxBytes fails with tooLarge(); one of exactly maxBytes is whole', async (t) => {
  const body = bodyBytes(1000, 8);
  const server = await RawServer.start(t, ({ socket }, n) => {
    socket.write(
      n === 1 ? answerBytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', chunked(body, [300])) : ok(body),
    );
  });
  const client = clientOf(t, server);
  const tooLarge = new Error('too large');
  const sink: BodySink = { kind: 'collect', maxBytes: 999, tooLarge: () => tooLarge };
  t.is(await t.throwsAsync(get(client, sink)), tooLarge);
  t.is(await t.throwsAsync(get(client, sink)), tooLarge, 'chunked');
  const { collected } = await get(client, { kind: 'collect', maxBytes: 1000, tooLarge: () => tooLarge });
  t.true(body.equals(collected!));
});

test('collect without tooLarge: the body is cut at maxBytes and the connection is not reused', async (t) => {
  const body = bodyBytes(1000, 9);
  const server = await RawServer.start(t, ({ socket }, n) => {
    socket.write(
      n === 1 ? answerBytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', chunked(body, [60])) : ok(body),
    );
  });
  const client = clientOf(t, server);
  // Content-Length, then chunked: each cut, each connection let go.
  for (const maxBytes of [100, 150]) {
    const { collected } = await get(client, { kind: 'collect', maxBytes });
    t.true(body.subarray(0, maxBytes).equals(collected!), `cut at ${maxBytes}`);
  }
  t.is(server.accepted, 2);
  await Promise.all([server.closed(1), server.closed(2)]);
  // A whole body leaves its connection for the next request.
  for (let n = 0; n < 2; n++) {
    const { collected } = await get(client, { kind: 'collect', maxBytes: 1000 });
    t.true(body.equals(collected!));
  }
  t.is(server.accepted, 3);
});

// --- Bodies framed by the connection's end ---

test('a body without Content-Length ends with the connection (HTTP/1.0 and 1.1), collected or into', async (t) => {
  const body = bodyBytes(5000, 10);
  const heads = ['HTTP/1.0 200 OK', 'HTTP/1.1 200 OK\r\nConnection: keep-alive'];
  const server = await RawServer.start(t, async ({ socket }, n) => {
    await writeInPieces(socket, answerBytes(heads[n % 2]!, body), 1000);
    socket.end();
  });
  const client = clientOf(t, server);
  const { collected } = await get(client, { kind: 'collect', maxBytes: MiB });
  t.true(body.equals(collected!));
  const sink = intoSink(new Uint8Array(body.byteLength));
  await get(client, sink);
  assertFilled(t, sink, body);
  t.is(server.accepted, 2);
  // Framed by the close, a body that is not the target's size is the sink's error.
  await t.throwsAsync(get(client, intoSink(new Uint8Array(body.byteLength + 1))), { instanceOf: BadBody });
  await t.throwsAsync(get(client, intoSink(new Uint8Array(body.byteLength - 1))), { instanceOf: BadBody });
});

test('HTTP/1.0 keeps the connection only with Connection: keep-alive', async (t) => {
  const body = Buffer.from('abc');
  const answers = [
    ok(body, 'Connection: keep-alive').toString('latin1').replace('HTTP/1.1', 'HTTP/1.0'),
    ok(body).toString('latin1').replace('HTTP/1.1', 'HTTP/1.0'),
  ];
  const server = await RawServer.start(t, ({ socket }, n) => void socket.write(answers[Math.min(n, 1)]!));
  const client = clientOf(t, server);
  for (let n = 0; n < 3; n++) await get(client, intoSink(new Uint8Array(3)));
  // Kept after the keep-alive answer, let go after the plain one.
  t.deepEqual(
    server.requests.map((request) => request.connection),
    [1, 1, 2],
  );
});

// --- Keep-alive ---

test('keep-alive: sequential requests share one connection; Connection: close is not reused', async (t) => {
  const body = Buffer.from('hello');
  const server = await RawServer.start(
    t,
    ({ socket }, n) => void socket.write(n === 1 ? ok(body, 'Connection: close') : ok(body)),
  );
  const client = clientOf(t, server);
  for (let n = 0; n < 3; n++) await get(client, intoSink(new Uint8Array(5)));
  // The server never closes: the client let the connection go after Connection: close.
  t.deepEqual(
    server.requests.map((request) => request.connection),
    [1, 1, 2],
  );
});

test('keep-alive: Keep-Alive: timeout=1 leaves no time to reuse the connection', async (t) => {
  const server = await RawServer.start(
    t,
    ({ socket }) => void socket.write(ok(Buffer.from('x'), 'Keep-Alive: timeout=1')),
  );
  const client = clientOf(t, server);
  await get(client, intoSink(new Uint8Array(1)));
  await get(client, intoSink(new Uint8Array(1)));
  t.is(server.accepted, 2);
  await server.closed(1);
});

test('keep-alive: an idle connection is closed after idleTimeoutMs, the next request opens another', async (t) => {
  const server = await RawServer.start(
    t,
    ({ socket }) => void socket.write(ok(Buffer.from('x'), 'Keep-Alive: timeout=60')),
  );
  const client = clientOf(t, server, { idleTimeoutMs: 1 });
  await get(client, intoSink(new Uint8Array(1)));
  await server.closed(1);
  await get(client, intoSink(new Uint8Array(1)));
  t.is(server.accepted, 2);
});

test('a server that closes an idle kept-alive connection as the next request comes: it is sent again on a fresh one', async (t) => {
  const body = bodyBytes(2000, 11);
  const server = await RawServer.start(t, ({ socket }, n) => {
    if (n === 1)
      socket.destroy(); // the second request, on the first connection: never answered
    else socket.write(ok(body));
  });
  const client = clientOf(t, server);
  await get(client, intoSink(new Uint8Array(body.byteLength)));
  const sink = intoSink(new Uint8Array(body.byteLength));
  await get(client, sink);
  assertFilled(t, sink, body);
  t.deepEqual(
    server.requests.map((request) => request.connection),
    [1, 1, 2],
  );
});

test('a server that closes right after a keep-alive answer: the next request still succeeds', async (t) => {
  const server = await RawServer.start(t, ({ socket }) => {
    socket.end(ok(Buffer.from('abc')));
  });
  const client = clientOf(t, server);
  for (let n = 1; n <= 3; n++) {
    const { collected } = await get(client, { kind: 'collect', maxBytes: 10 });
    t.is(Buffer.from(collected!).toString(), 'abc');
    t.is(server.accepted, n);
  }
});

const cutOnReuse = test.macro(async (t, answeredBytes: number) => {
  const body = bodyBytes(2000, 12);
  const answer = ok(body);
  const server = await RawServer.start(t, ({ socket }, n) => {
    if (n === 0) socket.write(answer);
    else socket.end(answer.subarray(0, answeredBytes));
  });
  const client = clientOf(t, server);
  await get(client, intoSink(new Uint8Array(body.byteLength)));
  const sink = intoSink(new Uint8Array(body.byteLength));
  const err = await t.throwsAsync(get(client, sink), { code: 'ECONNRESET' });
  t.false(err instanceof BadBody);
  t.is(sink.cursor.start, Math.max(0, answeredBytes - (answer.byteLength - body.byteLength)));
  t.is(server.accepted, 1, 'not sent again');
  t.is(server.requests.length, 2);
});

test('a reused connection cut mid-body is not retried; the cursor tells how far it got', cutOnReuse, 1500);
test('a reused connection cut mid-head is not retried', cutOnReuse, 10);

test('a fresh connection closed before any answer byte is not retried', async (t) => {
  const server = await RawServer.start(t, ({ socket }) => void socket.destroy());
  await t.throwsAsync(get(clientOf(t, server), { kind: 'collect', maxBytes: 10 }), { code: 'ECONNRESET' });
  t.is(server.accepted, 1);
});

const unasked = test.macro(
  async (t, when: 'with the answer' | 'after the answer was read', over: 'tcp' | 'tls' = 'tcp') => {
    if (over === 'tls' && !requireTool(t, 'openssl', process.env, ['version'])) return;
    const answer: Answerer = async ({ socket }, n) => {
      const answer = ok(Buffer.from('abc'));
      const more = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz', 'latin1');
      if (n > 0) socket.write(answer);
      else if (when === 'with the answer') socket.write(Buffer.concat([answer, more]));
      else {
        socket.write(answer);
        await tick();
        await tick();
        socket.write(more);
      }
    };
    let client: Http1Client;
    let server: RawServer;
    if (over === 'tcp') {
      server = await RawServer.start(t, answer);
      client = clientOf(t, server);
    } else {
      const secure = await tlsServer(t, answer);
      server = secure.server;
      client = clientOf(t, server, { tls: { options: { ca: secure.cert } } });
    }
    await get(client, intoSink(new Uint8Array(3)));
    await server.closed(1);
    const sink = intoSink(new Uint8Array(3));
    await get(client, sink);
    t.is(Buffer.from(sink.target).toString(), 'abc');
    t.is(server.accepted, 2);
  },
);

test(
  'bytes the server sends unasked, with the answer: the client drops the connection, the next request works',
  unasked,
  'with the answer',
);
test(
  'bytes the server sends unasked, on the idle connection: the client drops it, the next request works',
  unasked,
  'after the answer was read',
);
test(
  'https: bytes the server sends unasked in the answer’s record: the client drops the connection, the next request works',
  unasked,
  'with the answer',
  'tls',
);

test('a refused connection fails the request with ECONNREFUSED and frees its place in the pool', async (t) => {
  const closed = createNetServer().listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const { port } = closed.address() as { port: number };
  closed.close();
  await once(closed, 'close');
  const client = new Http1Client(`http://127.0.0.1:${port}`, { connections: 1 });
  t.teardown(() => client.close());
  for (let n = 0; n < 3; n++)
    await t.throwsAsync(get(client, { kind: 'collect', maxBytes: 1 }), { code: 'ECONNREFUSED' });
});

// --- Answers that fail ---

test('a Content-Length other than the target room, or a body where none was expected, fails with the sink’s bad()', async (t) => {
  const answers = [
    ok(bodyBytes(12, 1)),
    answerBytes('HTTP/1.1 204 No Content'),
    ok(bodyBytes(8, 1)),
    answerBytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', chunked(bodyBytes(12, 1), [5])),
    answerBytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', chunked(bodyBytes(8, 1), [5])),
  ];
  const server = await RawServer.start(t, ({ socket }, n) => void socket.write(answers[n]!));
  const client = clientOf(t, server);
  await t.throwsAsync(get(client, intoSink(new Uint8Array(10))), {
    instanceOf: BadBody,
    message: 'its Content-Length is 12 bytes, 10 were expected',
  });
  await t.throwsAsync(get(client, intoSink(new Uint8Array(10))), { instanceOf: BadBody });
  await t.throwsAsync(get(client, intoSink(new Uint8Array(10), 1)), {
    instanceOf: BadBody,
    message: /8 bytes, 9/,
  });
  await t.throwsAsync(get(client, intoSink(new Uint8Array(10))), { instanceOf: BadBody, message: /longer/ });
  await t.throwsAsync(get(client, intoSink(new Uint8Array(10))), {
    instanceOf: BadBody,
    message: 'the body ended at byte 8 of the 10 expected',
  });
});

test('a body shorter than its Content-Length, then the close: ECONNRESET, the cursor where it stopped', async (t) => {
  const body = bodyBytes(3000, 13);
  const server = await RawServer.start(t, ({ socket }) => {
    socket.end(ok(body).subarray(0, -1000));
  });
  const sink = intoSink(new Uint8Array(3000));
  await t.throwsAsync(get(clientOf(t, server), sink), { code: 'ECONNRESET' });
  t.is(sink.cursor.start, 2000);
  t.true(body.subarray(0, 2000).equals(sink.target.subarray(0, 2000)));
});

const badHead = test.macro(async (t, head: string, code: string) => {
  const server = await RawServer.start(t, ({ socket }) => void socket.write(`${head}\r\n\r\nbody`));
  await t.throwsAsync(get(clientOf(t, server), { kind: 'collect', maxBytes: 100 }), { code });
  await server.closed(1);
});

test(
  'Content-Length and Transfer-Encoding both',
  badHead,
  'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked',
  'HPE_UNEXPECTED_CONTENT_LENGTH',
);
test(
  'two different Content-Lengths',
  badHead,
  'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5',
  'HPE_INVALID_CONTENT_LENGTH',
);
test(
  'a Content-Length that is not a number',
  badHead,
  'HTTP/1.1 200 OK\r\nContent-Length: 4x',
  'HPE_INVALID_CONTENT_LENGTH',
);
test('a garbage status line', badHead, 'HTTP/1.1 OK 200\r\nContent-Length: 4', 'HPE_INVALID_STATUS');
test('not HTTP at all', badHead, 'SSH-2.0-OpenSSH_9.6', 'HPE_INVALID_STATUS');
test(
  '101 Switching Protocols, unasked',
  badHead,
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket',
  'HPE_INVALID_STATUS',
);
test(
  'a folded header line',
  badHead,
  'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n  folded',
  'HPE_INVALID_HEADER_TOKEN',
);
test(
  'a head over 32 KiB that ends in the same read',
  badHead,
  `HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Big: ${'a'.repeat(MAX_HEAD_BYTES)}`,
  'HPE_HEADER_OVERFLOW',
);

test('a head over 32 KiB that never ends fails with HPE_HEADER_OVERFLOW', async (t) => {
  const server = await RawServer.start(t, ({ socket }) => {
    socket.write(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(40 * 1024)}`);
  });
  await t.throwsAsync(get(clientOf(t, server), { kind: 'collect', maxBytes: 100 }), {
    code: 'HPE_HEADER_OVERFLOW',
  });
});

test('a head of exactly 32 KiB (with its empty line) is read, one byte more is not, however it is split', async (t) => {
  const head = (bytes: number) => {
    const start = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: ';
    return Buffer.from(`${start}${'p'.repeat(bytes - start.length - 4)}\r\n\r\nok`, 'latin1');
  };
  const answers = [head(MAX_HEAD_BYTES), head(MAX_HEAD_BYTES + 1)];
  const server = await RawServer.start(t, ({ socket }, n) =>
    writeInPieces(socket, answers[n % 2]!, n < 2 ? 1 << 20 : 5000),
  );
  const client = clientOf(t, server);
  for (let round = 0; round < 2; round++) {
    const { collected } = await get(client, { kind: 'collect', maxBytes: 2 });
    t.is(Buffer.from(collected!).toString(), 'ok');
    await t.throwsAsync(get(client, { kind: 'collect', maxBytes: 2 }), { code: 'HPE_HEADER_OVERFLOW' });
  }
});

test('onHead throwing fails the request with its error', async (t) => {
  const server = await RawServer.start(t, ({ socket }) => void socket.write(ok(Buffer.from('abc'))));
  const refused = new Error('not this one');
  const request = get(
    clientOf(t, server),
    { kind: 'collect', maxBytes: 10 },
    {
      onHead: () => {
        throw refused;
      },
    },
  );
  t.is(await t.throwsAsync(request), refused);
});

// --- Abort ---

test('abort while waiting for the head: rejects with the signal’s reason; the pool recovers', async (t) => {
  const server = await RawServer.start(t, ({ socket }, n) => {
    if (n > 0) socket.write(ok(Buffer.from('abc')));
  });
  const client = clientOf(t, server);
  const controller = new AbortController();
  const pending = get(client, { kind: 'collect', maxBytes: 10 }, { signal: controller.signal });
  await server.requestsSeen(1);
  controller.abort();
  t.is<unknown, unknown>(await t.throwsAsync(pending, { any: true }), controller.signal.reason);
  await server.closed(1);
  t.is(Buffer.from((await get(client, { kind: 'collect', maxBytes: 10 })).collected!).toString(), 'abc');
});

test('abort mid-body: rejects with the signal’s reason, the cursor where the body stopped; the pool recovers', async (t) => {
  const body = bodyBytes(100_000, 14);
  const server = await RawServer.start(t, ({ socket }, n) => {
    socket.write(n === 0 ? ok(body).subarray(0, -90_000) : ok(body));
  });
  const client = clientOf(t, server);
  const controller = new AbortController();
  const sink = intoSink(new Uint8Array(body.byteLength));
  const pending = get(client, sink, { signal: controller.signal });
  while (sink.cursor.start < 10_000) await tick();
  const reason = new Error('no longer wanted');
  controller.abort(reason);
  t.is(await t.throwsAsync(pending), reason);
  t.is(sink.cursor.start, 10_000);
  await server.closed(1);
  const again = intoSink(new Uint8Array(body.byteLength));
  await get(client, again);
  assertFilled(t, again, body);
});

test('abort while waiting for a pooled connection: rejects with the reason, takes no connection', async (t) => {
  const answerFirst = deferred();
  const server = await RawServer.start(t, async ({ socket }, n) => {
    if (n === 0) await answerFirst.promise;
    socket.write(ok(Buffer.from(`answer ${n}`)));
  });
  const client = clientOf(t, server);
  const first = get(client, { kind: 'collect', maxBytes: 100 });
  await server.requestsSeen(1);
  const controller = new AbortController();
  const queued = get(client, { kind: 'collect', maxBytes: 100 }, { signal: controller.signal });
  controller.abort('a reason that is not an Error');
  t.is<unknown, unknown>(await t.throwsAsync(queued, { any: true }), 'a reason that is not an Error');
  answerFirst.resolve();
  t.is(Buffer.from((await first).collected!).toString(), 'answer 0');
  t.is(
    Buffer.from((await get(client, { kind: 'collect', maxBytes: 100 })).collected!).toString(),
    'answer 1',
  );
  t.is(server.accepted, 1);
});

test('an abort reason that is not an Error is the rejection as it is', async (t) => {
  const server = await RawServer.start(t, () => {});
  const controller = new AbortController();
  const pending = get(clientOf(t, server), { kind: 'collect', maxBytes: 10 }, { signal: controller.signal });
  await server.requestsSeen(1);
  controller.abort('stop');
  t.is<unknown, unknown>(await t.throwsAsync(pending, { any: true }), 'stop');
});

// --- The pool ---

test('connections: at most N open with N+3 requests at once; all are answered', async (t) => {
  const server = await RawServer.start(
    t,
    ({ socket }, n) => void socket.write(ok(Buffer.from(`answer ${n}`))),
  );
  const client = clientOf(t, server, { connections: 2 });
  const answers = await Promise.all(
    Array.from({ length: 5 }, () => get(client, { kind: 'collect', maxBytes: 100 })),
  );
  t.deepEqual(answers.map(({ collected }) => Buffer.from(collected!).toString()).sort(), [
    'answer 0',
    'answer 1',
    'answer 2',
    'answer 3',
    'answer 4',
  ]);
  t.is(server.maxOpen, 2);
  t.is(server.accepted, 2);
});

test('one signal over many requests (connecting, waiting, answered) keeps no abort listener', async (t) => {
  const server = await RawServer.start(
    t,
    ({ socket }, n) => void socket.write(ok(Buffer.from(`answer ${n}`))),
  );
  const client = clientOf(t, server, { connections: 2 });
  const { signal } = new AbortController();
  const sink: BodySink = { kind: 'collect', maxBytes: 100 };
  await Promise.all(Array.from({ length: 6 }, () => get(client, sink, { signal })));
  await get(client, sink, { signal });
  t.is(getEventListeners(signal, 'abort').length, 0);
  t.is(server.requests.length, 7);
});

test('options: an origin that is not http: or https:, a connection count that is not a whole number ≥ 1', (t) => {
  t.throws(() => new Http1Client('ftp://127.0.0.1/', { connections: 1 }), { instanceOf: TypeError });
  for (const connections of [0, 1.5, Number.NaN])
    t.throws(() => new Http1Client('http://127.0.0.1/', { connections }), { instanceOf: RangeError });
});

test('close(reason): every connection ends, busy ones too; requests in flight, waiting and later fail with the reason', async (t) => {
  const server = await RawServer.start(t, () => undefined);
  const client = clientOf(t, server);
  const inFlight = get(client, { kind: 'collect', maxBytes: 10 });
  await server.requestsSeen(1);
  const waiting = get(client, { kind: 'collect', maxBytes: 10 });
  const reason = new Error('shutting down');
  client.close(reason);
  t.is(await t.throwsAsync(inFlight), reason);
  t.is(await t.throwsAsync(waiting), reason);
  await server.closed(1);
  t.is(await t.throwsAsync(get(client, { kind: 'collect', maxBytes: 10 })), reason);
});

// --- Requests the client refuses to send ---

test('a header value that could split the request, a bad header name or path: TypeError, nothing sent, the pool unharmed', async (t) => {
  const server = await RawServer.start(t, ({ socket }) => void socket.write(ok(Buffer.from('abc'))));
  const client = clientOf(t, server);
  const sink: BodySink = { kind: 'collect', maxBytes: 10 };
  const refused: Partial<Http1Request>[] = [
    { headers: { 'x-note': 'a\r\nx-injected: 1' } },
    { headers: { 'x-note': 'a\nx-injected: 1' } },
    // Sent as latin1, U+010D U+010A would be the bytes CR LF.
    { headers: { 'x-note': 'a\u010d\u010ax-injected: 1' } },
    { headers: { 'x-note': 'a\0' } },
    { headers: { 'x note': 'a' } },
    { path: '/a b' },
    { path: '/a\u010d\u010a' },
  ];
  for (const request of refused) await t.throwsAsync(get(client, sink, request), { instanceOf: TypeError });
  await get(client, sink, { headers: { 'x-note': 'fine\tand caf\u00e9' } });
  t.deepEqual(
    server.requests.map((request) => request.head),
    [`GET / HTTP/1.1\r\nx-note: fine\tand caf\u00e9\r\nhost: ${new URL(server.url).host}`],
  );
  t.is(server.bytesReceived[0], server.requests[0]!.head.length + 4);
});

// --- https ---

/** An https: server with a fresh self-signed certificate for 127.0.0.1, and that certificate. */
async function tlsServer(t: ExecutionContext, answer: Answerer, options: TlsOptions = {}) {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const certificate = await selfSignedCertificate(dir.path);
  const [cert, key] = await Promise.all([readFile(certificate.certPath), readFile(certificate.keyPath)]);
  const server = await RawServer.start(t, answer, { cert, key, ...options });
  return { server, cert, fingerprint: certificate.fingerprint256 };
}

test('https: a trusted certificate; a body of several MiB into a target, then a second on the same connection', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const body = bodyBytes(6 * MiB, 15);
  const { server, cert } = await tlsServer(t, ({ socket }, n) => {
    socket.write(
      n === 0
        ? ok(body)
        : answerBytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked', chunked(body, [65_000])),
    );
  });
  const client = clientOf(t, server, { connections: 1, tls: { options: { ca: cert } } });
  for (let n = 0; n < 2; n++) {
    const sink = intoSink(new Uint8Array(body.byteLength));
    await get(client, sink);
    assertFilled(t, sink, body);
  }
  t.is(server.accepted, 1);
  // TLS plaintext arrives in Buffers: every body byte is copied, none counted as read in place.
  t.deepEqual(client.stats, { answers: 2, bodyBytesDirect: 0, bodyBytesCopied: 2 * body.byteLength });
});

test('https: an untrusted certificate fails before any request is sent', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const { server } = await tlsServer(t, ({ socket }) => void socket.write(ok(Buffer.from('abc'))));
  await t.throwsAsync(get(clientOf(t, server), { kind: 'collect', maxBytes: 10 }), {
    code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  });
  t.is(server.requests.length, 0);
});

test('https: a verify hook that returns an error refuses the connection before any request byte', async (t) => {
  if (!requireTool(t, 'openssl', process.env, ['version'])) return;
  const { server, fingerprint } = await tlsServer(
    t,
    ({ socket }) => void socket.write(ok(Buffer.from('abc'))),
  );
  const pinned = (expected: string) => ({
    options: { rejectUnauthorized: false },
    verify: (socket: TLSSocket) =>
      socket.getPeerCertificate().fingerprint256 === expected
        ? undefined
        : new Error('not the pinned certificate'),
  });
  const wrong = clientOf(t, server, { connections: 1, tls: pinned(`${'00:'.repeat(31)}00`) });
  await t.throwsAsync(get(wrong, { kind: 'collect', maxBytes: 10 }), {
    message: 'not the pinned certificate',
  });
  await server.closed(1);
  t.deepEqual(server.bytesReceived, [0]);
  const right = clientOf(t, server, { connections: 1, tls: pinned(fingerprint) });
  t.is(Buffer.from((await get(right, { kind: 'collect', maxBytes: 10 })).collected!).toString(), 'abc');
});

/** The shared HTTP body rules of `@liverestore/format/internal` (used by the HTTP source and the S3 client). */
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import {
  type BodyPiece,
  type BodyRules,
  Http1Client,
  pieceSink,
  sinkText,
  textSink,
  wholeBodySink,
} from '../src/internal.js';

/** Errors with a kind the test can check, standing in for a package's own error classes. */
class BodyTestError extends Error {
  constructor(
    readonly kind: 'too-large' | 'bad',
    message: string,
    readonly lengthBytes?: number,
  ) {
    super(message);
  }
}

function rules(maxBytes: number): BodyRules {
  return {
    maxBytes,
    tooLarge: (lengthBytes) => new BodyTestError('too-large', `over ${maxBytes}`, lengthBytes),
    bad: (why) => new BodyTestError('bad', why),
  };
}

test('wholeBodySink: a Content-Length body goes into one fresh array of that length', (t) => {
  const sink = wholeBodySink('3', rules(10));
  if (sink.kind !== 'into') return t.fail(sink.kind);
  t.is(sink.target.byteLength, 3);
  t.is(sink.cursor.start, 0);
  t.is(sink.bad('x').message, 'x');
  t.not((wholeBodySink('3', rules(10)) as typeof sink).target, sink.target);
});

test('wholeBodySink: without a Content-Length the body is collected up to maxBytes, failing past it', (t) => {
  for (const length of [undefined, 'chunked', '-1']) {
    const sink = wholeBodySink(length, rules(10));
    if (sink.kind !== 'collect') return t.fail(sink.kind);
    t.is(sink.maxBytes, 10);
    const err = sink.tooLarge?.();
    t.true(err instanceof BodyTestError && err.kind === 'too-large' && err.lengthBytes === undefined);
  }
});

test('wholeBodySink refuses a Content-Length over maxBytes before the body, naming the length', (t) => {
  const err = t.throws(() => wholeBodySink('11', rules(10)));
  t.true(err instanceof BodyTestError && err.kind === 'too-large');
  t.is((err as BodyTestError).lengthBytes, 11);
});

test('pieceSink allocates the blob from the Content-Range and writes from piece.start', (t) => {
  const piece: BodyPiece = { start: 0, blob: undefined };
  const sink = pieceSink('bytes 0-4/5', piece, rules(10));
  if (sink.kind !== 'into') return t.fail(sink.kind);
  t.is(piece.blob?.byteLength, 5);
  t.true(sink.target === piece.blob);
  t.is(sink.cursor, piece);
  piece.start = 2;
  const again = pieceSink('bytes 2-4/5', piece, rules(10));
  t.is((again as typeof sink).target, sink.target);
});

test('pieceSink refuses a Content-Range that is not the rest of the blob, a size change, or a blob over maxBytes', (t) => {
  const at = (start: number, blob?: Uint8Array): BodyPiece => ({ start, blob });
  for (const [range, piece, pattern] of [
    [undefined, at(0), /Content-Range "undefined"/],
    ['bytes 1-4/5', at(0), /Content-Range "bytes 1-4\/5"/],
    ['bytes 0-3/5', at(0), /Content-Range "bytes 0-3\/5"/],
    ['bytes 0-4/*', at(0), /Content-Range "bytes 0-4\/\*"/],
    ['bytes 2-5/6', at(2, new Uint8Array(5)), /size changed between requests \(5 → 6 bytes\)/],
    ['bytes 0-10/11', at(0), /11 bytes, over the limit of 10 bytes/],
  ] as const) {
    const err = t.throws(() => pieceSink(range, piece, rules(10)));
    t.true(err instanceof BodyTestError && err.kind === 'bad');
    t.regex(err?.message ?? '', pattern);
  }
});

test('textSink keeps the first maxBytes; sinkText reads them as UTF-8', (t) => {
  t.deepEqual(textSink(8), { kind: 'collect', maxBytes: 8 });
  t.is(sinkText(new Uint8Array(Buffer.from('héllo'))), 'héllo');
  t.is(sinkText(undefined), '');
});

/** A server whose first answer to a Range request stops after `cutAfter` bytes, then answers in full. */
async function cuttingServer(blob: Buffer, cutAfter: number): Promise<{ url: string; close(): void }> {
  let answers = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (request) => {
      const start = Number(/range: bytes=(\d+)-/i.exec(request.toString('latin1'))?.[1] ?? 0);
      const rest = blob.subarray(start);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\ncontent-length: ${rest.length}\r\ncontent-range: bytes ${start}-${blob.length - 1}/${blob.length}\r\n\r\n`,
      );
      if (answers++ === 0) socket.end(rest.subarray(0, cutAfter));
      else socket.write(rest);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

test('a piece cut mid-body keeps what arrived; the next request asks for the rest and completes the blob', async (t) => {
  const blob = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 251));
  const server = await cuttingServer(blob, 30_000);
  t.teardown(() => server.close());
  const client = new Http1Client(server.url, { connections: 1 });
  t.teardown(() => client.close());
  const piece: BodyPiece = { start: 0, blob: undefined };
  const get = () =>
    client.request({
      method: 'GET',
      path: '/blob',
      headers: { range: `bytes=${piece.start}-` },
      onHead: (head) => pieceSink(head.headers['content-range'], piece, rules(1 << 20)),
    });
  await t.throwsAsync(get(), { code: 'ECONNRESET' } as never);
  t.is(piece.start, 30_000);
  await get();
  t.is(piece.start, blob.length);
  t.true(Buffer.from(piece.blob!).equals(blob));
});

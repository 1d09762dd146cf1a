/** The shared HTTP body reader of `@liverestore/format/internal` (used by the HTTP source and the S3 client). */
import { once } from 'node:events';
import { Readable } from 'node:stream';
import test from 'ava';
import {
  type BodyDrop,
  type BodyRules,
  readBodyPiece,
  readBodyText,
  readWholeBody,
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

function rules(maxBytes: number, drop: BodyDrop = 'destroy-with-error'): BodyRules {
  return {
    maxBytes,
    drop,
    tooLarge: (lengthBytes) => new BodyTestError('too-large', `over ${maxBytes}`, lengthBytes),
    bad: (why) => new BodyTestError('bad', why),
  };
}

/**
 * A body that yields `parts` and then waits (more is "on the wire"), or ends when `end`;
 * destroyed before its end without an error it fails with an abort error, as undici's body does.
 */
function body(parts: readonly number[][], end = true): Readable {
  const stream = new Readable({
    read() {},
    destroy(err, callback) {
      callback(err ?? (this.readableEnded ? null : new Error('aborted')));
    },
  });
  for (const part of parts) stream.push(Buffer.from(part));
  if (end) stream.push(null);
  return stream;
}

test('readWholeBody fills one fresh array of the Content-Length (never a view of a pooled Buffer)', async (t) => {
  const out = await readWholeBody(body([[1, 2], [3]]), '3', rules(10));
  t.deepEqual([...out], [1, 2, 3]);
  t.false(Buffer.isBuffer(out));
  t.is(out.buffer.byteLength, 3);
});

test('readWholeBody without a Content-Length collects the body into one fresh array', async (t) => {
  const out = await readWholeBody(
    body([
      [1, 2],
      [3, 4],
    ]),
    undefined,
    rules(10),
  );
  t.deepEqual([...out], [1, 2, 3, 4]);
  t.is(out.buffer.byteLength, 4);
});

test('readWholeBody refuses a Content-Length over maxBytes before reading, naming the length', async (t) => {
  const stream = body([[1]], false);
  const err = await t.throwsAsync(readWholeBody(stream, '11', rules(10)), { instanceOf: BodyTestError });
  t.is(err?.kind, 'too-large');
  t.is(err?.lengthBytes, 11);
  t.true(stream.destroyed);
});

test('readWholeBody without a Content-Length stops as soon as the body passes maxBytes', async (t) => {
  const stream = body(
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    false,
  );
  const err = await t.throwsAsync(readWholeBody(stream, undefined, rules(4)), { instanceOf: BodyTestError });
  t.is(err?.kind, 'too-large');
  t.is(err?.lengthBytes, undefined);
  t.true(stream.destroyed);
});

test('readWholeBody: a body longer or shorter than its Content-Length is bad', async (t) => {
  const longer = await t.throwsAsync(readWholeBody(body([[1, 2, 3]]), '2', rules(10)));
  t.regex(longer?.message ?? '', /longer than its Content-Length/);
  const shorter = await t.throwsAsync(readWholeBody(body([[1]]), '2', rules(10)));
  t.regex(shorter?.message ?? '', /ended at byte 1 of the 2 its Content-Length names/);
});

test("drop 'destroy-with-error' ends the stream with the error thrown", async (t) => {
  const stream = body([[1, 2, 3]], false);
  const err = await t.throwsAsync(readWholeBody(stream, undefined, rules(2, 'destroy-with-error')));
  t.is(stream.errored, err);
});

test("drop 'discard' destroys the stream without the error and swallows the stream's own abort error", async (t) => {
  const stream = body([[1, 2, 3]], false);
  const err = await t.throwsAsync(readWholeBody(stream, undefined, rules(2, 'discard')));
  if (!stream.closed) await once(stream, 'close');
  t.not(stream.errored, err);
  t.is(stream.errored?.message, 'aborted');
});

test('readBodyPiece fills the blob from piece.start and resumes a cut answer where it stopped', async (t) => {
  const piece: { start: number; blob: Uint8Array | undefined } = { start: 0, blob: undefined };
  const cut = body([[1, 2]], false);
  const first = readBodyPiece(cut, 'bytes 0-4/5', piece, rules(10));
  await new Promise((resolve) => setImmediate(resolve));
  cut.destroy(new Error('connection reset'));
  await t.throwsAsync(first, { message: 'connection reset' });
  t.is(piece.start, 2);
  await readBodyPiece(body([[3, 4, 5]]), 'bytes 2-4/5', piece, rules(10));
  t.is(piece.start, 5);
  t.deepEqual([...(piece.blob ?? [])], [1, 2, 3, 4, 5]);
});

test('readBodyPiece refuses a Content-Range that is not the rest of the blob, a size change, or a blob over maxBytes', async (t) => {
  const at = (start: number, blob?: Uint8Array) => ({ start, blob });
  for (const [range, piece, pattern] of [
    [undefined, at(0), /Content-Range "undefined"/],
    ['bytes 1-4/5', at(0), /Content-Range "bytes 1-4\/5"/],
    ['bytes 0-3/5', at(0), /Content-Range "bytes 0-3\/5"/],
    ['bytes 2-5/6', at(2, new Uint8Array(5)), /size changed between requests \(5 → 6 bytes\)/],
    ['bytes 0-10/11', at(0), /11 bytes, over the limit of 10 bytes/],
  ] as const) {
    const stream = body([[1]], false);
    const err = await t.throwsAsync(readBodyPiece(stream, range, piece, rules(10)));
    t.regex(err?.message ?? '', pattern);
    t.true(stream.destroyed);
  }
});

test('readBodyText keeps the first maxBytes as text and drops the rest', async (t) => {
  const stream = body([[...Buffer.from('hello ')], [...Buffer.from('world')]], false);
  t.is(await readBodyText(stream, 8, 'discard'), 'hello wo');
  t.true(stream.destroyed);
  t.is(await readBodyText(body([[...Buffer.from('short')]]), 8, 'discard'), 'short');
});

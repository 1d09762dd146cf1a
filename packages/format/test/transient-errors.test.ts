import test from 'ava';
import { describeError, isTransientError } from '../src/internal.js';

function coded(code: string, message = 'failed'): Error {
  return Object.assign(new Error(message), { code });
}

test('isTransientError: network codes, HTTP parser errors, causes and AggregateErrors; refusals are permanent', (t) => {
  t.true(isTransientError(coded('ECONNRESET')));
  t.true(isTransientError(coded('HPE_INVALID_CONSTANT')));
  t.true(isTransientError(new Error('wrapped', { cause: coded('ETIMEDOUT') })));
  t.true(isTransientError(new AggregateError([coded('EACCES'), coded('ECONNREFUSED')])));
  t.false(isTransientError(coded('ERR_LR_UNAUTHORIZED')));
  t.false(isTransientError(new Error('no code')));
  t.false(isTransientError(undefined));
});

test("isTransientError: a caller's own codes count too, only for that caller", (t) => {
  const s3 = new Set(['ERR_LR_S3_TRANSIENT']);
  t.true(isTransientError(new Error('x', { cause: coded('ERR_LR_S3_TRANSIENT') }), s3));
  t.false(isTransientError(coded('ERR_LR_S3_TRANSIENT')));
});

test('describeError: the code in front unless the message already says it', (t) => {
  t.is(describeError(coded('ECONNRESET', 'socket hang up')), 'ECONNRESET: socket hang up');
  t.is(describeError(coded('ECONNRESET', 'read ECONNRESET')), 'read ECONNRESET');
  t.is(describeError('plain'), 'plain');
});

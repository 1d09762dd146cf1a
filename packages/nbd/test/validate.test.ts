/*
 * validateRequest, the one check before dispatch: a table of requests against read-only
 * and writable exports, and the same refusals seen by a client on the wire (unknown and
 * misplaced flags were silently ignored before the validator existed).
 */

import { imageBytes } from '@liverestore/testkit';
import anyTest, { type TestFn } from 'ava';
import { type RequestContext, validateRequest } from '../src/validate-request.js';
import * as P from '../src/wire.js';
import { type Fixture, MiB, MiniClient, makeFixture, serve } from './helpers.js';

const test = anyTest as TestFn<{ fixture: Fixture }>;

const SIZE = 10 * MiB;
const readOnly: RequestContext = {
  exportSize: SIZE,
  writable: false,
  structured: true,
  baseAllocation: true,
};
const writable: RequestContext = { ...readOnly, writable: true };
const noContext: RequestContext = { ...writable, baseAllocation: false };

const cases: [string, RequestContext, Partial<P.RequestHeader>, number | undefined][] = [
  [
    'a read within the export',
    readOnly,
    { type: P.NBD_CMD_READ, offset: SIZE - 4096, length: 4096 },
    undefined,
  ],
  ['a read of 0 bytes', readOnly, { type: P.NBD_CMD_READ, offset: 0, length: 0 }, undefined],
  ['a read past the end', readOnly, { type: P.NBD_CMD_READ, offset: SIZE - 10, length: 11 }, P.NBD_EINVAL],
  ['an offset above 2^53', readOnly, { type: P.NBD_CMD_READ, offset: 2 ** 60, length: 1 }, P.NBD_EINVAL],
  [
    'a read over 32 MiB',
    readOnly,
    { type: P.NBD_CMD_READ, offset: 0, length: 32 * MiB + 1 },
    P.NBD_EOVERFLOW,
  ],
  ['an unknown command', readOnly, { type: 77 }, P.NBD_EINVAL],
  ['NBD_CMD_CACHE (not advertised)', readOnly, { type: P.NBD_CMD_CACHE }, P.NBD_EINVAL],
  ['an unknown flag bit', readOnly, { type: P.NBD_CMD_READ, flags: 1 << 9, length: 1 }, P.NBD_EINVAL],
  [
    'DF (SEND_DF not advertised)',
    readOnly,
    { type: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_DF, length: 1 },
    P.NBD_EINVAL,
  ],
  [
    'FUA on a read-only export',
    readOnly,
    { type: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_FUA, length: 1 },
    P.NBD_EINVAL,
  ],
  [
    'FUA on a read of a writable export',
    writable,
    { type: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_FUA, length: 1 },
    undefined,
  ],
  ['a write to a read-only export', readOnly, { type: P.NBD_CMD_WRITE, length: 4096 }, P.NBD_EPERM],
  ['a trim on a read-only export', readOnly, { type: P.NBD_CMD_TRIM, length: 4096 }, P.NBD_EPERM],
  [
    'a write with FUA',
    writable,
    { type: P.NBD_CMD_WRITE, flags: P.NBD_CMD_FLAG_FUA, length: 4096 },
    undefined,
  ],
  [
    'NO_HOLE on a write',
    writable,
    { type: P.NBD_CMD_WRITE, flags: P.NBD_CMD_FLAG_NO_HOLE, length: 1 },
    P.NBD_EINVAL,
  ],
  [
    'NO_HOLE on write zeroes',
    writable,
    { type: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_NO_HOLE, length: 1 },
    undefined,
  ],
  [
    'FAST_ZERO (not advertised)',
    writable,
    { type: P.NBD_CMD_WRITE_ZEROES, flags: P.NBD_CMD_FLAG_FAST_ZERO, length: 1 },
    P.NBD_EINVAL,
  ],
  [
    'write zeroes past the end',
    writable,
    { type: P.NBD_CMD_WRITE_ZEROES, offset: SIZE, length: 1 },
    P.NBD_EINVAL,
  ],
  ['a flush on a read-only export', readOnly, { type: P.NBD_CMD_FLUSH }, undefined],
  ['a flush with a range', writable, { type: P.NBD_CMD_FLUSH, length: 512 }, P.NBD_EINVAL],
  [
    'REQ_ONE on block status',
    readOnly,
    { type: P.NBD_CMD_BLOCK_STATUS, flags: P.NBD_CMD_FLAG_REQ_ONE, length: 1 },
    undefined,
  ],
  [
    'REQ_ONE on a read',
    readOnly,
    { type: P.NBD_CMD_READ, flags: P.NBD_CMD_FLAG_REQ_ONE, length: 1 },
    P.NBD_EINVAL,
  ],
  ['block status without a context', noContext, { type: P.NBD_CMD_BLOCK_STATUS, length: 1 }, P.NBD_EINVAL],
  ['block status of 0 bytes', readOnly, { type: P.NBD_CMD_BLOCK_STATUS, length: 0 }, P.NBD_EINVAL],
  ['a disconnect with odd flags', readOnly, { type: P.NBD_CMD_DISC, flags: 0xffff }, undefined],
];

for (const [title, ctx, fields, errno] of cases) {
  test(`validateRequest: ${title}`, (t) => {
    const request: P.RequestHeader = {
      flags: 0,
      type: P.NBD_CMD_READ,
      handle: 1n,
      offset: 0,
      length: 0,
      ...fields,
    };
    t.is(validateRequest(request, ctx)?.errno, errno);
  });
}

test('validateRequest: a write payload over 32 MiB ends the connection', (t) => {
  const r: P.RequestHeader = { flags: 0, type: P.NBD_CMD_WRITE, handle: 1n, offset: 0, length: 32 * MiB + 1 };
  t.true(validateRequest(r, writable)?.fatal);
});

test('on the wire: unknown and misplaced flags get EINVAL, the connection stays in sync', async (t) => {
  const f: Fixture = await makeFixture();
  t.teardown(() => f.cleanup());
  const { server } = await serve(t, f);
  const c = await MiniClient.connect(server.port!);
  await c.greet();
  await c.go('');
  const spec = f.drives[0]!.spec;
  for (const flags of [1 << 9, P.NBD_CMD_FLAG_DF, P.NBD_CMD_FLAG_FUA, P.NBD_CMD_FLAG_REQ_ONE]) {
    t.is((await c.request(P.NBD_CMD_READ, 0, 4096, undefined, flags)).error, P.NBD_EINVAL, `flags ${flags}`);
  }
  t.is((await c.request(P.NBD_CMD_FLUSH, 4096, 0)).error, P.NBD_EINVAL, 'flush with an offset');
  const ok = await c.request(P.NBD_CMD_READ, 4096, 8192);
  t.is(ok.error, 0);
  t.true(ok.data.equals(imageBytes(spec, 4096, 8192)));
  await c.disconnect();
});

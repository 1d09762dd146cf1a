/*
 * The wire module against byte layouts written out by hand from proto.md, so the server,
 * NbdClient and the test client, which all use it, cannot agree on a wrong layout.
 */

import test from 'ava';
import * as W from '../src/wire.js';

const hex = (b: Buffer): string => b.toString('hex');

test('request header: magic, flags, type, handle, offset, length', (t) => {
  const r = {
    flags: 0x0001,
    type: W.NBD_CMD_WRITE,
    handle: 0x0102030405060708n,
    offset: 0x1_0000_0200,
    length: 4096,
  };
  const b = W.encodeRequestHeader(r);
  t.is(hex(b), '25609513' + '0001' + '0001' + '0102030405060708' + '0000000100000200' + '00001000');
  t.deepEqual(W.decodeRequestHeader(b), r);
  t.is(W.decodeRequestHeader(Buffer.alloc(28, 0xee)), undefined);
});

test('simple and structured reply headers', (t) => {
  const simple = W.encodeSimpleReply(7n, W.NBD_EPERM);
  t.is(hex(simple), '67446698' + '00000001' + '0000000000000007');
  t.deepEqual(W.decodeReplyHeader(simple), { kind: 'simple', error: 1, handle: 7n });
  const structured = W.encodeStructuredReplyHeader(
    9n,
    W.NBD_REPLY_FLAG_DONE,
    W.NBD_REPLY_TYPE_OFFSET_DATA,
    24,
  );
  t.is(hex(structured), '668e33ef' + '0001' + '0001' + '0000000000000009' + '00000018');
  t.is(W.replyHeaderBytes(structured), 20);
  t.is(W.replyHeaderBytes(simple), 16);
  t.is(W.replyHeaderBytes(Buffer.from('deadbeef', 'hex')), undefined);
  t.deepEqual(W.decodeReplyHeader(structured), {
    kind: 'structured',
    flags: 1,
    type: 1,
    handle: 9n,
    length: 24,
  });
});

test('greeting, option request and option reply', (t) => {
  t.is(hex(W.encodeGreeting(3)), '4e42444d41474943' + '49484156454f5054' + '0003');
  const opt = W.encodeOption(W.NBD_OPT_GO, Buffer.from('ab'));
  t.is(hex(opt), '49484156454f5054' + '00000007' + '00000002' + '6162');
  t.deepEqual(W.decodeOptionHeader(opt), { option: 7, length: 2 });
  const rep = W.encodeOptionReplyHeader(W.NBD_OPT_GO, W.NBD_REP_ERR_UNKNOWN, 5);
  t.is(hex(rep), '0003e889045565a9' + '00000007' + '80000006' + '00000005');
  t.deepEqual(W.decodeOptionReplyHeader(rep), { option: 7, type: 2 ** 31 + 6, length: 5 });
});

test('option payloads: GO, INFO, EXPORT_NAME reply, meta context', (t) => {
  const go = W.encodeGoRequest('d', [W.NBD_INFO_BLOCK_SIZE]);
  t.is(hex(go), '00000001' + '64' + '0001' + '0003');
  t.deepEqual(W.decodeGoRequest(go), { exportName: 'd', infoRequests: [3] });
  t.is(W.decodeGoRequest(go.subarray(0, 8)), 'information request list has the wrong length');
  t.is(hex(W.encodeInfoExport(0x1000, 0x0103)), '0000' + '0000000000001000' + '0103');
  t.deepEqual(W.decodeInfo(W.encodeInfoBlockSize(1, 4096, 1 << 25)), {
    kind: 'block-size',
    minimum: 1,
    preferred: 4096,
    maximum: 1 << 25,
  });
  t.is(W.encodeExportNameReply(1, 1, false).length, 134);
  t.is(hex(W.encodeExportNameReply(1, 1, true)), '0000000000000001' + '0001');
  const meta = W.encodeMetaContextRequest('d', ['base:allocation']);
  t.is(
    hex(meta),
    '00000001' + '64' + '00000001' + '0000000f' + Buffer.from('base:allocation').toString('hex'),
  );
  t.deepEqual(W.decodeMetaContextRequest(meta), { exportName: 'd', queries: ['base:allocation'] });
  t.is(W.decodeMetaContextRequest(Buffer.concat([meta, Buffer.alloc(1)])), undefined);
});

test('structured payloads: error, offset hole, block status', (t) => {
  const err = W.encodeErrorPayload(W.NBD_EIO, 'x');
  t.is(hex(err), '00000005' + '0001' + '78');
  t.deepEqual(W.decodeErrorPayload(err), { error: 5, message: 'x' });
  t.deepEqual(W.decodeOffsetHole(Buffer.from('0000000000000200' + '00001000', 'hex')), {
    offset: 512,
    length: 4096,
  });
  const bs = W.encodeBlockStatusPayload(1, [{ length: 4096, flags: 3 }]);
  t.is(hex(bs), '00000001' + '00001000' + '00000003');
  t.deepEqual(W.decodeBlockStatusPayload(bs), { contextId: 1, extents: [{ length: 4096, flags: 3 }] });
});

test('client opening: flags FIXED_NEWSTYLE | NO_ZEROES, then NBD_OPT_GO of the export, no info requests', (t) => {
  const b = W.encodeClientOpening('sda');
  t.is(hex(b), '00000003' + '49484156454f5054' + '00000007' + '00000009' + '00000003' + '736461' + '0000');
});

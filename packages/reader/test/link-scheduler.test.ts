/**
 * The link scheduler on its own, with requests the test answers by hand: urgent fetches
 * make background requests yield, cut requests resume where they stopped, lanes bound
 * background fetches, and a background fetch that turns urgent stops yielding.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promiseState } from '@liverestore/testkit';
import test from 'ava';
import { ChunkLoad } from '../src/chunk-load.js';
import { type BlobPiece, type BlobRequest, LinkScheduler } from '../src/internal.js';

/** One request the scheduler made, answered by the test. */
interface Call {
  /** Where the request starts (`Range`), undefined for a whole-blob request. */
  readonly start: number | undefined;
  readonly yieldTo: AbortSignal | undefined;
  /** Sends the next `bytes` of the rest (a piece request only). */
  send(bytes: number): void;
  /** Sends the rest and ends the request. */
  finish(): void;
}

/** A blob behind a fake link: every request is recorded and waits for the test. */
class FakeBlob {
  readonly data: Uint8Array;
  readonly #calls: Call[] = [];
  readonly #waiting: ((call: Call) => void)[] = [];

  constructor(length: number, seed: number) {
    this.data = Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
  }

  /** The next request the scheduler makes (already made, or when it is made). */
  nextCall(): Promise<Call> {
    const made = this.#calls.shift();
    if (made !== undefined) return Promise.resolve(made);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Requests made and not yet taken by {@link nextCall}. */
  get pendingCalls(): number {
    return this.#calls.length;
  }

  readonly request: BlobRequest = (piece: BlobPiece | undefined, yieldTo: AbortSignal | undefined) =>
    new Promise<Uint8Array | undefined>((resolve, reject) => {
      const send = (bytes: number): void => {
        if (piece === undefined) throw new Error('send() is for piece requests');
        piece.blob ??= new Uint8Array(this.data.byteLength);
        const end = Math.min(piece.start + bytes, this.data.byteLength);
        piece.blob.set(this.data.subarray(piece.start, end), piece.start);
        piece.start = end;
      };
      const call: Call = {
        start: piece?.start,
        yieldTo,
        send,
        finish: () => {
          if (piece === undefined) {
            resolve(this.data.slice());
            return;
          }
          send(this.data.byteLength);
          resolve(undefined);
        },
      };
      yieldTo?.addEventListener('abort', () => reject(yieldTo.reason), { once: true });
      const waiter = this.#waiting.shift();
      if (waiter === undefined) this.#calls.push(call);
      else waiter(call);
    });
}

function scheduler(backgroundFetches = 2): { link: LinkScheduler; close: AbortController } {
  const close = new AbortController();
  return { link: new LinkScheduler({ backgroundFetches, closed: close.signal }), close };
}

test('an urgent fetch cuts a background request; the background fetch resumes with Range where it was cut', async (t) => {
  const { link } = scheduler();
  const readahead = new FakeBlob(1000, 1);
  const wanted = new FakeBlob(500, 2);
  const background = link.background(readahead.request, { urgent: false }, undefined);
  const first = await readahead.nextCall();
  t.is(first.start, 0, 'a background fetch asks with Range from byte 0');
  first.send(300);

  const urgent = link.urgent(wanted.request);
  t.true(first.yieldTo?.aborted, 'the background request made way');
  const urgentCall = await wanted.nextCall();
  t.is(urgentCall.start, undefined, 'an urgent fetch is one whole request');
  t.is(urgentCall.yieldTo, undefined, 'and never yields');
  t.is(await promiseState(background), 'pending');
  t.is(readahead.pendingCalls, 0, 'no background request while the urgent one is on the wire');

  urgentCall.finish();
  t.deepEqual(await urgent, wanted.data);
  const resumed = await readahead.nextCall();
  t.is(resumed.start, 300, 'resumed from the first byte not received');
  resumed.finish();
  t.deepEqual(await background, readahead.data);
});

test('background fetches run in at most `backgroundFetches` lanes', async (t) => {
  const { link } = scheduler(1);
  const a = new FakeBlob(100, 3);
  const b = new FakeBlob(100, 4);
  const first = link.background(a.request, { urgent: false }, undefined);
  const second = link.background(b.request, { urgent: false }, undefined);
  const callA = await a.nextCall();
  t.is(b.pendingCalls, 0);
  t.is(await promiseState(second), 'pending');
  callA.finish();
  t.deepEqual(await first, a.data);
  (await b.nextCall()).finish();
  t.deepEqual(await second, b.data);
});

test('a background fetch that turns urgent gets its rest in one request that does not yield', async (t) => {
  const { link } = scheduler();
  const blob = new FakeBlob(800, 5);
  const hints = { urgent: false };
  const fetch = link.background(blob.request, hints, undefined);
  const first = await blob.nextCall();
  first.send(200);
  // The cache raises the hint when a reader joins; an urgent fetch elsewhere cuts the request.
  hints.urgent = true;
  const other = new FakeBlob(10, 6);
  const urgent = link.urgent(other.request);
  const rest = await blob.nextCall();
  t.is(rest.start, 200);
  t.is(rest.yieldTo, undefined, 'the rest is fetched as an urgent request, alongside the other');
  rest.finish();
  t.deepEqual(await fetch, blob.data);
  (await other.nextCall()).finish();
  t.deepEqual(await urgent, other.data);
});

test('a background fetch waiting for the link goes on at once when it turns urgent, not when the urgent fetches end', async (t) => {
  const { link } = scheduler();
  const burst = new FakeBlob(100, 10);
  const urgent = link.urgent(burst.request);
  const burstCall = await burst.nextCall();
  const blob = new FakeBlob(400, 11);
  const load = new ChunkLoad(400, false); // the cache's live hints of a background load
  const fetch = link.background(blob.request, load, undefined);
  await nextTurn(); // it has got its lane and waits for the link
  t.is(blob.pendingCalls, 0, 'a background fetch waits while an urgent one is on the wire');
  load.raiseUrgency(); // a guest joined the load
  const call = await blob.nextCall();
  t.is(call.start, 0);
  t.is(call.yieldTo, undefined, 'it is an urgent request now, beside the other');
  t.is(await promiseState(urgent), 'pending', 'the first urgent fetch is still on the wire');
  call.finish();
  t.deepEqual(await fetch, blob.data);
  burstCall.finish();
  t.deepEqual(await urgent, burst.data);
});

test('a background fetch waiting for a lane goes on at once when it turns urgent', async (t) => {
  const { link } = scheduler(1);
  const busy = new FakeBlob(100, 12);
  const running = link.background(busy.request, { urgent: false }, undefined);
  const busyCall = await busy.nextCall();
  const blob = new FakeBlob(300, 13);
  const load = new ChunkLoad(300, false);
  const fetch = link.background(blob.request, load, undefined);
  await nextTurn(); // it waits for the lane
  t.is(blob.pendingCalls, 0, 'the only lane is taken');
  load.raiseUrgency();
  const call = await blob.nextCall();
  t.is(call.yieldTo, undefined, 'an urgent request, without a lane');
  t.true(busyCall.yieldTo?.aborted, 'the background request made way for it');
  call.finish();
  t.deepEqual(await fetch, blob.data);
  (await busy.nextCall()).finish();
  t.deepEqual(await running, busy.data);
});

test('waiting background fetches end with the caller abort or the close reason', async (t) => {
  const { link, close } = scheduler(1);
  const busy = new FakeBlob(10, 7);
  const running = link.background(busy.request, { urgent: false }, undefined);
  await busy.nextCall();
  const caller = new AbortController();
  const aborted = link.background(new FakeBlob(10, 8).request, { urgent: false }, caller.signal);
  const closed = link.background(new FakeBlob(10, 9).request, { urgent: false }, undefined);
  caller.abort(new Error('the reader went away'));
  await t.throwsAsync(aborted, { message: 'the reader went away' });
  const reason = new Error('source closed');
  close.abort(reason);
  t.is(await closed.catch((err: unknown) => err), reason);
  void running.catch(() => undefined);
});

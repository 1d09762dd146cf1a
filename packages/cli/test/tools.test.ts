/*
 * requireTool: a missing external tool skips a cross-check on a developer machine but
 * fails it in CI (LIVERESTORE_REQUIRE_TOOLS=1), so CI can never skip one silently.
 */
import test from 'ava';
import { hasTool, requireTool, type ToolContext } from './tools.js';

function fakeContext(): ToolContext & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    log: (...values: unknown[]) => calls.push(`log ${values.join(' ')}`),
    pass: () => calls.push('pass'),
    fail: (message?: string) => calls.push(`fail ${message}`),
  };
}

const MISSING = 'liverestore-no-such-tool-4f1c';

test('a present tool: true, and the test goes on untouched', (t) => {
  const ctx = fakeContext();
  t.true(hasTool('node'));
  t.true(requireTool(ctx, 'node', { LIVERESTORE_REQUIRE_TOOLS: '1' }));
  t.deepEqual(ctx.calls, []);
});

test('a missing tool in CI (LIVERESTORE_REQUIRE_TOOLS=1): the test fails naming the tool', (t) => {
  const ctx = fakeContext();
  t.false(requireTool(ctx, MISSING, { LIVERESTORE_REQUIRE_TOOLS: '1' }));
  t.is(ctx.calls.length, 1);
  t.true(ctx.calls[0]!.startsWith('fail '));
  t.true(ctx.calls[0]!.includes(MISSING));
  t.true(ctx.calls[0]!.includes('missing'));
});

test('a missing tool elsewhere: logged as skipped, and the test passes', (t) => {
  for (const env of [{}, { LIVERESTORE_REQUIRE_TOOLS: '0' }]) {
    const ctx = fakeContext();
    t.false(requireTool(ctx, MISSING, env));
    t.is(ctx.calls.length, 2);
    t.regex(ctx.calls[0]!, new RegExp(`^log SKIPPED: .*${MISSING}`));
    t.is(ctx.calls[1], 'pass');
  }
});

test('the real ava context works as a ToolContext (in CI every tool the suite uses is present)', (t) => {
  // Type-level check that `requireTool(t, …)` compiles, and a run-time one that CI has the tools.
  const ctx: ToolContext = t;
  if (process.env.LIVERESTORE_REQUIRE_TOOLS === '1') {
    for (const tool of ['python3', 'zstd', 'git']) t.true(requireTool(ctx, tool), `${tool} is installed`);
  } else {
    t.pass();
  }
});

// The tool gate lives in @liverestore/testkit, shared with the format tests (zstd CLI cross-checks).
export { hasTool, requireTool, type ToolContext } from '@liverestore/testkit';

export { COMMANDS, run } from './cli.js';
export type { Command, CommandIo } from './command.js';
export { UsageError } from './errors.js';
export { formatBytes, parseBytes } from './units.js';

export { NbdClient, type NbdClientOptions, type NbdWriteOptions } from './client.js';
export { NbdError } from './errors.js';
export {
  type AllocationExtent,
  type ExtentUnits,
  mergedExtents,
  type NbdExport,
  type NbdWriter,
  readerExport,
  snapshotExports,
} from './export.js';
export {
  NBD_SERVER_DEFAULTS,
  type NbdListen,
  type NbdServer,
  type NbdServerOptions,
  type NbdServerStats,
  startNbdServer,
} from './server.js';

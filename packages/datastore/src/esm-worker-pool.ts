/** The piscina options that run the handler `exportName` of the ES module `moduleUrl` in each worker (see esm-worker.cts). */
export function esmWorkerPool(
  moduleUrl: URL,
  exportName: string,
  workerData: Record<string, unknown> = {},
): { filename: string; name: string; workerData: Record<string, unknown> } {
  return {
    filename: new URL('./esm-worker.cjs', import.meta.url).href,
    name: exportName,
    workerData: { ...workerData, esmWorker: moduleUrl.href, esmExport: exportName },
  };
}

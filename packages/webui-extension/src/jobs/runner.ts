/**
 * Starts a job's worker_thread. Worker files are TypeScript: on Node 20 `execArgv: ["--import", "tsx"]`
 * does not make the worker's entry loadable (ERR_UNKNOWN_FILE_EXTENSION, checked on Node 20.20), so the
 * worker is started from a one-line ESM bootstrap that registers tsx's loader first and then imports
 * worker.ts. Under a build that emits .js this bootstrap is still harmless.
 */
import { Worker } from "node:worker_threads";
import type { WorkerInput } from "./worker.ts";

const WORKER_URL = new URL("./worker.ts", import.meta.url).href;

function tsxApiUrl(): string | null {
  try {
    return import.meta.resolve("tsx/esm/api");
  } catch {
    return null;
  }
}

export function startJobWorker(input: WorkerInput): Worker {
  const api = tsxApiUrl();
  const bootstrap =
    api === null
      ? `import(${JSON.stringify(WORKER_URL)});`
      : `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: input });
}

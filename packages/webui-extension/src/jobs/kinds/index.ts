/**
 * The job kinds this service runs, by name -> module URL. The worker imports the module by URL, so adding
 * a kind is one line here and no change to the runner.
 */
import type { JobKind } from "../types.ts";

export const JOB_KIND_MODULES: Record<string, string> = {
  "lora-merge": new URL("./lora-merge.ts", import.meta.url).href,
  "dataset-check": new URL("./dataset-check.ts", import.meta.url).href,
  "library-index": new URL("./library-index.ts", import.meta.url).href,
  train: new URL("./train.ts", import.meta.url).href,
};

export async function loadJobKind(name: string): Promise<JobKind | undefined> {
  const url = JOB_KIND_MODULES[name];
  if (url === undefined) return undefined;
  const mod = (await import(url)) as { kind: JobKind };
  return mod.kind;
}

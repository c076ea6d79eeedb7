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
  "auto-label": new URL("./auto-label.ts", import.meta.url).href,
  "train-estimate": new URL("./train-estimate.ts", import.meta.url).href,
  txt2img: new URL("./txt2img.ts", import.meta.url).href,
};

/** Kinds run in the service's thread instead of a per-job worker (they keep sessions between jobs). */
export const IN_SERVICE_KINDS: ReadonlySet<string> = new Set(["txt2img"]);

/**
 * Kinds run in a child process instead of a worker_thread: they call ONNX Runtime, and a cancel kills the job
 * at once, which is safe for a process but aborts the service for a thread (see ../runner.ts).
 */
export const OWN_PROCESS_KINDS: ReadonlySet<string> = new Set(["train", "train-estimate", "auto-label"]);

export async function loadJobKind(name: string): Promise<JobKind | undefined> {
  const url = JOB_KIND_MODULES[name];
  if (url === undefined) return undefined;
  const mod = (await import(url)) as { kind: JobKind };
  return mod.kind;
}

/**
 * Kinds that run a model through ONNX Runtime (the GPU on users' machines): those in a child process and the
 * in-service txt2img. At most the queue's `concurrency` of them run at once (default 1). The other kinds only
 * read and write files (merge, dataset check, library index) and run in a lane of their own beside them, so a
 * one-hour training does not hold back a dataset check or a merge.
 */
export const MODEL_KINDS: ReadonlySet<string> = new Set([...OWN_PROCESS_KINDS, ...IN_SERVICE_KINDS]);

export type JobLane = "model" | "files";

export function laneOf(kind: string): JobLane {
  return MODEL_KINDS.has(kind) ? "model" : "files";
}

/**
 * Runs one job inside a worker_thread: imports the kind's module, gives it a JobContext whose events and
 * checkpoints are posted to the service's thread, and posts the outcome. Started by runner.ts.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { JobContext, JobEnvironment, JobKind, JobOutcome, StopReason } from "./types.ts";

export interface WorkerInput {
  jobId: string;
  kindUrl: string;
  params: unknown;
  checkpoint: unknown;
  env: JobEnvironment;
}

export type WorkerMessage =
  | { type: "event"; event: string; data: unknown }
  | { type: "checkpoint"; state: unknown }
  | { type: "lora-files"; files: string[] }
  | { type: "outcome"; outcome: JobOutcome }
  | { type: "failed"; message: string };

const port = parentPort;
if (port === null) throw new Error("worker.ts must run in a worker_thread");
const input = workerData as WorkerInput;
let stop: StopReason | null = null;
port.on("message", (m: { type: string; reason?: StopReason }) => {
  if (m.type === "stop" && m.reason !== undefined) stop = m.reason;
});
const post = (m: WorkerMessage) => port.postMessage(m);

const ctx: JobContext = {
  jobId: input.jobId,
  params: input.params,
  checkpoint: input.checkpoint,
  env: input.env,
  emit: (event, data) => post({ type: "event", event, data }),
  progress: (done, total, label) => post({ type: "event", event: "progress", data: { done, total, label } }),
  log: (message, level = "info") => post({ type: "event", event: "log", data: { message, level } }),
  saveCheckpoint: (state) => post({ type: "checkpoint", state }),
  loraWritten: (files) => post({ type: "lora-files", files }),
  stopRequested: () => stop,
};

try {
  const mod = (await import(input.kindUrl)) as { kind: JobKind };
  const outcome = await mod.kind.run(ctx);
  post({ type: "outcome", outcome });
} catch (err) {
  post({ type: "failed", message: err instanceof Error ? err.message : String(err) });
}
port.close();

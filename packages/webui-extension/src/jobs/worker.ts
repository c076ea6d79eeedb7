/**
 * Runs one job inside a worker_thread or a forked child process (runner.ts): imports the kind's module, gives it
 * a JobContext whose events and checkpoints are posted to the service, and posts the outcome.
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
  | { type: "failed"; message: string }
  | { type: "bye" };

/** The link to the service: the worker_thread's port, or the child process's IPC channel (runner.ts). */
interface Link {
  post(m: WorkerMessage): void;
  onMessage(listener: (m: { type: string; reason?: StopReason; input?: WorkerInput }) => void): void;
  /** Lets the thread or process end once the last message is out. */
  close(): void;
}

function link(): Link {
  const port = parentPort;
  if (port !== null) {
    return {
      post: (m) => port.postMessage(m),
      onMessage: (l) => port.on("message", l),
      close: () => port.close(),
    };
  }
  if (process.send === undefined)
    throw new Error("worker.ts must run in a worker_thread or a forked process");
  // The service is gone (stopped or crashed): end with it, as a worker_thread would; its next start re-queues
  // the job from its last checkpoint.
  process.once("disconnect", () => process.exit(1));
  return {
    post: (m) => process.send?.(m),
    onMessage: (l) => process.on("message", l),
    // Exit once the IPC queue is flushed (native thread pools could otherwise keep the process alive).
    close: () => process.send?.({ type: "bye" }, () => process.exit(0)),
  };
}

const channel = link();
let stop: StopReason | null = null;
const input = await new Promise<WorkerInput>((resolve) => {
  if (parentPort !== null) resolve(workerData as WorkerInput);
  channel.onMessage((m) => {
    if (m.type === "input" && m.input !== undefined) resolve(m.input);
    if (m.type === "stop" && m.reason !== undefined) stop = m.reason;
  });
});
const post = (m: WorkerMessage) => channel.post(m);

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
channel.close();

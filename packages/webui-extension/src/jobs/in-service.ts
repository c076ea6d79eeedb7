/**
 * Runs a job kind in the service's own thread, behind the same interface the queue uses for a worker_thread
 * (postMessage / terminate / "message", "error", "exit" events), so the queue treats both alike.
 *
 * Why: a kind that keeps state between jobs cannot live in a per-job worker, which dies with its job. The
 * txt2img kind keeps its opened model and inference sessions (building them is the slow part) across requests;
 * its heavy work runs in the engine's session worker threads (SdModel's WorkerSession), so the service still
 * answers while it generates. Only kinds whose run() never blocks the event loop for long may run here.
 */
import { EventEmitter } from "node:events";
import type { JobContext, JobKind, StopReason } from "./types.ts";
import type { WorkerInput, WorkerMessage } from "./worker.ts";

/** The part of node's Worker the queue uses. */
export interface JobThread {
  postMessage(message: unknown): void;
  terminate(): Promise<number>;
  on(event: "message", listener: (m: WorkerMessage) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(event: "exit", listener: (code: number) => void): this;
}

class InServiceJob extends EventEmitter implements JobThread {
  private stop: StopReason | null = null;
  private exited = false;

  constructor(input: WorkerInput) {
    super();
    // Started on the next turn, as a worker would be, so the queue has attached its listeners.
    setImmediate(() => void this.run(input));
  }

  postMessage(message: unknown): void {
    const m = message as { type?: string; reason?: StopReason };
    if (m.type === "stop" && m.reason !== undefined) this.stop = m.reason;
  }

  /**
   * A running call cannot be killed in-thread: the job is marked stopped (its run() sees stopRequested()
   * = "cancel" at its next step and throws) and reported as exited now; anything it posts later is dropped.
   */
  async terminate(): Promise<number> {
    this.stop ??= "cancel";
    this.exit(1);
    return 1;
  }

  private post(m: WorkerMessage): void {
    if (!this.exited) this.emit("message", m);
  }

  private exit(code: number): void {
    if (this.exited) return;
    this.exited = true;
    this.emit("exit", code);
  }

  private async run(input: WorkerInput): Promise<void> {
    const ctx: JobContext = {
      jobId: input.jobId,
      params: input.params,
      checkpoint: input.checkpoint,
      env: input.env,
      emit: (event, data) => this.post({ type: "event", event, data }),
      progress: (done, total, label) =>
        this.post({ type: "event", event: "progress", data: { done, total, label } }),
      log: (message, level = "info") => this.post({ type: "event", event: "log", data: { message, level } }),
      saveCheckpoint: (state) => this.post({ type: "checkpoint", state }),
      loraWritten: (files) => this.post({ type: "lora-files", files }),
      stopRequested: () => this.stop,
    };
    try {
      const mod = (await import(input.kindUrl)) as { kind: JobKind };
      const outcome = await mod.kind.run(ctx);
      this.post({ type: "outcome", outcome });
    } catch (err) {
      this.post({ type: "failed", message: err instanceof Error ? err.message : String(err) });
    }
    this.exit(0);
  }
}

export function startInServiceJob(input: WorkerInput): JobThread {
  return new InServiceJob(input);
}

/**
 * The contract between the job runner and a job kind. A kind is one module exporting `kind: JobKind`:
 * `prepare` runs in the service's thread (validates and resolves the client's params, paths included),
 * `run` runs inside a worker_thread with a JobContext. The trainer plugs in as one more kind ("train") whose
 * run() drives the training loop, reports metrics and saves checkpoints (resumable: true).
 */

/** What a kind may use to resolve client parameters: the folders of this service. */
export interface JobEnvironment {
  dataDir: string;
  loraDir: string;
  datasetsDir: string;
  /** Subfolder of the Lora folder that training jobs hot-load their LoRAs into (default "lora-studio"). */
  loraSubfolder: string;
  /** CLIP tokenizer folder for single-file base models (else the trainer's own search order). */
  clipTokenizerDir?: string;
}

export type StopReason = "pause" | "cancel";

export interface JobContext {
  jobId: string;
  params: unknown;
  /** The last checkpoint this job saved (when resuming), else null. */
  checkpoint: unknown;
  env: JobEnvironment;
  /** Any event: progress, log, metric ({ step, loss, lr, itPerSec, etaSeconds }), sample, ... */
  emit(type: string, data: unknown): void;
  progress(done: number, total: number, label?: string): void;
  log(message: string, level?: "info" | "warn" | "error"): void;
  /** Persists resume state (a resumable kind calls it before returning on a stop request). */
  saveCheckpoint(state: unknown): void;
  /**
   * Tells the service that LoRA files were written into the Lora folder while the job runs (hot-load): the
   * service asks the WebUI to refresh its LoRAs and tells the pages. The job's final state waits for it.
   */
  loraWritten(files: string[]): void;
  /** Set when the user asked to pause or cancel; the job should stop at the next safe point. */
  stopRequested(): StopReason | null;
}

/** What `run` returns: `paused` when it stopped on a pause request after saving a checkpoint. */
export type JobOutcome = { paused: true } | { paused?: false; result: unknown; loraFiles?: string[] };

export interface JobKind {
  name: string;
  /** Whether the kind can stop at a checkpoint and resume later (pause, and resume after a restart). */
  resumable: boolean;
  /**
   * How long a running job may take to honour a cancel (or, when the service stops, a resumable job a pause)
   * before its worker is terminated; default 2 s. Kinds that run native code (ONNX Runtime) need it long:
   * terminating a worker while a native call is in flight can abort the whole process.
   */
  stopGraceMs?: number;
  prepare(params: unknown, env: JobEnvironment): Promise<unknown>;
  run(ctx: JobContext): Promise<JobOutcome>;
}

/** A client error in job parameters (answered with 400). */
export class JobParamsError extends Error {
  readonly status = 400;
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(`${kind}: ${message}`);
    this.name = "JobParamsError";
  }
}

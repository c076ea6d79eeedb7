/**
 * The contract between the job runner and a job kind. A kind is one module exporting `kind: JobKind`:
 * `prepare` runs in the service's thread (validates and resolves the client's params, paths included),
 * `run` runs with a JobContext in a worker_thread, a child process or the service thread (see queue.ts). The trainer plugs in as one more kind ("train") whose
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
  /** Tagger folders for auto-label jobs (the first is the default). */
  taggerDirs?: string[];
}

export type StopReason = "pause" | "cancel";

export interface WritePlace {
  dir: string;
  recursive: boolean;
  /** Only temp files of final names starting with one of these (a shared folder such as models/Lora). */
  namePrefixes?: string[];
}

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
   * How long a resumable job may take to checkpoint when the service stops, before its worker is terminated;
   * default 2 s. (A cancel terminates the worker at once.)
   */
  stopGraceMs?: number;
  /**
   * Where a job of this kind writes files, for the cleanup after a cancel (its worker is terminated at once, so
   * a write in flight can leave its temp file): folders swept for this process's temp files, recursively or
   * not, optionally only those of the given final file names' stems.
   */
  writesTo?(params: unknown): WritePlace[];
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

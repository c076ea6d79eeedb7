/**
 * The job queue, in two lanes (kinds/index.ts): at most `concurrency` model jobs at once (default 1: one GPU job
 * at a time) and, beside them, at most `fileConcurrency` file jobs (merge, dataset check, library index; default
 * 1), each in submission order. Every job runs off the
 * service's event loop so the service keeps answering: kinds that call ONNX Runtime in a child process
 * (terminating a worker_thread inside an ORT call aborts the whole process), txt2img in the service thread
 * with its sessions in the engine's workers (in-service.ts, so the opened model outlives the job), the rest in
 * a worker_thread. Every state change and every event a job emits is appended
 * to the store (with its sequence number) before it is announced on `events`, so the websocket layer can
 * replay from any `since`. At start, jobs left "running" by a previous process (crash or stop) are queued
 * again; a resumable kind gets its last checkpoint back, others start over.
 */
import { EventEmitter } from "node:events";
import { type JobThread, startInServiceJob } from "./in-service.ts";
import {
  IN_SERVICE_KINDS,
  JOB_KIND_MODULES,
  type JobLane,
  laneOf,
  loadJobKind,
  OWN_PROCESS_KINDS,
} from "./kinds/index.ts";
import { removeTempFiles } from "./leftovers.ts";
import { startJobWorker } from "./runner.ts";
import { FINAL_STATES, type JobEvent, type JobRecord, type JobState, type JobStore } from "./store.ts";
import { type JobEnvironment, type JobKind, JobParamsError, type StopReason } from "./types.ts";
import type { WorkerMessage } from "./worker.ts";

export class JobError extends Error {
  constructor(
    readonly status: 404 | 409 | 400,
    message: string,
  ) {
    super(message);
    this.name = "JobError";
  }
}

export interface QueueOptions {
  /** Model jobs (training, txt2img, auto-label, step-time) at once; default 1. */
  concurrency?: number;
  /** File jobs (merge, dataset check, library index) at once, beside the model jobs; default 1. */
  fileConcurrency?: number;
  /** Called in the service's thread when a job wrote LoRA files (hot-load). */
  onLoraFiles?: (job: JobRecord, files: string[]) => Promise<void> | void;
  /** How long a resumable job may take to checkpoint when the service stops, before its worker is terminated. */
  stopGraceMs?: number;
}

interface Running {
  lane: JobLane;
  /** A worker_thread, or the in-service runner for kinds that keep state between jobs (in-service.ts). */
  worker: JobThread;
  stop: StopReason | null;
  settled: boolean;
  /** The worker posted its outcome; its exit that follows is expected. */
  finishing: boolean;
  /** The job's kind, once loaded (for its stop grace). */
  kind?: JobKind;
  /** Called when the worker posted its outcome or failure, or exited (used while the service stops). */
  onStopped?: () => void;
  /** Resolves when the worker has exited. */
  exited: Promise<void>;
  settleCancelled?: () => void;
}

export class JobQueue {
  /** "event" (JobEvent) for every persisted event; "job" (JobRecord) after every state change. */
  readonly events = new EventEmitter();
  private readonly running = new Map<string, Running>();
  private readonly limits: Record<JobLane, number>;
  private closed = false;

  constructor(
    readonly store: JobStore,
    readonly env: JobEnvironment,
    private readonly options: QueueOptions = {},
  ) {
    this.limits = {
      model: Math.max(1, options.concurrency ?? 1),
      files: Math.max(1, options.fileConcurrency ?? 1),
    };
    this.events.setMaxListeners(0);
  }

  static kinds(): string[] {
    return Object.keys(JOB_KIND_MODULES);
  }

  /** Re-queues jobs interrupted by the previous process, then starts what can run. */
  start(): void {
    for (const job of this.store.inState("running")) {
      this.setState(job.id, "queued", { reason: "the service restarted while this job was running" });
    }
    this.pump();
  }

  /** Appends (and announces) an event from the service's side, e.g. the outcome of a WebUI refresh. */
  note(jobId: string, type: string, data: unknown): JobEvent {
    return this.emit(jobId, type, data);
  }

  private emit(jobId: string, type: string, data: unknown): JobEvent {
    const ev = this.store.appendEvent(jobId, type, data);
    this.events.emit("event", ev);
    return ev;
  }

  private setState(id: string, state: JobState, extra: Record<string, unknown> = {}): void {
    const now = Date.now();
    this.store.update(id, {
      state,
      ...(state === "running" ? { startedAt: now } : {}),
      ...(FINAL_STATES.includes(state) ? { finishedAt: now } : {}),
      ...(typeof extra.error === "string" ? { error: extra.error } : {}),
    });
    this.emit(id, "state", { state, ...extra });
    this.events.emit("job", this.store.get(id));
  }

  private async kindOf(name: string): Promise<JobKind> {
    const kind = await loadJobKind(name);
    if (kind === undefined) {
      throw new JobParamsError(name, `unknown job kind; this service runs: ${JobQueue.kinds().join(", ")}`);
    }
    return kind;
  }

  async submit(kindName: string, params: unknown): Promise<JobRecord> {
    if (this.closed) throw new JobError(409, "the service is stopping");
    const kind = await this.kindOf(kindName);
    const prepared = await kind.prepare(params, this.env);
    const job = this.store.create(kind.name, prepared);
    this.emit(job.id, "state", { state: "queued" });
    this.events.emit("job", this.store.get(job.id));
    this.pump();
    return this.store.get(job.id) as JobRecord;
  }

  private need(id: string): JobRecord {
    const job = this.store.get(id);
    if (job === undefined) throw new JobError(404, `no job ${id}`);
    return job;
  }

  async pause(id: string): Promise<JobRecord> {
    const job = this.need(id);
    if (job.state === "queued") this.setState(id, "paused");
    else if (job.state === "running") {
      const kind = await this.kindOf(job.kind);
      if (!kind.resumable)
        throw new JobError(409, `a ${job.kind} job cannot pause (no checkpoints); cancel it instead`);
      this.requestStop(id, "pause");
    } else throw new JobError(409, `job ${id} is ${job.state}; only queued or running jobs can pause`);
    return this.need(id);
  }

  resume(id: string): JobRecord {
    const job = this.need(id);
    if (job.state !== "paused") throw new JobError(409, `job ${id} is ${job.state}; only paused jobs resume`);
    this.setState(id, "queued", { reason: "resumed" });
    this.pump();
    return this.need(id);
  }

  /**
   * A queued or paused job is cancelled at once. A running one too: its worker is terminated now, not after
   * its current step. That leaves nothing half-written under a final name (every write is temp + rename);
   * what it can leave is a temp file of a write in flight, which is removed before the job is "cancelled".
   */
  async cancel(id: string): Promise<JobRecord> {
    const job = this.need(id);
    if (job.state === "queued" || job.state === "paused") this.setState(id, "cancelled");
    else if (job.state === "running") {
      const r = this.running.get(id);
      if (r !== undefined && r.stop === "cancel") await r.exited;
      else if (r !== undefined && !r.finishing) {
        r.stop = "cancel";
        this.emit(id, "stop-requested", { reason: "cancel" });
        await r.worker.terminate();
        await r.exited;
        await this.sweepLeftovers(job, { pid: "pid" in r.worker ? Number(r.worker.pid) : process.pid });
        r.settleCancelled?.();
      }
    } else throw new JobError(409, `job ${id} is already ${job.state}`);
    return this.need(id);
  }

  /** Removes the temp files of writes the terminated worker had in flight, in the places the kind names. */
  private async sweepLeftovers(job: JobRecord, r: { pid: number }): Promise<void> {
    try {
      const kind = await this.kindOf(job.kind);
      const places = kind.writesTo?.(job.params) ?? [];
      const removed = await removeTempFiles(places, r.pid);
      if (removed.length > 0)
        this.emit(job.id, "log", {
          level: "info",
          message: `removed ${removed.length} unfinished temp file(s)`,
        });
    } catch (err) {
      this.emit(job.id, "log", { level: "warn", message: `cleanup after cancel: ${(err as Error).message}` });
    }
  }

  /** Pause: the job checkpoints after its current step; the pages are told at once that it will. */
  private requestStop(id: string, reason: StopReason): void {
    const r = this.running.get(id);
    if (r === undefined || r.stop !== null) return;
    r.stop = reason;
    r.worker.postMessage({ type: "stop", reason });
    this.emit(id, "stop-requested", { reason });
  }

  private pump(): void {
    if (this.closed) return;
    const busy: Record<JobLane, number> = { model: 0, files: 0 };
    for (const r of this.running.values()) busy[r.lane]++;
    for (const job of this.store.inState("queued")) {
      const lane = laneOf(job.kind);
      if (this.running.has(job.id) || busy[lane] >= this.limits[lane]) continue;
      busy[lane]++;
      this.launch(job);
    }
  }

  private launch(job: JobRecord): void {
    const kindUrl = JOB_KIND_MODULES[job.kind];
    if (kindUrl === undefined) {
      this.setState(job.id, "failed", { error: `unknown job kind ${job.kind}` });
      return;
    }
    const input = { jobId: job.id, kindUrl, params: job.params, checkpoint: job.checkpoint, env: this.env };
    const worker = IN_SERVICE_KINDS.has(job.kind)
      ? startInServiceJob(input)
      : startJobWorker(input, OWN_PROCESS_KINDS.has(job.kind) ? "process" : "thread");
    let exited!: () => void;
    const r: Running = {
      lane: laneOf(job.kind),
      worker,
      stop: null,
      settled: false,
      finishing: false,
      exited: new Promise<void>((resolve) => {
        exited = resolve;
      }),
    };
    void loadJobKind(job.kind).then((k) => {
      r.kind = k;
    });
    this.running.set(job.id, r);
    this.setState(job.id, "running");
    // Hot-loads run one after another in the service's thread; the job's final state waits for them, so a
    // client that sees "done" also sees the LoRA in the WebUI's list.
    let hotLoads: Promise<void> = Promise.resolve();
    const hotLoad = (files: string[]) => {
      const hook = this.options.onLoraFiles;
      if (files.length === 0 || hook === undefined) return;
      hotLoads = hotLoads
        .then(() => hook(this.need(job.id), files))
        .catch((err: Error) => {
          if (!this.closed) this.emit(job.id, "log", { level: "warn", message: `hot-load: ${err.message}` });
        });
    };
    const settle = (state: JobState, extra: Record<string, unknown> = {}) => {
      if (r.settled) return;
      r.settled = true;
      this.running.delete(job.id);
      if (!this.closed) {
        this.setState(job.id, state, extra);
        this.pump();
      }
    };
    worker.on("message", (m: WorkerMessage) => {
      if (this.closed) {
        // Stopping: keep the checkpoint a job saves on its way out (the next start resumes from it); its
        // state stays "running" so that the next start re-queues it.
        if (m.type === "checkpoint") this.store.update(job.id, { checkpoint: m.state });
        if (m.type === "outcome" || m.type === "failed") r.onStopped?.();
        return;
      }
      if (m.type === "event") this.emit(job.id, m.event, m.data);
      else if (m.type === "checkpoint") {
        // Stored, not announced: a kind may checkpoint after every item, which would flood the event log.
        this.store.update(job.id, { checkpoint: m.state });
      } else if (m.type === "lora-files") {
        hotLoad(m.files);
      } else if (m.type === "failed") {
        if (r.stop !== "cancel") settle("failed", { error: m.message });
      } else if (m.type === "outcome") {
        r.finishing = true;
        if (m.outcome.paused === true) {
          void hotLoads.then(() => settle("paused"));
          return;
        }
        const { result, loraFiles } = m.outcome;
        this.store.update(job.id, { result });
        this.emit(job.id, "result", result);
        hotLoad(loraFiles ?? []);
        void hotLoads.then(() => settle("done"));
      }
    });
    worker.on("error", (err) => settle("failed", { error: err.message }));
    // A cancel settles the job itself, once the worker has exited and its leftovers are swept.
    r.settleCancelled = () => settle("cancelled");
    worker.on("exit", (code) => {
      exited();
      r.onStopped?.();
      if (r.finishing || r.stop === "cancel") return;
      settle("failed", { error: `the job's worker exited (code ${code}) without a result` });
    });
  }

  private graceMs(r: Running): number {
    return r.kind?.stopGraceMs ?? this.options.stopGraceMs ?? 2000;
  }

  /**
   * Stops every worker. Running jobs stay "running" in the store and are re-queued by the next start(). A
   * resumable job is first asked to pause (it saves a checkpoint at its next safe point, so the next start
   * loses nothing) and given its stop grace; the others are terminated at once.
   */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.running.values()].map(async (r) => {
        if (r.kind?.resumable === true && !r.settled) {
          const stopped = new Promise<void>((resolve) => {
            r.onStopped = resolve;
          });
          r.worker.postMessage({ type: "stop", reason: "pause" });
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            stopped,
            new Promise((resolve) => (timer = setTimeout(resolve, this.graceMs(r)))),
          ]);
          clearTimeout(timer);
        }
        await r.worker.terminate();
      }),
    );
    this.running.clear();
  }
}

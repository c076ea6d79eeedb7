/**
 * A small pool of worker_threads running one entry module, for CPU-bound work split into independent tasks
 * (per-module SVDs of a compression, per-tensor patches of a bake). Tasks are queued and handed to the first
 * idle worker; results come back in a promise per task. ArrayBuffers listed as `transfer` move without a copy.
 *
 * Loading a .ts entry: under Node 20 a worker pointed at a .ts file fails ("Unknown file extension") even when
 * the parent runs under tsx and even with `execArgv: ["--import", "tsx"]`: the loader hooks are not applied to
 * the worker's entry. What works (the pattern of packages/engine/src/runtime/worker-session.ts) is a tiny eval'd
 * bootstrap that registers tsx's ESM hooks inside the worker and then imports the .ts entry. A compiled .js
 * entry is started directly.
 *
 * Worker side: call `serveTasks(handlers)` in the entry module. A handler returns `{ result, transfer? }`.
 * Errors cross as { name, message, code, key, file } and are rebuilt by the caller's `reviveError`.
 */
import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker } from "node:worker_threads";

/** A worker died or could not start (as opposed to a task that failed): callers may fall back to this thread. */
export class WorkerCrashError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WorkerCrashError";
  }
}

export interface TaskError {
  name: string;
  message: string;
  code?: string;
  key?: string;
  file?: string;
}

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: TaskError };

interface Job {
  id: number;
  task: string;
  args: unknown;
  transfer: ArrayBuffer[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Default pool size: every core but none beyond 4 (the work is memory-bound past that). */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

function startWorker(entry: URL): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry);
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${api}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(code, { eval: true, execArgv: [] });
}

export class WorkerPool {
  readonly size: number;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly running = new Map<Worker, Job>();
  private readonly queue: Job[] = [];
  private nextId = 1;
  private failure: Error | undefined;
  private closed = false;

  constructor(
    entry: URL,
    size: number,
    private readonly reviveError: (e: TaskError) => Error = plainError,
  ) {
    this.size = Math.max(1, Math.floor(size));
    for (let i = 0; i < this.size; i++) {
      const w = startWorker(entry);
      w.on("message", (reply: Reply) => this.onReply(w, reply));
      w.on("error", (err) =>
        this.onCrash(w, new WorkerCrashError(`merge worker failed: ${err.message}`, { cause: err })),
      );
      w.on("exit", (code) => {
        if (!this.closed) this.onCrash(w, new WorkerCrashError(`merge worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Runs `task` with `args` on a worker; `transfer` buffers are moved (detached here). */
  run<T>(task: string, args: unknown, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error("worker pool is closed"));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        id: this.nextId++,
        task,
        args,
        transfer,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.postMessage({ id: job.id, task: job.task, args: job.args }, job.transfer);
    }
  }

  private onReply(w: Worker, reply: Reply): void {
    const job = this.running.get(w);
    if (!job || job.id !== reply.id) return;
    this.running.delete(w);
    this.idle.push(w);
    if (reply.ok) job.resolve(reply.result);
    else job.reject(this.reviveError(reply.error));
    this.pump();
  }

  private onCrash(w: Worker, err: Error): void {
    this.failure ??= err;
    const job = this.running.get(w);
    this.running.delete(w);
    job?.reject(err);
    for (const j of this.queue.splice(0)) j.reject(err);
  }
}

function plainError(e: TaskError): Error {
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

export type TaskHandler = (
  args: never,
) => Promise<{ result: unknown; transfer?: ArrayBuffer[] }> | { result: unknown; transfer?: ArrayBuffer[] };

/** Worker side: answers the pool's task messages with the given handlers (one task at a time). */
export function serveTasks(handlers: Record<string, TaskHandler>): void {
  if (isMainThread || !parentPort) throw new Error("serveTasks must run inside a worker thread");
  const port = parentPort;
  port.on("message", async (msg: { id: number; task: string; args: unknown }) => {
    try {
      const handler = handlers[msg.task];
      if (!handler) throw new Error(`unknown task ${msg.task}`);
      const { result, transfer } = await handler(msg.args as never);
      port.postMessage({ id: msg.id, ok: true, result } satisfies Reply, transfer ?? []);
    } catch (err) {
      const e = err as Partial<TaskError> & Error;
      const error: TaskError = {
        name: e?.name ?? "Error",
        message: e?.message ?? String(err),
        code: typeof e?.code === "string" ? e.code : undefined,
        key: typeof e?.key === "string" ? e.key : undefined,
        file: typeof e?.file === "string" ? e.file : undefined,
      };
      port.postMessage({ id: msg.id, ok: false, error } satisfies Reply);
    }
  });
}

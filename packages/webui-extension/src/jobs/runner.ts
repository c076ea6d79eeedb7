/**
 * Starts a job's worker: a worker_thread, or for kinds that run native code (ONNX Runtime) a child process.
 * Why two: a cancel ends a job at once, and terminating a worker_thread while an ONNX Runtime call is in flight
 * aborts the whole service ("terminate called after throwing an instance of 'Napi::Error'", seen here on
 * Node 20.20 with onnxruntime-node 1.30); killing a child process is always safe. Both speak the same messages
 * (worker.ts) and are driven through one JobProcess interface.
 *
 * Worker files are TypeScript: on Node 20 `execArgv: ["--import", "tsx"]` does not make a worker's entry
 * loadable (ERR_UNKNOWN_FILE_EXTENSION, checked on Node 20.20), so a worker_thread starts from a one-line ESM
 * bootstrap that registers tsx's loader first and then imports worker.ts; a child process gets
 * `--import <tsx>` (that works for processes). Under a build that emits .js both are harmless.
 */
import { type ChildProcess, fork } from "node:child_process";
import { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { JobThread } from "./in-service.ts";
import type { WorkerInput } from "./worker.ts";

const WORKER_URL = new URL("./worker.ts", import.meta.url).href;

/** A running job's worker, whichever kind it is, with the pid its files are written under. */
export type JobProcess = JobThread & { readonly pid: number };

function resolveOrNull(specifier: string): string | null {
  try {
    return import.meta.resolve(specifier);
  } catch {
    return null;
  }
}

function startThread(input: WorkerInput): JobProcess {
  const api = resolveOrNull("tsx/esm/api");
  const bootstrap =
    api === null
      ? `import(${JSON.stringify(WORKER_URL)});`
      : `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL)}); });`;
  // A worker_thread writes files under this process's pid (atomic temp names carry it).
  return Object.assign(new Worker(bootstrap, { eval: true, workerData: input }), { pid: process.pid });
}

/** A forked child process behind node's Worker interface (the part JobThread names). */
class ChildJob extends EventEmitter implements JobProcess {
  readonly pid: number;
  private readonly exited: Promise<number>;

  constructor(private readonly child: ChildProcess) {
    super();
    this.pid = child.pid ?? -1;
    // "exit" can come before the last IPC messages are read; the channel's "disconnect" comes after them.
    const disconnected = new Promise<void>((resolve) =>
      child.connected ? child.once("disconnect", () => resolve()) : resolve(),
    );
    const ended = new Promise<number>((resolve) =>
      child.once("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128))),
    );
    this.exited = Promise.all([ended, disconnected]).then(([code]) => {
      this.emit("exit", code);
      return code;
    });
    child.on("message", (m) => this.emit("message", m));
    child.on("error", (err) => this.emit("error", err));
  }

  postMessage(message: unknown): void {
    if (this.child.connected) this.child.send(message as object);
  }

  async terminate(): Promise<number> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    return this.exited;
  }
}

function startProcess(input: WorkerInput): JobProcess {
  const tsx = resolveOrNull("tsx");
  const child = fork(fileURLToPath(WORKER_URL), [], {
    execArgv: tsx === null ? [] : ["--import", tsx],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const job = new ChildJob(child);
  child.send({ type: "input", input });
  return job;
}

export function startJobWorker(input: WorkerInput, isolation: "thread" | "process" = "thread"): JobProcess {
  return isolation === "process" ? startProcess(input) : startThread(input);
}

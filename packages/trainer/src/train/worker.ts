/**
 * Training in a worker_thread, for services (the webui's job runner) that must keep their event loop free: the
 * worker runs train() and posts every TrainEvent; pause() asks it to save a checkpoint and stop after the current
 * step (resume later with `resume: <output_dir>`), cancel() to stop without saving. The request travels through
 * a SharedArrayBuffer flag the loop polls after each step, so it needs no message round trip mid-step.
 */
import { Worker } from "node:worker_threads";
import type { TrainConfig } from "../config/schema.ts";
import type { TrainEvent } from "./events.ts";
import type { TrainResult } from "./train.ts";

export interface WorkerTrainOptions {
  onEvent?: (e: TrainEvent) => void;
  tokenizerDir?: string;
  evalEvery?: number;
  graphOptimization?: "disabled" | "basic" | "extended" | "all";
}

export interface TrainingWorker {
  pause(): void;
  cancel(): void;
  /** Resolves with the run's result; rejects with the run's error (message and name kept). */
  done: Promise<TrainResult>;
}

export const CONTROL_NONE = 0;
export const CONTROL_PAUSE = 1;
export const CONTROL_CANCEL = 2;

export type WorkerMessage =
  | { type: "event"; event: TrainEvent }
  | { type: "result"; result: TrainResult }
  | { type: "failed"; name: string; message: string };

/** Starts a worker (a .ts entry needs tsx's hooks registered inside the worker, as the engine's WorkerSession does). */
function startWorker(entry: URL, workerData: unknown): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData });
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const code = `import(${api}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(code, { eval: true, execArgv: [], workerData });
}

export function trainInWorker(config: TrainConfig, o: WorkerTrainOptions = {}): TrainingWorker {
  const control = new Int32Array(new SharedArrayBuffer(4));
  const entry = new URL(
    import.meta.url.endsWith(".ts") ? "./worker-entry.ts" : "./worker-entry.js",
    import.meta.url,
  );
  const worker = startWorker(entry, {
    config,
    control,
    options: { tokenizerDir: o.tokenizerDir, evalEvery: o.evalEvery, graphOptimization: o.graphOptimization },
  });
  const done = new Promise<TrainResult>((resolve, reject) => {
    let settled = false;
    worker.on("message", (m: WorkerMessage) => {
      if (m.type === "event") o.onEvent?.(m.event);
      else if (m.type === "result") {
        settled = true;
        resolve(m.result);
        void worker.terminate();
      } else {
        settled = true;
        const err = new Error(m.message);
        err.name = m.name;
        reject(err);
        void worker.terminate();
      }
    });
    worker.on("error", (err) => {
      settled = true;
      reject(err);
    });
    worker.on("exit", (code) => {
      if (!settled) reject(new Error(`training worker exited with code ${code} before finishing`));
    });
  });
  return {
    pause: () => Atomics.store(control, 0, CONTROL_PAUSE),
    cancel: () => Atomics.store(control, 0, CONTROL_CANCEL),
    done,
  };
}

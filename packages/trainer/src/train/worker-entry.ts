/** The training worker's body (see worker.ts): runs train() and reports events, the result or the error. */
import { parentPort, workerData } from "node:worker_threads";
import type { TrainConfig } from "../config/schema.ts";
import { train } from "./train.ts";
import { CONTROL_CANCEL, CONTROL_PAUSE, type WorkerMessage, type WorkerTrainOptions } from "./worker.ts";

const data = workerData as {
  config: TrainConfig;
  control: Int32Array;
  options: WorkerTrainOptions;
};
const post = (m: WorkerMessage) => parentPort?.postMessage(m);

try {
  const result = await train(data.config, {
    tokenizerDir: data.options.tokenizerDir,
    evalEvery: data.options.evalEvery,
    graphOptimization: data.options.graphOptimization,
    onEvent: (event) => post({ type: "event", event }),
    control: () => {
      const v = Atomics.load(data.control, 0);
      return v === CONTROL_PAUSE ? "pause" : v === CONTROL_CANCEL ? "cancel" : undefined;
    },
  });
  post({ type: "result", result });
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  post({ type: "failed", name: e.name, message: e.message });
}

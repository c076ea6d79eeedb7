/**
 * Drives a training-step graph directly on onnxruntime-node for the optimizer and learning tests: feeds state
 * (state_in.X) and batch inputs, takes state_out.X back. Deliberately independent of runtime/ (tested there).
 */
import ort from "onnxruntime-node";
import { numel } from "../../src/graph/ir.ts";
import type { TrainStepGraph } from "../../src/optim/train-step.ts";

export type Feed = { dtype: "float32" | "int64" | "float64"; shape: number[]; data: ArrayLike<number> };

export function tensorOf(f: Feed): ort.Tensor {
  if (f.dtype === "int64")
    return new ort.Tensor(
      "int64",
      BigInt64Array.from(Array.from(f.data), (x) => BigInt(x)),
      f.shape,
    );
  if (f.dtype === "float64") return new ort.Tensor("float64", Float64Array.from(f.data), f.shape);
  return new ort.Tensor("float32", Float32Array.from(f.data), f.shape);
}

export class Trainer {
  state = new Map<string, ort.Tensor>();
  constructor(
    readonly session: ort.InferenceSession,
    readonly graph: TrainStepGraph,
    params: Record<string, ArrayLike<number>>,
  ) {
    for (const s of graph.state) {
      const n = numel(s.shape);
      if (s.init === "param")
        this.state.set(s.name, tensorOf({ dtype: "float32", shape: s.shape, data: params[s.name] }));
      else if (s.dtype === "int64")
        this.state.set(s.name, new ort.Tensor("int64", new BigInt64Array(n), s.shape));
      else
        this.state.set(
          s.name,
          new ort.Tensor(
            "float32",
            new Float32Array(n).fill(s.init === "value" ? (s.value ?? 0) : 0),
            s.shape,
          ),
        );
    }
  }

  /** One step with the default group's learning rate `lr`. */
  step(lr: number, batch: Record<string, Feed> = {}): Promise<Record<string, ort.Tensor>> {
    return this.stepWith({ lr: { dtype: "float32", shape: [], data: [lr] }, ...batch });
  }

  async stepWith(batch: Record<string, Feed>): Promise<Record<string, ort.Tensor>> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(batch)) feeds[k] = tensorOf(v);
    for (const [k, v] of this.state) feeds[`state_in.${k}`] = v;
    const out = await this.session.run(feeds);
    for (const k of this.state.keys()) this.state.set(k, out[`state_out.${k}`]);
    return out;
  }

  value(name: string): Float32Array {
    return this.state.get(name)!.data as Float32Array;
  }
}

export async function createTrainer(
  graphBytes: Uint8Array,
  graph: TrainStepGraph,
  params: Record<string, ArrayLike<number>>,
  threads = 1,
): Promise<Trainer> {
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads };
  if (graph.disabledOptimizers.length > 0) {
    options.extra = { optimization: { disable_specified_optimizers: graph.disabledOptimizers.join(",") } };
  }
  return new Trainer(await ort.InferenceSession.create(graphBytes, options), graph, params);
}

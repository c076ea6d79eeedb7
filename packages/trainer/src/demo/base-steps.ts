/**
 * The small training loop pieces both stages of the demo base build share (VAE, then UNet): the learning-rate
 * curve, a TrainStepRunner over in-memory weights, reading the trained weights back, and batching.
 */
import type { HostTensor } from "@lora-studio/engine";
import { initialTrainState, Session, TrainStepRunner } from "@lora-studio/engine";
import type { StateMap } from "./base-init.ts";
import type { FullFineTuneGraph } from "./base-train-graphs.ts";

export const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });

/** A per-step learning rate: linear warmup, then cosine decay to 10% of the peak. */
export function lrAt(step: number, total: number, peak: number): number {
  const warm = Math.min(50, Math.floor(total / 10));
  if (step < warm) return (peak * (step + 1)) / warm;
  const p = (step - warm) / Math.max(1, total - warm);
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * p)));
}

export async function stepRunner(g: FullFineTuneGraph, init: StateMap, threads?: number) {
  const session = await Session.create(g.graph, {
    disabledOptimizers: g.step.disabledOptimizers,
    intraOpThreads: threads,
    onMessage: () => {},
  });
  const params = new Map([...init].map(([k, v]) => [k, v.data]));
  return { session, runner: new TrainStepRunner(session, initialTrainState(g.step, params)) };
}

export function stateOf(runner: TrainStepRunner, shapes: Map<string, number[]>): StateMap {
  const out: StateMap = new Map();
  for (const [key, shape] of shapes) {
    const t = runner.state.get(key);
    if (!t) throw new Error(`training state lacks ${key}`);
    out.set(key, { shape, data: Float32Array.from(t.data as Float32Array) });
  }
  return out;
}

export function stack(items: Float32Array[]): Float32Array {
  const out = new Float32Array(items.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const x of items) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

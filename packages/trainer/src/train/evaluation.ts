/**
 * Loss on a fixed evaluation batch: the first batch of epoch 0, each sample at every one of EVAL_TIMESTEPS with
 * fixed noise, through a forward-only UNet graph whose LoRA inputs are fed from the current training state.
 * The value only changes when the LoRA does, so a falling curve means learning, not a lucky timestep draw
 * (training losses jump with the random timestep). One session run per evaluation: the timesteps form the batch.
 */
import {
  buildUNetGraph,
  type HostTensor,
  loraInputNames,
  Session,
  type SessionOptions,
} from "@lora-studio/engine";
import type { TrainConfig } from "../config/schema.ts";
import { epochBatches } from "../dataset/order.ts";
import { type DataPlan, orderBuckets } from "../dataset/plan.ts";
import type { BaseModel } from "./base-model.ts";
import { type BatchContext, type PreparedBatch, prepareBatch } from "./batch.ts";
import type { SavedModule } from "./checkpoint.ts";

export const EVAL_TIMESTEPS = [100, 350, 600, 850];

export class FixedBatchEvaluator {
  private constructor(
    private readonly session: Session,
    private readonly feeds: Record<string, HostTensor>,
    private readonly target: Float32Array,
    private readonly weights: Float32Array,
    private readonly modules: readonly SavedModule[],
  ) {}

  static async create(
    base: BaseModel,
    config: Pick<TrainConfig, "batch_size" | "seed">,
    plan: DataPlan,
    ctx: BatchContext,
    modules: readonly SavedModule[],
    sessionOptions: SessionOptions = {},
  ): Promise<FixedBatchEvaluator> {
    const batch = epochBatches(orderBuckets(plan), config.batch_size, config.seed, 0)[0];
    const parts: PreparedBatch[] = [];
    for (const [e, t] of EVAL_TIMESTEPS.entries()) {
      const timesteps = batch.items.map(() => t);
      parts.push(await prepareBatch(ctx, batch, -1, { timesteps, noiseKey: -1 - e }));
    }
    const cat = (name: string) => {
      const tensors = parts.map((p) => p.feeds[name]);
      const data = new Float32Array(tensors.reduce((n, t) => n + t.data.length, 0));
      let at = 0;
      for (const t of tensors) {
        data.set(t.data as Float32Array, at);
        at += t.data.length;
      }
      const shape = [...tensors[0].shape];
      shape[0] *= tensors.length;
      return { dtype: "float32" as const, shape, data };
    };
    const sample = cat("sample");
    const [n, , h, w] = sample.shape;
    const ranks = new Map(modules.map((m) => [m.info.path, m.info.rank] as [string, number]));
    const { graph } = buildUNetGraph(base.checkpoint.unet, base.checkpoint.weights.unet, {
      batch: n,
      height: h,
      width: w,
      lora: { component: "unet", ranks },
    });
    const session = await Session.create(graph, { ...sessionOptions, onMessage: () => {} });
    const feeds = { sample, timestep: cat("timestep"), encoder_hidden_states: cat("encoder_hidden_states") };
    return new FixedBatchEvaluator(session, feeds, cat("target").data, cat("loss_weight").data, modules);
  }

  /** The weighted mean squared error of the UNet with the LoRA in `state` (scale alpha/rank). */
  async loss(state: ReadonlyMap<string, HostTensor>): Promise<number> {
    const f: Record<string, HostTensor> = { ...this.feeds };
    for (const m of this.modules) {
      const names = loraInputNames("unet", m.info.path);
      f[names.down] = copy(state.get(m.info.downState)!);
      f[names.up] = copy(state.get(m.info.upState)!);
      f[names.scale] = { dtype: "float32", shape: [], data: Float32Array.of(m.alpha / m.info.rank) };
    }
    const out = (await this.session.run(f)).out.data as Float32Array;
    const per = out.length / this.weights.length;
    let sum = 0;
    for (let b = 0; b < this.weights.length; b++) {
      let s = 0;
      for (let i = b * per; i < (b + 1) * per; i++) s += (out[i] - this.target[i]) ** 2;
      sum += (this.weights[b] * s) / per;
    }
    return sum / this.weights.length;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** State buffers may be transferred to the step worker later; the evaluation reads a copy. */
function copy(t: HostTensor): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: (t.data as Float32Array).slice() };
}

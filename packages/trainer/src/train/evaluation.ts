/**
 * Loss on a fixed evaluation batch: the first batch of epoch 0, each sample at every one of EVAL_TIMESTEPS with
 * fixed noise, through a forward-only UNet graph whose LoRA inputs are fed from the current training state.
 * The value only changes when the LoRA does, so a falling curve means learning, not a lucky timestep draw
 * (training losses jump with the random timestep). One session run per evaluation: the timesteps form the batch.
 * With train_text_encoder the captions' embeddings come from a text-encoder graph fed the current text-encoder
 * LoRA first (one more run).
 */
import {
  buildClipTextGraph,
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
    /** The text encoder with LoRA inputs and the batch's token ids (train_text_encoder only). */
    private readonly text?: { session: Session; ids: HostTensor },
  ) {}

  static async create(
    base: BaseModel,
    config: Pick<TrainConfig, "batch_size" | "seed" | "clip_skip">,
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
    const ranksOf = (component: SavedModule["component"]) =>
      new Map(
        modules
          .filter((m) => m.component === component)
          .map((m) => [m.info.path, m.info.rank] as [string, number]),
      );
    const { graph } = buildUNetGraph(base.checkpoint.unet, base.checkpoint.weights.unet, {
      batch: n,
      height: h,
      width: w,
      lora: { component: "unet", ranks: ranksOf("unet") },
    });
    const options = { ...sessionOptions, onMessage: () => {} };
    const session = await Session.create(graph, options);
    const feeds: Record<string, HostTensor> = { sample, timestep: cat("timestep") };
    let text: { session: Session; ids: HostTensor } | undefined;
    if (ctx.tokenIds) {
      const ids = catIds(parts.map((p) => p.feeds.input_ids));
      const te = buildClipTextGraph(base.checkpoint.textEncoder, base.checkpoint.weights.textEncoder, {
        batch: n,
        seqLen: ids.shape[1],
        clipSkip: config.clip_skip,
        lora: { component: "te", ranks: ranksOf("te") },
      });
      text = { session: await Session.create(te.graph, options), ids };
    } else feeds.encoder_hidden_states = cat("encoder_hidden_states");
    return new FixedBatchEvaluator(
      session,
      feeds,
      cat("target").data,
      cat("loss_weight").data,
      modules,
      text,
    );
  }

  /** The weighted mean squared error of the UNet with the LoRA in `state` (scale alpha/rank). */
  async loss(state: ReadonlyMap<string, HostTensor>): Promise<number> {
    const f: Record<string, HostTensor> = { ...this.feeds };
    const teFeeds: Record<string, HostTensor> = {};
    for (const m of this.modules) {
      const names = loraInputNames(m.component, m.info.path);
      const into = m.component === "te" ? teFeeds : f;
      into[names.down] = copy(state.get(m.info.downState)!);
      into[names.up] = copy(state.get(m.info.upState)!);
      into[names.scale] = { dtype: "float32", shape: [], data: Float32Array.of(m.alpha / m.info.rank) };
    }
    if (this.text) {
      const r = await this.text.session.run({ ...teFeeds, input_ids: this.text.ids }, ["out"]);
      f.encoder_hidden_states = r.out;
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

  async release(): Promise<void> {
    await this.text?.session.release();
    await this.session.release();
  }
}

/** Concatenates int64 [b, S] token-id tensors along the batch. */
function catIds(tensors: HostTensor[]): HostTensor {
  const data = new BigInt64Array(tensors.reduce((n, t) => n + t.data.length, 0));
  let at = 0;
  for (const t of tensors) {
    data.set(t.data as BigInt64Array, at);
    at += t.data.length;
  }
  return { dtype: "int64", shape: [data.length / tensors[0].shape[1], tensors[0].shape[1]], data };
}

/** State buffers may be transferred to the step worker later; the evaluation reads a copy. */
function copy(t: HostTensor): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: (t.data as Float32Array).slice() };
}

/**
 * The trainer's fixed-batch evaluation loss recomputed without the training graph: the engine's INFERENCE
 * text encoder (when the adapter has text-encoder modules) and UNet, fed the adapter as read back from the
 * written file, on the trainer's evaluation batch (EVAL_TIMESTEPS and their noise keys). It equals the
 * trainer's own evaluation only if the file holds the trained LoRA at the right scale. Strength 0 = the base.
 */
import {
  buildClipTextGraph,
  buildUNetGraph,
  type HostTensor,
  loraInputNames,
  openCheckpoint,
  Session,
} from "@lora-studio/engine";
import type { Adapter } from "@lora-studio/prompt-lora";
import type { TrainConfig } from "../src/config/schema.ts";
import { epochBatches } from "../src/dataset/order.ts";
import { orderBuckets, planDataset } from "../src/dataset/plan.ts";
import { openBaseModel } from "../src/train/base-model.ts";
import { prepareBatch } from "../src/train/batch.ts";
import { cacheLatents, TextEmbedder } from "../src/train/encoders.ts";
import { EVAL_TIMESTEPS } from "../src/train/evaluation.ts";

type Component = "te" | "unet";

function loraFeeds(adapter: Adapter, component: Component, strength: number): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {};
  for (const m of adapter.modules.filter((x) => x.component === component)) {
    const names = loraInputNames(component, m.path);
    f[names.down] = { dtype: "float32", shape: m.tensors.down.shape, data: m.tensors.down.data };
    f[names.up] = { dtype: "float32", shape: m.tensors.up.shape, data: m.tensors.up.data };
    const scale = (strength * (m.alpha ?? 0)) / m.tensors.down.shape[0];
    f[names.scale] = { dtype: "float32", shape: [], data: Float32Array.of(scale) };
  }
  return f;
}

/** One evaluation loss per strength (1 = the file's LoRA as trained, 0 = the base model). */
export async function inferenceEvalLosses(
  config: TrainConfig,
  adapter: Adapter,
  strengths: readonly number[],
): Promise<number[]> {
  const withTe = adapter.modules.some((m) => m.component === "te");
  const base = await openBaseModel(config.base_model);
  const plan = await planDataset(config);
  const latents = await cacheLatents(base, plan.images, {
    seed: config.seed,
    flipAug: false,
    diskDir: null,
    session: {},
  });
  // With a text-encoder LoRA the captions go in as token ids, through the LoRA'd text encoder below.
  const embedder = await TextEmbedder.create(base, {
    clipSkip: 1,
    cacheable: !withTe,
    session: {},
    ...(withTe ? { encode: false } : {}),
  });
  const ck = await openCheckpoint(config.base_model);
  const ranks = (component: Component) =>
    new Map(
      adapter.modules
        .filter((m) => m.component === component)
        .map((m) => [m.path, m.tensors.down.shape[0]] as [string, number]),
    );
  const opts = { graphOptimizationLevel: "disabled", onMessage: () => {} } as const;
  const [h, w] = [config.resolution[1] / 8, config.resolution[0] / 8];
  const unet = await Session.create(
    buildUNetGraph(ck.unet, ck.weights.unet, {
      batch: 1,
      height: h,
      width: w,
      lora: { component: "unet", ranks: ranks("unet") },
    }).graph,
    opts,
  );
  const text = withTe
    ? await Session.create(
        buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, {
          batch: 1,
          seqLen: 77,
          lora: { component: "te", ranks: ranks("te") },
        }).graph,
        opts,
      )
    : undefined;
  const batch = epochBatches(orderBuckets(plan), 1, config.seed, 0)[0];
  const losses: number[] = [];
  try {
    for (const strength of strengths) {
      let sum = 0;
      for (const [e, t] of EVAL_TIMESTEPS.entries()) {
        const { feeds } = await prepareBatch(
          {
            seed: config.seed,
            schedule: base.schedule,
            images: plan.images,
            latents,
            embedder,
            flipAug: false,
            noiseOffset: 0,
            captions: { shuffleCaption: false, keepTokens: 0, captionDropoutRate: 0 },
            tokenIds: withTe,
          },
          batch,
          -1,
          { timesteps: [t], noiseKey: -1 - e },
        );
        const hidden = text
          ? (await text.run({ ...loraFeeds(adapter, "te", strength), input_ids: feeds.input_ids }, ["out"]))
              .out
          : feeds.encoder_hidden_states;
        const o = (
          await unet.run({
            ...loraFeeds(adapter, "unet", strength),
            sample: feeds.sample,
            timestep: feeds.timestep,
            encoder_hidden_states: hidden,
          })
        ).out.data as Float32Array;
        const target = feeds.target.data as Float32Array;
        let s = 0;
        for (let i = 0; i < o.length; i++) s += (o[i] - target[i]) ** 2;
        sum += s / o.length;
      }
      losses.push(sum / EVAL_TIMESTEPS.length);
    }
  } finally {
    await unet.release();
    await text?.release();
    await embedder.release();
    await ck.close();
    await base.checkpoint.close();
  }
  return losses;
}

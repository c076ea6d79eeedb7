/**
 * Building the feeds of one micro-step: the batch's cached latents (flipped per a seeded coin with flip_aug),
 * noise (+ kohya's noise offset), timesteps uniform in [0, T), the noised latents (DDPM add_noise), the target
 * (noise, or velocity for v-prediction models), min-SNR-gamma weights, and the text embeddings of the processed
 * captions (or, with train_text_encoder, their token ids: the step graph runs the encoder itself). Every random draw comes from randomness.ts, keyed by (seed, micro-step).
 */

import {
  addNoise,
  applyNoiseOffset,
  type HostTensor,
  minSnrWeights,
  type NoiseSchedule,
  trainingTarget,
} from "@lora-studio/engine";
import { type CaptionProcessing, processCaption } from "../dataset/captions.ts";
import type { Batch } from "../dataset/order.ts";
import type { PlannedImage } from "../dataset/plan.ts";
import type { LatentStore, TextEmbedder } from "./encoders.ts";
import { stepNormals, stepRng, stepTimesteps } from "./randomness.ts";

export interface BatchContext {
  seed: number;
  schedule: NoiseSchedule;
  images: readonly PlannedImage[];
  latents: LatentStore;
  embedder: TextEmbedder;
  flipAug: boolean;
  noiseOffset: number;
  minSnrGamma?: number;
  captions: CaptionProcessing;
  /** train_text_encoder: feed `input_ids` [B, seqLen] int64 instead of `encoder_hidden_states`. */
  tokenIds?: boolean;
}

export interface PreparedBatch {
  feeds: Record<string, HostTensor>;
  timesteps: number[];
}

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });

/**
 * Feeds for `batch` at `microStep`. `fixed` replaces the random timesteps/noise/flip/caption choices by fixed
 * ones (evaluation on a fixed batch): timesteps as given, noise from `fixed.noiseKey`.
 */
export async function prepareBatch(
  ctx: BatchContext,
  batch: Batch,
  microStep: number,
  fixed?: { timesteps: number[]; noiseKey: number },
): Promise<PreparedBatch> {
  const n = batch.items.length;
  const flipRng = stepRng(ctx.seed, microStep, "flip");
  const captionRng = stepRng(ctx.seed, microStep, "caption");
  const parts = batch.items.map((idx) => ctx.latents.get(idx, !fixed && ctx.flipAug && flipRng.next() < 0.5));
  const [c, h, w] = parts[0].shape;
  const per = c * h * w;
  const x0 = new Float32Array(n * per);
  parts.forEach((p, i) => {
    x0.set(p.data, i * per);
  });
  const key = fixed ? fixed.noiseKey : microStep;
  let noise = stepNormals(ctx.seed, key, "noise", x0.length);
  if (ctx.noiseOffset > 0) {
    const normals = stepNormals(ctx.seed, key, "noiseOffset", n * c);
    noise = applyNoiseOffset(noise, [n, c, h, w], ctx.noiseOffset, normals);
  }
  const T = ctx.schedule.alphasCumprod.length;
  const timesteps = fixed ? fixed.timesteps : stepTimesteps(ctx.seed, microStep, n, T);
  const noisy = addNoise(ctx.schedule, x0, noise, timesteps);
  const target = trainingTarget(ctx.schedule, x0, noise, timesteps);
  const weights =
    ctx.minSnrGamma !== undefined
      ? minSnrWeights(ctx.schedule, timesteps, ctx.minSnrGamma)
      : new Float32Array(n).fill(1);
  const seq = ctx.embedder.seqLen;
  const width = ctx.embedder.width;
  const captions = batch.items.map((idx) =>
    fixed ? ctx.images[idx].caption : processCaption(ctx.images[idx].caption, ctx.captions, captionRng),
  );
  const feeds: Record<string, HostTensor> = {
    sample: f32([n, c, h, w], noisy),
    timestep: f32([n], Float32Array.from(timesteps)),
    target: f32([n, c, h, w], target),
    loss_weight: f32([n], weights),
  };
  if (ctx.tokenIds) {
    const ids = new BigInt64Array(n * seq);
    captions.forEach((caption, i) => {
      ids.set(ctx.embedder.tokenIds(caption), i * seq);
    });
    feeds.input_ids = { dtype: "int64", shape: [n, seq], data: ids };
  } else {
    const context = new Float32Array(n * seq * width);
    for (const [i, caption] of captions.entries())
      context.set(await ctx.embedder.embed(caption), i * seq * width);
    feeds.encoder_hidden_states = f32([n, seq, width], context);
  }
  return { timesteps, feeds };
}

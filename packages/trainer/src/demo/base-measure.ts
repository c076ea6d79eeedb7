/**
 * What the demo base build measures and feeds: caption embeddings from the frozen text encoder, VAE latents,
 * held-out reconstruction error and held-out denoising error (fixed timesteps and noise), each on batch-1
 * inference graphs over in-memory weights.
 */

import type { ClipTextConfig, ClipTokenizer, HostTensor, VaeConfig } from "@lora-studio/engine";
import {
  buildClipTextGraph,
  buildUNetGraph,
  buildVaeDecoderGraph,
  buildVaeEncoderGraph,
  memoryWeights,
  Session,
  TorchCpuGenerator,
} from "@lora-studio/engine";
import { deriveSeed } from "../dataset/rng.ts";
import { DEMO_IMAGE_SIZE, DEMO_LATENT_SIZE, DEMO_UNET, DEMO_VAE } from "./base-config.ts";
import type { StateMap } from "./base-init.ts";

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });
export const EVAL_TIMESTEPS = [50, 200, 400, 600, 800, 950];

/** Caption -> [77, D] embedding from the frozen text encoder (one batch-1 session, run per caption). */
export async function embedCaptions(
  cfg: ClipTextConfig,
  state: StateMap,
  tokenizer: ClipTokenizer,
  captions: string[],
): Promise<Map<string, Float32Array>> {
  const { graph } = buildClipTextGraph(cfg, memoryWeights(state), { batch: 1 });
  const session = await Session.create(graph, { onMessage: () => {} });
  const out = new Map<string, Float32Array>();
  try {
    for (const c of captions) {
      const ids = BigInt64Array.from(tokenizer.encode(c).inputIds.map(BigInt));
      const r = await session.run({ input_ids: { dtype: "int64", shape: [1, 77], data: ids } });
      out.set(c, r.out.data as Float32Array);
    }
  } finally {
    await session.release();
  }
  return out;
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

/** The encoder's posterior (mean and log-variance, unscaled latents) of each picture. */
export async function encodeMoments(
  vae: StateMap,
  images: Float32Array[],
  threads?: number,
  cfg: VaeConfig = DEMO_VAE,
): Promise<{ mean: Float32Array; logvar: Float32Array }[]> {
  const size = DEMO_IMAGE_SIZE;
  const { graph } = buildVaeEncoderGraph(cfg, memoryWeights(vae), {
    batch: 1,
    height: size,
    width: size,
  });
  const session = await Session.create(graph, { intraOpThreads: threads, onMessage: () => {} });
  try {
    const out: { mean: Float32Array; logvar: Float32Array }[] = [];
    for (const img of images) {
      const r = await session.run({ sample: f32([1, 3, size, size], img) });
      out.push({ mean: r.mean.data as Float32Array, logvar: r.logvar.data as Float32Array });
    }
    return out;
  } finally {
    await session.release();
  }
}

export async function encodeMeans(
  vae: StateMap,
  images: Float32Array[],
  threads?: number,
  cfg: VaeConfig = DEMO_VAE,
): Promise<Float32Array[]> {
  return (await encodeMoments(vae, images, threads, cfg)).map((m) => m.mean);
}

export async function reconstructionMse(
  vae: StateMap,
  images: Float32Array[],
  threads?: number,
  cfg: VaeConfig = DEMO_VAE,
): Promise<number> {
  const means = await encodeMeans(vae, images, threads, cfg);
  const l = DEMO_LATENT_SIZE;
  const { graph } = buildVaeDecoderGraph(cfg, memoryWeights(vae), { batch: 1, height: l, width: l });
  const session = await Session.create(graph, { intraOpThreads: threads, onMessage: () => {} });
  let sum = 0;
  let n = 0;
  try {
    for (let i = 0; i < images.length; i++) {
      const y = (await session.run({ latents: f32([1, 4, l, l], means[i]) })).out.data as Float32Array;
      for (let j = 0; j < y.length; j++) sum += (y[j] - images[i][j]) ** 2;
      n += y.length;
    }
  } finally {
    await session.release();
  }
  return sum / n;
}

/** Mean epsilon-prediction MSE over held-out latents x fixed timesteps, with fixed noise. */
export async function denoisingLoss(
  unet: StateMap,
  latents: Float32Array[],
  contexts: Float32Array[],
  alphasCumprod: Float32Array,
  threads?: number,
): Promise<number> {
  const l = DEMO_LATENT_SIZE;
  const { graph } = buildUNetGraph(DEMO_UNET, memoryWeights(unet), { batch: 1, height: l, width: l });
  const session = await Session.create(graph, { intraOpThreads: threads, onMessage: () => {} });
  let sum = 0;
  let n = 0;
  try {
    for (let i = 0; i < latents.length; i++)
      for (const t of EVAL_TIMESTEPS) {
        const eps = new TorchCpuGenerator(deriveSeed(4242, i, t)).randn(latents[i].length);
        const a = Math.sqrt(alphasCumprod[t]);
        const s = Math.sqrt(1 - alphasCumprod[t]);
        const xt = latents[i].map((x, j) => a * x + s * eps[j]);
        const r = await session.run({
          sample: f32([1, 4, l, l], xt),
          timestep: f32([1], Float32Array.of(t)),
          encoder_hidden_states: f32([1, 77, DEMO_UNET.cross_attention_dim], contexts[i]),
        });
        const y = r.out.data as Float32Array;
        for (let j = 0; j < y.length; j++) sum += (y[j] - eps[j]) ** 2;
        n += y.length;
      }
  } finally {
    await session.release();
  }
  return sum / n;
}

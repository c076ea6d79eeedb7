/**
 * The VAE stages of the demo base build:
 * - an AutoencoderKL trained from scratch on random crops of the build's pictures (base-train-graphs.ts
 *   vaeTrainGraph), then reparametrised so that latents x 0.18215 (the SD1 scaling factor the loaders assume)
 *   have unit variance;
 * - after the UNet, a decoder refinement: post_quant_conv + decoder trained further on more kinds of pictures
 *   with the encoder frozen, so the latent space the UNet learned stays exactly as it was (what Stability did
 *   for SD's VAE: the ft-EMA / ft-MSE decoders were fine-tuned with the encoder frozen).
 */
import { TorchCpuGenerator, type VaeConfig } from "@lora-studio/engine";
import { deriveSeed, Rng } from "../dataset/rng.ts";
import { DEMO_IMAGE_SIZE, DEMO_VAE } from "./base-config.ts";
import { initialWeights, type StateMap } from "./base-init.ts";
import { encodeMeans, encodeMoments } from "./base-measure.ts";
import { f32, lrAt, stack, stateOf, stepRunner } from "./base-steps.ts";
import { vaeDecoderTrainGraph, vaeTrainGraph } from "./base-train-graphs.ts";

export interface DemoVaeOptions {
  seed: number;
  steps: number;
  batch: number;
  /** Side of the random crops (the VAE is convolutional; crops keep the pictures' scale of edges). */
  crop: number;
  peakLr: number;
  /** Architecture (default DEMO_VAE). */
  vae?: VaeConfig;
  threads?: number;
  log: (line: string) => void;
}

/** The crop x crop window at (x, y) of a CHW picture of side `size`. */
function cropImage(img: Float32Array, size: number, crop: number, x: number, y: number): Float32Array {
  const out = new Float32Array(3 * crop * crop);
  for (let c = 0; c < 3; c++)
    for (let r = 0; r < crop; r++) {
      const from = c * size * size + (y + r) * size + x;
      out.set(img.subarray(from, from + crop), c * crop * crop + r * crop);
    }
  return out;
}

/** Trains the VAE on `pictures` (CHW in [-1, 1], DEMO_IMAGE_SIZE square); returns the raw (unscaled) weights. */
export async function trainDemoVae(
  pictures: Float32Array[],
  o: DemoVaeOptions & { rng: Rng },
): Promise<StateMap> {
  const size = DEMO_IMAGE_SIZE;
  const { crop, batch } = o;
  const cfg = o.vae ?? DEMO_VAE;
  const g = vaeTrainGraph(cfg, batch, crop, 1e-4, 1);
  const init = initialWeights(g.shapes, deriveSeed(o.seed, 1), { zeroResiduals: true });
  // Start the posterior narrow (std e^-3): with unit noise from step 1 the decoder cannot read the latents at
  // all, and the reconstruction stalls for hundreds of steps; the KL term still shapes the variance later.
  const quantBias = init.get("quant_conv.bias");
  if (quantBias) quantBias.data.fill(-6, cfg.latent_channels);
  const t = await stepRunner(g, init, o.threads);
  const rng = o.rng;
  const cl = crop / 8;
  try {
    for (let step = 0; step < o.steps; step++) {
      const images = Array.from({ length: batch }, () =>
        cropImage(
          pictures[rng.int(pictures.length)],
          size,
          crop,
          rng.int(size - crop + 1),
          rng.int(size - crop + 1),
        ),
      );
      const noise = new TorchCpuGenerator(deriveSeed(o.seed, 11, step)).randn(batch * 4 * cl * cl);
      const r = await t.runner.step({
        image: f32([batch, 3, crop, crop], stack(images)),
        noise: f32([batch, 4, cl, cl], noise),
        lr: f32([], Float32Array.of(lrAt(step, o.steps, o.peakLr))),
      });
      if (step % 25 === 0 || step === o.steps - 1)
        o.log(
          `vae step ${step + 1}/${o.steps} loss ${(r.loss.data as Float32Array)[0].toFixed(5)} ` +
            `recon ${(r.recon_mse.data as Float32Array)[0].toFixed(5)} kl ${(r.kl.data as Float32Array)[0].toFixed(3)}`,
        );
    }
    return stateOf(t.runner, g.shapes);
  } finally {
    await t.session.release();
  }
}

/**
 * Trains post_quant_conv + decoder of `vae` further on `pictures` with the encoder frozen; returns the whole VAE
 * (encoder weights untouched). The decoder sees posterior samples (mean + std x noise) of aligned crops, as
 * in the first stage, so it stays tolerant of latents that are not exactly an encoder mean (the UNet's).
 */
export async function refineVaeDecoder(
  vae: StateMap,
  pictures: Float32Array[],
  o: DemoVaeOptions,
): Promise<StateMap> {
  const size = DEMO_IMAGE_SIZE;
  const cfg = o.vae ?? DEMO_VAE;
  const { crop, batch } = o;
  const f = 2 ** (cfg.block_out_channels.length - 1);
  const lc = cfg.latent_channels;
  const [cl, l] = [crop / f, size / f];
  const moments = await encodeMoments(vae, pictures, o.threads, cfg);
  const g = vaeDecoderTrainGraph(cfg, batch, crop);
  const init: StateMap = new Map();
  for (const [key, shape] of g.shapes) {
    const t = vae.get(key);
    if (!t) throw new Error(`VAE state lacks ${key}`);
    init.set(key, { shape, data: t.data });
  }
  const t = await stepRunner(g, init, o.threads);
  const rng = new Rng(deriveSeed(o.seed, 30));
  try {
    for (let step = 0; step < o.steps; step++) {
      const latents = new Float32Array(batch * lc * cl * cl);
      const images: Float32Array[] = [];
      const noise = new TorchCpuGenerator(deriveSeed(o.seed, 31, step)).randn(latents.length);
      for (let k = 0; k < batch; k++) {
        const i = rng.int(pictures.length);
        const [lx, ly] = [rng.int(l - cl + 1), rng.int(l - cl + 1)];
        const { mean, logvar } = moments[i];
        for (let c = 0; c < lc; c++)
          for (let y = 0; y < cl; y++)
            for (let x = 0; x < cl; x++) {
              const from = c * l * l + (ly + y) * l + lx + x;
              const to = ((k * lc + c) * cl + y) * cl + x;
              latents[to] = mean[from] + Math.exp(0.5 * logvar[from]) * noise[to];
            }
        images.push(cropImage(pictures[i], size, crop, lx * f, ly * f));
      }
      const r = await t.runner.step({
        latents: f32([batch, lc, cl, cl], latents),
        image: f32([batch, 3, crop, crop], stack(images)),
        lr: f32([], Float32Array.of(lrAt(step, o.steps, o.peakLr))),
      });
      if (step % 25 === 0 || step === o.steps - 1)
        o.log(`vae decoder step ${step + 1}/${o.steps} recon ${(r.loss.data as Float32Array)[0].toFixed(5)}`);
    }
    const out: StateMap = new Map(vae);
    for (const [key, value] of stateOf(t.runner, g.shapes)) out.set(key, value);
    return out;
  } finally {
    await t.session.release();
  }
}

/**
 * Scales the latent space by s without changing what the VAE computes: mean' = s * mean (quant_conv rows of
 * the mean), logvar' = logvar + 2 ln s (so the posterior scales too), post_quant_conv divides its input by s.
 */
function rescaleLatents(vae: StateMap, s: number, latentChannels: number): void {
  const qw = vae.get("quant_conv.weight");
  const qb = vae.get("quant_conv.bias");
  const pw = vae.get("post_quant_conv.weight");
  if (!qw || !qb || !pw) throw new Error("VAE state lacks quant_conv / post_quant_conv");
  const rowLen = qw.data.length / qw.shape[0];
  for (let r = 0; r < latentChannels; r++) {
    for (let i = 0; i < rowLen; i++) qw.data[r * rowLen + i] *= s;
    qb.data[r] *= s;
    qb.data[r + latentChannels] += 2 * Math.log(s);
  }
  const [outC, inC] = pw.shape;
  for (let o = 0; o < outC; o++) for (let i = 0; i < inC; i++) pw.data[o * inC + i] /= s;
}

/** Rescales `vae` in place so that the latents of `pictures` x scaling_factor have unit RMS; returns the raw RMS. */
export async function normaliseLatents(
  vae: StateMap,
  pictures: Float32Array[],
  threads?: number,
  cfg: VaeConfig = DEMO_VAE,
): Promise<number> {
  let sq = 0;
  let n = 0;
  for (const m of await encodeMeans(vae, pictures, threads, cfg))
    for (const x of m) {
      sq += x * x;
      n++;
    }
  const rawStd = Math.sqrt(sq / n);
  rescaleLatents(vae, 1 / (cfg.scaling_factor * rawStd), cfg.latent_channels);
  return rawStd;
}

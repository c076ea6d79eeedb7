/**
 * Builds the demo base model from nothing, with this engine, deterministically from a seed:
 *  1. the generic pictures ("a red circle on a blue background", scenes.ts) rendered in memory;
 *  2. a CLIP-format BPE tokenizer learned from every demo caption (bpe-trainer.ts);
 *  3. a randomly initialised, frozen CLIP text encoder (its embeddings only need to tell captions apart; the
 *     build prints how far apart they are);
 *  4. the VAE trained as an autoencoder on the generic pictures (base-train-graphs.ts), then reparametrised so
 *     that latents x 0.18215 (the SD1 scaling factor the loaders assume) have unit variance;
 *  5. the UNet trained from scratch (full fine-tune of every weight) to predict the noise on those latents,
 *     conditioned on the caption embeddings, with 10% empty captions so classifier-free guidance works;
 *  6. held-out reconstruction and denoising losses, and the single-file checkpoint (base-writer.ts).
 */

import type { HostTensor } from "@lora-studio/engine";
import {
  buildClipTextGraph,
  ClipTokenizer,
  createNoiseSchedule,
  graphInputWeights,
  initialTrainState,
  SD_SCHEDULE,
  Session,
  TorchCpuGenerator,
  TrainStepRunner,
} from "@lora-studio/engine";
import { deriveSeed, Rng } from "../dataset/rng.ts";
import { DEMO_IMAGE_SIZE, DEMO_LATENT_SIZE, DEMO_UNET, DEMO_VAE, demoTextConfig } from "./base-config.ts";
import { initialWeights, type StateMap } from "./base-init.ts";
import { cosine, denoisingLoss, embedCaptions, encodeMeans, reconstructionMse } from "./base-measure.ts";
import { type FullFineTuneGraph, unetTrainGraph, vaeTrainGraph } from "./base-train-graphs.ts";
import { writeDemoBase } from "./base-writer.ts";
import { trainClipBpe } from "./bpe-trainer.ts";
import { demoScene, pngToTensor, renderPng } from "./dataset.ts";
import { demoCaptionCorpus } from "./scenes.ts";

export interface BuildDemoBaseOptions {
  seed?: number;
  /** Generic pictures to train on (held-out pictures come after these indices). */
  pictures?: number;
  vaeSteps?: number;
  vaeBatch?: number;
  /** Side of the random crops the VAE trains on (default 32). */
  vaeCrop?: number;
  unetSteps?: number;
  unetBatch?: number;
  /** Peak learning rate of the UNet (the VAE uses twice this). */
  learningRate?: number;
  threads?: number;
  log?: (line: string) => void;
}

export interface DemoBaseReport {
  file: string;
  seconds: number;
  vae: { steps: number; heldOutMse: number; heldOutRmse255: number; latentStd: number };
  unet: { steps: number; heldOutLossBefore: number; heldOutLossAfter: number };
  text: { meanCosineBetweenCaptions: number };
}

const f32 = (shape: number[], data: Float32Array): HostTensor => ({ dtype: "float32", shape, data });
const HELD_OUT = 32;

interface Picture {
  image: Float32Array;
  caption: string;
}

async function renderGeneric(seed: number, from: number, count: number): Promise<Picture[]> {
  const out: Picture[] = [];
  for (let i = from; i < from + count; i++) {
    const scene = demoScene("generic", seed, i, DEMO_IMAGE_SIZE);
    out.push({ image: (await pngToTensor(await renderPng(scene.svg))).data, caption: scene.caption });
  }
  return out;
}

/** A per-step learning rate: linear warmup, then cosine decay to 10% of the peak. */
function lrAt(step: number, total: number, peak: number): number {
  const warm = Math.min(50, Math.floor(total / 10));
  if (step < warm) return (peak * (step + 1)) / warm;
  const p = (step - warm) / Math.max(1, total - warm);
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * p)));
}

async function trainer(g: FullFineTuneGraph, init: StateMap, threads?: number) {
  const session = await Session.create(g.graph, {
    disabledOptimizers: g.step.disabledOptimizers,
    intraOpThreads: threads,
    onMessage: () => {},
  });
  const params = new Map([...init].map(([k, v]) => [k, v.data]));
  return { session, runner: new TrainStepRunner(session, initialTrainState(g.step, params)) };
}

function stateOf(runner: TrainStepRunner, shapes: Map<string, number[]>): StateMap {
  const out: StateMap = new Map();
  for (const [key, shape] of shapes) {
    const t = runner.state.get(key);
    if (!t) throw new Error(`training state lacks ${key}`);
    out.set(key, { shape, data: Float32Array.from(t.data as Float32Array) });
  }
  return out;
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

function stack(items: Float32Array[]): Float32Array {
  const out = new Float32Array(items.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const x of items) {
    out.set(x, o);
    o += x.length;
  }
  return out;
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

export async function buildDemoBase(outDir: string, o: BuildDemoBaseOptions = {}): Promise<DemoBaseReport> {
  const started = Date.now();
  const seed = o.seed ?? 20261122;
  const count = o.pictures ?? 384;
  const log = o.log ?? (() => {});
  const threads = o.threads;
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;

  const train = await renderGeneric(seed, 0, count);
  const heldOut = await renderGeneric(seed, count, HELD_OUT);
  log(`[${elapsed()}] rendered ${count} training + ${HELD_OUT} held-out generic pictures`);

  const bpe = trainClipBpe(demoCaptionCorpus());
  const tokenizer = new ClipTokenizer({
    vocab: bpe.vocab,
    merges: bpe.merges,
    special: { bos: "<|startoftext|>", eos: "<|endoftext|>", unk: "<|endoftext|>", pad: "<|endoftext|>" },
  });
  const teCfg = demoTextConfig(bpe.vocab.size);
  const teShapes = graphInputWeights();
  buildClipTextGraph(teCfg, teShapes, { batch: 1 });
  const teState = initialWeights(teShapes.shapes, deriveSeed(seed, 3));
  const captions = [...new Set([...train, ...heldOut].map((p) => p.caption)), ""];
  const emb = await embedCaptions(teCfg, teState, tokenizer, captions);
  let cos = 0;
  let pairs = 0;
  for (let i = 0; i + 1 < captions.length - 1; i += 2) {
    // Positions 1..15 hold the caption's tokens (0 is the same start token for all, the rest mostly padding).
    const words = (c: string) =>
      (emb.get(c) as Float32Array).subarray(teCfg.hidden_size, 16 * teCfg.hidden_size);
    cos += cosine(words(captions[i]), words(captions[i + 1]));
    pairs++;
  }
  const meanCos = cos / pairs;
  log(
    `[${elapsed()}] tokenizer: ${bpe.vocab.size} tokens; text encoder: mean cosine between the token positions of two captions ${meanCos.toFixed(4)}`,
  );

  // --- VAE ---
  const vaeSteps = o.vaeSteps ?? 350;
  const vaeBatch = o.vaeBatch ?? 8;
  const peak = o.learningRate ?? 1e-3;
  const size = DEMO_IMAGE_SIZE;
  const lat = DEMO_LATENT_SIZE;
  // The VAE trains on random 32x32 crops (a quarter of the cost of whole pictures; it is convolutional, and the
  // crops keep the pictures' scale of edges and flat areas).
  const crop = o.vaeCrop ?? 32;
  const vg = vaeTrainGraph(DEMO_VAE, vaeBatch, crop, 1e-4, 1);
  const vaeInit = initialWeights(vg.shapes, deriveSeed(seed, 1), { zeroResiduals: true });
  // Start the posterior narrow (std e^-3): with unit noise from step 1 the decoder cannot read the latents at
  // all, and the reconstruction stalls for hundreds of steps; the KL term still shapes the variance later.
  const quantBias = vaeInit.get("quant_conv.bias");
  if (quantBias) quantBias.data.fill(-6, DEMO_VAE.latent_channels);
  const vt = await trainer(vg, vaeInit, threads);
  const rng = new Rng(deriveSeed(seed, 10));
  for (let step = 0; step < vaeSteps; step++) {
    const batch = Array.from({ length: vaeBatch }, () =>
      cropImage(train[rng.int(count)].image, size, crop, rng.int(size - crop + 1), rng.int(size - crop + 1)),
    );
    const cl = crop / 8;
    const noise = new TorchCpuGenerator(deriveSeed(seed, 11, step)).randn(vaeBatch * 4 * cl * cl);
    const r = await vt.runner.step({
      image: f32([vaeBatch, 3, crop, crop], stack(batch)),
      noise: f32([vaeBatch, 4, cl, cl], noise),
      lr: f32([], Float32Array.of(lrAt(step, vaeSteps, 2 * peak))),
    });
    if (step % 25 === 0 || step === vaeSteps - 1)
      log(
        `[${elapsed()}] vae step ${step + 1}/${vaeSteps} loss ${(r.loss.data as Float32Array)[0].toFixed(5)} ` +
          `recon ${(r.recon_mse.data as Float32Array)[0].toFixed(5)} kl ${(r.kl.data as Float32Array)[0].toFixed(3)}`,
      );
  }
  const vae = stateOf(vt.runner, vg.shapes);
  await vt.session.release();
  const heldOutMse = await reconstructionMse(
    vae,
    heldOut.map((p) => p.image),
    threads,
  );

  const rawMeans = await encodeMeans(
    vae,
    train.map((p) => p.image),
    threads,
  );
  let sq = 0;
  let n = 0;
  for (const m of rawMeans)
    for (const x of m) {
      sq += x * x;
      n++;
    }
  const rawStd = Math.sqrt(sq / n);
  rescaleLatents(vae, 1 / (DEMO_VAE.scaling_factor * rawStd), DEMO_VAE.latent_channels);
  const sf = DEMO_VAE.scaling_factor;
  const latents = (
    await encodeMeans(
      vae,
      train.map((p) => p.image),
      threads,
    )
  ).map((m) => m.map((x) => x * sf));
  const heldLatents = (
    await encodeMeans(
      vae,
      heldOut.map((p) => p.image),
      threads,
    )
  ).map((m) => m.map((x) => x * sf));
  log(
    `[${elapsed()}] vae held-out reconstruction MSE ${heldOutMse.toFixed(5)} (RMSE ${(Math.sqrt(heldOutMse) * 127.5).toFixed(1)}/255); latent std ${rawStd.toFixed(3)} rescaled to 1/${sf}`,
  );

  // --- UNet ---
  const schedule = createNoiseSchedule(SD_SCHEDULE);
  const ac = schedule.alphasCumprod;
  const unetSteps = o.unetSteps ?? 2000;
  const unetBatch = o.unetBatch ?? 8;
  const ug = unetTrainGraph(DEMO_UNET, unetBatch, lat, 10);
  const unetInit = initialWeights(ug.shapes, deriveSeed(seed, 2), { zeroResiduals: true });
  const heldCtx = heldOut.map((p) => emb.get(p.caption) as Float32Array);
  const before = await denoisingLoss(unetInit, heldLatents, heldCtx, ac, threads);
  const ut = await trainer(ug, unetInit, threads);
  const ctxLen = 77 * DEMO_UNET.cross_attention_dim;
  const latLen = 4 * lat * lat;
  const empty = emb.get("") as Float32Array;
  let avg = 0;
  for (let step = 0; step < unetSteps; step++) {
    const sample = new Float32Array(unetBatch * latLen);
    const ctx = new Float32Array(unetBatch * ctxLen);
    const timesteps = new Float32Array(unetBatch);
    const noise = new TorchCpuGenerator(deriveSeed(seed, 21, step)).randn(unetBatch * latLen);
    for (let k = 0; k < unetBatch; k++) {
      const i = rng.int(count);
      const t = rng.int(1000);
      timesteps[k] = t;
      const a = Math.sqrt(ac[t]);
      const s = Math.sqrt(1 - ac[t]);
      for (let j = 0; j < latLen; j++) sample[k * latLen + j] = a * latents[i][j] + s * noise[k * latLen + j];
      ctx.set(rng.next() < 0.1 ? empty : (emb.get(train[i].caption) as Float32Array), k * ctxLen);
    }
    const r = await ut.runner.step({
      sample: f32([unetBatch, 4, lat, lat], sample),
      timestep: f32([unetBatch], timesteps),
      encoder_hidden_states: f32([unetBatch, 77, DEMO_UNET.cross_attention_dim], ctx),
      target: f32([unetBatch, 4, lat, lat], noise),
      lr: f32([], Float32Array.of(lrAt(step, unetSteps, peak))),
    });
    const loss = (r.mse.data as Float32Array)[0];
    avg = step === 0 ? loss : 0.98 * avg + 0.02 * loss;
    if (step % 50 === 0 || step === unetSteps - 1)
      log(
        `[${elapsed()}] unet step ${step + 1}/${unetSteps} loss ${loss.toFixed(4)} (avg ${avg.toFixed(4)})`,
      );
  }
  const unet = stateOf(ut.runner, ug.shapes);
  await ut.session.release();
  const after = await denoisingLoss(unet, heldLatents, heldCtx, ac, threads);
  log(`[${elapsed()}] unet held-out denoising MSE ${before.toFixed(4)} before -> ${after.toFixed(4)} after`);

  const seconds = (Date.now() - started) / 1000;
  const report: DemoBaseReport = {
    file: "",
    seconds,
    vae: { steps: vaeSteps, heldOutMse, heldOutRmse255: Math.sqrt(heldOutMse) * 127.5, latentStd: rawStd },
    unet: { steps: unetSteps, heldOutLossBefore: before, heldOutLossAfter: after },
    text: { meanCosineBetweenCaptions: meanCos },
  };
  report.file = await writeDemoBase(outDir, {
    unet,
    vae,
    textEncoder: teState,
    configs: { unet: DEMO_UNET, vae: DEMO_VAE, textEncoder: teCfg },
    tokenizer: bpe,
    build: { seed, pictures: count, vaeBatch, unetBatch, learningRate: peak, ...report, file: undefined },
  });
  log(`[${elapsed()}] wrote ${report.file}`);
  return report;
}

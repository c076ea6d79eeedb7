/**
 * Builds the demo base model from nothing, with this engine, deterministically from a seed:
 *  1. the generic pictures ("a red circle on a blue background", scenes.ts) rendered in memory, and for the
 *     VAE decoder only, ink-wash pictures of another seed than the demo's dataset (see 6);
 *  2. a CLIP-format BPE tokenizer learned from every demo caption (bpe-trainer.ts);
 *  3. a randomly initialised, frozen CLIP text encoder (its embeddings only need to tell captions apart; the
 *     build prints how far apart they are);
 *  4. the VAE trained as an autoencoder on the generic pictures (base-vae.ts), then reparametrised so that
 *     latents x 0.18215 (the SD1 scaling factor the loaders assume) have unit variance;
 *  5. the UNet trained from scratch (full fine-tune of every weight) to predict the noise on the latents of the
 *     generic pictures (it must know nothing of ink-wash: that is the LoRA's job), conditioned on the caption
 *     embeddings, with 10% empty captions so classifier-free guidance works;
 *  6. the VAE decoder refined on generic AND ink-wash pictures with the encoder frozen (base-vae.ts), starting
 *     from the float16 weights the file stores. A LoRA trains the UNet only, so what the decoder cannot draw no
 *     LoRA can teach: SD's own VAE has seen every kind of picture, and a decoder that has only seen flat colour
 *     shapes turns dark ink strokes on cream paper into green-tinted smears (measured before this stage:
 *     MSE 0.11 on the demo set vs 0.05 on generic pictures). `refineDemoBase` runs this stage alone on an
 *     existing base (the same result as a whole build when that base came from the stages 1-5 of this file);
 *  7. held-out reconstruction and denoising losses, and the single-file checkpoint (base-writer.ts).
 */

import {
  buildClipTextGraph,
  ClipTokenizer,
  createNoiseSchedule,
  graphInputWeights,
  SD_SCHEDULE,
  TorchCpuGenerator,
} from "@lora-studio/engine";
import { deriveSeed, Rng } from "../dataset/rng.ts";
import { DEMO_IMAGE_SIZE, DEMO_LATENT_SIZE, DEMO_UNET, DEMO_VAE, demoTextConfig } from "./base-config.ts";
import { initialWeights } from "./base-init.ts";
import { cosine, denoisingLoss, embedCaptions, encodeMeans, reconstructionMse } from "./base-measure.ts";
import { asStored, type RefineReport, refineDecoder } from "./base-refine.ts";
import { f32, lrAt, stateOf, stepRunner } from "./base-steps.ts";
import { unetTrainGraph } from "./base-train-graphs.ts";
import { normaliseLatents, trainDemoVae } from "./base-vae.ts";
import { writeDemoBase } from "./base-writer.ts";
import { trainClipBpe } from "./bpe-trainer.ts";
import { type DemoDatasetKind, demoScene, pngToTensor, renderPng } from "./dataset.ts";
import { demoCaptionCorpus } from "./scenes.ts";

export interface BuildDemoBaseOptions {
  seed?: number;
  /** Generic pictures to train on (held-out pictures come after these indices). */
  pictures?: number;
  /** Ink-wash pictures added to the VAE decoder refinement (never to the UNet's training set). */
  refinePictures?: number;
  refineSteps?: number;
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
  vae: {
    steps: number;
    heldOutMse: number;
    heldOutRmse255: number;
    latentStd: number;
  };
  refine: RefineReport;
  unet: { steps: number; heldOutLossBefore: number; heldOutLossAfter: number };
  text: { meanCosineBetweenCaptions: number };
}

const HELD_OUT = 32;

interface Picture {
  image: Float32Array;
  caption: string;
}

async function render(kind: DemoDatasetKind, seed: number, from: number, count: number): Promise<Picture[]> {
  const out: Picture[] = [];
  for (let i = from; i < from + count; i++) {
    const scene = demoScene(kind, seed, i, DEMO_IMAGE_SIZE);
    out.push({ image: (await pngToTensor(await renderPng(scene.svg))).data, caption: scene.caption });
  }
  return out;
}

export async function buildDemoBase(outDir: string, o: BuildDemoBaseOptions = {}): Promise<DemoBaseReport> {
  const started = Date.now();
  const seed = o.seed ?? 20261122;
  const count = o.pictures ?? 384;
  const log = o.log ?? (() => {});
  const threads = o.threads;
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;

  const train = await render("generic", seed, 0, count);
  const heldOut = await render("generic", seed, count, HELD_OUT);
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
  const lat = DEMO_LATENT_SIZE;
  // One generator draws the VAE's crops and then the UNet's samples.
  const rng = new Rng(deriveSeed(seed, 10));
  const vae = await trainDemoVae(
    train.map((p) => p.image),
    {
      rng,
      seed,
      steps: vaeSteps,
      batch: vaeBatch,
      crop: o.vaeCrop ?? 32,
      peakLr: 2 * peak,
      threads,
      log: (line) => log(`[${elapsed()}] ${line}`),
    },
  );
  const heldOutMse = await reconstructionMse(
    vae,
    heldOut.map((p) => p.image),
    threads,
  );
  const rawStd = await normaliseLatents(
    vae,
    train.map((p) => p.image),
    threads,
  );
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
  const ut = await stepRunner(ug, unetInit, threads);
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

  // --- VAE decoder refinement, from the weights as the file stores them ---
  const refined = await refineDecoder(asStored(vae), {
    ...o,
    seed,
    pictures: count,
    log: (line) => log(`[${elapsed()}] ${line}`),
  });

  const seconds = (Date.now() - started) / 1000;
  const report: DemoBaseReport = {
    file: "",
    seconds,
    vae: {
      steps: vaeSteps,
      heldOutMse,
      heldOutRmse255: Math.sqrt(heldOutMse) * 127.5,
      latentStd: rawStd,
    },
    unet: { steps: unetSteps, heldOutLossBefore: before, heldOutLossAfter: after },
    refine: refined.report,
    text: { meanCosineBetweenCaptions: meanCos },
  };
  report.file = await writeDemoBase(outDir, {
    unet,
    vae: refined.vae,
    textEncoder: teState,
    configs: { unet: DEMO_UNET, vae: DEMO_VAE, textEncoder: teCfg },
    tokenizer: bpe,
    build: {
      seed,
      pictures: count,
      vaeBatch,
      unetBatch,
      learningRate: peak,
      ...report,
      file: undefined,
    },
  });
  log(`[${elapsed()}] wrote ${report.file}`);
  return report;
}

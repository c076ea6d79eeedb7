/**
 * Stage 6 of the demo base build (build-base.ts): the VAE decoder refined on generic and ink-wash pictures with
 * the encoder frozen, so the UNet's latent space is untouched. `refineDemoBase` runs the stage alone on an
 * existing base file (read back through the engine's loader) and writes the refined base; `refineDecoder` is
 * the stage itself, shared with the whole build.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  buildClipTextGraph,
  buildUNetGraph,
  buildVaeDecoderGraph,
  buildVaeEncoderGraph,
  graphInputWeights,
  openCheckpoint,
  readTensorFloat32,
  type WeightSource,
} from "@lora-studio/engine";
import { f16ToF32, f32ToF16 } from "@lora-studio/prompt-lora";
import { deriveSeed } from "../dataset/rng.ts";
import { DEMO_IMAGE_SIZE, DEMO_LATENT_SIZE, DEMO_UNET, DEMO_VAE, demoTextConfig } from "./base-config.ts";
import type { StateMap } from "./base-init.ts";
import { reconstructionMse } from "./base-measure.ts";
import { refineVaeDecoder } from "./base-vae.ts";
import { writeDemoBase } from "./base-writer.ts";
import { trainClipBpe } from "./bpe-trainer.ts";
import { type DemoDatasetKind, demoScene, pngToTensor, renderPng } from "./dataset.ts";
import { demoCaptionCorpus } from "./scenes.ts";

export interface RefineOptions {
  seed?: number;
  /** Generic pictures of the build (the refinement sees them again so the decoder keeps drawing them). */
  pictures?: number;
  /** Ink-wash pictures (of a seed derived from the build's, not the demo dataset's) added to them. */
  refinePictures?: number;
  refineSteps?: number;
  threads?: number;
  log?: (line: string) => void;
}

export interface RefineReport {
  steps: number;
  inkwashPictures: number;
  /** Reconstruction MSE ([-1, 1] units) of the demo dataset's pictures (never trained on), before and after. */
  inkwashMseBefore: number;
  inkwashMseAfter: number;
  /** The same for held-out generic pictures. */
  genericMseBefore: number;
  genericMseAfter: number;
}

export async function renderPictures(
  kind: DemoDatasetKind,
  seed: number,
  from: number,
  count: number,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = from; i < from + count; i++)
    out.push((await pngToTensor(await renderPng(demoScene(kind, seed, i, DEMO_IMAGE_SIZE).svg))).data);
  return out;
}

/** The weights as the float16 file stores them (what a refinement of a shipped base starts from). */
export function asStored(state: StateMap): StateMap {
  return new Map([...state].map(([k, t]) => [k, { shape: t.shape, data: f16ToF32(f32ToF16(t.data)) }]));
}

export async function refineDecoder(
  vae: StateMap,
  o: RefineOptions,
): Promise<{ vae: StateMap; report: RefineReport }> {
  const seed = o.seed ?? 20261122;
  const count = o.pictures ?? 384;
  const inkCount = o.refinePictures ?? 192;
  const steps = o.refineSteps ?? 300;
  const log = o.log ?? (() => {});
  const generic = await renderPictures("generic", seed, 0, count);
  const ink = await renderPictures("inkwash", deriveSeed(seed, 5), 0, inkCount);
  // The demo's own dataset (main.ts: seed 7) is never trained on here: the decoder must generalise to it.
  const demoSet = await renderPictures("inkwash", 7, 0, 24);
  const heldOut = await renderPictures("generic", seed, count, 32);
  const inkwashMseBefore = await reconstructionMse(vae, demoSet, o.threads);
  const genericMseBefore = await reconstructionMse(vae, heldOut, o.threads);
  log(
    `vae decoder refinement on ${count} generic + ${inkCount} ink-wash pictures; demo-set MSE before ${inkwashMseBefore.toFixed(5)}`,
  );
  const refined = await refineVaeDecoder(vae, [...generic, ...ink], {
    seed,
    steps,
    batch: 8,
    crop: 32,
    peakLr: 1e-3,
    threads: o.threads,
    log,
  });
  const report: RefineReport = {
    steps,
    inkwashPictures: inkCount,
    inkwashMseBefore,
    inkwashMseAfter: await reconstructionMse(refined, demoSet, o.threads),
    genericMseBefore,
    genericMseAfter: await reconstructionMse(refined, heldOut, o.threads),
  };
  log(
    `vae decoder refinement: demo-set MSE ${inkwashMseBefore.toFixed(5)} -> ${report.inkwashMseAfter.toFixed(5)}, ` +
      `generic held-out ${genericMseBefore.toFixed(5)} -> ${report.genericMseAfter.toFixed(5)}`,
  );
  return { vae: refined, report };
}

/** Every parameter a set of graphs asks for, read as float32 from `source`. */
function readState(source: WeightSource, build: (w: WeightSource) => void): StateMap {
  const recorder = graphInputWeights();
  build(recorder);
  const out: StateMap = new Map();
  for (const [key, shape] of recorder.shapes)
    out.set(key, { shape, data: readTensorFloat32(source.tensor(key, shape), key) });
  return out;
}

/** Refines the decoder of the base at `baseFile` and writes the refined base into `outDir`. */
export async function refineDemoBase(baseFile: string, outDir: string, o: RefineOptions = {}) {
  const started = Date.now();
  const info = JSON.parse(await readFile(join(baseFile, "..", "model_info.json"), "utf8"));
  const bpe = trainClipBpe(demoCaptionCorpus());
  const teCfg = demoTextConfig(bpe.vocab.size);
  const ck = await openCheckpoint(baseFile);
  let parts: { unet: StateMap; vae: StateMap; textEncoder: StateMap };
  try {
    const l = DEMO_LATENT_SIZE;
    const s = DEMO_IMAGE_SIZE;
    parts = {
      unet: readState(ck.weights.unet, (w) =>
        buildUNetGraph(DEMO_UNET, w, { batch: 1, height: l, width: l }),
      ),
      vae: readState(ck.weights.vae, (w) => {
        buildVaeEncoderGraph(DEMO_VAE, w, { batch: 1, height: s, width: s });
        buildVaeDecoderGraph(DEMO_VAE, w, { batch: 1, height: l, width: l });
      }),
      textEncoder: readState(ck.weights.textEncoder, (w) => buildClipTextGraph(teCfg, w, { batch: 1 })),
    };
  } finally {
    await ck.close();
  }
  const refined = await refineDecoder(parts.vae, {
    seed: info.build?.seed,
    pictures: info.build?.pictures,
    ...o,
  });
  const build = {
    ...info.build,
    refine: refined.report,
    seconds: (info.build?.seconds ?? 0) + (Date.now() - started) / 1000,
  };
  const file = await writeDemoBase(outDir, {
    ...parts,
    vae: refined.vae,
    configs: { unet: DEMO_UNET, vae: DEMO_VAE, textEncoder: teCfg },
    tokenizer: bpe,
    build,
  });
  return { file, report: refined.report };
}

/**
 * txt2img bench.
 * 1. Tiny model (a temp copy of tiny-sd1): images per second at 64 px, Euler a, 20 steps, batch 1 and 4.
 * 2. Full-size SD1.5 shapes at 512 px: a random-weights fp32 checkpoint with the real SD1.5 names and shapes
 *    (shared/fixtures/sd15-original-keys.json) written to os.tmpdir() and deleted afterwards; seconds per
 *    sampling step (UNet batch 2 for CFG, 64x64 latents, plus the sampler) without LoRA and with a rank-16
 *    adapter-input graph; then the time to switch between two LoRA stacks (kohya's default modules, random
 *    factors) through adapter inputs versus baking (patched weights, new sessions).
 *
 *   npx tsx packages/engine/bench/txt2img.ts [--tiny-only] [--steps 2] [--threads 2] [--keep]
 */
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Adapter, AdapterModule } from "@lora-studio/prompt-lora";
import { stackAdapters, writeSyntheticCheckpoint } from "@lora-studio/prompt-lora";
import { kohyaLoraTargets } from "../src/models/lora-targets.ts";
import { SdModel } from "../src/pipeline/sd-model.ts";
import { Txt2ImgPipeline } from "../src/pipeline/txt2img.ts";

const FIXTURES = fileURLToPath(new URL("../../../../shared/fixtures/", import.meta.url));
const has = (f: string) => process.argv.includes(`--${f}`);
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const threads = arg("threads", 2);
const quiet = { onMessage: () => {}, intraOpThreads: threads };
const sec = (ms: number) => (ms / 1000).toFixed(2);

async function tinyBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-txt2img-"));
  cpSync(`${FIXTURES}tiny-sd1/diffusers`, dir, { recursive: true });
  const model = await SdModel.open({ model: dir, ...quiet });
  try {
    const pipe = new Txt2ImgPipeline(model);
    for (const batch of [1, 4]) {
      const o = {
        prompt: "a photo of an astronaut riding a horse",
        width: 64,
        height: 64,
        steps: 20,
        sampler: "Euler a",
        batch,
      };
      await pipe.generate({ ...o, seed: 0 }); // sessions + warm-up
      const runs = 3;
      const t = performance.now();
      for (let i = 0; i < runs; i++) await pipe.generate({ ...o, seed: i + 1 });
      const s = (performance.now() - t) / 1000;
      console.log(
        `tiny-sd1 64px Euler a 20 steps batch ${batch}: ${((runs * batch) / s).toFixed(2)} images/s (${sec((1000 * s) / runs)} s per call)`,
      );
    }
  } finally {
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function writeSd15(path: string): Promise<void> {
  const t = performance.now();
  await writeSyntheticCheckpoint(`${FIXTURES}sd15-original-keys.json`, path, { dtype: "F32" });
  console.log(`wrote random SD1.5 fp32 checkpoint in ${sec(performance.now() - t)} s`);
}

/** A random LoRA of `rank` on kohya's default UNet and text-encoder modules. */
function randomLora(model: SdModel, rank: number, seed: number): Adapter {
  let s = seed;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.02;
  };
  const modules: AdapterModule[] = [];
  for (const component of ["unet", "te"] as const) {
    const targets = kohyaLoraTargets(model.modules, component, { rank }).ranks;
    for (const spec of model.modules) {
      if (spec.component !== component || !targets.has(spec.path)) continue;
      const conv = spec.layer === "conv";
      const inner = spec.inFeatures * spec.kernel[0] * spec.kernel[1];
      modules.push({
        component,
        path: spec.path,
        kind: "lora",
        layer: spec.layer,
        alpha: rank,
        tensors: {
          down: {
            shape: conv ? [rank, spec.inFeatures, ...spec.kernel] : [rank, inner],
            data: Float32Array.from({ length: rank * inner }, rnd),
          },
          up: {
            shape: conv ? [spec.outFeatures, rank, 1, 1] : [spec.outFeatures, rank],
            data: Float32Array.from({ length: spec.outFeatures * rank }, rnd),
          },
        },
      });
    }
  }
  return { format: "kohya", family: "sd1", metadata: {}, unknownKeys: [], modules };
}

async function sd15Bench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-sd15-"));
  const path = join(dir, "sd15-random.safetensors");
  const steps = arg("steps", 2);
  try {
    await writeSd15(path);
    const model = await SdModel.open({ model: path, tokenizer: `${FIXTURES}clip-tokenizer`, ...quiet });
    try {
      const pipe = new Txt2ImgPipeline(model);
      const shape = { width: 512, height: 512, batch: 1 };
      const gen = {
        prompt: "a photo of an astronaut riding a horse",
        ...shape,
        steps,
        sampler: "Euler a",
        seed: 1,
        decode: false,
      };
      // Plain (no LoRA inputs) sessions live in a second SdModel on the same file, so both graphs stay cached
      // and their step times can be measured interleaved (the machine's load drifts by 2x within minutes).
      const plainModel = await SdModel.open({
        model: path,
        tokenizer: `${FIXTURES}clip-tokenizer`,
        ...quiet,
      });
      try {
        const plain = new Txt2ImgPipeline(plainModel);
        let t = performance.now();
        await plain.prepare(shape);
        console.log(
          `SD1.5 512px: sessions (text encoder, UNet batch 2, VAE decoder) created in ${sec(performance.now() - t)} s`,
        );
        const a = stackAdapters([
          { adapter: randomLora(model, 8, 1), te: 0.8, unet: 0.6 },
          { adapter: randomLora(model, 4, 2), te: 1, unet: 1 },
        ]);
        const b = stackAdapters([{ adapter: randomLora(model, 16, 3), te: 0.5, unet: 0.7 }]);
        t = performance.now();
        await pipe.setLoras(a);
        const firstFeeds = performance.now() - t;
        t = performance.now();
        await pipe.prepare(shape);
        console.log(
          `adapter-input graphs (rank capacity 16, ${a.modules.length} modules): inputs ${sec(firstFeeds)} s, sessions ${sec(performance.now() - t)} s`,
        );
        const before = model.sessionsCreated;
        t = performance.now();
        await pipe.setLoras(b);
        await pipe.prepare(shape);
        const switchAdapters = performance.now() - t;
        console.log(
          `switch A -> B via adapter inputs: ${sec(switchAdapters)} s (sessions created: ${model.sessionsCreated - before})`,
        );
        const plainMs: number[] = [];
        const loraMs: number[] = [];
        for (let round = 0; round < steps; round++) {
          plainMs.push((await plain.generate({ ...gen, steps: 1 })).timings.denoise);
          loraMs.push((await pipe.generate({ ...gen, steps: 1 })).timings.denoise);
        }
        const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
        console.log(
          `SD1.5 512px per step (UNet batch 2 + Euler a), ${steps} interleaved rounds: no LoRA ${plainMs.map(sec).join(" / ")} s; ` +
            `rank-16 stack via adapter inputs ${loraMs.map(sec).join(" / ")} s (medians ${sec(median(plainMs))} vs ${sec(median(loraMs))})`,
        );
      } finally {
        await plainModel.close();
      }

      const a = stackAdapters([
        { adapter: randomLora(model, 8, 1), te: 0.8, unet: 0.6 },
        { adapter: randomLora(model, 4, 2), te: 1, unet: 1 },
      ]);
      const b = stackAdapters([{ adapter: randomLora(model, 16, 3), te: 0.5, unet: 0.7 }]);
      let t = performance.now();
      await pipe.setLoras(a, "baked");
      await pipe.prepare(shape);
      const bakeA = performance.now() - t;
      t = performance.now();
      await pipe.setLoras(b, "baked");
      await pipe.prepare(shape);
      console.log(
        `baking: first bake ${sec(bakeA)} s; switch A -> B by re-patching + new sessions ${sec(performance.now() - t)} s`,
      );
    } finally {
      await model.close();
    }
  } finally {
    if (!has("keep")) rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`txt2img bench, ${new Date().toISOString()}, intra-op threads ${threads}`);
await tinyBench();
if (!has("tiny-only")) await sd15Bench();

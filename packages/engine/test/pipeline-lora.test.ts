/**
 * LoRA from the prompt on the tiny model: the adapter-input path (stack fed as inputs of the same sessions)
 * against the baked path (weights patched), with the baked weights computed INDEPENDENTLY of prompt-lora's
 * rank concatenation: W + sum_i moduleDelta(module_i, multiplier_i) over the unstacked files. Two LoRAs with
 * different te/unet multipliers (the fixture kohya file, UNet only, and a generated one with text-encoder,
 * 1x1-conv and 3x3-conv (LoCon) modules). Also: zero LoRAs = the plain model, switching stacks creates no
 * session, and the LoRAs really change the image.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  type Adapter,
  type AdapterModule,
  moduleDelta,
  readAdapter,
  writeAdapter,
} from "@lora-studio/prompt-lora";
import sharp from "sharp";
import { lorasFromPrompt } from "../src/pipeline/lora-prompt.ts";
import { toRgb8 } from "../src/pipeline/png.ts";
import { parseSamplePrompts } from "../src/pipeline/sample-prompts.ts";
import { renderSamples } from "../src/pipeline/samples.ts";
import { SdModel } from "../src/pipeline/sd-model.ts";
import { Txt2ImgPipeline } from "../src/pipeline/txt2img.ts";
import { TINY } from "./models.helpers.ts";
import { copyTinyModel, type TinyCopy } from "./pipeline.helpers.ts";

let tiny: TinyCopy;
let dir: string;
let model: SdModel;
let pipe: Txt2ImgPipeline;

function rand(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.8;
  };
}

function loraModule(
  component: "te" | "unet",
  path: string,
  shape: { r: number; in: number; out: number; k: number },
  r: () => number,
): AdapterModule {
  const conv = shape.k > 1 || path.includes("proj_in");
  const down = Float32Array.from({ length: shape.r * shape.in * shape.k * shape.k }, r);
  const up = Float32Array.from({ length: shape.out * shape.r }, r);
  return {
    component,
    path,
    kind: "lora",
    layer: conv ? "conv" : "linear",
    alpha: shape.r / 2,
    tensors: {
      down: { shape: conv ? [shape.r, shape.in, shape.k, shape.k] : [shape.r, shape.in], data: down },
      up: { shape: conv ? [shape.out, shape.r, 1, 1] : [shape.out, shape.r], data: up },
    },
  };
}

before(async () => {
  tiny = copyTinyModel();
  dir = join(tiny.dir, "Lora");
  mkdirSync(dir);
  copyFileSync(`${TINY}lora/tiny-sd1-lora-kohya.safetensors`, join(dir, "ink.safetensors"));
  const r = rand(7);
  const face: Adapter = {
    format: "kohya",
    family: "sd1",
    metadata: { ss_base_model_version: "sd_v1" },
    unknownKeys: [],
    modules: [
      loraModule("te", "text_model.encoder.layers.0.self_attn.q_proj", { r: 6, in: 32, out: 32, k: 1 }, r),
      loraModule("te", "text_model.encoder.layers.1.mlp.fc1", { r: 6, in: 32, out: 64, k: 1 }, r),
      loraModule(
        "unet",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        { r: 6, in: 32, out: 32, k: 1 },
        r,
      ),
      loraModule("unet", "down_blocks.0.attentions.0.proj_in", { r: 6, in: 32, out: 32, k: 1 }, r),
      loraModule("unet", "down_blocks.0.resnets.0.conv1", { r: 3, in: 32, out: 32, k: 3 }, r),
    ],
  };
  await writeAdapter(join(dir, "face.safetensors"), face, { format: "kohya" });
  model = await SdModel.open({ model: tiny.diffusers, onMessage: () => {} });
  pipe = new Txt2ImgPipeline(model);
});
after(async () => {
  await model?.close();
  tiny?.remove();
});

const PROMPT = "<lora:ink:0.7:1.6> a photo of an (astronaut:1.2) riding a horse <lora:face:1.3:-0.6>";
const GEN = { steps: 4, cfg: 7.5, sampler: "DDIM", width: 64, height: 64, seed: 11, batch: 2 };

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

/** The stack as "full" modules summed from each file's own deltas: no rank concatenation involved. */
async function independentBake(files: { path: string; te: number; unet: number }[]): Promise<Adapter> {
  const sums = new Map<string, AdapterModule>();
  for (const f of files) {
    const a = await readAdapter(f.path);
    for (const m of a.modules) {
      const d = moduleDelta(m, m.component === "unet" ? f.unet : f.te);
      const key = `${m.component}:${m.path}`;
      const acc = sums.get(key);
      if (!acc)
        sums.set(key, {
          component: m.component,
          path: m.path,
          kind: "full",
          layer: m.layer,
          tensors: { diff: d },
        });
      else for (let i = 0; i < d.data.length; i++) acc.tensors.diff.data[i] += d.data[i];
    }
  }
  return { format: "kohya", family: "sd1", metadata: {}, unknownKeys: [], modules: [...sums.values()] };
}

test("two LoRAs from the prompt: adapter inputs == independently baked weights (1e-4), and they change the image", async () => {
  const plain = await pipe.generate({ ...GEN, prompt: "a photo of an (astronaut:1.2) riding a horse" });
  const parsed = await lorasFromPrompt(PROMPT, { loraDir: dir });
  assert.equal(parsed.prompt.trim(), "a photo of an (astronaut:1.2) riding a horse");
  assert.deepEqual(
    parsed.loras.map((l) => [l.name, l.te, l.unet]),
    [
      ["ink", 0.7, 1.6],
      ["face", 1.3, -0.6],
    ],
  );
  assert.match(parsed.loras[0].shortHash ?? "", /^[0-9a-f]{12}$/);
  await pipe.setLoras(parsed.stack);
  const viaInputs = await pipe.generate({ ...GEN, prompt: parsed.prompt });

  const baked = await independentBake([
    { path: join(dir, "ink.safetensors"), te: 0.7, unet: 1.6 },
    { path: join(dir, "face.safetensors"), te: 1.3, unet: -0.6 },
  ]);
  await pipe.setLoras(baked, "baked");
  const viaBake = await pipe.generate({ ...GEN, prompt: parsed.prompt });
  const d = maxAbsDiff(viaInputs.images, viaBake.images);
  assert.ok(d <= 1e-4, `adapter inputs vs baked: ${d}`);
  assert.ok(maxAbsDiff(viaInputs.latents, viaBake.latents) <= 1e-4 * 20);
  const effect = maxAbsDiff(viaInputs.images, plain.images);
  assert.ok(effect > 1e-2, `the LoRAs barely change the image (${effect})`);

  // The text-encoder LoRA alone matters too: unet multiplier 0 for both still differs from the plain image.
  const teOnly = await lorasFromPrompt("<lora:ink:0.7:0> <lora:face:1.3:0> x", { loraDir: dir });
  await pipe.setLoras(teOnly.stack);
  const te = await pipe.encodePrompts(["x"]);
  await pipe.setLoras(null);
  const teBase = await pipe.encodePrompts(["x"]);
  assert.ok(maxAbsDiff(te.embeddings[0], teBase.embeddings[0]) > 1e-3, "text-encoder LoRA has no effect");
});

test("switching stacks only swaps input tensors; zero LoRAs equal the plain model", async () => {
  const a = await lorasFromPrompt("<lora:ink:1> <lora:face:0.5> cat", { loraDir: dir });
  await pipe.setLoras(a.stack);
  await pipe.generate({ ...GEN, prompt: a.prompt });
  const created = model.sessionsCreated;
  const b = await lorasFromPrompt("<lora:face:-1:0.3> <lora:ink:0.2> cat", { loraDir: dir });
  await pipe.setLoras(b.stack);
  const withB = await pipe.generate({ ...GEN, prompt: b.prompt });
  assert.equal(model.sessionsCreated, created, "a stack that fits the graphs created a session");

  // Zero LoRAs through the LoRA-capable graphs (zero-filled inputs) vs a fresh plain model (no LoRA inputs).
  await pipe.setLoras(null);
  const zero = await pipe.generate({ ...GEN, prompt: "cat" });
  assert.equal(model.sessionsCreated, created);
  const fresh = await SdModel.open({ model: tiny.diffusers, onMessage: () => {} });
  try {
    const plain = await new Txt2ImgPipeline(fresh).generate({ ...GEN, prompt: "cat" });
    // Not bit-identical: ORT fuses MatMul+Add differently once a LoRA branch sits between them (seen: 1.7e-6).
    const zd = maxAbsDiff(zero.images, plain.images);
    assert.ok(zd <= 1e-5, `empty stack differs from the plain model by ${zd}`);
    assert.ok(maxAbsDiff(withB.images, plain.images) > 1e-2);
  } finally {
    await fresh.close();
  }
});

test("training samples: a kohya prompt file rendered with an in-memory adapter, grid written", async () => {
  const adapter = await readAdapter(join(dir, "face.safetensors"));
  const prompts = parseSamplePrompts(
    "# samples\na cat --w 64 --h 64 --d 5 --s 3 --ss ddim\na dog --n blurry --w 32 --h 32 --d 6 --s 2 --l 4\n",
  );
  const gridPath = join(tiny.dir, "grid.png");
  const run = await renderSamples(pipe, prompts, {
    adapter,
    defaults: { steps: 9, sampler: "Euler" },
    gridPath,
  });
  assert.deepEqual(
    run.samples.map((s) => s.seed),
    [5, 6],
  );
  // The prompt's options (--d, --w/--h, --s, --ss) override the defaults: same pixels as this direct call.
  await pipe.setLoras(adapter);
  const direct = await pipe.generate({
    prompt: "a cat",
    width: 64,
    height: 64,
    seed: 5,
    steps: 3,
    sampler: "DDIM",
  });
  const { data } = await sharp(run.samples[0].png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [...toRgb8(direct.images, 0, 64, 64)]);
  const meta = await sharp(gridPath).metadata();
  assert.ok((meta.width ?? 0) >= 64 + 32 && (meta.height ?? 0) > 64);
});

test("renderSamples applies the run's clip skip to every prompt, as kohya samples with clip_skip", async () => {
  const prompts = parseSamplePrompts("a cat --w 64 --h 64 --d 5 --s 3 --ss ddim\n");
  const run = await renderSamples(pipe, prompts, { adapter: null, defaults: { clipSkip: 2 } });
  await pipe.setLoras(null);
  const o = { prompt: "a cat", width: 64, height: 64, seed: 5, steps: 3, sampler: "DDIM" };
  const skip2 = await pipe.generate({ ...o, clipSkip: 2 });
  const skip1 = await pipe.generate(o);
  const { data } = await sharp(run.samples[0].png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([...data], [...toRgb8(skip2.images, 0, 64, 64)]);
  assert.notDeepEqual([...data], [...toRgb8(skip1.images, 0, 64, 64)]);
  assert.match(run.samples[0].png.toString("latin1"), /Clip skip: 2/);
});

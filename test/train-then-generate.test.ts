/**
 * The product's whole path across the three lower packages, on the tiny fixture model:
 *   trainer: pictures + captions -> a kohya LoRA file in a models/Lora folder
 *   prompt-lora: the file is listed, resolved from a `<lora:name:te:unet>` token and baked into a checkpoint copy
 *   engine: txt2img with the LoRA fed as adapter inputs equals txt2img on the baked checkpoint, and differs from
 *           the plain model (so the trained LoRA does something and both hosts' ways of applying it agree).
 * Nothing here compares a package with itself: the baked path patches weights on disk (prompt-lora), the adapter
 * path adds low-rank branches inside the graph (engine).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { renderPrompt, SdModel, Txt2ImgPipeline } from "@lora-studio/engine";
import { bakeCheckpoint, readAdapter, scanLibrary } from "@lora-studio/prompt-lora";
import { configSchema, resolveConfig, train } from "@lora-studio/trainer";
import sharp from "sharp";

const TINY_DIFFUSERS = fileURLToPath(new URL("../../shared/fixtures/tiny-sd1/diffusers", import.meta.url));
const PROMPT = "inkwash painting, a dark blob";
const GEN = { steps: 4, cfg: 7, width: 64, height: 64, seed: 3, sampler: "Euler a" as const };

let work: string;
let loraDir: string;

/** Six 64 px "ink wash" pictures: dark soft blobs on warm paper, each with a caption. */
async function makePictures(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < 6; i++) {
    const size = 64;
    const px = Buffer.alloc(size * size * 3);
    const cx = 16 + ((i * 11) % 32);
    const cy = 20 + ((i * 7) % 24);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const ink = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 120);
        const o = (y * size + x) * 3;
        px[o] = Math.round(236 - 210 * ink);
        px[o + 1] = Math.round(226 - 205 * ink);
        px[o + 2] = Math.round(205 - 185 * ink);
      }
    }
    await sharp(px, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toFile(join(dir, `p${i}.png`));
    writeFileSync(join(dir, `p${i}.txt`), PROMPT);
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, "images differ in size");
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "ls-e2e-"));
  loraDir = join(work, "models", "Lora");
  await makePictures(join(work, "data", "4_inkwash"));
  const config = resolveConfig(
    configSchema.parse({
      train_data_dir: join(work, "data"),
      base_model: TINY_DIFFUSERS,
      output_dir: loraDir,
      output_name: "inkwash",
      lora_rank: 4,
      resolution: 64,
      enable_bucket: false,
      batch_size: 2,
      learning_rate: 5e-3,
      max_train_steps: 12,
      seed: 7,
      save_precision: "float",
    }),
  );
  const result = await train(config, { graphOptimization: "disabled" });
  assert.equal(result.status, "done");
  assert.ok(result.losses.every(Number.isFinite), "every training loss is finite");
});

after(() => {
  if (!process.env.KEEP_E2E) rmSync(work, { recursive: true, force: true });
});

test("the trained LoRA is listed by prompt-lora with kohya metadata and an A1111 hash", async () => {
  const listing = await scanLibrary(loraDir);
  const entry = listing.entries.find((e) => e.name === "inkwash");
  assert.ok(entry, `inkwash not listed in ${loraDir}`);
  assert.equal(entry.family, "sd1");
  assert.match(entry.hashes?.addnetShort ?? "", /^[0-9a-f]{12}$/);
  const adapter = await readAdapter(entry.path);
  assert.equal(adapter.metadata.ss_output_name, "inkwash");
  assert.deepEqual(adapter.unknownKeys, []);
  assert.ok(adapter.modules.length > 0);
});

test("txt2img: <lora:inkwash:1> through adapter inputs equals the checkpoint baked by prompt-lora", async () => {
  const baked = join(work, "baked");
  const adapter = await readAdapter(join(loraDir, "inkwash.safetensors"));
  const report = await bakeCheckpoint({
    base: TINY_DIFFUSERS,
    output: baked,
    adapters: [{ adapter, te: 1, unet: 1 }],
  });
  assert.deepEqual(report.unmatchedModules, [], "every trained module has a weight in the checkpoint");
  assert.equal(report.bakedTensors.length, adapter.modules.length);

  const base = await SdModel.open({ model: TINY_DIFFUSERS, onMessage: () => {} });
  const patched = await SdModel.open({ model: baked, onMessage: () => {} });
  try {
    const withLora = await renderPrompt(new Txt2ImgPipeline(base), {
      ...GEN,
      // The token is removed from the text, so placed last it leaves exactly PROMPT for the text encoder.
      prompt: `${PROMPT}<lora:inkwash:1>`,
      loraDir,
    });
    assert.deepEqual(
      withLora.loras.loras.map((l) => l.name),
      ["inkwash"],
    );
    assert.match(withLora.images[0].infotext, /Lora hashes: "inkwash: [0-9a-f]{12}"/);
    const plain = await renderPrompt(new Txt2ImgPipeline(base), { ...GEN, prompt: PROMPT });
    const fromBaked = await renderPrompt(new Txt2ImgPipeline(patched), { ...GEN, prompt: PROMPT });

    const agree = maxAbsDiff(withLora.result.images, fromBaked.result.images);
    assert.ok(agree <= 1e-4, `adapter path vs baked checkpoint: max |diff| ${agree}`);
    const effect = maxAbsDiff(withLora.result.images, plain.result.images);
    assert.ok(effect > 1e-3, `the trained LoRA should change the image (max |diff| ${effect})`);
  } finally {
    await base.close();
    await patched.close();
  }
});

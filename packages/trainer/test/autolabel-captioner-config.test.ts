import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { type ImageProcessing, readCaptionerConfig } from "../src/autolabel/captioner-config.ts";
import { loadProcessedRgb, packNormalized } from "../src/autolabel/preprocess.ts";
import { tempDir } from "./autolabel.helpers.ts";

async function folder(files: Record<string, unknown>): Promise<string> {
  const dir = await tempDir("capcfg-");
  for (const [name, json] of Object.entries(files)) await writeFile(join(dir, name), JSON.stringify(json));
  return dir;
}

const VIT_PRE = {
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { height: 224, width: 224 },
};

test("config.json + generation_config.json: special ids and generation defaults as transformers reads them", async () => {
  const dir = await folder({
    "config.json": {
      model_type: "vision-encoder-decoder",
      decoder_start_token_id: 50256,
      pad_token_id: 50256,
      max_length: 20,
      decoder: { eos_token_id: 50256, bos_token_id: 50256, no_repeat_ngram_size: 9 },
    },
    "generation_config.json": { max_length: 16, num_beams: 4, min_length: 3, no_repeat_ngram_size: 3 },
    "preprocessor_config.json": VIT_PRE,
  });
  const c = await readCaptionerConfig(dir);
  assert.deepEqual(c.ids, { decoderStart: 50256, eos: [50256], pad: 50256 });
  // generation_config wins; min_length counts the start token; the decoder's own generation keys are not read.
  assert.deepEqual(c.generation, { maxLength: 16, minNewTokens: 2, numBeams: 4, noRepeatNgramSize: 3 });
  assert.deepEqual(c.image, {
    mode: "fill",
    width: 224,
    height: 224,
    kernel: "linear",
    rescale: VIT_PRE.rescale_factor,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
  });
  const bad = await folder({
    "config.json": { decoder_start_token_id: 1, eos_token_id: 2 },
    "preprocessor_config.json": { ...VIT_PRE, image_std: [0.5, 0.5] },
  });
  await assert.rejects(
    readCaptionerConfig(bad),
    /preprocessor_config\.json: "image_std" \[0\.5,0\.5\]: expected a number or a list of 3/,
  );
  const noCrop = await folder({
    "config.json": { decoder_start_token_id: 1, eos_token_id: 2 },
    "preprocessor_config.json": { ...VIT_PRE, size: { shortest_edge: 224 } },
  });
  await assert.rejects(readCaptionerConfig(noCrop), /without a center crop gives no fixed input size/);
});

test("shortest edge + centre crop, then (x * rescale - mean) / std in NCHW", async () => {
  const dir = await tempDir("capcrop-");
  // 40x20: left half red, right half blue. Shortest edge 8 -> 16x8, centre 8x8 crop = columns 4..11.
  const left = await sharp({
    create: { width: 20, height: 20, channels: 3, background: { r: 255, g: 0, b: 0 } },
  })
    .png()
    .toBuffer();
  const path = join(dir, "half.png");
  await sharp({ create: { width: 40, height: 20, channels: 3, background: { r: 0, g: 0, b: 255 } } })
    .composite([{ input: left, left: 0, top: 0 }])
    .png()
    .toFile(path);
  const p: ImageProcessing = {
    mode: "crop",
    width: 8,
    height: 8,
    shortestEdge: 8,
    kernel: "nearest",
    rescale: 1 / 255,
    mean: [0.5, 0.25, 0],
    std: [0.5, 0.25, 1],
  };
  const rgb = await loadProcessedRgb(path, p);
  const at = (x: number, y: number) => Array.from(rgb.subarray((y * 8 + x) * 3, (y * 8 + x) * 3 + 3));
  assert.deepEqual(at(0, 0), [255, 0, 0]);
  assert.deepEqual(at(3, 7), [255, 0, 0]);
  assert.deepEqual(at(4, 0), [0, 0, 255]);
  assert.deepEqual(at(7, 7), [0, 0, 255]);
  const x = packNormalized([rgb], p);
  // Red pixel (0,0): R (1 - 0.5) / 0.5 = 1; G (0 - 0.25) / 0.25 = -1; B (0 - 0) / 1 = 0. Planes of 64.
  assert.deepEqual([x[0], x[64], x[128]], [1, -1, 0]);
  // Blue pixel (4,0): R -1, G -1, B 1.
  assert.deepEqual([x[4], x[64 + 4], x[128 + 4]], [-1, -1, 1]);
});

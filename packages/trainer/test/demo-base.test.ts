import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  buildClipTextGraph,
  buildUNetGraph,
  buildVaeDecoderGraph,
  buildVaeEncoderGraph,
  ClipTokenizer,
  openCheckpoint,
  SdModel,
  Session,
  Txt2ImgPipeline,
} from "@lora-studio/engine";
import { DEMO_UNET, DEMO_VAE } from "../src/demo/base-config.ts";
import { demoScene, pngToTensor, renderPng } from "../src/demo/dataset.ts";
import { demoCaptionCorpus } from "../src/demo/scenes.ts";

const BASE_DIR = fileURLToPath(new URL("../assets/demo-base/", import.meta.url));
const BASE = `${BASE_DIR}demo-base.safetensors`;
/** Mean squared error bound, in [-1, 1] pixel units, for the VAE round trip of a held-out generic picture. */
const RECONSTRUCTION_MSE_BOUND = 0.08;

test("the shipped demo base loads as SD1 with the build's configs, and every stored tensor is used", async () => {
  const ck = await openCheckpoint(BASE);
  try {
    assert.equal(ck.family, "sd1");
    assert.equal(ck.layout, "single-file");
    const info = JSON.parse(await readFile(`${BASE_DIR}model_info.json`, "utf8"));
    assert.deepEqual(ck.unet.block_out_channels, DEMO_UNET.block_out_channels);
    assert.equal(ck.unet.layers_per_block, DEMO_UNET.layers_per_block);
    assert.equal(ck.unet.cross_attention_dim, DEMO_UNET.cross_attention_dim);
    assert.deepEqual(ck.vae.block_out_channels, DEMO_VAE.block_out_channels);
    assert.equal(ck.textEncoder.vocab_size, info.text_encoder.vocab_size);
    assert.equal(ck.textEncoder.num_attention_heads, info.text_encoder.num_attention_heads);
    buildUNetGraph(ck.unet, ck.weights.unet, { batch: 1, height: 8, width: 8 });
    buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: 1 });
    buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 64, width: 64 });
    buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 8, width: 8 });
    assert.deepEqual(ck.unused(), []);
    // The tokenizer next to it covers the captions word for word, and its size is the embedding's.
    const tok = await ClipTokenizer.fromDirectory(`${BASE_DIR}tokenizer`);
    assert.equal(tok.vocabSize, ck.textEncoder.vocab_size);
    for (const caption of demoCaptionCorpus()) {
      const ids = tok.encode(caption, { padding: false }).inputIds;
      assert.equal(ids.length, caption.replace(",", " ,").split(" ").length + 2, caption);
    }
  } finally {
    await ck.close();
  }
});

test(`the VAE reconstructs a held-out demo picture with MSE < ${RECONSTRUCTION_MSE_BOUND}`, async () => {
  const ck = await openCheckpoint(BASE);
  try {
    const info = JSON.parse(await readFile(`${BASE_DIR}model_info.json`, "utf8"));
    // Indices from build.pictures on were never trained on.
    const scene = demoScene("generic", info.build.seed, info.build.pictures + 100);
    const { data: x } = await pngToTensor(await renderPng(scene.svg));
    const enc = await Session.create(
      buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 64, width: 64 }).graph,
      { onMessage: () => {} },
    );
    const dec = await Session.create(
      buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 8, width: 8 }).graph,
      { onMessage: () => {} },
    );
    const { mean } = await enc.run({ sample: { dtype: "float32", shape: [1, 3, 64, 64], data: x } });
    const y = (await dec.run({ latents: mean })).out.data as Float32Array;
    await enc.release();
    await dec.release();
    let mse = 0;
    let blank = 0;
    const avg = x.reduce((a, v) => a + v, 0) / x.length;
    for (let i = 0; i < x.length; i++) {
      mse += (y[i] - x[i]) ** 2 / x.length;
      blank += (avg - x[i]) ** 2 / x.length;
    }
    assert.ok(mse < RECONSTRUCTION_MSE_BOUND, `"${scene.caption}": reconstruction MSE ${mse}`);
    assert.ok(mse < blank / 5, `reconstruction ${mse} vs a flat picture ${blank}`);
    // Latents x scaling factor have about unit spread (the build rescaled them for the SD1 factor).
    const z = (mean.data as Float32Array).map((v) => v * ck.vae.scaling_factor);
    const std = Math.sqrt(z.reduce((a, v) => a + v * v, 0) / z.length);
    assert.ok(std > 0.4 && std < 2.5, `scaled latent RMS ${std}`);
  } finally {
    await ck.close();
  }
});

test("txt2img on the base follows the prompt: a red background comes out redder than a blue one", async () => {
  const model = await SdModel.open({ model: BASE, tokenizer: `${BASE_DIR}tokenizer`, worker: false });
  try {
    const pipe = new Txt2ImgPipeline(model);
    const meanRgb = async (prompt: string) => {
      const r = await pipe.generate({
        prompt,
        width: 64,
        height: 64,
        steps: 15,
        cfg: 5,
        seed: 3,
        sampler: "Euler a",
      });
      const sums = [0, 0, 0];
      for (let i = 0; i < r.images.length; i++) sums[i % 3] += r.images[i] / (r.images.length / 3);
      return sums;
    };
    const red = await meanRgb("a white circle on a red background");
    const blue = await meanRgb("a white circle on a blue background");
    assert.ok(red[0] - red[2] > blue[0] - blue[2] + 0.2, `red ${red} vs blue ${blue}`);
    assert.ok(red[0] > red[2], `"red background" mean colour ${red}`);
    assert.ok(blue[2] > blue[0], `"blue background" mean colour ${blue}`);
  } finally {
    await model.close();
  }
});

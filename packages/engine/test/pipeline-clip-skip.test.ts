/**
 * Clip skip and the negative prompt's extra-network tokens, on the tiny model:
 * - the pipeline's conditioning with clipSkip 2 equals the reference `penultimate_normed` (transformers:
 *   final_layer_norm(hidden_states[-2])) of 02_text_encoder, and clipSkip 1 its `last_hidden_state`;
 * - a whole generation with clipSkip 2 equals the denoising loop fed those reference embeddings directly;
 * - out-of-range values fail with a PipelineError; the infotext carries "Clip skip: 2";
 * - `<lora:...>` in the negative prompt applies no LoRA and is encoded as text (A1111: extra networks are parsed
 *   from the positive prompt only): the image equals the one made from the same literal negative text, differs
 *   from the one with the token removed, and a warning says so.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { renderPrompt } from "../src/pipeline/render.ts";
import { PipelineError, SdModel } from "../src/pipeline/sd-model.ts";
import { Txt2ImgPipeline } from "../src/pipeline/txt2img.ts";
import { loadReference, relMaxDiff, TINY_DIFFUSERS } from "./models.helpers.ts";

const PROMPT = "a photo of an astronaut riding a horse on mars"; // 01_tokenizer prompt 0; prompt 1 is ""
let model: SdModel;
let pipe: Txt2ImgPipeline;

before(async () => {
  model = await SdModel.open({ model: TINY_DIFFUSERS, onMessage: () => {} });
  pipe = new Txt2ImgPipeline(model);
});
after(() => model?.close());

function row(all: Float32Array, i: number, per: number): Float32Array {
  return all.slice(i * per, (i + 1) * per);
}

test("clip skip 2 conditioning = final_layer_norm(hidden_states[-2]) of the reference", async () => {
  const ref = await loadReference("02_text_encoder");
  const [, seq, dim] = ref.shape("penultimate_normed");
  const per = seq * dim;
  const skip2 = await pipe.encodePrompts([PROMPT, ""], "original", 2);
  const skip1 = await pipe.encodePrompts([PROMPT, ""], "original", 1);
  for (const i of [0, 1]) {
    const penult = row(ref.f32("penultimate_normed"), i, per);
    const last = row(ref.f32("last_hidden_state"), i, per);
    assert.ok(relMaxDiff(skip2.embeddings[i], penult) < 1e-4, `prompt ${i}: clip skip 2 vs reference`);
    assert.ok(relMaxDiff(skip1.embeddings[i], last) < 1e-4, `prompt ${i}: clip skip 1 vs reference`);
    assert.ok(relMaxDiff(penult, last) > 1e-2, "the two layers differ (the test can fail)");
  }
});

test("a generation with clip skip 2 = the denoising loop fed the reference penultimate embeddings", async () => {
  const ref = await loadReference("02_text_encoder");
  const [, seq, dim] = ref.shape("penultimate_normed");
  const o = { steps: 3, cfg: 7, sampler: "Euler", seed: 11, width: 32, height: 32 };
  const got = await pipe.generate({ ...o, prompt: PROMPT, negative: "", clipSkip: 2 });
  const want = await pipe.generateFromEmbeddings(
    o,
    row(ref.f32("penultimate_normed"), 0, seq * dim),
    row(ref.f32("penultimate_normed"), 1, seq * dim),
    seq,
  );
  assert.equal(got.clipSkip, 2);
  assert.ok(relMaxDiff(got.latents, want.latents) < 1e-4);
  const plain = await pipe.generate({ ...o, prompt: PROMPT, negative: "" });
  assert.ok(relMaxDiff(plain.latents, want.latents) > 1e-3, "clip skip changes the image");
});

test("clip skip outside 1..layers is refused; the infotext shows Clip skip when > 1", async () => {
  const layers = model.checkpoint.textEncoder.num_hidden_layers;
  for (const bad of [0, layers + 1, 1.5]) {
    await assert.rejects(
      pipe.generate({ prompt: "x", clipSkip: bad, width: 32, height: 32, steps: 1 }),
      (e) => {
        assert.ok(e instanceof PipelineError);
        assert.match(e.message, new RegExp(`clip skip must be an integer in 1\\.\\.${layers}`));
        return true;
      },
    );
  }
  const r = await renderPrompt(pipe, {
    prompt: PROMPT,
    steps: 1,
    seed: 3,
    width: 32,
    height: 32,
    clipSkip: 2,
  });
  assert.match(r.images[0].infotext, /, Clip skip: 2(,|$)/m);
  const r1 = await renderPrompt(pipe, { prompt: PROMPT, steps: 1, seed: 3, width: 32, height: 32 });
  assert.doesNotMatch(r1.images[0].infotext, /Clip skip/);
});

test("<lora:...> in the negative prompt is text, not a LoRA (as A1111)", async () => {
  const o = { prompt: PROMPT, steps: 2, cfg: 7, sampler: "Euler a", seed: 5, width: 32, height: 32 };
  const negative = "blurry <lora:nowhere:1.5>";
  // No Lora folder: a positive-prompt LoRA would fail here; the negative one is not looked up at all.
  const r = await renderPrompt(pipe, { ...o, negative });
  assert.equal(r.loras.stack, null);
  assert.ok(r.loras.warnings.some((w) => w.includes("<lora:nowhere:1.5>") && w.includes("not applied")));
  assert.match(r.images[0].infotext, /^Negative prompt: blurry <lora:nowhere:1\.5>$/m);
  const literal = await pipe.generate({ ...o, negative });
  const stripped = await pipe.generate({ ...o, negative: "blurry" });
  assert.ok(relMaxDiff(r.result.latents, literal.latents) === 0, "same literal text, same image");
  assert.ok(
    relMaxDiff(stripped.latents, literal.latents) > 1e-4,
    "the token's text changed the conditioning",
  );
});

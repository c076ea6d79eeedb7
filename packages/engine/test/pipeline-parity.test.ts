/**
 * txt2img against diffusers' StableDiffusionPipeline runs recorded in tiny-sd1/reference/07_pipeline_* (DDIM,
 * EulerDiscrete, PNDM; 32 and 64 px; 4 steps, guidance 7.5; given initial latents). Checked in the order that
 * localizes a mismatch: text embeddings, the latents after every sampler step (from the recorded embeddings),
 * the decoded image, then the whole chain from the prompt text. Images within 1e-3 max abs difference.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { SdModel } from "../src/pipeline/sd-model.ts";
import { Txt2ImgPipeline } from "../src/pipeline/txt2img.ts";
import { loadReference, relMaxDiff, TINY, TINY_DIFFUSERS } from "./models.helpers.ts";

const SAMPLERS = { ddim: "DDIM", eulerdiscrete: "Euler", pndm: "PNDM" } as const;

let model: SdModel;
let pipe: Txt2ImgPipeline;
before(async () => {
  model = await SdModel.open({ model: TINY_DIFFUSERS, onMessage: () => {} });
  pipe = new Txt2ImgPipeline(model);
});
after(async () => {
  await model.close();
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, "length differs from the reference");
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test("text embeddings of the prompt and of the empty negative prompt equal the reference", async () => {
  const ref = await loadReference("07_pipeline_ddim_32");
  const params = JSON.parse(readFileSync(`${TINY}reference/07_pipeline_ddim_32.json`, "utf8")).params;
  const { embeddings, seqLen } = await pipe.encodePrompts(["", params.prompt]);
  assert.equal(seqLen, 77);
  const neg = relMaxDiff(embeddings[0], ref.f32("negative_prompt_embeds"));
  const pos = relMaxDiff(embeddings[1], ref.f32("prompt_embeds"));
  assert.ok(neg <= 1e-4 && pos <= 1e-4, `negative ${neg}, prompt ${pos}`);
});

for (const size of [32, 64]) {
  for (const [key, sampler] of Object.entries(SAMPLERS)) {
    test(`07 ${key} ${size}px: every step's latents, decoded image, and the chain from the prompt text`, async () => {
      const name = `07_pipeline_${key}_${size}`;
      const ref = await loadReference(name);
      const params = JSON.parse(readFileSync(`${TINY}reference/${name}.json`, "utf8")).params;
      const opts = {
        sampler,
        steps: params.num_inference_steps,
        cfg: params.guidance_scale,
        width: size,
        height: size,
        seed: 0,
        initLatents: ref.f32("latents_in"),
      };
      const stepDiffs: number[] = [];
      const r = await pipe.generateFromEmbeddings(
        {
          ...opts,
          onStep: (i, _total, latents) => {
            const want = ref.f32(`latents_after_step_${i}`);
            const d = maxAbsDiff(latents, want);
            stepDiffs.push(d);
            assert.ok(d <= 1e-4 * Math.max(1, ...want.map(Math.abs)), `${name}: latents after step ${i} differ by ${d}`);
          },
        },
        ref.f32("prompt_embeds"),
        ref.f32("negative_prompt_embeds"),
        77,
      );
      const wantT = key === "eulerdiscrete" ? [...ref.f32("timesteps")] : [...ref.int64("timesteps")].map(Number);
      assert.deepEqual(r.timesteps.map(Math.fround), wantT);
      assert.equal(stepDiffs.length, key === "pndm" ? 5 : 4);
      const decodedDiff = maxAbsDiff(r.decoded, ref.f32("decoded_raw"));
      const imageDiff = maxAbsDiff(r.images, ref.f32("image"));
      assert.ok(decodedDiff <= 2e-3, `${name}: decoded_raw differs by ${decodedDiff}`);
      assert.ok(imageDiff <= 1e-3, `${name}: image differs by ${imageDiff}`);

      // The whole chain, from the prompt text (tokenizer + text encoder included).
      const full = await pipe.generate({ ...opts, prompt: params.prompt, negative: params.negative_prompt ?? "" });
      const fullDiff = maxAbsDiff(full.images, ref.f32("image"));
      assert.ok(fullDiff <= 1e-3, `${name}: image from the prompt text differs by ${fullDiff}`);
    });
  }
}

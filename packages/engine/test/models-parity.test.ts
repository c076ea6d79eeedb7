/**
 * Parity of the SD1 model graphs with the PyTorch reference (tiny-sd1/reference, diffusers 0.26.3 / transformers
 * 4.38): text encoder (02), VAE encode/decode (03), UNet (04), each within max|diff| <= 1e-4 x max|ref| on the CPU
 * provider in float32, with the model loaded from the single file AND from the diffusers folder; both layouts must
 * give bit-identical outputs (same bytes, same graph).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { type Checkpoint, openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import {
  assertClose,
  f32,
  loadReference,
  runOnce,
  TINY_DIFFUSERS,
  TINY_OPTIONS,
  TINY_SINGLE,
} from "./models.helpers.ts";

type Outputs = Record<string, HostTensor>;
const results = new Map<string, Outputs>();

for (const layout of ["single-file", "diffusers"] as const) {
  describe(`tiny-sd1 from the ${layout} layout`, () => {
    let ck: Checkpoint;
    before(async () => {
      ck = await openCheckpoint(layout === "single-file" ? TINY_SINGLE : TINY_DIFFUSERS, TINY_OPTIONS);
    });
    after(async () => {
      await ck.close();
    });

    test("02 text encoder: last_hidden_state, pooler_output, clip skip 2 (penultimate_normed)", async () => {
      const ref = await loadReference("02_text_encoder");
      const [n, s] = ref.shape("last_hidden_state");
      const ids: HostTensor = { dtype: "int64", shape: [n, s], data: ref.int64("input_ids") };
      const last = await runOnce(
        buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: n }).graph,
        {
          input_ids: ids,
        },
      );
      assertClose("last_hidden_state", last.out, ref.f32("last_hidden_state"));
      assertClose("pooler_output", last.pooler_output, ref.f32("pooler_output"));
      const skip2 = await runOnce(
        buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: n, clipSkip: 2 }).graph,
        { input_ids: ids },
      );
      assertClose("penultimate_normed", skip2.out, ref.f32("penultimate_normed"));
      results.set(`${layout}:te`, last);
    });

    test("03 VAE: encoder mean/logvar, decoder at 4x4 and 8x8 latents, decode(mean)", async () => {
      const ref = await loadReference("03_vae");
      const [n, c, h, w] = ref.shape("image");
      const enc = await runOnce(
        buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: n, height: h, width: w }).graph,
        {
          sample: f32([n, c, h, w], ref.f32("image")),
        },
      );
      assertClose("latent_mean", enc.mean, ref.f32("latent_mean"));
      assertClose("latent_logvar", enc.logvar, ref.f32("latent_logvar"));
      for (const [input, output] of [
        ["decode_latents_4", "decoded_4"],
        ["decode_latents_8", "decoded_8"],
        ["latent_mean", "decoded_of_mean"],
      ]) {
        const shape = ref.shape(input);
        const g = buildVaeDecoderGraph(ck.vae, ck.weights.vae, {
          batch: shape[0],
          height: shape[2],
          width: shape[3],
        });
        const dec = await runOnce(g.graph, { latents: f32(shape, ref.f32(input)) });
        assertClose(output, dec.out, ref.f32(output));
        results.set(`${layout}:${output}`, dec);
      }
      results.set(`${layout}:enc`, enc);
    });

    test("04 UNet: epsilon prediction and every per-block hook", async () => {
      const ref = await loadReference("04_unet");
      const [n, c, h, w] = ref.shape("sample");
      const ctxShape = ref.shape("encoder_hidden_states");
      const g = buildUNetGraph(ck.unet, ck.weights.unet, {
        batch: n,
        height: h,
        width: w,
        seqLen: ctxShape[1],
        timestepDType: "int64",
        hooks: true,
      });
      const out = await runOnce(g.graph, {
        sample: f32([n, c, h, w], ref.f32("sample")),
        timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
        encoder_hidden_states: f32(ctxShape, ref.f32("encoder_hidden_states")),
      });
      for (const hook of [
        "time_proj",
        "time_embedding",
        "conv_in",
        "down_blocks.0",
        "down_blocks.1",
        "down_blocks.2",
        "mid_block",
        "up_blocks.0",
        "up_blocks.1",
        "up_blocks.2",
        "conv_norm_out",
      ]) {
        assertClose(`hook.${hook}`, out[`hook.${hook}`], ref.f32(`hook.${hook}`));
      }
      assertClose("unet_output", out.out, ref.f32("unet_output"));
      results.set(`${layout}:unet`, out);
    });
  });
}

test("single-file and diffusers layouts give bit-identical outputs", () => {
  const keys = ["te", "enc", "decoded_4", "decoded_8", "decoded_of_mean", "unet"];
  for (const k of keys) {
    const a = results.get(`single-file:${k}`);
    const b = results.get(`diffusers:${k}`);
    assert.ok(a && b, `${k}: both layouts must have run`);
    for (const name of Object.keys(b)) {
      assert.deepEqual(a[name].data, b[name].data, `${k}.${name} differs between layouts`);
    }
  }
});

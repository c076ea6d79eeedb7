/**
 * Mixed precision (computeDType "float16") on the tiny SD1 fixture, against the PyTorch float32 reference
 * (tiny-sd1/reference 02/03/04). ORT's CPU provider runs the fp16 graphs through inserted Casts, so the outputs
 * are real fp16-rounded computations.
 *
 * Tolerance: fp16 has a unit roundoff u = 2^-11 ~ 4.9e-4. Every Linear/Conv rounds its inputs, weights and output
 * to fp16 (a few u each) and the error compounds through the residual stack (~20 layers deep in the tiny UNet),
 * so the expected max|diff| / max|ref| is O(u) to O(10 u); we require < 5e-3 (~10 u; measured 6.4e-4 to 1.9e-3),
 * while float32 stays within the parity suite's 1e-4. To prove fp16 ran, the fp16 error must also exceed 10x the float32 graph's error
 * (and the outputs differ bitwise).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { type Checkpoint, openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import type { ComputeDType } from "../src/nn/module.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { f32, loadReference, relMaxDiff, runOnce, TINY_OPTIONS, TINY_SINGLE } from "./models.helpers.ts";

const FP16_TOL = 5e-3;
const FP32_TOL = 1e-4;

/** Runs `run` in float32 and float16 and checks each named output against its reference as described above. */
async function compare(
  run: (dt: ComputeDType) => Promise<Record<string, HostTensor>>,
  refs: Record<string, Float32Array>,
): Promise<void> {
  const o32 = await run("float32");
  const o16 = await run("float16");
  for (const [name, ref] of Object.entries(refs)) {
    const a32 = o32[name].data as Float32Array;
    const a16 = o16[name].data as Float32Array;
    assert.equal(o16[name].dtype, "float32", `${name}: fp16 graphs still output float32`);
    const e32 = relMaxDiff(a32, ref);
    const e16 = relMaxDiff(a16, ref);
    console.log(`${name}: fp32 ${e32.toExponential(2)}  fp16 ${e16.toExponential(2)}`);
    assert.ok(e32 <= FP32_TOL, `${name}: float32 error ${e32}`);
    assert.ok(e16 < FP16_TOL, `${name}: float16 error ${e16} >= ${FP16_TOL}`);
    assert.ok(e16 > 10 * e32 && e16 > 1e-5, `${name}: fp16 error ${e16} too close to fp32's ${e32}`);
    assert.ok(a16.some((v, i) => v !== a32[i]));
  }
}

describe("fp16 compute dtype on the tiny SD1 model", () => {
  let ck: Checkpoint;
  before(async () => {
    ck = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  });
  after(async () => {
    await ck.close();
  });

  test("02 text encoder: last_hidden_state and pooler_output", async () => {
    const ref = await loadReference("02_text_encoder");
    const [n, s] = ref.shape("last_hidden_state");
    const ids: HostTensor = { dtype: "int64", shape: [n, s], data: ref.int64("input_ids") };
    await compare(
      (computeDType) =>
        runOnce(
          buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: n, computeDType }).graph,
          {
            input_ids: ids,
          },
        ),
      { out: ref.f32("last_hidden_state"), pooler_output: ref.f32("pooler_output") },
    );
  });

  test("03 VAE: encoder mean/logvar and decoder", async () => {
    const ref = await loadReference("03_vae");
    const [n, c, h, w] = ref.shape("image");
    await compare(
      (computeDType) =>
        runOnce(
          buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: n, height: h, width: w, computeDType }).graph,
          {
            sample: f32([n, c, h, w], ref.f32("image")),
          },
        ),
      { mean: ref.f32("latent_mean"), logvar: ref.f32("latent_logvar") },
    );
    const shape = ref.shape("decode_latents_8");
    await compare(
      (computeDType) =>
        runOnce(
          buildVaeDecoderGraph(ck.vae, ck.weights.vae, {
            batch: shape[0],
            height: shape[2],
            width: shape[3],
            computeDType,
          }).graph,
          { latents: f32(shape, ref.f32("decode_latents_8")) },
        ),
      { out: ref.f32("decoded_8") },
    );
  });

  test("04 UNet: epsilon prediction", async () => {
    const ref = await loadReference("04_unet");
    const [n, c, h, w] = ref.shape("sample");
    const ctxShape = ref.shape("encoder_hidden_states");
    await compare(
      (computeDType) =>
        runOnce(
          buildUNetGraph(ck.unet, ck.weights.unet, {
            batch: n,
            height: h,
            width: w,
            seqLen: ctxShape[1],
            timestepDType: "int64",
            computeDType,
          }).graph,
          {
            sample: f32([n, c, h, w], ref.f32("sample")),
            timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
            encoder_hidden_states: f32(ctxShape, ref.f32("encoder_hidden_states")),
          },
        ),
      { out: ref.f32("unet_output") },
    );
  });
});

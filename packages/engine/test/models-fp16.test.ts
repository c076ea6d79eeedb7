/**
 * fp16 checkpoints: an fp16 copy of tiny-sd1.safetensors (written to a temp folder) loads with its half-precision
 * tensors referenced in place and cast to float32 inside the graph. Its UNet output must equal (to float32
 * rounding) the same graph built from the fp32 diffusers weights rounded to fp16 in JS, and stay near the fp32
 * reference.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { f16ToF32, f32ToF16, openSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import { openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { memoryWeights } from "../src/nn/module.ts";
import {
  f32,
  loadReference,
  relMaxDiff,
  runOnce,
  TINY_DIFFUSERS,
  TINY_OPTIONS,
  TINY_SINGLE,
} from "./models.helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "fp16-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("an fp16 single-file checkpoint runs the UNet on fp16 weights cast in-graph", async () => {
  const fp16Path = join(tmp, "tiny-sd1.fp16.safetensors");
  const src = await openSafetensors(TINY_SINGLE);
  await writeSafetensors(
    fp16Path,
    [...src.tensors.values()].map((t) => ({
      name: t.name,
      dtype: "F16" as const,
      shape: t.shape,
      data: async () => f32ToF16(await src.readFloat32(t.name)),
    })),
  );
  await src.close();

  const ref = await loadReference("04_unet");
  const [n, c, h, w] = ref.shape("sample");
  const feeds = {
    sample: f32([n, c, h, w], ref.f32("sample")),
    timestep: { dtype: "int64" as const, shape: [n], data: ref.int64("timesteps") },
    encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
  };
  const opts = { batch: n, height: h, width: w, timestepDType: "int64" as const };

  // fp32Cache: false keeps the 16-bit tensors in place (the default on CPU converts them once into a float32 cache).
  const ck = await openCheckpoint(fp16Path, { ...TINY_OPTIONS, fp32Cache: false });
  const built = buildUNetGraph(ck.unet, ck.weights.unet, opts);
  assert.ok(built.graph.initializers.some((v) => v.dtype === "float16" && v.tensor && "path" in v.tensor));
  const fromFp16File = await runOnce(built.graph, feeds);
  // Only the UNet was built: exactly the VAE and text-encoder tensors are reported unused.
  const unused = ck.unused().map((u) => u.key);
  assert.ok(unused.length > 0 && unused.every((k) => /^(first_stage_model|cond_stage_model)\./.test(k)));
  await ck.close();

  // Independent route: fp32 diffusers weights, rounded to fp16 and back in JS, held in memory.
  const unetFile = await openSafetensors(`${TINY_DIFFUSERS}/unet/diffusion_pytorch_model.safetensors`);
  const rounded = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of unetFile.tensors.values()) {
    rounded.set(t.name, { shape: t.shape, data: f16ToF32(f32ToF16(await unetFile.readFloat32(t.name))) });
  }
  await unetFile.close();
  const fromRounded = await runOnce(buildUNetGraph(ck.unet, memoryWeights(rounded), opts).graph, feeds);

  const out = fromFp16File.out.data as Float32Array;
  assert.ok(relMaxDiff(out, fromRounded.out.data as Float32Array) < 1e-6);
  const vsFp32 = relMaxDiff(out, ref.f32("unet_output"));
  assert.ok(vsFp32 > 0 && vsFp32 < 1e-2, `fp16 weights vs fp32 reference: ${vsFp32}`);
});

/**
 * SD2 single files: the text encoder in OpenCLIP layout (fused attn.in_proj_weight, positional_embedding,
 * resblocks, ln_final; one extra last block SD2 never uses). A synthetic SD2 file is made from tiny-sd1 by
 * re-laying its text encoder the OpenCLIP way; the graph built from it must give bit-identical outputs to the
 * diffusers-folder text encoder with the same (GELU) config, and exactly the unused tensors must be reported.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { TensorToWrite } from "@lora-studio/prompt-lora";
import { openSafetensors, readSafetensors, writeSafetensors } from "@lora-studio/prompt-lora";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { parseClipTextConfig } from "../src/models/configs.ts";
import { openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { FileWeights } from "../src/models/loader/weights.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from "../src/models/vae/autoencoder-kl.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { loadReference, runOnce, TINY_DIFFUSERS, TINY_SINGLE } from "./models.helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "sd2-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const HF = "cond_stage_model.transformer.text_model.";
const OC = "cond_stage_model.model.";

/** tiny-sd1 with its CLIP re-laid in the OpenCLIP (SD2) layout, plus the tensors SD2 files carry but never use. */
async function writeSyntheticSd2(path: string): Promise<string[]> {
  const { tensors } = await readSafetensors(TINY_SINGLE);
  const out: TensorToWrite[] = [];
  const put = (name: string, shape: number[], data: Float32Array) =>
    out.push({ name, dtype: "F32", shape, data });
  const get = (k: string) => {
    const t = tensors.get(HF + k);
    assert.ok(t, k);
    return t;
  };
  for (const [k, t] of tensors) if (!k.startsWith("cond_stage_model.")) put(k, t.shape, t.data);
  put(
    `${OC}token_embedding.weight`,
    get("embeddings.token_embedding.weight").shape,
    get("embeddings.token_embedding.weight").data,
  );
  put(`${OC}positional_embedding`, [77, 32], get("embeddings.position_embedding.weight").data);
  const layers = 2;
  for (let i = 0; i <= layers; i++) {
    const src = Math.min(i, layers - 1); // block `layers` is the unused last block of OpenCLIP
    const L = (rel: string) => get(`encoder.layers.${src}.${rel}`);
    const R = `${OC}transformer.resblocks.${i}.`;
    const fused = (suffix: string) => {
      const parts = ["q_proj", "k_proj", "v_proj"].map((p) => L(`self_attn.${p}.${suffix}`).data);
      const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) {
        all.set(p, at);
        at += p.length;
      }
      return all;
    };
    put(`${R}ln_1.weight`, [32], L("layer_norm1.weight").data);
    put(`${R}ln_1.bias`, [32], L("layer_norm1.bias").data);
    put(`${R}attn.in_proj_weight`, [96, 32], fused("weight"));
    put(`${R}attn.in_proj_bias`, [96], fused("bias"));
    put(`${R}attn.out_proj.weight`, [32, 32], L("self_attn.out_proj.weight").data);
    put(`${R}attn.out_proj.bias`, [32], L("self_attn.out_proj.bias").data);
    put(`${R}ln_2.weight`, [32], L("layer_norm2.weight").data);
    put(`${R}ln_2.bias`, [32], L("layer_norm2.bias").data);
    put(`${R}mlp.c_fc.weight`, [64, 32], L("mlp.fc1.weight").data);
    put(`${R}mlp.c_fc.bias`, [64], L("mlp.fc1.bias").data);
    put(`${R}mlp.c_proj.weight`, [32, 64], L("mlp.fc2.weight").data);
    put(`${R}mlp.c_proj.bias`, [32], L("mlp.fc2.bias").data);
  }
  put(`${OC}ln_final.weight`, [32], get("final_layer_norm.weight").data);
  put(`${OC}ln_final.bias`, [32], get("final_layer_norm.bias").data);
  put(`${OC}text_projection`, [32, 32], new Float32Array(32 * 32));
  put(`${OC}logit_scale`, [], Float32Array.of(4.6));
  await writeSafetensors(path, out, { "modelspec.prediction_type": "v" });
  return out
    .map((t) => t.name)
    .filter(
      (n) => n.startsWith(`${OC}transformer.resblocks.${layers}.`) || /text_projection|logit_scale/.test(n),
    );
}

test("SD2 single file: OpenCLIP text encoder (fused qkv slices) equals the diffusers-layout encoder bit for bit", async () => {
  const path = join(tmp, "tiny-sd2.safetensors");
  const expectedUnused = await writeSyntheticSd2(path);
  const ck = await openCheckpoint(path, { textEncoderHeads: 4, unetHeads: 8 });
  try {
    assert.equal(ck.family, "sd2-768-v");
    assert.equal(ck.unet.prediction_type, "v_prediction");
    assert.equal(ck.textEncoder.hidden_act, "gelu");
    assert.equal(ck.textEncoder.num_hidden_layers, 2);

    const ref = await loadReference("02_text_encoder");
    const [n, s] = ref.shape("last_hidden_state");
    const feeds: Record<string, HostTensor> = {
      input_ids: { dtype: "int64", shape: [n, s], data: ref.int64("input_ids") },
    };
    const fromSd2 = await runOnce(
      buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: n }).graph,
      feeds,
    );

    const teJson = JSON.parse(readFileSync(`${TINY_DIFFUSERS}/text_encoder/config.json`, "utf8"));
    const geluCfg = parseClipTextConfig({ ...teJson, hidden_act: "gelu" }, "text_encoder/config.json");
    const teFile = await openSafetensors(`${TINY_DIFFUSERS}/text_encoder/model.safetensors`);
    const diffusersWeights = new FileWeights(teFile, (k) => k, "text_encoder");
    const fromDiffusers = await runOnce(
      buildClipTextGraph(geluCfg, diffusersWeights, { batch: n }).graph,
      feeds,
    );
    await teFile.close();
    assert.deepEqual(fromSd2.out.data, fromDiffusers.out.data);
    assert.deepEqual(fromSd2.pooler_output.data, fromDiffusers.pooler_output.data);

    buildUNetGraph(ck.unet, ck.weights.unet, { batch: 1, height: 8, width: 8 });
    buildVaeEncoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 32, width: 32 });
    buildVaeDecoderGraph(ck.vae, ck.weights.vae, { batch: 1, height: 4, width: 4 });
    assert.deepEqual(
      ck
        .unused()
        .map((u) => u.key)
        .sort(),
      expectedUnused.sort(),
    );
  } finally {
    await ck.close();
  }
});

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  architectureFromConfig,
  diffusersCheckpointTarget,
  kohyaName,
  type ModuleSpec,
  moduleTree,
  originalCheckpointTarget,
  parseKohyaName,
} from "../src/architecture/index.ts";
import { openSafetensors } from "../src/safetensors/index.ts";

const fixtures = new URL("../../../../shared/fixtures/", import.meta.url);
const readJson = (rel: string) => JSON.parse(readFileSync(new URL(rel, fixtures), "utf8"));

const weightShape = (m: ModuleSpec) =>
  m.layer === "linear" ? [m.outFeatures, m.inFeatures] : [m.outFeatures, m.inFeatures, ...m.kernel];

/** Linear/conv weights of UNet and text encoder in a key->shape map (embeddings are nn.Embedding, not Linear). */
function adaptableWeights(shapes: Map<string, number[]>, isModelKey: (k: string) => boolean): string[] {
  return [...shapes]
    .filter(
      ([k, s]) =>
        isModelKey(k) &&
        k.endsWith(".weight") &&
        !k.includes(".embeddings.") &&
        (s.length === 2 || s.length === 4),
    )
    .map(([k]) => k);
}

/** Every module hits an existing key with its shape; every adaptable weight is hit by exactly one module. */
function assertCovers(
  modules: ModuleSpec[],
  target: (m: ModuleSpec) => { key: string; rows?: [number, number] },
  shapes: Map<string, number[]>,
  wanted: string[],
) {
  const hits = new Map<string, number>();
  for (const m of modules) {
    const t = target(m);
    const shape = shapes.get(t.key);
    assert.ok(shape, `${m.component}:${m.path} -> ${t.key} is not in the checkpoint`);
    const expected = weightShape(m);
    if (t.rows) {
      assert.equal(t.rows[1] - t.rows[0], expected[0], `${t.key} row slice`);
      assert.deepEqual(shape.slice(1), expected.slice(1), `${t.key} columns`);
      assert.ok(t.rows[1] <= shape[0]);
    } else {
      assert.deepEqual(shape, expected, `shape of ${t.key} for ${m.component}:${m.path}`);
    }
    hits.set(t.key, (hits.get(t.key) ?? 0) + 1);
  }
  for (const k of wanted) assert.equal(hits.get(k), 1, `${k} hit ${hits.get(k) ?? 0} times`);
}

test("SD1 module tree covers every Linear/Conv2d of the real SD1.5 checkpoint, shapes included", () => {
  const manifest = readJson("sd15-original-keys.json");
  const entries = Object.entries(manifest.keys) as [string, { shape: number[]; diffusers: string }][];
  const shapes = new Map(entries.map(([k, v]) => [k, v.shape]));
  const wanted = adaptableWeights(
    shapes,
    (k) => k.startsWith("model.diffusion_model.") || k.startsWith("cond_stage_model."),
  );
  assert.equal(wanted.length, 354);
  const tree = moduleTree("sd1");
  assertCovers(tree, (m) => originalCheckpointTarget("sd1", m.component, m.path), shapes, wanted);
  // The manifest also names each tensor's diffusers counterpart: it must be our module path.
  const component = { unet: "unet", te: "text_encoder" } as Record<string, string>;
  for (const m of tree) {
    const { key } = originalCheckpointTarget("sd1", m.component, m.path);
    assert.equal(manifest.keys[key].diffusers, `${component[m.component]}:${m.path}.weight`);
  }
});

test("kohya's module counts fall out of the trees (SD1.5: 192 UNet + 72 TE; SDXL: 722 UNet + 72 + 192 TE)", () => {
  // kohya's default LoRA targets: Linear and 1x1 conv inside Transformer2DModel, and the CLIP attention/MLP Linear.
  const kohyaDefault = (t: ModuleSpec[], c: string) =>
    t.filter((m) => m.component === c && (c !== "unet" || m.path.includes(".attentions."))).length;
  assert.equal(kohyaDefault(moduleTree("sd1"), "unet"), 192);
  assert.equal(kohyaDefault(moduleTree("sd1"), "te"), 72);
  assert.equal(kohyaDefault(moduleTree("sd2"), "te"), 23 * 6);
  assert.equal(kohyaDefault(moduleTree("sdxl"), "unet"), 722);
  assert.equal(kohyaDefault(moduleTree("sdxl"), "te1"), 72);
  assert.equal(kohyaDefault(moduleTree("sdxl"), "te2"), 192);
  assert.equal(moduleTree("sdxl").filter((m) => m.path.endsWith("attn1.to_q")).length, 70);
});

test("tiny-sd1: a config-built tree covers the single-file and the diffusers folder", async () => {
  const unetCfg = readJson("tiny-sd1/diffusers/unet/config.json");
  const teCfg = readJson("tiny-sd1/diffusers/text_encoder/config.json");
  const arch = architectureFromConfig(unetCfg, teCfg);
  const single = await openSafetensors(new URL("tiny-sd1/tiny-sd1.safetensors", fixtures).pathname);
  const shapes = new Map([...single.tensors].map(([k, v]) => [k, v.shape]));
  await single.close();
  const wanted = adaptableWeights(
    shapes,
    (k) => k.startsWith("model.diffusion_model.") || k.startsWith("cond_stage_model."),
  );
  assertCovers(arch.modules, (m) => arch.originalTarget(m.component, m.path), shapes, wanted);

  const sidecar = readJson("tiny-sd1/tiny-sd1.keys.json").keys;
  for (const m of arch.modules) {
    const { key } = arch.originalTarget(m.component, m.path);
    assert.equal(
      sidecar[key].diffusers,
      `${m.component === "unet" ? "unet" : "text_encoder"}:${m.path}.weight`,
    );
  }

  for (const [component, file] of [
    ["unet", "unet/diffusion_pytorch_model.safetensors"],
    ["te", "text_encoder/model.safetensors"],
  ] as const) {
    const f = await openSafetensors(new URL(`tiny-sd1/diffusers/${file}`, fixtures).pathname);
    const dShapes = new Map([...f.tensors].map(([k, v]) => [k, v.shape]));
    await f.close();
    const mods = arch.modules.filter((m) => m.component === component);
    const target = (m: ModuleSpec) => {
      const t = arch.diffusersTarget(m.component, m.path);
      assert.equal(t.file, file);
      return { key: t.key };
    };
    assertCovers(
      mods,
      target,
      dShapes,
      adaptableWeights(dShapes, () => true),
    );
  }
});

test("kohya names: known spellings, unique, and parsed back for every module of every family", () => {
  assert.equal(
    kohyaName("te", "text_model.encoder.layers.0.self_attn.q_proj"),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
  );
  assert.equal(
    kohyaName("unet", "down_blocks.0.attentions.0.proj_in"),
    "lora_unet_down_blocks_0_attentions_0_proj_in",
  );
  assert.equal(
    kohyaName("te2", "text_model.encoder.layers.31.mlp.fc2"),
    "lora_te2_text_model_encoder_layers_31_mlp_fc2",
  );
  for (const family of ["sd1", "sd2", "sdxl"] as const) {
    const names = new Set<string>();
    for (const m of moduleTree(family)) {
      const name = kohyaName(m.component, m.path);
      assert.ok(!names.has(name), `${family}: ${name} is ambiguous`);
      names.add(name);
      assert.deepEqual(parseKohyaName(name, family), { component: m.component, path: m.path });
    }
  }
  assert.equal(parseKohyaName("lora_unet_not_a_module", "sd1"), undefined);
  assert.equal(parseKohyaName("lora_te_text_model_encoder_layers_0_self_attn_qq_proj", "sd1"), undefined);
});

test("kohya names outside the preset (a deeper model) still decode through the path grammar", () => {
  assert.deepEqual(
    parseKohyaName("lora_unet_up_blocks_3_attentions_7_transformer_blocks_4_ff_net_0_proj", "sd1"),
    {
      component: "unet",
      path: "up_blocks.3.attentions.7.transformer_blocks.4.ff.net.0.proj",
    },
  );
  assert.deepEqual(parseKohyaName("lora_te_text_model_encoder_layers_40_self_attn_out_proj", "sd1"), {
    component: "te",
    path: "text_model.encoder.layers.40.self_attn.out_proj",
  });
});

test("SDXL: SGM-layout kohya names map to diffusers paths by the block index rule", () => {
  const cases: [string, string][] = [
    [
      "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
      "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    ],
    [
      "lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2",
      "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2",
    ],
    ["lora_unet_middle_block_1_proj_in", "mid_block.attentions.0.proj_in"],
    [
      "lora_unet_output_blocks_0_1_transformer_blocks_3_attn2_to_k",
      "up_blocks.0.attentions.0.transformer_blocks.3.attn2.to_k",
    ],
    ["lora_unet_output_blocks_5_1_proj_out", "up_blocks.1.attentions.2.proj_out"],
    ["lora_unet_output_blocks_2_2_conv", "up_blocks.0.upsamplers.0.conv"],
    ["lora_unet_output_blocks_8_0_skip_connection", "up_blocks.2.resnets.2.conv_shortcut"],
    ["lora_unet_input_blocks_3_0_op", "down_blocks.0.downsamplers.0.conv"],
    ["lora_unet_label_emb_0_0", "add_embedding.linear_1"],
  ];
  for (const [name, path] of cases)
    assert.deepEqual(parseKohyaName(name, "sdxl"), { component: "unet", path }, name);
  const cross = moduleTree("sdxl").find(
    (m) => m.path === "up_blocks.0.attentions.0.transformer_blocks.3.attn2.to_k",
  );
  assert.deepEqual(cross && [cross.inFeatures, cross.outFeatures], [2048, 1280]);
  const add = moduleTree("sdxl").find((m) => m.path === "add_embedding.linear_1");
  assert.deepEqual(add && [add.inFeatures, add.outFeatures], [2816, 1280]);
  assert.deepEqual(originalCheckpointTarget("sdxl", "te1", "text_model.encoder.layers.11.mlp.fc1"), {
    key: "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight",
  });
  assert.deepEqual(originalCheckpointTarget("sdxl", "te2", "text_model.encoder.layers.31.self_attn.v_proj"), {
    key: "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
    rows: [2560, 3840],
  });
  assert.deepEqual(diffusersCheckpointTarget("sdxl", "te2", "text_model.encoder.layers.0.mlp.fc1"), {
    file: "text_encoder_2/model.safetensors",
    key: "text_model.encoder.layers.0.mlp.fc1.weight",
  });
});

test("SD2: OpenCLIP fused q/k/v rows, linear proj_in, heads per block", () => {
  const d = 1024;
  ["q_proj", "k_proj", "v_proj"].forEach((p, i) => {
    assert.deepEqual(originalCheckpointTarget("sd2", "te", `text_model.encoder.layers.22.self_attn.${p}`), {
      key: "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight",
      rows: [i * d, (i + 1) * d],
    });
  });
  assert.equal(
    originalCheckpointTarget("sd2", "te", "text_model.encoder.layers.0.mlp.fc2").key,
    "cond_stage_model.model.transformer.resblocks.0.mlp.c_proj.weight",
  );
  const tree = moduleTree("sd2");
  const projIn = tree.find((m) => m.path === "down_blocks.0.attentions.0.proj_in");
  assert.deepEqual(projIn && [projIn.layer, projIn.kernel], ["linear", [1, 1]]);
  const q = (p: string) => tree.find((m) => m.path === p)?.heads;
  assert.equal(q("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), 5);
  assert.equal(q("up_blocks.3.attentions.0.transformer_blocks.0.attn1.to_q"), 5);
  assert.equal(q("mid_block.attentions.0.transformer_blocks.0.attn2.to_q"), 20);
  assert.equal(
    tree.find((m) => m.path === "mid_block.attentions.0.transformer_blocks.0.attn2.to_k")?.inFeatures,
    1024,
  );
});

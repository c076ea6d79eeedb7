/** Reading fixture and synthetic adapters in every layout, writing kohya/PEFT, round trips, header-only summaries. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { moduleDelta } from "../src/adapters/delta.ts";
import { detectFamily } from "../src/adapters/family.ts";
import { parseAdapter, readAdapter, type TensorMap } from "../src/adapters/parse.ts";
import { summarizeAdapterFile } from "../src/adapters/summary.ts";
import type { Adapter } from "../src/adapters/types.ts";
import { writeAdapter } from "../src/adapters/write.ts";
import { architectureFromConfig } from "../src/architecture/index.ts";
import { f16ToF32, f32ToF16, openSafetensors, readSafetensors } from "../src/safetensors/index.ts";

const fixtures = new URL("../../../../shared/fixtures/", import.meta.url);
const fx = (rel: string) => new URL(rel, fixtures).pathname;
const loraDir = "tiny-sd1/lora/";
const reference = JSON.parse(readFileSync(fx("tiny-sd1/reference/05_lora_unet.json"), "utf8"));
const tmp = mkdtempSync(join(tmpdir(), "adapters-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

const byPath = (a: Adapter) => new Map(a.modules.map((m) => [`${m.component}:${m.path}`, m]));

test("fixture kohya LoRAs: zero unknown keys, SD1, 88 modules, rank 4, their alpha, the reference's module list", async () => {
  for (const [file, alpha] of [
    ["tiny-sd1-lora-kohya.safetensors", 4],
    ["tiny-sd1-lora-kohya.fp16.safetensors", 4],
    ["tiny-sd1-lora-kohya-alpha1.safetensors", 1],
  ] as const) {
    const a = await readAdapter(fx(loraDir + file));
    assert.deepEqual(a.unknownKeys, [], file);
    assert.equal(a.format, "kohya");
    assert.equal(a.family, "sd1");
    assert.equal(a.modules.length, reference.params.n_lora_modules);
    assert.deepEqual(a.modules.map((m) => m.path).sort(), [...reference.params.modules].sort());
    for (const m of a.modules) {
      assert.equal(m.kind, "lora");
      assert.equal(m.layer, "linear");
      assert.equal(m.tensors.down.shape[0], 4);
      assert.equal(m.alpha, alpha);
    }
  }
});

test("the fp16 fixture equals the fp32 one within fp16 rounding", async () => {
  const a = byPath(await readAdapter(fx(`${loraDir}tiny-sd1-lora-kohya.safetensors`)));
  const h = byPath(await readAdapter(fx(`${loraDir}tiny-sd1-lora-kohya.fp16.safetensors`)));
  assert.equal(a.size, h.size);
  for (const [k, m] of a) {
    for (const role of ["down", "up"]) {
      const x = m.tensors[role].data;
      const y = h.get(k)?.tensors[role].data as Float32Array;
      for (let i = 0; i < x.length; i++) {
        // Half precision: 11 significant bits (relative 2^-11), subnormals below 6.1e-5 spaced 6e-8.
        assert.ok(
          Math.abs(x[i] - y[i]) <= Math.abs(x[i]) * 2 ** -11 + 6e-8,
          `${k}.${role}[${i}]: ${x[i]} vs ${y[i]}`,
        );
      }
    }
  }
});

test("kohya -> PEFT -> kohya keeps every tensor and alpha bit for bit, and the deltas", async () => {
  const src = fx(`${loraDir}tiny-sd1-lora-kohya.safetensors`);
  const original = await readSafetensors(src);
  const adapter = await readAdapter(src);
  const peftPath = join(tmp, "peft.safetensors");
  await writeAdapter(peftPath, adapter, { format: "peft" });
  const peftRaw = await readSafetensors(peftPath);
  const name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  assert.deepEqual(peftRaw.tensors.get(`${name}.lora_A.weight`)?.shape, [4, 32]);
  assert.deepEqual(peftRaw.tensors.get(`${name}.lora_B.weight`)?.shape, [32, 4]);
  assert.equal(peftRaw.tensors.size, 2 * 88, "no alpha tensors in PEFT layout");
  assert.equal(peftRaw.metadata.ss_network_dim, "4", "metadata kept");
  const cfg = JSON.parse(peftRaw.metadata.lora_adapter_metadata);
  assert.equal(cfg["unet.r"], 4);
  assert.equal(cfg["unet.lora_alpha"], 4);

  const viaPeft = await readAdapter(peftPath);
  assert.equal(viaPeft.format, "peft");
  assert.deepEqual(viaPeft.unknownKeys, []);
  const backPath = join(tmp, "back.safetensors");
  await writeAdapter(backPath, viaPeft, { format: "kohya" });
  const back = await readSafetensors(backPath);
  assert.deepEqual([...back.tensors.keys()].sort(), [...original.tensors.keys()].sort());
  for (const [k, t] of original.tensors) {
    const b = back.tensors.get(k);
    assert.ok(b);
    assert.deepEqual(b.shape, t.shape, k);
    assert.equal(b.dtype, "F32");
    assert.deepEqual(b.data, t.data, k);
  }
  assert.equal(back.metadata.ss_network_alpha, "4.0");
  assert.equal(back.metadata.lora_adapter_metadata, undefined);
  const before = byPath(adapter);
  for (const m of (await readAdapter(backPath)).modules) {
    const d0 = moduleDelta(before.get(`${m.component}:${m.path}`) as Adapter["modules"][number], 0.6);
    assert.deepEqual(moduleDelta(m, 0.6), d0);
  }
});

test("PEFT alphas per module survive when they differ (alpha_pattern)", async () => {
  const adapter = await readAdapter(fx(`${loraDir}tiny-sd1-lora-kohya.safetensors`));
  adapter.modules[3].alpha = 0.3125;
  adapter.modules[5].alpha = undefined;
  const p = join(tmp, "pattern.safetensors");
  await writeAdapter(p, adapter, { format: "peft" });
  const again = await readAdapter(p);
  assert.equal(again.modules[3].alpha, 0.3125);
  assert.equal(again.modules[5].alpha, 4, "no alpha is written as alpha = rank (same scale 1)");
  assert.equal(again.modules[0].alpha, 4);
});

test("F16 and BF16 output hold the values rounded to that dtype", async () => {
  const adapter = await readAdapter(fx(`${loraDir}tiny-sd1-lora-kohya.safetensors`));
  const p = join(tmp, "half.safetensors");
  await writeAdapter(p, adapter, { format: "kohya", dtype: "F16" });
  const half = await readSafetensors(p);
  const m = adapter.modules[0];
  const t = half.tensors.get(`lora_unet_${m.path.replaceAll(".", "_")}.lora_down.weight`);
  assert.equal(t?.dtype, "F16");
  assert.deepEqual(t?.data, f16ToF32(f32ToF16(m.tensors.down.data)));
  await writeAdapter(p, adapter, { format: "kohya", dtype: "BF16" });
  assert.equal(
    (await readSafetensors(p)).tensors.get(`lora_unet_${m.path.replaceAll(".", "_")}.alpha`)?.dtype,
    "BF16",
  );
});

test("the reference LoRA tensors (05_lora_unet) map onto the tiny model's module tree with matching shapes", async () => {
  const ref = await readSafetensors(fx("tiny-sd1/reference/05_lora_unet.safetensors"));
  const lora: TensorMap = new Map([...ref.tensors].filter(([k]) => k.startsWith("lora_unet_")));
  assert.equal(lora.size, 88 * 3);
  const adapter = parseAdapter(lora, {}, "05_lora_unet");
  assert.deepEqual(adapter.unknownKeys, []);
  const readJson = (rel: string) => JSON.parse(readFileSync(fx(rel), "utf8"));
  const arch = architectureFromConfig(
    readJson("tiny-sd1/diffusers/unet/config.json"),
    readJson("tiny-sd1/diffusers/text_encoder/config.json"),
  );
  for (const m of adapter.modules) {
    const spec = arch.find(m.component, m.path);
    assert.ok(spec, m.path);
    assert.equal(m.tensors.down.shape[1], spec.inFeatures, m.path);
    assert.equal(m.tensors.up.shape[0], spec.outFeatures, m.path);
    assert.equal(m.alpha, reference.params.alpha);
  }
  // And the kohya fixture holds the very same tensors.
  const fixture = byPath(await readAdapter(fx(`${loraDir}tiny-sd1-lora-kohya.safetensors`)));
  for (const m of adapter.modules)
    assert.deepEqual(fixture.get(`unet:${m.path}`)?.tensors.down.data, m.tensors.down.data);
});

const t = (shape: number[], fill = 0.5) => ({
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
});

test("diffusers/PEFT spellings all land on the same module paths", () => {
  const q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  const te = "text_model.encoder.layers.1.self_attn.k_proj";
  const cases: [string, Record<string, number[]>, string, string, Adapter["format"]][] = [
    [
      "peft",
      { [`unet.${q}.lora_A.weight`]: [2, 320], [`unet.${q}.lora_B.weight`]: [320, 2] },
      "unet",
      q,
      "peft",
    ],
    [
      "peft+adapter name",
      {
        [`base_model.model.${q}.lora_A.default.weight`]: [2, 320],
        [`base_model.model.${q}.lora_B.default.weight`]: [320, 2],
      },
      "unet",
      q,
      "peft",
    ],
    [
      "peft te",
      { [`text_encoder.${te}.lora_A.weight`]: [2, 768], [`text_encoder.${te}.lora_B.weight`]: [768, 2] },
      "te",
      te,
      "peft",
    ],
    [
      "lora.down",
      { [`unet.${q}.lora.down.weight`]: [2, 320], [`unet.${q}.lora.up.weight`]: [320, 2] },
      "unet",
      q,
      "diffusers",
    ],
    [
      "lora_linear_layer",
      {
        [`text_encoder.${te}.lora_linear_layer.down.weight`]: [2, 768],
        [`text_encoder.${te}.lora_linear_layer.up.weight`]: [768, 2],
      },
      "te",
      te,
      "diffusers",
    ],
    [
      "attn processor",
      {
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight": [2, 1280],
        "unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight": [1280, 2],
      },
      "unet",
      "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0",
      "diffusers",
    ],
  ];
  for (const [label, shapes, component, path, format] of cases) {
    const map: TensorMap = new Map(Object.entries(shapes).map(([k, s]) => [k, t(s)]));
    const a = parseAdapter(map, {});
    assert.deepEqual(a.unknownKeys, [], label);
    assert.equal(a.modules.length, 1, label);
    assert.equal(a.modules[0].component, component, label);
    assert.equal(a.modules[0].path, path, label);
    assert.equal(a.format, format, label);
  }
  // SDXL: text_encoder_2 is te2, text_encoder is te1.
  const xl = parseAdapter(
    new Map([
      [`text_encoder_2.${te}.lora_A.weight`, t([2, 1280])],
      [`text_encoder_2.${te}.lora_B.weight`, t([1280, 2])],
      [`text_encoder.${te}.lora_A.weight`, t([2, 768])],
      [`text_encoder.${te}.lora_B.weight`, t([768, 2])],
    ]),
    {},
  );
  assert.equal(xl.family, "sdxl");
  assert.deepEqual(xl.modules.map((m) => m.component).sort(), ["te1", "te2"]);
});

test("LyCORIS, conv and dora keys parse into their kinds; unknown and incomplete keys are listed", () => {
  const k = "lora_unet_down_blocks_0_resnets_0_conv1";
  const map: TensorMap = new Map([
    [`${k}.hada_w1_a`, t([320, 4])],
    [`${k}.hada_w1_b`, t([4, 320 * 9])],
    [`${k}.hada_w2_a`, t([320, 4])],
    [`${k}.hada_w2_b`, t([4, 320 * 9])],
    [`${k}.alpha`, t([], 2)],
    ["lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w1", t([4, 8])],
    ["lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w2_a", t([768, 2])],
    ["lora_te_text_model_encoder_layers_0_mlp_fc1.lokr_w2_b", t([2, 96])],
    ["lora_unet_conv_in.diff", t([320, 4, 3, 3])],
    ["lora_unet_conv_in.diff_b", t([320])],
    ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", t([8, 320, 1, 1])],
    ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", t([320, 8, 1, 1])],
    ["lora_unet_down_blocks_0_attentions_0_proj_in.dora_scale", t([1, 320])],
    ["lora_unet_no_such_module.lora_down.weight", t([4, 4])],
    ["lora_unet_up_blocks_0_resnets_0_conv2.lora_down.weight", t([4, 1280, 3, 3])],
    ["something_else", t([1])],
  ]);
  const a = parseAdapter(map, { ss_base_model_version: "sd_v1" });
  assert.equal(a.format, "lycoris");
  const m = byPath(a);
  const loha = m.get("unet:down_blocks.0.resnets.0.conv1");
  assert.equal(loha?.kind, "loha");
  assert.equal(loha?.layer, "conv");
  assert.deepEqual(loha?.targetShape, [320, 320, 3, 3]);
  assert.deepEqual(loha && moduleDelta(loha).shape, [320, 320, 3, 3]);
  assert.equal(loha?.alpha, 2);
  assert.equal(m.get("te:text_model.encoder.layers.0.mlp.fc1")?.kind, "lokr");
  assert.deepEqual(
    moduleDelta(m.get("te:text_model.encoder.layers.0.mlp.fc1") as Adapter["modules"][number]).shape,
    [3072, 768],
  );
  assert.equal(m.get("unet:conv_in")?.kind, "full");
  assert.deepEqual(m.get("unet:conv_in")?.tensors.diff_b.shape, [320]);
  assert.deepEqual(m.get("unet:down_blocks.0.attentions.0.proj_in")?.doraScale?.shape, [1, 320]);
  assert.deepEqual(a.unknownKeys.sort(), [
    "lora_unet_no_such_module.lora_down.weight",
    "lora_unet_up_blocks_0_resnets_0_conv2.lora_down.weight",
    "something_else",
  ]);
  assert.equal(a.modules.length, 4);
});

test("family: metadata first, then key names and shapes", () => {
  const shapes = (entries: [string, number[]][]) => new Map(entries);
  assert.equal(detectFamily({ ss_base_model_version: "sdxl_base_v1-0", ss_v2: "False" }, new Map()), "sdxl");
  assert.equal(detectFamily({ ss_base_model_version: "sd_v2_768_v" }, new Map()), "sd2");
  assert.equal(detectFamily({ "modelspec.architecture": "stable-diffusion-v1/lora" }, new Map()), "sd1");
  assert.equal(detectFamily({ ss_v2: "True" }, shapes([["lora_unet_x.lora_down.weight", [4, 4]]])), "sd2");
  assert.equal(
    detectFamily({}, shapes([["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", [4, 768]]])),
    "sdxl",
  );
  assert.equal(
    detectFamily({}, shapes([["lora_unet_input_blocks_4_1_proj_in.lora_down.weight", [4, 640]]])),
    "sdxl",
  );
  const attn2 = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight";
  assert.equal(detectFamily({}, shapes([[attn2, [4, 1024]]])), "sd2");
  assert.equal(detectFamily({}, shapes([[attn2, [4, 768]]])), "sd1");
  assert.equal(detectFamily({}, shapes([[attn2, [4, 2048]]])), "sdxl");
  assert.equal(
    detectFamily(
      {},
      shapes([["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", [4, 1024]]]),
    ),
    "sd2",
  );
  assert.equal(detectFamily({}, shapes([["weird", [1]]])), "unknown");
});

test("SDXL kohya output names UNet modules in the SGM layout and reads back to diffusers paths", async () => {
  const path = "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k";
  const adapter: Adapter = {
    format: "kohya",
    family: "sdxl",
    metadata: { ss_base_model_version: "sdxl_base_v1-0" },
    unknownKeys: [],
    modules: [
      {
        component: "unet",
        path,
        kind: "lora",
        layer: "linear",
        tensors: { down: t([2, 2048], 0.25), up: t([640, 2], 0.5) },
        alpha: 1,
      },
    ],
  };
  const p = join(tmp, "xl.safetensors");
  await writeAdapter(p, adapter, { format: "kohya" });
  const raw = await readSafetensors(p);
  assert.ok(raw.tensors.has("lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight"));
  const back = await readAdapter(p);
  assert.equal(back.modules[0].path, path);
  assert.equal(back.family, "sdxl");
});

test("summarizeAdapterFile reads the header and the alpha scalars only", async () => {
  const file = await openSafetensors(fx(`${loraDir}tiny-sd1-lora-kohya-alpha1.safetensors`));
  const reads: string[] = [];
  const readFloat32 = file.readFloat32.bind(file);
  file.readFloat32 = (name: string) => {
    reads.push(name);
    return readFloat32(name);
  };
  const readRaw = file.readRaw.bind(file);
  file.readRaw = (name: string) =>
    name.endsWith(".alpha")
      ? readRaw(name)
      : Promise.reject(new Error(`summary read tensor data of ${name}`));
  try {
    const s = await summarizeAdapterFile(file);
    assert.deepEqual(s, {
      format: "kohya",
      family: "sd1",
      ranks: [4],
      alphas: [1],
      moduleCount: 88,
      components: ["unet"],
      kinds: ["lora"],
      unknownKeys: [],
    });
    assert.equal(reads.length, 88);
    assert.ok(reads.every((n) => n.endsWith(".alpha")));
  } finally {
    await file.close();
  }
});

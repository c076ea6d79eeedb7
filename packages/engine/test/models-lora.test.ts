/**
 * LoRA injection through graph inputs (lora.unet.<path>.down / .up / .scale) against 05_lora_unet: the kohya
 * file's down/up/alpha fed into one graph reproduce diffusers' UNet-with-LoRA output (scale alpha/r), the
 * alpha=1 file (scale 1/4) and strength 0.5; a rank-concatenated stack of two half-strength copies equals the
 * full-strength adapter; modules outside the adapter set add no inputs and no nodes.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { kohyaName, readSafetensors } from "@lora-studio/prompt-lora";
import { buildClipTextGraph } from "../src/models/clip-text.ts";
import { type Checkpoint, openCheckpoint } from "../src/models/loader/checkpoint.ts";
import { architectureFor } from "../src/models/loader/original-keys.ts";
import { kohyaLoraTargets } from "../src/models/lora-targets.ts";
import { buildUNetGraph } from "../src/models/unet/unet.ts";
import { loraInputNames } from "../src/nn/lora.ts";
import { Session } from "../src/runtime/session.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import {
  assertClose,
  f32,
  loadReference,
  type RefCase,
  TINY,
  TINY_OPTIONS,
  TINY_SINGLE,
} from "./models.helpers.ts";

const sidecar = JSON.parse(readFileSync(`${TINY}reference/05_lora_unet.json`, "utf8"));
const modules: string[] = sidecar.params.modules;
const RANK: number = sidecar.params.rank;

let ck: Checkpoint;
let ref: RefCase;
let kohya: Map<string, { shape: number[]; data: Float32Array }>;
before(async () => {
  ck = await openCheckpoint(TINY_SINGLE, TINY_OPTIONS);
  ref = await loadReference("05_lora_unet");
  kohya = (await readSafetensors(`${TINY}lora/tiny-sd1-lora-kohya.safetensors`)).tensors;
});
after(async () => {
  await ck.close();
});

function baseFeeds(): Record<string, HostTensor> {
  const [n, c, h, w] = ref.shape("noisy_latents");
  return {
    sample: f32([n, c, h, w], ref.f32("noisy_latents")),
    timestep: { dtype: "int64", shape: [n], data: ref.int64("timesteps") },
    encoder_hidden_states: f32(ref.shape("encoder_hidden_states"), ref.f32("encoder_hidden_states")),
  };
}

function kohyaTensor(path: string, suffix: string) {
  const t = kohya.get(`${kohyaName("unet", path)}.${suffix}`);
  assert.ok(t, `kohya file lacks ${path} ${suffix}`);
  return t;
}

/** Feeds for every module: `copies` copies of the adapter concatenated along the rank, up scaled by `upMul`. */
function loraFeeds(scale: (alpha: number) => number, copies = 1, upMul = 1): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const path of modules) {
    const names = loraInputNames("unet", path);
    const down = kohyaTensor(path, "lora_down.weight");
    const up = kohyaTensor(path, "lora_up.weight");
    const alpha = kohyaTensor(path, "alpha").data[0];
    const [r, inF] = down.shape;
    const outF = up.shape[0];
    const d = new Float32Array(copies * r * inF);
    const u = new Float32Array(outF * copies * r);
    for (let c = 0; c < copies; c++) {
      d.set(down.data, c * r * inF);
      for (let o = 0; o < outF; o++)
        for (let k = 0; k < r; k++) u[o * copies * r + c * r + k] = up.data[o * r + k] * upMul;
    }
    feeds[names.down] = f32([copies * r, inF], d);
    feeds[names.up] = f32([outF, copies * r], u);
    feeds[names.scale] = f32([], Float32Array.of(scale(alpha)));
  }
  return feeds;
}

function unetGraph(rank: number) {
  const [n, , h, w] = ref.shape("noisy_latents");
  const ranks = new Map(modules.map((m) => [m, rank] as [string, number]));
  return buildUNetGraph(ck.unet, ck.weights.unet, {
    batch: n,
    height: h,
    width: w,
    timestepDType: "int64",
    lora: { component: "unet", ranks },
  });
}

test("05 LoRA: kohya adapter at strength 1, 0.5, alpha=1 file, and scale 0 = base UNet", async () => {
  const { graph, ctx } = unetGraph(RANK);
  assert.equal(ctx.loraInputs.length, modules.length);
  const s = await Session.create(graph, { executionProvider: "cpu", onMessage: () => {} });
  try {
    const run = (scale: (a: number) => number) => s.run({ ...baseFeeds(), ...loraFeeds(scale) });
    assertClose("unet_output_lora", (await run((a) => a / RANK)).out, ref.f32("unet_output_lora"));
    assertClose(
      "unet_output_lora_strength0.5",
      (await run((a) => (0.5 * a) / RANK)).out,
      ref.f32("unet_output_lora_strength0.5"),
    );
    // The alpha=1 file holds the same down/up: only the scale changes (1/r).
    assertClose(
      "unet_output_lora_alpha1",
      (await run(() => 1 / RANK)).out,
      ref.f32("unet_output_lora_alpha1"),
    );
    assertClose("unet_output_base", (await run(() => 0)).out, ref.f32("unet_output_base"));
  } finally {
    await s.release();
  }
});

test("a rank-concatenated stack of two half-strength copies equals the adapter at full strength", async () => {
  const { graph } = unetGraph(2 * RANK);
  const s = await Session.create(graph, { executionProvider: "cpu", onMessage: () => {} });
  try {
    const out = await s.run({ ...baseFeeds(), ...loraFeeds((a) => a / RANK, 2, 0.5) });
    assertClose("stacked unet_output_lora", out.out, ref.f32("unet_output_lora"));
  } finally {
    await s.release();
  }
});

test("modules outside the adapter set cost nothing; inputs are named lora.<component>.<path>.down/up/scale", () => {
  const [n, , h, w] = ref.shape("noisy_latents");
  const opts = { batch: n, height: h, width: w };
  const plain = buildUNetGraph(ck.unet, ck.weights.unet, opts).graph;
  const empty = buildUNetGraph(ck.unet, ck.weights.unet, {
    ...opts,
    lora: { component: "unet", ranks: new Map() },
  }).graph;
  assert.equal(empty.nodes.length, plain.nodes.length);
  assert.deepEqual(
    empty.inputs.map((v) => v.name),
    ["sample", "timestep", "encoder_hidden_states"],
  );
  const one = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
  const withOne = buildUNetGraph(ck.unet, ck.weights.unet, {
    ...opts,
    lora: { component: "unet", ranks: new Map([[one, 4]]) },
  }).graph;
  const loraInputs = withOne.inputs.filter((v) => v.name.startsWith("lora."));
  assert.deepEqual(
    loraInputs.map((v) => [v.name, v.shape]),
    [
      [`lora.unet.${one}.scale`, []],
      [`lora.unet.${one}.down`, [4, 32]],
      [`lora.unet.${one}.up`, [32, 4]],
    ],
  );
  // Two transposes, two MatMuls, Mul by scale, Add.
  assert.equal(withOne.nodes.length, plain.nodes.length + 6);
});

test("kohya's default module set: transformer Linears/1x1 convs, text-encoder attention+MLP, LoCon adds resnets", () => {
  const modules = architectureFor(ck.unet, ck.textEncoder, "cond_stage_model.transformer.").modules;
  const unet = kohyaLoraTargets(modules, "unet", { rank: 4 });
  // 11 Transformer2DModels x (proj_in, 8 attention projections, ff.net.0.proj, ff.net.2, proj_out).
  assert.equal(unet.ranks.size, 11 * 12);
  for (const m of modules) assert.ok(!m.path.includes("resnets") || !unet.ranks.has(m.path));
  for (const m of sidecar.params.modules as string[]) assert.equal(unet.ranks.get(m), 4, m);
  const te = kohyaLoraTargets(modules, "te", { rank: 4 });
  assert.equal(te.ranks.size, ck.textEncoder.num_hidden_layers * 6);
  const locon = kohyaLoraTargets(modules, "unet", { rank: 4, convRank: 2 });
  assert.equal(locon.ranks.get("down_blocks.0.resnets.0.conv1"), 2);
  assert.equal(locon.ranks.get("down_blocks.0.resnets.0.time_emb_proj"), 4);
  assert.equal(locon.ranks.get("up_blocks.0.upsamplers.0.conv"), 2);
  assert.equal(locon.ranks.has("conv_in"), false);

  const [n, , h, w] = ref.shape("noisy_latents");
  const built = buildUNetGraph(ck.unet, ck.weights.unet, { batch: n, height: h, width: w, lora: locon });
  assert.equal(built.ctx.loraInputs.length, locon.ranks.size);
  const conv1Down = built.graph.inputs.find((v) => v.name === "lora.unet.down_blocks.0.resnets.0.conv1.down");
  assert.deepEqual(conv1Down?.shape, [2, 32, 3, 3]);
  const teGraph = buildClipTextGraph(ck.textEncoder, ck.weights.textEncoder, { batch: 1, lora: te });
  assert.equal(teGraph.ctx.loraInputs.length, te.ranks.size);
  assert.ok(teGraph.graph.inputs.some((v) => v.name === "lora.te.text_model.encoder.layers.1.mlp.fc2.up"));
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { moduleDelta } from "../src/adapters/delta.ts";
import type { Adapter, AdapterModule, Tensor } from "../src/adapters/types.ts";
import { Rng } from "../src/math/random.ts";
import { stackAdapters } from "../src/merge/stack.ts";

const rng = new Rng(2024);
const randn = (shape: number[], std = 0.1): Tensor => ({
  shape,
  data: rng.gaussianArray(
    shape.reduce((a, b) => a * b, 1),
    std,
  ),
});

function lora(
  component: AdapterModule["component"],
  path: string,
  out: number,
  inn: number,
  r: number,
  alpha?: number,
  kernel = 1,
): AdapterModule {
  const conv = kernel > 1;
  return {
    component,
    path,
    kind: "lora",
    layer: conv ? "conv" : "linear",
    tensors: {
      down: randn(conv ? [r, inn, kernel, kernel] : [r, inn]),
      up: randn(conv ? [out, r, 1, 1] : [out, r]),
    },
    alpha,
  };
}

function adapter(modules: AdapterModule[], name: string): Adapter {
  return { source: name, format: "kohya", family: "sd1", modules, metadata: {}, unknownKeys: [] };
}

const key = (m: AdapterModule) => `${m.component}:${m.path}`;

/** sum_i moduleDelta(m_i, mult_i) over the adapters holding the module. */
function expectedSum(entries: { adapter: Adapter; te: number; unet: number }[]): Map<string, Float64Array> {
  const sums = new Map<string, Float64Array>();
  for (const e of entries)
    for (const m of e.adapter.modules) {
      const d = moduleDelta(m, m.component === "unet" ? e.unet : e.te);
      const acc = sums.get(key(m)) ?? new Float64Array(d.data.length);
      for (let i = 0; i < acc.length; i++) acc[i] += d.data[i];
      sums.set(key(m), acc);
    }
  return sums;
}

function assertClose(actual: Float32Array, expected: Float64Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < actual.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= 1e-6 * Math.max(scale, 1e-3),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

test("stacked delta equals the weighted sum of deltas (te/unet multipliers, negative, partial modules)", () => {
  const a = adapter(
    [
      lora("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 24, 16, 4, 2),
      lora("unet", "down_blocks.0.attentions.0.proj_in", 16, 16, 3, 3, 1),
      lora("unet", "down_blocks.0.resnets.0.conv1", 8, 6, 2, 1, 3),
      lora("te", "text_model.encoder.layers.0.self_attn.q_proj", 12, 12, 4),
    ],
    "a",
  );
  const b = adapter(
    [
      lora("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", 24, 16, 8, 4),
      lora("unet", "down_blocks.0.resnets.0.conv1", 8, 6, 5, 10, 3),
      lora("te", "text_model.encoder.layers.0.self_attn.q_proj", 12, 12, 2, 1),
      lora("te", "text_model.encoder.layers.1.mlp.fc1", 20, 12, 6, 3),
    ],
    "b",
  );
  const entries = [
    { adapter: a, te: 0.7, unet: -0.4 },
    { adapter: b, te: -1.3, unet: 0.9 },
  ];
  const stacked = stackAdapters(entries);
  const expected = expectedSum(entries);
  assert.equal(stacked.modules.length, expected.size);
  for (const m of stacked.modules) {
    assert.equal(m.kind, "lora");
    assert.equal(m.alpha, m.tensors.down.shape[0], "alpha = rank, scale 1");
    assertClose(moduleDelta(m, 1).data, expected.get(key(m))!, key(m));
  }
  const q = stacked.modules.find((m) => m.path.endsWith("attn1.to_q"))!;
  assert.deepEqual(q.tensors.down.shape, [12, 16]);
  const conv = stacked.modules.find((m) => m.path.endsWith("conv1"))!;
  assert.deepEqual(conv.tensors.down.shape, [7, 6, 3, 3]);
  assert.deepEqual(conv.tensors.up.shape, [8, 7, 1, 1]);
  const fc1 = stacked.modules.find((m) => m.path.endsWith("fc1"))!;
  assert.equal(fc1.tensors.down.shape[0], 6, "module of one adapter carries over");
});

test("unet multiplier defaults to te; multiplier 0 contributes nothing", () => {
  const a = adapter([lora("unet", "mid_block.attentions.0.proj_out", 10, 10, 2, 1)], "a");
  const b = adapter([lora("unet", "mid_block.attentions.0.proj_out", 10, 10, 3, 3)], "b");
  const stacked = stackAdapters([
    { adapter: a, te: 0.5 },
    { adapter: b, te: 0 },
  ]);
  assertClose(
    moduleDelta(stacked.modules[0]).data,
    Float64Array.from(moduleDelta(a.modules[0], 0.5).data),
    "te default",
  );
});

test("LoHa and LoKr contributions turn the module into an exact full delta", () => {
  const path = "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2";
  const loha: AdapterModule = {
    component: "unet",
    path,
    kind: "loha",
    layer: "linear",
    tensors: {
      hada_w1_a: randn([6, 3]),
      hada_w1_b: randn([3, 9]),
      hada_w2_a: randn([6, 3]),
      hada_w2_b: randn([3, 9]),
    },
    alpha: 1.5,
  };
  const lokr: AdapterModule = {
    component: "unet",
    path,
    kind: "lokr",
    layer: "linear",
    tensors: { lokr_w1: randn([2, 3]), lokr_w2: randn([3, 3]) },
  };
  const plain = lora("unet", path, 6, 9, 2, 2);
  const entries = [
    { adapter: adapter([loha], "loha"), te: 1, unet: 0.8 },
    { adapter: adapter([lokr], "lokr"), te: 1, unet: -0.5 },
    { adapter: adapter([plain], "lora"), te: 1, unet: 1.2 },
  ];
  const stacked = stackAdapters(entries);
  assert.equal(stacked.modules.length, 1);
  assert.equal(stacked.modules[0].kind, "full");
  assertClose(moduleDelta(stacked.modules[0]).data, expectedSum(entries).get(`unet:${path}`)!, "full");
});

test("dyn keeps the first ranks of an adapter, at its file scale", () => {
  const m = lora("unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 7, 5, 6, 3);
  const stacked = stackAdapters([{ adapter: adapter([m], "d"), te: 1, unet: 2, dyn: 4 }]);
  const up = m.tensors.up.data;
  const down = m.tensors.down.data;
  const expected = new Float64Array(7 * 5);
  for (let o = 0; o < 7; o++)
    for (let i = 0; i < 5; i++) {
      let s = 0;
      for (let p = 0; p < 4; p++) s += up[o * 6 + p] * down[p * 5 + i];
      expected[o * 5 + i] = 2 * (3 / 6) * s;
    }
  assert.equal(stacked.modules[0].tensors.down.shape[0], 4);
  assertClose(moduleDelta(stacked.modules[0]).data, expected, "dyn");
});

test("stacking rejects DoRA modules and mismatched shapes with typed errors", () => {
  const d = lora("unet", "x.to_q", 4, 4, 2);
  d.doraScale = randn([4, 1]);
  assert.throws(() => stackAdapters([{ adapter: adapter([d], "dora") }]), {
    name: "MergeError",
    code: "NEEDS_BASE_WEIGHT",
  });
  const a = lora("unet", "x.to_k", 4, 4, 2);
  const b = lora("unet", "x.to_k", 4, 5, 2);
  assert.throws(() => stackAdapters([{ adapter: adapter([a], "a") }, { adapter: adapter([b], "b") }]), {
    name: "MergeError",
    code: "SHAPE_MISMATCH",
  });
  assert.throws(() => stackAdapters([]), { code: "EMPTY_STACK" });
});

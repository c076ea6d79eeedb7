/**
 * Shared layers: GroupNorm against a direct JS computation of PyTorch's formula and through autodiff (finite
 * differences in float64); the LoRA branch of Linear and Conv2d (incl. a 3x3 stride-2 "LoCon" with asymmetric
 * padding) against the same layer with the merged weight W + scale * up @ down computed in JS.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import { conv2d, groupNorm, linear } from "../src/nn/layers.ts";
import { loraInputNames } from "../src/nn/lora.ts";
import { type LoraTargets, ModuleContext, memoryWeights } from "../src/nn/module.ts";
import type { HostTensor } from "../src/runtime/tensor.ts";
import { f32, relMaxDiff, runOnce } from "./models.helpers.ts";
import { gradCheck } from "./support/gradcheck.ts";
import { randn, rng } from "./support/numeric.ts";

const rand = rng(7);
const randF32 = (n: number, scale = 1) => Float32Array.from(randn(rand, n, scale));

test("GroupNorm matches PyTorch's per-group formula (biased variance, eps inside the sqrt, per-channel affine)", async () => {
  const [n, c, h, w, groups, eps] = [2, 8, 3, 5, 4, 1e-6];
  const x = randF32(n * c * h * w, 2);
  for (let i = 0; i < x.length; i += 7) x[i] += 3; // an offset so the mean matters
  const gamma = randF32(c);
  const beta = randF32(c);
  const b = new GraphBuilder();
  const ctx = new ModuleContext(
    b,
    memoryWeights(
      new Map([
        ["norm.weight", { shape: [c], data: gamma }],
        ["norm.bias", { shape: [c], data: beta }],
      ]),
    ),
  );
  const xin = b.input("x", "float32", [n, c, h, w]);
  b.output(
    b.scope("norm", () => groupNorm(ctx, xin, groups, eps)),
    "y",
  );
  const out = await runOnce(b.build(), { x: f32([n, c, h, w], x) });
  const expected = new Float64Array(x.length);
  const per = (c / groups) * h * w;
  for (let s = 0; s < n * groups; s++) {
    const seg = Array.from(x.subarray(s * per, (s + 1) * per));
    const mean = seg.reduce((a, v) => a + v, 0) / per;
    const variance = seg.reduce((a, v) => a + (v - mean) ** 2, 0) / per;
    seg.forEach((v, i) => {
      const ch = (s % groups) * (c / groups) + Math.floor(i / (h * w));
      expected[s * per + i] = ((v - mean) / Math.sqrt(variance + eps)) * gamma[ch] + beta[ch];
    });
  }
  assert.ok(relMaxDiff(out.y.data as Float32Array, expected) < 1e-5);
});

// float32: ORT's CPU InstanceNormalization has no float64 kernel (gradCheck widens its tolerance for float32).
test("GroupNorm's gradient (through InstanceNormalization) passes finite differences", async () => {
  const c = 6;
  const weights = memoryWeights(
    new Map([
      ["norm.weight", { shape: [c], data: randF32(c) }],
      ["norm.bias", { shape: [c], data: randF32(c) }],
    ]),
  );
  const report = await gradCheck({
    dtype: "float32",
    inputs: [{ name: "x", shape: [2, c, 2, 3] }],
    build: ([x], b) => {
      const ctx = new ModuleContext(b, weights);
      return b.scope("norm", () => groupNorm(ctx, x, 3, 1e-5));
    },
  });
  assert.ok(report.fdErrors.length > 0 && report.fdErrors.every((e) => e < 5e-3), `${report.fdErrors}`);
});

/** y = layer(x) with a LoRA of rank r on module "m" vs the same layer with the merged weight. */
async function loraVsMerged(
  x: HostTensor,
  weight: { shape: number[]; data: Float32Array },
  down: HostTensor,
  up: HostTensor,
  scale: number,
  layer: (ctx: ModuleContext, x: Value) => Value,
): Promise<number> {
  const bias = { shape: [weight.shape[0]], data: randF32(weight.shape[0]) };
  const graphFor = (w: { shape: number[]; data: Float32Array }, lora?: LoraTargets) => {
    const b = new GraphBuilder();
    const ctx = new ModuleContext(
      b,
      memoryWeights(
        new Map([
          ["m.weight", w],
          ["m.bias", bias],
        ]),
      ),
      lora,
    );
    const xin = b.input("x", "float32", x.shape);
    b.output(
      b.scope("m", () => layer(ctx, xin)),
      "y",
    );
    return b.build();
  };
  const r = down.shape[0];
  const outF = weight.shape[0];
  const perOut = weight.data.length / outF;
  const merged = Float32Array.from(weight.data);
  for (let o = 0; o < outF; o++)
    for (let k = 0; k < r; k++)
      for (let j = 0; j < perOut; j++)
        merged[o * perOut + j] +=
          scale * (up.data as Float32Array)[o * r + k] * (down.data as Float32Array)[k * perOut + j];
  const names = loraInputNames("unet", "m");
  const withLora = await runOnce(graphFor(weight, { component: "unet", ranks: new Map([["m", r]]) }), {
    x,
    [names.down]: down,
    [names.up]: up,
    [names.scale]: f32([], Float32Array.of(scale)),
  });
  const reference = await runOnce(graphFor({ shape: weight.shape, data: merged }), { x });
  return relMaxDiff(withLora.y.data as Float32Array, reference.y.data as Float32Array);
}

test("LoRA on a Linear equals the merged weight W + scale * up @ down", async () => {
  const [inF, outF, r] = [6, 5, 2];
  const err = await loraVsMerged(
    f32([2, 3, inF], randF32(2 * 3 * inF)),
    { shape: [outF, inF], data: randF32(outF * inF) },
    f32([r, inF], randF32(r * inF)),
    f32([outF, r], randF32(outF * r)),
    0.7,
    (ctx, x) => linear(ctx, x, inF, outF),
  );
  assert.ok(err < 1e-5, `relative error ${err}`);
});

test("LoCon on a 3x3 stride-2 conv (symmetric and asymmetric padding) equals the merged kernel", async () => {
  const [inC, outC, r, k] = [3, 4, 2, 3];
  for (const pads of [
    [1, 1, 1, 1],
    [0, 0, 1, 1],
  ]) {
    const err = await loraVsMerged(
      f32([2, inC, 7, 6], randF32(2 * inC * 7 * 6)),
      { shape: [outC, inC, k, k], data: randF32(outC * inC * k * k) },
      f32([r, inC, k, k], randF32(r * inC * k * k)),
      f32([outC, r, 1, 1], randF32(outC * r)),
      1.3,
      (ctx, x) => conv2d(ctx, x, inC, outC, { kernel: k, stride: 2, pads }),
    );
    assert.ok(err < 1e-5, `pads ${pads}: relative error ${err}`);
  }
});

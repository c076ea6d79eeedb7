// VJP rules of Softmax, LayerNormalization, InstanceNormalization and the GroupNorm helper (which must also equal
// PyTorch's GroupNorm definition, computed here in plain JS), plus an attention block softmax(QK^T/sqrt d)V.
import assert from "node:assert/strict";
import { test } from "node:test";
import ort from "onnxruntime-node";
import { groupNorm } from "../src/autodiff/group-norm.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { gradCheck, sessionFor } from "./support/gradcheck.ts";
import { maxAbsDiff, randn, rng } from "./support/numeric.ts";

test("VJP Softmax over the last and a middle axis (float64)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [{ name: "x", shape: [3, 7] }],
    build: ([x]) => op.softmax(x, -1),
  });
  await gradCheck({
    dtype: "float64",
    inputs: [{ name: "x", shape: [2, 5, 3] }],
    build: ([x]) => op.softmax(x, 1),
  });
});

test("VJP LayerNormalization over 1 and 2 axes, with scale and bias gradients (float64)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "x", shape: [3, 8] },
      { name: "s", shape: [8] },
      { name: "b", shape: [8] },
    ],
    build: ([x, s, b]) => op.layerNormalization(x, s, b, { epsilon: 1e-5 })[0],
  });
  await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "x", shape: [2, 3, 4, 5] },
      { name: "s", shape: [4, 5] },
      { name: "b", shape: [5] },
    ],
    build: ([x, s, b]) => op.layerNormalization(x, s, b, { axis: 2 })[0],
  });
});

test("VJP InstanceNormalization (float32: no float64 kernel)", async () => {
  await gradCheck({
    dtype: "float32",
    inputs: [
      { name: "x", shape: [2, 3, 5, 4] },
      { name: "s", shape: [3] },
      { name: "b", shape: [3] },
    ],
    build: ([x, s, b]) => op.instanceNormalization(x, s, b, 1e-5),
  });
});

test("GroupNorm gradient: reductions form in float64, InstanceNormalization form in float32", async () => {
  const inputs = [
    { name: "x", shape: [2, 6, 3, 5] },
    { name: "gamma", shape: [6] },
    { name: "beta", shape: [6] },
  ];
  await gradCheck({
    dtype: "float64",
    inputs,
    build: ([x, g, b]) => groupNorm(x, 3, g, b, { viaReductions: true }),
  });
  await gradCheck({ dtype: "float32", inputs, build: ([x, g, b]) => groupNorm(x, 3, g, b) });
});

test("GroupNorm forward equals PyTorch's definition (independent JS computation)", async () => {
  const [n, c, h, w, groups, eps] = [2, 6, 3, 4, 3, 1e-5];
  const rand = rng(7);
  const x = randn(rand, n * c * h * w, 2);
  const gamma = randn(rand, c);
  const beta = randn(rand, c);
  const b = new GraphBuilder();
  const xv = b.input("x", "float32", [n, c, h, w]);
  const gv = b.input("gamma", "float32", [c]);
  const bv = b.input("beta", "float32", [c]);
  b.output(groupNorm(xv, groups, gv, bv, { epsilon: eps }), "y");
  const s = await sessionFor(b);
  const t = (d: Float64Array, shape: number[]) => new ort.Tensor("float32", Float32Array.from(d), shape);
  const out = await s.run({ x: t(x, [n, c, h, w]), gamma: t(gamma, [c]), beta: t(beta, [c]) });
  const expected = new Float64Array(x.length);
  const per = (c / groups) * h * w;
  for (let i = 0; i < n * groups; i++) {
    const seg = x.subarray(i * per, (i + 1) * per);
    const mean = seg.reduce((p, v) => p + v, 0) / per;
    const variance = seg.reduce((p, v) => p + (v - mean) ** 2, 0) / per;
    for (let k = 0; k < per; k++) {
      const ch = ((i % groups) * (c / groups) + Math.floor(k / (h * w))) % c;
      expected[i * per + k] = ((seg[k] - mean) / Math.sqrt(variance + eps)) * gamma[ch] + beta[ch];
    }
  }
  assert.ok(maxAbsDiff(out.y.data as Float32Array, expected) < 1e-4);
});

test("VJP attention softmax(Q K^T / sqrt(d)) V w.r.t. Q, K and V (float64)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "q", shape: [2, 5, 4] },
      { name: "k", shape: [2, 6, 4] },
      { name: "v", shape: [2, 6, 3] },
    ],
    build: ([q, k, v]) =>
      op.matmul(op.softmax(op.div(op.matmul(q, op.transpose(k, [0, 2, 1])), Math.sqrt(4)), -1), v),
  });
});

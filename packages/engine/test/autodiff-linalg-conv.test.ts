// VJP rules of MatMul (batched, broadcast, 1-D), Gemm (all transpose flags, bias), Conv / ConvTranspose (stride 2,
// odd sizes, padding, dilation, groups, bias) and nearest Resize: finite differences plus dot-product tests.
// Conv, ConvTranspose and Resize have no float64 kernels in ORT, so they are checked in float32.

import assert from "node:assert/strict";
import { test } from "node:test";
import { grad } from "../src/autodiff/grad.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { gradCheck } from "./support/gradcheck.ts";

test("VJP MatMul: batched, broadcast batch dims and 1-D operands (float64, FD + adjoint)", async () => {
  const cases: [number[], number[]][] = [
    [
      [3, 4],
      [4, 5],
    ],
    [
      [2, 3, 4],
      [4, 5],
    ],
    [
      [2, 1, 3, 4],
      [3, 4, 2],
    ],
    [[4], [2, 4, 3]],
    [[2, 3, 4], [4]],
    [[5], [5]],
  ];
  for (const [sa, sb] of cases) {
    await gradCheck({
      dtype: "float64",
      inputs: [
        { name: "a", shape: sa },
        { name: "b", shape: sb },
      ],
      build: ([a, b]) => op.matmul(a, b),
      linearIn: ["a", "b"],
    });
  }
});

test("VJP MatMul against a frozen initializer weight (gradient flows to x without transposing W)", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 3, 4]);
  const w = b.initializer("w", { dtype: "float32", shape: [4, 5], data: new Float32Array(20).fill(0.5) });
  const y = op.matmul(x, w);
  const [gx] = grad(b, op.reduceSum(y, undefined, false), [x]);
  assert.equal(
    b.nodes.some((n) => n.op === "Transpose" && n.inputs[0] === w),
    false,
  );
  assert.deepEqual(gx.shape, [2, 3, 4]);
  await gradCheck({
    dtype: "float64",
    inputs: [{ name: "x", shape: [2, 3, 4] }],
    build: ([xv], bb) => {
      const wv = bb.initializer("w", {
        dtype: "float64",
        shape: [4, 5],
        data: Float64Array.from({ length: 20 }, (_, i) => Math.sin(i)),
      });
      return op.matmul(op.tanh(xv), wv);
    },
  });
});

test("VJP Gemm: every transA/transB combination, alpha, beta and a broadcast bias (float64)", async () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      await gradCheck({
        dtype: "float64",
        inputs: [
          { name: "a", shape: transA ? [4, 3] : [3, 4] },
          { name: "b", shape: transB ? [5, 4] : [4, 5] },
          { name: "c", shape: [5] },
        ],
        build: ([a, b, c]) => op.gemm(a, b, c, { alpha: 0.7, beta: 1.3, transA, transB }),
      });
      await gradCheck({
        dtype: "float64",
        inputs: [
          { name: "a", shape: transA ? [4, 3] : [3, 4] },
          { name: "b", shape: transB ? [5, 4] : [4, 5] },
        ],
        build: ([a, b]) => op.gemm(a, b, undefined, { alpha: 0.7, transA, transB }),
        linearIn: ["a", "b"],
      });
    }
  }
});

interface ConvCase {
  x: number[];
  w: number[];
  strides?: number[];
  pads?: number[];
  dilations?: number[];
  group?: number;
}

const convCases: ConvCase[] = [
  { x: [2, 3, 7, 7], w: [4, 3, 3, 3], pads: [1, 1, 1, 1] },
  { x: [1, 3, 8, 8], w: [5, 3, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
  { x: [2, 2, 9, 7], w: [3, 2, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
  { x: [1, 2, 6, 5], w: [2, 2, 1, 1] },
  { x: [1, 4, 9, 9], w: [6, 2, 3, 3], strides: [2, 1], pads: [0, 1, 2, 1], group: 2 },
  { x: [1, 2, 10, 9], w: [3, 2, 3, 2], dilations: [2, 3], pads: [2, 1, 1, 0] },
  { x: [2, 3, 5, 6], w: [2, 3, 2, 2], strides: [3, 2] },
];

test("VJP Conv: stride 2, odd sizes, asymmetric pads, dilation, groups (float32 FD + adjoint)", async () => {
  for (const c of convCases) {
    const opts = { strides: c.strides, pads: c.pads, dilations: c.dilations, group: c.group };
    await gradCheck({
      dtype: "float32",
      inputs: [
        { name: "x", shape: c.x },
        { name: "w", shape: c.w },
      ],
      build: ([x, w]) => op.conv(x, w, undefined, opts),
      linearIn: ["x", "w"],
    });
    await gradCheck({
      dtype: "float32",
      inputs: [
        { name: "x", shape: c.x },
        { name: "w", shape: c.w },
        { name: "bias", shape: [c.w[0]] },
      ],
      build: ([x, w, bias]) => op.conv(x, w, bias, opts),
    });
  }
});

test("VJP ConvTranspose: stride 2 with output_padding, pads, groups, bias (float32 FD + adjoint)", async () => {
  const cases: (ConvCase & { outputPadding?: number[] })[] = [
    { x: [1, 3, 4, 4], w: [3, 2, 3, 3], strides: [2, 2], pads: [1, 1, 1, 1], outputPadding: [1, 1] },
    { x: [2, 2, 5, 3], w: [2, 3, 3, 2], strides: [2, 3], pads: [1, 0, 0, 1], outputPadding: [0, 2] },
    { x: [1, 4, 3, 3], w: [4, 1, 3, 3], group: 2, pads: [1, 1, 1, 1] },
  ];
  for (const c of cases) {
    const opts = {
      strides: c.strides,
      pads: c.pads,
      dilations: c.dilations,
      group: c.group,
      outputPadding: c.outputPadding,
    };
    await gradCheck({
      dtype: "float32",
      inputs: [
        { name: "x", shape: c.x },
        { name: "w", shape: c.w },
      ],
      build: ([x, w]) => op.convTranspose(x, w, undefined, opts),
      linearIn: ["x", "w"],
    });
    const m = c.w[1] * (c.group ?? 1);
    await gradCheck({
      dtype: "float32",
      inputs: [
        { name: "x", shape: c.x },
        { name: "w", shape: c.w },
        { name: "bias", shape: [m] },
      ],
      build: ([x, w, bias]) => op.convTranspose(x, w, bias, opts),
    });
  }
});

test("VJP Resize nearest 2x (and 3x on one axis) sums each block (float32 FD + adjoint)", async () => {
  for (const scales of [
    [1, 1, 2, 2],
    [1, 1, 3, 2],
  ]) {
    for (const mode of [
      undefined,
      { coordinateTransformationMode: "half_pixel", nearestMode: "round_prefer_floor" },
    ] as const) {
      await gradCheck({
        dtype: "float32",
        inputs: [{ name: "x", shape: [2, 3, 3, 5] }],
        build: ([x]) => op.resizeNearest(x, scales, mode),
        linearIn: ["x"],
      });
    }
  }
});

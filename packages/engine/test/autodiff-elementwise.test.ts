// VJP rules of the element-wise ops, in float64 (ORT has float64 kernels for all of them except Erf/Gelu,
// which are checked in float32), against central finite differences, with broadcasting and odd shapes.
import { test } from "node:test";
import { sum } from "../src/autodiff/extra-ops.ts";
import * as op from "../src/graph/ops/index.ts";
import { gradCheck } from "./support/gradcheck.ts";

const unary: [
  string,
  (x: import("../src/graph/ir.ts").Value) => import("../src/graph/ir.ts").Value,
  [number, number]?,
][] = [
  ["Neg", op.neg],
  ["Sqrt", op.sqrt, [0.3, 2]],
  ["Exp", op.exp],
  ["Log", op.log, [0.3, 2]],
  ["Tanh", op.tanh],
  ["Sigmoid", op.sigmoid],
  ["Relu", op.relu],
  ["Identity", op.identity],
  ["Pow(x, 3)", (x) => op.pow(x, 3)],
  ["Pow(x, -1.5)", (x) => op.pow(x, -1.5), [0.5, 2]],
  ["Cast f64->f32->f64", (x) => op.cast(op.cast(x, "float32"), "float64")],
];

for (const [name, f, range] of unary) {
  test(`VJP ${name} matches finite differences (float64, [3,5,7])`, async () => {
    await gradCheck({
      dtype: "float64",
      inputs: [{ name: "x", shape: [3, 5, 7], range }],
      build: ([x]) => f(x),
      tol: name.startsWith("Cast") ? 1e-4 : 1e-6,
      eps: name.startsWith("Cast") ? 1e-2 : undefined,
    });
  });
}

test("VJP Erf and Gelu (exact, tanh) match finite differences (float32: no float64 kernels)", async () => {
  await gradCheck({ dtype: "float32", inputs: [{ name: "x", shape: [4, 9] }], build: ([x]) => op.erf(x) });
  await gradCheck({
    dtype: "float32",
    inputs: [{ name: "x", shape: [4, 9] }],
    build: ([x]) => op.gelu(x, "none"),
  });
  await gradCheck({
    dtype: "float32",
    inputs: [{ name: "x", shape: [4, 9] }],
    build: ([x]) => op.gelu(x, "tanh"),
  });
});

const binary: [
  string,
  (
    a: import("../src/graph/ir.ts").Value,
    c: import("../src/graph/ir.ts").Value,
  ) => import("../src/graph/ir.ts").Value,
  boolean,
][] = [
  ["Add", op.add, false],
  ["Sub", op.sub, false],
  ["Mul", op.mul, true],
  ["Div", op.div, false],
];
const shapes: [number[], number[]][] = [
  [
    [3, 4],
    [3, 4],
  ],
  [[2, 3, 5], [5]],
  [
    [2, 1, 5],
    [1, 3, 1],
  ],
  [[1], [4, 3]],
  [
    [6, 1, 3],
    [6, 2, 1],
  ],
];

for (const [name, f, bilinear] of binary) {
  test(`VJP ${name} with broadcasting matches finite differences (float64)`, async () => {
    for (const [sa, sb] of shapes) {
      await gradCheck({
        dtype: "float64",
        inputs: [
          { name: "a", shape: sa },
          { name: "b", shape: sb, range: name === "Div" ? [0.5, 2] : undefined },
        ],
        build: ([a, c]) => f(a, c),
        // Mul is linear in each operand separately: dot-product test against the unbroadcast reduction.
        linearIn: bilinear ? ["a", "b"] : undefined,
      });
    }
  });
}

test("VJP Sum (variadic, broadcasting) matches finite differences and the adjoint identity (float64)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "a", shape: [2, 3, 4] },
      { name: "b", shape: [3, 1] },
      { name: "c", shape: [4] },
    ],
    build: ([a, b, c]) => sum([a, b, c]),
  });
});

test("VJP Where routes the gradient by the condition and reduces broadcasting (float64)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "a", shape: [3, 4] },
      { name: "b", shape: [4] },
    ],
    build: ([a, c]) => op.where(op.greater(a, 0), a, c),
  });
});

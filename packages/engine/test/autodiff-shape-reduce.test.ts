// VJP rules of the shape ops (Reshape, Transpose, Concat, Split, Slice with steps, Gather, Expand, Squeeze,
// Unsqueeze) and reductions, in float64: finite differences plus dot-product tests (all are linear in x).
import { test } from "node:test";
import type { Value } from "../src/graph/ir.ts";
import * as op from "../src/graph/ops/index.ts";
import { gradCheck } from "./support/gradcheck.ts";

const linear: [string, number[], (x: Value) => Value][] = [
  ["Reshape", [2, 3, 4], (x) => op.reshape(x, [4, -1])],
  ["Transpose", [2, 3, 4, 5], (x) => op.transpose(x, [2, 0, 3, 1])],
  ["Squeeze", [3, 1, 4, 1], (x) => op.squeeze(x, [1, 3])],
  ["Unsqueeze", [3, 4], (x) => op.unsqueeze(x, [0, 2])],
  ["Expand", [3, 1, 4], (x) => op.expand(x, [2, 3, 5, 4])],
  ["Slice step 1", [5, 7], (x) => op.slice(x, [1, -5], [4, 6], [0, 1])],
  ["Slice step 2 and 3, odd sizes", [7, 9, 4], (x) => op.slice(x, [1, 0], [7, 8], [0, 1], [2, 3])],
  ["Slice negative step", [6, 5], (x) => op.slice(x, [4, -1], [0, -Infinity], [0, 1], [-2, -1])],
  ["Split with an unused output", [3, 8], (x) => op.split(x, 1, [2, 5, 1])[1]],
  [
    "Split, two outputs used",
    [3, 8],
    (x) => {
      const [a, , c] = op.split(x, 1, [2, 5, 1]);
      return op.add(op.reduceSum(a, [1]), op.mul(c, 3));
    },
  ],
  ["Concat (same input twice)", [2, 3], (x) => op.concat([x, op.mul(x, 2), x], 0)],
  ["Gather axis 0 with repeated indices", [5, 3], (x) => op.gather(x, [4, 0, 4, 2, 4], 0)],
  ["ReduceSum axes [0,2]", [3, 4, 5], (x) => op.reduceSum(x, [0, 2])],
  ["ReduceSum all, keepdims 0", [3, 4], (x) => op.reduceSum(x, undefined, false)],
  ["ReduceMean axis -1, keepdims 0", [3, 4, 5], (x) => op.reduceMean(x, [-1], false)],
  ["ReduceMean all", [2, 3, 2], (x) => op.reduceMean(x)],
];

for (const [name, shape, f] of linear) {
  test(`VJP ${name} (float64 FD + adjoint)`, async () => {
    await gradCheck({
      dtype: "float64",
      inputs: [{ name: "x", shape }],
      build: ([x]) => f(x),
      linearIn: ["x"],
    });
  });
}

test("VJP Gather axis 1 with 2-D indices (float64 FD + adjoint)", async () => {
  await gradCheck({
    dtype: "float64",
    inputs: [{ name: "x", shape: [2, 6, 3] }],
    build: ([x], b) => op.gather(x, b.constant([0, 5, 5, 2], "int64", [2, 2]), 1),
    linearIn: ["x"],
  });
});

test("VJP Gather embedding lookup: int64 index input, data gradient scatter-adds duplicates", async () => {
  const report = await gradCheck({
    dtype: "float64",
    inputs: [
      { name: "table", shape: [6, 4] },
      { name: "ids", shape: [2, 3], dtype: "int64", data: [1, 3, 1, 5, 1, 0] },
    ],
    build: ([table, ids]) => op.tanh(op.gather(table, ids, 0)),
  });
  // Rows never looked up get exactly zero gradient.
  const g = report.grads.table;
  for (const row of [2, 4])
    for (let j = 0; j < 4; j++) if (g[row * 4 + j] !== 0) throw new Error(`row ${row} got gradient`);
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuildError, GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { runChecked } from "./graph-ops.helpers.ts";

const w = (shape: number[]) => ({
  dtype: "float32" as const,
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

function buildError(fn: () => unknown): GraphBuildError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof GraphBuildError, `expected GraphBuildError, got ${(e as Error).message}`);
    return e;
  }
  return assert.fail("expected a build-time error");
}

test("build-time errors name the op, the input shapes and the scope path", () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 3]);
  const e = buildError(() =>
    b.scope("down_blocks.0", () =>
      b.scope("attentions.0", () => op.matmul(x, b.input("k", "float32", [4, 5]))),
    ),
  );
  assert.equal(e.op, "MatMul");
  assert.equal(e.scope, "down_blocks.0.attentions.0");
  assert.match(
    e.message,
    /^MatMul at down_blocks\.0\.attentions\.0: inner dimensions differ \(3 vs 4\) \(input shapes \[2,3\], \[4,5\]\)$/,
  );

  const cases: [string, () => unknown, RegExp][] = [
    [
      "Add",
      () => op.add(x, b.input("y", "float32", [4])),
      /Add at <root>: shapes are not broadcastable.*\[2,3\], \[4\]/,
    ],
    ["Add", () => op.add(x, b.input("i", "int64", [3])), /Add .*dtypes differ \(float32, int64\)/],
    [
      "Conv",
      () => op.conv(b.input("im", "float32", [1, 3, 8, 8]), b.input("cw", "float32", [4, 2, 3, 3])),
      /Conv .*3 channels but W expects 2 x group 1.*\[1,3,8,8\], \[4,2,3,3\]/,
    ],
    [
      "Conv",
      () => op.conv(b.input("im2", "float32", [1, 3, 2, 2]), b.input("cw2", "float32", [4, 3, 3, 3])),
      /kernel extent 3 exceeds padded input 2/,
    ],
    ["Reshape", () => op.reshape(x, [4, -1]), /Reshape .*cannot infer -1 in \[4,-1\] from 6 elements/],
    ["Reshape", () => op.reshape(x, [5]), /Reshape .*has 5 elements, input has 6/],
    [
      "Gemm",
      () => op.gemm(x, b.input("gw", "float32", [2, 4])),
      /Gemm .*inner dimensions differ \(3 vs 2; transA=false, transB=false\)/,
    ],
    [
      "Concat",
      () => op.concat([x, b.input("c2", "float32", [3, 3])], 1),
      /Concat .*must match except on axis 1/,
    ],
    ["Softmax", () => op.softmax(x, 2), /Softmax .*axis 2 is out of range for rank 2/],
    ["Squeeze", () => op.squeeze(x, [0]), /Squeeze .*axis 0 has size 2, not 1/],
    ["Split", () => op.split(x, 1, [1, 1]), /Split .*sum to 3/],
    ["Where", () => op.where(x, x, x), /Where .*condition must be bool/],
    ["Gather", () => op.gather(x, [5], 1), /Gather .*index out of range for axis length 3/],
    ["Expand", () => op.expand(x, [4, 1]), /Expand .*not broadcastable/],
    [
      "LayerNormalization",
      () => op.layerNormalization(x, b.input("g", "float32", [2])),
      /scale\/bias must broadcast to \[3\]/,
    ],
    ["Resize", () => op.resizeNearest(x, [2]), /Resize .*needs 2 scales/],
    [
      "ConvTranspose",
      () =>
        op.convTranspose(
          b.input("t", "float32", [1, 2, 4, 4]),
          b.input("tw", "float32", [2, 2, 3, 3]),
          undefined,
          { strides: [2, 2], outputPadding: [2, 0] },
        ),
      /output_padding 2 must be smaller/,
    ],
  ];
  for (const [opName, fn, re] of cases) {
    const err = buildError(fn);
    assert.equal(err.op, opName);
    assert.match(err.message, re);
  }
});

test("Transpose of an initializer is refused with a hint; Transpose of an activation is fine", () => {
  const b = new GraphBuilder();
  const weight = b.scope("proj", () => b.initializer("weight", w([4, 3])));
  assert.equal(weight.name, "proj.weight");
  const e = buildError(() => op.transpose(weight));
  assert.match(e.message, /refusing to transpose initializer proj\.weight.*transB/);
  const x = b.input("x", "float32", [2, 3]);
  assert.deepEqual(op.gemm(x, weight, undefined, { transB: true }).shape, [2, 4]);
  const viaReshape = buildError(() => op.transpose(op.reshape(weight, [3, 4])));
  assert.match(viaReshape.message, /expression of initializers/);
  assert.deepEqual(op.transpose(op.mul(op.reshape(x, [3, 2]), 2)).shape, [2, 3]);
});

test("scopes prefix node, value and initializer names; duplicate names and foreign values are rejected", () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2]);
  const y = b.scope("down_blocks.0", () => b.scope("resnets.1", () => op.relu(x)));
  assert.equal(y.scope, "down_blocks.0.resnets.1");
  assert.match(y.producer!.name, /^down_blocks\.0\.resnets\.1\/Relu_\d+$/);
  assert.match(y.name, /^down_blocks\.0\.resnets\.1\/Relu_\d+:0$/);
  assert.equal(b.scopePath, "");
  assert.throws(() => b.input("x", "float32", [3]), /duplicate value name "x"/);
  const other = new GraphBuilder();
  const z = other.input("z", "float32", [2]);
  assert.throws(() => op.add(x, z), /belongs to another graph/);
  // Scope is restored even when the body throws.
  assert.throws(() => b.scope("a", () => op.reshape(x, [3])));
  assert.equal(b.scopePath, "");
});

test("dead-node elimination keeps only what the outputs need, and the pruned graph runs", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float32", [2, 2]);
  const unusedInput = b.input("unused", "float32", [1]);
  const big = b.initializer("big_unused", w([64, 64]));
  const dead = op.matmul(op.reshape(op.exp(x), [1, 4]), op.reshape(big, [4, 1024]));
  op.add(dead, unusedInput);
  const live = op.mul(op.add(x, 1), 2);
  b.output(live, "y");
  const g = b.build();
  assert.deepEqual(
    g.nodes.map((n) => n.op),
    ["Add", "Mul", "Identity"],
  );
  assert.ok(!g.initializers.includes(big));
  assert.deepEqual(
    g.inputs.map((v) => v.name),
    ["x", "unused"],
  );
  assert.deepEqual(
    b.build({ pruneInputs: true }).inputs.map((v) => v.name),
    ["x"],
  );
  const out = await runChecked(b, {
    x: { dtype: "float32", shape: [2, 2], data: Float32Array.from([0, 1, 2, 3]) },
    unused: { dtype: "float32", shape: [1], data: new Float32Array(1) },
  });
  assert.deepEqual([...(out.y.data as Float32Array)], [2, 4, 6, 8]);
});

// Properties of the backward walk itself: fan-out gradients summed, stopGradient and non-differentiable inputs
// respected, only the nodes between loss and wrt differentiated, unreachable wrt -> zeros, clear errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import ort from "onnxruntime-node";
import { grad } from "../src/autodiff/grad.ts";
import { stopGradient } from "../src/autodiff/marks.ts";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { gradCheck, sessionFor } from "./support/gradcheck.ts";

const f64 = (data: number[], shape: number[]) => new ort.Tensor("float64", Float64Array.from(data), shape);

test("fan-out: a value used by several consumers gets the sum of their gradients", async () => {
  // f = x*x + 3x + exp(x) (x reaches the loss along four edges)
  const b = new GraphBuilder();
  const x = b.input("x", "float64", [3]);
  const y = op.reduceSum(op.add(op.add(op.mul(x, x), op.mul(x, 3)), op.exp(x)), undefined, false);
  const [gx] = grad(b, y, [x]);
  b.output(gx, "gx");
  const out = await (await sessionFor(b)).run({ x: f64([0.5, -1, 2], [3]) });
  const expected = [0.5, -1, 2].map((v) => 2 * v + 3 + Math.exp(v));
  (out.gx.data as Float64Array).forEach((v, i) => {
    assert.ok(Math.abs(v - expected[i]) < 1e-12);
  });
  await gradCheck({
    dtype: "float64",
    inputs: [{ name: "x", shape: [4, 3] }],
    build: ([v]) => op.mul(op.tanh(v), op.add(v, op.sigmoid(v))),
  });
});

test("stopGradient: the stopped path contributes nothing", async () => {
  // f = sum(x * stop(x)) -> df/dx = stop(x) = x (not 2x)
  const b = new GraphBuilder();
  const x = b.input("x", "float64", [2]);
  const [gx] = grad(b, op.reduceSum(op.mul(x, stopGradient(x)), undefined, false), [x]);
  b.output(gx, "gx");
  const out = await (await sessionFor(b)).run({ x: f64([3, -2], [2]) });
  assert.deepEqual(Array.from(out.gx.data as Float64Array), [3, -2]);
});

test("non-differentiable inputs: int indices and bool masks get no gradient, float data does", async () => {
  const b = new GraphBuilder();
  const x = b.input("x", "float64", [4, 2]);
  const ids = b.input("ids", "int64", [3]);
  const y = op.where(op.greater(x, 0), x, op.mul(x, 0.1));
  const loss = op.reduceSum(op.gather(y, ids, 0), undefined, false);
  const [gx] = grad(b, loss, [x]);
  assert.throws(() => grad(b, loss, [ids]), /int64/);
  b.output(gx, "gx");
  const out = await (await sessionFor(b)).run({
    x: f64([1, -1, 2, -2, 3, -3, 4, -4], [4, 2]),
    ids: new ort.Tensor("int64", BigInt64Array.from([0n, 3n, 3n]), [3]),
  });
  assert.deepEqual(
    Array.from(out.gx.data as Float64Array).map((v) => Math.round(v * 10) / 10),
    [1, 0.1, 0, 0, 0, 0, 2, 0.2],
  );
});

test("only nodes between loss and wrt are differentiated; unreachable wrt gets zeros", () => {
  const b = new GraphBuilder();
  const frozen = b.input("frozen", "float32", [3]);
  const p = b.input("p", "float32", [3]);
  const q = b.input("q", "float32", [3]);
  // Sin has no VJP rule: upstream of p (frozen branch) and in a side branch off the loss it must not matter.
  const pre = op.sin(frozen);
  const loss = op.reduceSum(op.mul(op.add(pre, p), p), undefined, false);
  op.sin(p); // side branch not reaching the loss
  const before = b.nodes.length;
  const [gp, gq] = grad(b, loss, [p, q]);
  assert.equal(gq.producer?.op, "ConstantOfShape");
  assert.ok(b.nodes.slice(before).every((n) => n.op !== "Sin" && n.op !== "Cos"));
  assert.deepEqual(gp.shape, [3]);
  const c = new GraphBuilder();
  const z = c.input("z", "float32", [3]);
  assert.throws(() => grad(c, op.reduceSum(op.sin(z), undefined, false), [z]), /no VJP rule for Sin/);
  assert.throws(() => grad(c, op.sin(z), [z]), /reduce it to one element or pass opts.seed/);
  assert.throws(
    () => grad(c, op.reduceSum(op.pow(c.constant(2, "float32", []), z), undefined, false), [z]),
    /exponent/,
  );
});

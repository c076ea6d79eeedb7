// In-graph optimizer updates against the closed-form float64 references in support/reference-optimizers.ts:
// AdamW, SGD (momentum, Nesterov, weight decay), Lion; clipping by global norm; gradient accumulation; the
// NaN/Inf guard. The loss is sum(w * c) with c a graph input, so the gradient fed to the optimizer is exactly c.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import * as op from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import type { OptimizerConfig } from "../src/optim/optimizers.ts";
import { appendTrainStep, type TrainStepSpec } from "../src/optim/train-step.ts";
import { maxAbsDiff, randn, rng } from "./support/numeric.ts";
import { adamwStep, clipByGlobalNorm, lionStep, sgdStep } from "./support/reference-optimizers.ts";
import { createTrainer, type Feed } from "./support/train-harness.ts";

const SHAPE = [5, 7];
const N = 35;

async function linearProblem(optimizer: OptimizerConfig, extra: Partial<TrainStepSpec> = {}) {
  const b = new GraphBuilder("optim");
  const w = b.input("state_in.w", "float32", SHAPE);
  const c = b.input("c", "float32", SHAPE);
  const loss = op.reduceSum(op.mul(w, c), undefined, false);
  const graph = appendTrainStep(b, { loss, params: [w], optimizer, ...extra });
  const rand = rng(11);
  const w0 = Float32Array.from(randn(rand, N));
  const trainer = await createTrainer(encodeModel(b.build()), graph, { w: w0 });
  const gradFeed = (g: ArrayLike<number>): Record<string, Feed> => ({
    c: { dtype: "float32", shape: SHAPE, data: g },
  });
  return { trainer, w0: Float64Array.from(w0), rand, gradFeed, graph };
}

test("AdamW: 4 steps with changing lr equal the closed-form update to 1e-6", async () => {
  const h = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
  const { trainer, w0, rand, gradFeed, graph } = await linearProblem({ kind: "adamw", ...h });
  assert.deepEqual(graph.state.map((s) => s.name).sort(), [
    "optimizer.m",
    "optimizer.step",
    "optimizer.v",
    "w",
  ]);
  let ref = { p: w0, m: new Float64Array(N), v: new Float64Array(N) };
  for (const [step, lr] of [
    [1, 1e-2],
    [2, 5e-3],
    [3, 2e-2],
    [4, 1e-3],
  ]) {
    const g = Float32Array.from(randn(rand, N, step));
    const out = await trainer.step(lr, gradFeed(g));
    ref = adamwStep(ref.p, g, ref.m, ref.v, step, { lr: Math.fround(lr), ...h });
    assert.ok(
      maxAbsDiff(trainer.value("w"), ref.p) < 1e-6,
      `step ${step}: w differs by ${maxAbsDiff(trainer.value("w"), ref.p)}`,
    );
    assert.ok(maxAbsDiff(trainer.value("optimizer.m"), ref.m) < 1e-6);
    assert.ok(maxAbsDiff(trainer.value("optimizer.v"), ref.v) < 1e-6);
    assert.equal(trainer.value("optimizer.step")[0], step);
    assert.equal(out.nonfinite.data[0], 0);
  }
});

test("SGD with momentum (plain and Nesterov, weight decay) equals the closed form", async () => {
  for (const nesterov of [false, true]) {
    const h = { lr: 0.05, momentum: 0.9, weightDecay: 0.1, nesterov };
    const { trainer, w0, rand, gradFeed } = await linearProblem({ kind: "sgd", ...h });
    let ref = { p: w0, b: new Float64Array(N) };
    for (let step = 1; step <= 3; step++) {
      const g = Float32Array.from(randn(rand, N));
      await trainer.step(h.lr, gradFeed(g));
      ref = sgdStep(ref.p, g, ref.b, { ...h, lr: Math.fround(h.lr) });
      assert.ok(maxAbsDiff(trainer.value("w"), ref.p) < 1e-6, `nesterov=${nesterov} step ${step}`);
    }
  }
});

test("Lion equals the closed form (sign update, decoupled decay, momentum after the update)", async () => {
  const h = { lr: 0.01, beta1: 0.9, beta2: 0.99, weightDecay: 0.5 };
  const { trainer, w0, rand, gradFeed } = await linearProblem({ kind: "lion", ...h });
  let ref = { p: w0, m: new Float64Array(N) };
  for (let step = 1; step <= 3; step++) {
    const g = Float32Array.from(randn(rand, N));
    await trainer.step(h.lr, gradFeed(g));
    ref = lionStep(ref.p, g, ref.m, { ...h, lr: Math.fround(h.lr) });
    assert.ok(maxAbsDiff(trainer.value("w"), ref.p) < 1e-6);
    assert.ok(maxAbsDiff(trainer.value("optimizer.m"), ref.m) < 1e-6);
  }
});

test("clipping by global norm scales gradients like clip_grad_norm_ and reports the pre-clip norm", async () => {
  const { trainer, w0, rand, gradFeed } = await linearProblem({ kind: "sgd" }, { maxGradNorm: 1.5 });
  for (const scale of [10, 0.01]) {
    const before = Float64Array.from(trainer.value("w"));
    const g = Float32Array.from(randn(rand, N, scale));
    const out = await trainer.step(0.1, gradFeed(g));
    const { grads, norm } = clipByGlobalNorm([g], 1.5);
    assert.ok(Math.abs((out.grad_norm.data[0] as number) - norm) < 1e-5 * norm);
    const expected = before.map((p, i) => p - Math.fround(0.1) * grads[0][i]);
    assert.ok(maxAbsDiff(trainer.value("w"), expected) < 1e-6);
  }
  assert.ok(w0.length === N);
});

test("gradient accumulation: k=3 micro-steps apply the mean gradient once, then start over", async () => {
  const h = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
  const { trainer, w0, rand, gradFeed } = await linearProblem(
    { kind: "adamw", ...h },
    { accumulationSteps: 3 },
  );
  let ref = { p: w0, m: new Float64Array(N), v: new Float64Array(N) };
  for (let update = 1; update <= 2; update++) {
    const micro = [0, 1, 2].map(() => Float32Array.from(randn(rand, N)));
    for (let j = 0; j < 3; j++) {
      const out = await trainer.step(0.01, gradFeed(micro[j]));
      assert.equal(out.applied.data[0], j === 2 ? 1 : 0);
      if (j < 2)
        assert.ok(maxAbsDiff(trainer.value("w"), ref.p) < 1e-6, "no update before the k-th micro-step");
    }
    const mean = micro[0].map((_, i) => (micro[0][i] + micro[1][i] + micro[2][i]) / 3);
    ref = adamwStep(ref.p, mean, ref.m, ref.v, update, { lr: Math.fround(0.01), ...h });
    assert.ok(maxAbsDiff(trainer.value("w"), ref.p) < 1e-6, `update ${update}`);
    assert.ok(
      trainer.value("optimizer.acc").every((x) => x === 0),
      "accumulator reset",
    );
  }
});

test("non-finite guard: a NaN or Inf gradient skips the update, keeps state bit-exact and reports it", async () => {
  const { trainer, rand, gradFeed } = await linearProblem({ kind: "adamw" });
  await trainer.step(0.01, gradFeed(Float32Array.from(randn(rand, N))));
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const snapshot = new Map(
      [...trainer.state].map(([k, v]) => [k, Float32Array.from(v.data as Float32Array)]),
    );
    const g = Float32Array.from(randn(rand, N));
    g[7] = bad;
    const out = await trainer.step(0.01, gradFeed(g));
    assert.equal(out.nonfinite.data[0], 1);
    for (const [k, v] of snapshot) assert.deepEqual(trainer.value(k), v, `${k} changed on a skipped step`);
  }
  const out = await trainer.step(0.01, gradFeed(Float32Array.from(randn(rand, N))));
  assert.equal(out.nonfinite.data[0], 0);
  assert.equal(trainer.value("optimizer.step")[0], 2);
});

test("parameter groups: several tensors per group, one learning rate per group, flat moments", async () => {
  const h = { beta1: 0.8, beta2: 0.99, eps: 1e-8, weightDecay: 0.05 };
  const shapes: Record<string, number[]> = { a: [3, 2], b: [4], c: [2, 2, 2] };
  const b = new GraphBuilder("groups");
  const ps = Object.fromEntries(
    Object.entries(shapes).map(([k, s]) => [k, b.input(`state_in.${k}`, "float32", s)]),
  );
  const cs = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, b.input(`c.${k}`, "float32", s)]));
  const loss = op.add(
    op.add(
      op.reduceSum(op.mul(ps.a, cs.a), undefined, false),
      op.reduceSum(op.mul(ps.b, cs.b), undefined, false),
    ),
    op.reduceSum(op.mul(ps.c, cs.c), undefined, false),
  );
  const graph = appendTrainStep(b, {
    loss,
    groups: [
      { name: "unet", params: [ps.a, ps.c] },
      { name: "te", params: [ps.b] },
    ],
    optimizer: { kind: "adamw", ...h },
  });
  assert.deepEqual(graph.lrInputs, { unet: "lr.unet", te: "lr.te" });
  const rand = rng(5);
  const init = Object.fromEntries(
    Object.entries(shapes).map(([k, s]) => [
      k,
      Float32Array.from(
        randn(
          rand,
          s.reduce((x, y) => x * y),
        ),
      ),
    ]),
  );
  const trainer = await createTrainer(encodeModel(b.build()), graph, init);
  const lrs: Record<string, number> = { a: 0.01, c: 0.01, b: 0.003 };
  const ref = Object.fromEntries(
    Object.entries(init).map(([k, v]) => [
      k,
      { p: Float64Array.from(v), m: new Float64Array(v.length), v: new Float64Array(v.length) },
    ]),
  );
  for (let step = 1; step <= 2; step++) {
    const batch: Record<string, Feed> = {};
    const gs = Object.fromEntries(
      Object.keys(shapes).map((k) => [k, Float32Array.from(randn(rand, init[k].length))]),
    );
    for (const [k, s] of Object.entries(shapes))
      batch[`c.${k}`] = { dtype: "float32", shape: s, data: gs[k] };
    batch["lr.unet"] = { dtype: "float32", shape: [], data: [0.01] };
    batch["lr.te"] = { dtype: "float32", shape: [], data: [0.003] };
    await trainer.stepWith(batch);
    for (const k of Object.keys(shapes)) {
      ref[k] = adamwStep(ref[k].p, gs[k], ref[k].m, ref[k].v, step, { lr: Math.fround(lrs[k]), ...h });
      assert.ok(maxAbsDiff(trainer.value(k), ref[k].p) < 1e-6, `${k} step ${step}`);
    }
  }
});

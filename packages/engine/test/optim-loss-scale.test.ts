/**
 * Loss scaling in the training-step graph (optim/loss-scale.ts), on a small fp16 LoRA layer
 * y = x W + x A B (W fp16 frozen, A/B float32 master weights cast to fp16 in the graph): an injected overflow
 * (a loss scale far beyond fp16's range) skips the update, keeps every parameter and moment bit-identical and
 * halves the scale; good steps grow the scale after the interval (torch GradScaler semantics); a static power-of-two
 * scale gives bit-identical updates to no scaling in a float32 graph (scaling by 2^k is exact).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import { f32ToF16Bits } from "../src/graph/half.ts";
import * as op from "../src/graph/ops/index.ts";
import { DYNAMIC_LOSS_SCALE_DEFAULTS, type LossScaling } from "../src/optim/loss-scale.ts";
import { appendTrainStep, initialTrainState } from "../src/optim/train-step.ts";
import { Session } from "../src/runtime/session.ts";
import { type HostTensor, hostTensor } from "../src/runtime/tensor.ts";
import { TrainStepRunner } from "../src/runtime/train-step.ts";
import { randn, rng } from "./support/numeric.ts";

const [N, D, R] = [32, 16, 4];

async function toy(dtype: "float16" | "float32", lossScaling?: LossScaling, seed = 5) {
  const rand = rng(seed);
  const w = randn(rand, D * D, 1 / Math.sqrt(D));
  const b = new GraphBuilder("loss-scale");
  const base =
    dtype === "float16"
      ? b.initializer("base", { dtype: "float16", shape: [D, D], data: Uint16Array.from(w, f32ToF16Bits) })
      : b.initializer("base", { dtype: "float32", shape: [D, D], data: Float32Array.from(w) });
  const a = b.input("state_in.lora.down", "float32", [D, R]);
  const up = b.input("state_in.lora.up", "float32", [R, D]);
  const toC = (v: ReturnType<typeof b.input>) => (dtype === "float16" ? op.cast(v, "float16") : v);
  const x = toC(b.input("x", "float32", [N, D]));
  const y = op.add(op.matmul(x, base), op.matmul(op.matmul(x, toC(a)), toC(up)));
  const diff = op.sub(dtype === "float16" ? op.cast(y, "float32") : y, b.input("target", "float32", [N, D]));
  const graph = appendTrainStep(b, {
    loss: op.reduceMean(op.mul(diff, diff), undefined, false),
    params: [a, up],
    optimizer: { kind: "adamw", weightDecay: 0 },
    lossScaling,
  });
  const session = await Session.create(b.build(), { executionProvider: "cpu", onMessage: () => {} });
  const init = new Map([
    ["lora.down", Float32Array.from(randn(rand, D * R, 1 / Math.sqrt(D)))],
    ["lora.up", Float32Array.from(randn(rand, R * D, 0.1))],
  ]);
  const runner = new TrainStepRunner(session, initialTrainState(graph, init));
  const feeds: Record<string, HostTensor> = {
    x: hostTensor("float32", [N, D], Float32Array.from(randn(rand, N * D))),
    target: hostTensor("float32", [N, D], Float32Array.from(randn(rand, N * D))),
    lr: hostTensor("float32", [], Float32Array.of(1e-2)),
  };
  const value = (name: string) => Float32Array.from(runner.state.get(name)?.data as Float32Array);
  return { graph, session, runner, feeds, value, step: () => runner.step(feeds) };
}

const flag = (t: HostTensor) => (t.data as Uint8Array)[0] !== 0;

test("dynamic loss scale starts at torch's GradScaler defaults", async () => {
  const t = await toy("float16", { kind: "dynamic" });
  assert.equal(t.value("optimizer.loss_scale")[0], 65536);
  assert.equal(t.value("optimizer.loss_scale_good_steps")[0], 0);
  assert.deepEqual(DYNAMIC_LOSS_SCALE_DEFAULTS, {
    initScale: 65536,
    growthFactor: 2,
    backoffFactor: 0.5,
    growthInterval: 2000,
  });
  assert.equal(t.graph.outputs.overflow, "overflow");
  await t.session.release();
});

test("an fp16 overflow skips the update, keeps parameters and moments, halves the scale; then training resumes", async () => {
  const t = await toy("float16", { kind: "dynamic", initScale: 2 ** 40 });
  const names = ["lora.down", "lora.up", "optimizer.m", "optimizer.v", "optimizer.step"];
  const before = names.map(t.value);
  const out = await t.step();
  assert.ok(flag(out.overflow), "2^40 x the loss must overflow fp16 gradients");
  assert.ok(!flag(out.nonfinite), "an overflow is not a fatal non-finite step");
  assert.ok(Number.isFinite(out.loss.data[0] as number));
  names.forEach((n, i) => {
    assert.deepEqual(t.value(n), before[i], `${n} changed on a skipped step`);
  });
  assert.equal(t.value("optimizer.loss_scale")[0], 2 ** 39);
  assert.equal(t.value("optimizer.loss_scale_good_steps")[0], 0);

  // Backing off one halving per step, the scale comes down to where the fp16 gradients fit, then updates apply.
  let skipped = 1;
  while (flag((await t.step()).overflow)) skipped++;
  assert.ok(skipped < 40, `still overflowing after ${skipped} steps`);
  const scale = t.value("optimizer.loss_scale")[0];
  assert.equal(scale, 2 ** (40 - skipped));
  assert.equal(t.value("optimizer.step")[0], 1);
  assert.notDeepEqual(t.value("lora.up"), before[1]);
  assert.equal(t.value("optimizer.loss_scale_good_steps")[0], 1);
  await t.session.release();
});

test("the scale grows by the growth factor after growthInterval good steps, and the counter restarts", async () => {
  const t = await toy("float16", { kind: "dynamic", initScale: 8, growthInterval: 3 });
  const seen: number[][] = [];
  for (let i = 0; i < 7; i++) {
    const out = await t.step();
    assert.ok(!flag(out.overflow) && !flag(out.nonfinite));
    seen.push([t.value("optimizer.loss_scale")[0], t.value("optimizer.loss_scale_good_steps")[0]]);
  }
  assert.deepEqual(seen, [
    [8, 1],
    [8, 2],
    [16, 0],
    [16, 1],
    [16, 2],
    [32, 0],
    [32, 1],
  ]);
  assert.equal(t.value("optimizer.step")[0], 7);
  await t.session.release();
});

test("a NaN loss is still fatal (nonfinite) and skips the update", async () => {
  const t = await toy("float16", { kind: "dynamic" });
  const up = t.value("lora.up");
  const target = Float32Array.from(t.feeds.target.data as Float32Array);
  target[3] = Number.NaN;
  const out = await t.runner.step({ ...t.feeds, target: hostTensor("float32", [N, D], target) });
  assert.ok(flag(out.nonfinite) && !flag(out.overflow));
  assert.deepEqual(t.value("lora.up"), up);
  await t.session.release();
});

test("a static power-of-two scale gives bit-identical float32 updates and gradient norms", async () => {
  const plain = await toy("float32");
  const scaled = await toy("float32", { kind: "static", scale: 1024 });
  for (let i = 0; i < 3; i++) {
    const [a, b] = [await plain.step(), await scaled.step()];
    assert.equal(a.grad_norm.data[0], b.grad_norm.data[0]);
  }
  assert.deepEqual(scaled.value("lora.down"), plain.value("lora.down"));
  assert.deepEqual(scaled.value("lora.up"), plain.value("lora.up"));
  assert.ok(!scaled.graph.state.some((s) => s.name === "optimizer.loss_scale"), "static scale is no state");
  await plain.session.release();
  await scaled.session.release();
});

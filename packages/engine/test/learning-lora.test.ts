// A LoRA-wrapped frozen network learns a target that only the adapter can reach. Base weights are initializers
// (frozen, never differentiated: there is no state for them); only A and B are trained. The target comes from
// the same network with W1 + dW, dW of rank r, so the loss can only fall through the adapter. Runs through the
// runtime's Session and TrainStepRunner, so the state naming of appendTrainStep is checked against the runner.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import type { Value } from "../src/graph/ir.ts";
import * as op from "../src/graph/ops/index.ts";
import { appendTrainStep, initialTrainState } from "../src/optim/train-step.ts";
import { Session } from "../src/runtime/session.ts";
import { hostTensor } from "../src/runtime/tensor.ts";
import { TrainStepRunner } from "../src/runtime/train-step.ts";
import { randn, rng } from "./support/numeric.ts";

const [N, D, H, R, ALPHA] = [64, 16, 24, 4, 4];

/** y = gelu(x W1 + (x A) B * alpha/r) W2, all frozen except A, B. */
function network(x: Value, w1: Value, w2: Value, a: Value, bb: Value): Value {
  const lora = op.mul(op.matmul(op.matmul(x, a), bb), ALPHA / R);
  return op.matmul(op.gelu(op.add(op.matmul(x, w1), lora)), w2);
}

test("LoRA on a frozen 2-layer network learns a rank-r weight change only the adapter can reach", async () => {
  const rand = rng(3);
  const w1 = Float32Array.from(randn(rand, D * H, 1 / Math.sqrt(D)));
  const w2 = Float32Array.from(randn(rand, H * D, 1 / Math.sqrt(H)));
  const u = randn(rand, D * R);
  const v = randn(rand, R * H);
  const dW = Float32Array.from({ length: D * H }, (_, k) => {
    const [i, j] = [Math.floor(k / H), k % H];
    let s = 0;
    for (let t = 0; t < R; t++) s += u[i * R + t] * v[t * H + j];
    return (0.6 * s) / Math.sqrt(D);
  });
  const x = Float32Array.from(randn(rand, N * D));
  // Target computed in plain JS (independent of the graph): gelu(x (W1 + dW)) W2.
  const gelu = (z: number) => 0.5 * z * (1 + erf(z / Math.SQRT2));
  const target = new Float32Array(N * D);
  for (let n = 0; n < N; n++) {
    const h = new Float64Array(H);
    for (let j = 0; j < H; j++) {
      let s = 0;
      for (let i = 0; i < D; i++) s += x[n * D + i] * (w1[i * H + j] + dW[i * H + j]);
      h[j] = gelu(s);
    }
    for (let o = 0; o < D; o++) {
      let s = 0;
      for (let j = 0; j < H; j++) s += h[j] * w2[j * D + o];
      target[n * D + o] = s;
    }
  }

  const b = new GraphBuilder("lora");
  const xv = b.input("x", "float32", [N, D]);
  const w1v = b.initializer("base.w1", { dtype: "float32", shape: [D, H], data: w1 });
  const w2v = b.initializer("base.w2", { dtype: "float32", shape: [H, D], data: w2 });
  const a = b.input("state_in.lora.down", "float32", [D, R]);
  const up = b.input("state_in.lora.up", "float32", [R, H]);
  const y = network(xv, w1v, w2v, a, up);
  const d = op.sub(y, b.input("target", "float32", [N, D]));
  const loss = op.reduceMean(op.mul(d, d), undefined, false);
  const graph = appendTrainStep(b, { loss, params: [a, up], optimizer: { kind: "adamw", weightDecay: 0 } });
  assert.deepEqual(
    graph.state.filter((s) => s.init === "param").map((s) => s.name),
    ["lora.down", "lora.up"],
  );

  const session = await Session.create(b.build(), { intraOpThreads: 1 });
  const init = new Map([
    ["lora.down", Float32Array.from(randn(rand, D * R, 1 / Math.sqrt(D)))],
    ["lora.up", new Float32Array(R * H)], // B = 0: the adapter starts as the identity change, like kohya/PEFT.
  ]);
  const runner = new TrainStepRunner(session, initialTrainState(graph, init));
  const feeds = {
    x: hostTensor("float32", [N, D], x),
    target: hostTensor("float32", [N, D], target),
  };
  const losses: number[] = [];
  for (let i = 0; i < 400; i++) {
    const out = await runner.step({
      ...feeds,
      lr: hostTensor("float32", [], Float32Array.of(i < 300 ? 0.01 : 0.002)),
    });
    losses.push(out.loss.data[0] as number);
  }
  assert.ok(losses[0] > 1e-2, `the frozen base alone must miss the target (loss ${losses[0]})`);
  assert.ok(losses[0] / losses[399] >= 10, `loss ${losses[0]} -> ${losses[399]}`);
  assert.equal(runner.state.get("optimizer.step")!.data[0], 400);
});

/** Abramowitz-Stegun 7.1.26 erf (|error| < 1.5e-7), for the independent JS target. */
function erf(z: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(z));
  const p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return Math.sign(z) * (1 - p * Math.exp(-z * z));
}

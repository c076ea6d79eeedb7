// Mixed precision: the frozen base runs in float16 (weights and activations), the trainable LoRA factors and the
// AdamW moments stay float32 master copies (cast to float16 inside the forward; gradients come back through the
// Cast rule as float32). The adapter must still learn a rank-r change of the base weight.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/graph/builder.ts";
import { f32ToF16Bits } from "../src/graph/half.ts";
import * as op from "../src/graph/ops/index.ts";
import { encodeModel } from "../src/onnx/encode.ts";
import { appendTrainStep } from "../src/optim/train-step.ts";
import { randn, rng } from "./support/numeric.ts";
import { createTrainer, type Feed } from "./support/train-harness.ts";

test("float16 frozen base + float32 LoRA master weights and moments: loss falls >= 10x", async () => {
  const [n, d, r] = [64, 16, 4];
  const rand = rng(8);
  const w = randn(rand, d * d, 1 / Math.sqrt(d));
  const u = randn(rand, d * r, 0.5);
  const v = randn(rand, r * d, 0.5 / Math.sqrt(d));
  const x = randn(rand, n * d);
  const target = new Float32Array(n * d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) {
        let delta = 0;
        for (let t = 0; t < r; t++) delta += u[k * r + t] * v[t * d + j];
        s += x[i * d + k] * (w[k * d + j] + delta);
      }
      target[i * d + j] = s;
    }

  const b = new GraphBuilder("mixed");
  const base = b.initializer("base.weight", {
    dtype: "float16",
    shape: [d, d],
    data: Uint16Array.from(w, f32ToF16Bits),
  });
  const a = b.input("state_in.lora.down", "float32", [d, r]);
  const up = b.input("state_in.lora.up", "float32", [r, d]);
  const xh = op.cast(b.input("x", "float32", [n, d]), "float16");
  const lora = op.matmul(op.matmul(xh, op.cast(a, "float16")), op.cast(up, "float16"));
  const y = op.cast(op.add(op.matmul(xh, base), lora), "float32");
  const diff = op.sub(y, b.input("target", "float32", [n, d]));
  const graph = appendTrainStep(b, {
    loss: op.reduceMean(op.mul(diff, diff), undefined, false),
    params: [a, up],
    optimizer: { kind: "adamw", weightDecay: 0 },
  });
  assert.ok(graph.state.every((s) => s.name === "optimizer.micro_step" || s.dtype === "float32"));
  const trainer = await createTrainer(encodeModel(b.build()), graph, {
    "lora.down": Float32Array.from(randn(rand, d * r, 1 / Math.sqrt(d))),
    "lora.up": new Float32Array(r * d),
  });
  const batch: Record<string, Feed> = {
    x: { dtype: "float32", shape: [n, d], data: x },
    target: { dtype: "float32", shape: [n, d], data: target },
  };
  const losses: number[] = [];
  for (let i = 0; i < 300; i++) losses.push((await trainer.step(0.01, batch)).loss.data[0] as number);
  assert.ok(losses[0] / losses[299] >= 10, `loss ${losses[0]} -> ${losses[299]}`);
  assert.ok(trainer.value("lora.up").some((z) => z !== 0));
});
